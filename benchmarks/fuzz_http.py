"""Fuzz both HTTP servers with malformed and hostile requests, interleaved with valid ones.

    python benchmarks/fuzz_http.py [--requests 24000] [--concurrency 8] [--seed 12]

Builds the lake of ``benchmarks/serve.py`` under --workdir (default .bench/fuzz, gitignored):
a registered XGBoost model and a feature table of --entities flights materialized into the
online store (SQLite) by raylake's own code. On a local Ray (2 CPUs) it serves, side by
side, the feature server (``/features``: /get-online-features, /push, /health) and the
model server (``/model``: /predict, /health, entity lookups through the feature service,
request log on), both with API keys from a key file (a ``read`` key and a ``read+push``
key), as `raylake serve-features` and `raylake serve` build them.

Before the fuzz, a set of valid requests is answered and checked against values computed
here (the feature table's values; the booster's predictions); those answers are the
known-correct answers. Then --requests requests go out from --concurrency threads, each
with its own keep-alive connection (``http.client``). Each request is drawn from a seeded
generator (request i is the same for a given --seed):

- about 15%: valid requests (lookups and predictions whose answers must equal the
  known-correct ones; pushes of new rows read back at once);
- the rest hostile: valid bodies with a subtree replaced (huge or out-of-range numbers,
  NaN/Infinity/1e999 literals, long strings, lone surrogates, bools for numbers, dicts and
  lists for scalars), fields dropped or added, deep nesting, over-long lists, invalid
  UTF-8, UTF-16, random bytes, truncated JSON, oversize bodies (with Content-Length and
  chunked), wrong methods and paths, missing, wrong, under-scoped and malformed API keys,
  and pushes to the offline store.

A server error is any 5xx answer, or a request that got no answer at all (an oversize
body whose connection the server closes after its 413 excepted). A wrong answer is a
valid request whose status or answer differs from the known-correct one. At the end the
valid requests are checked once more, both /health routes must answer ok and Serve must
report both applications running (``healthy``); the request log is read back to check
that no unit_id over the limit was stored. The last line is:
    fuzz: requests <n>, server_errors <n>, wrong_answers <n>, healthy <true|false>
Target: 0 server errors, 0 wrong answers, healthy true.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import http.client
import importlib.util
import json
import random
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("serve_bench", HERE / "serve.py")
assert _spec and _spec.loader
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

READ_KEY = "fuzz-reader-" + "r" * 24
PUSH_KEY = "fuzz-pusher-" + "p" * 24
VIEW, KEY = bench.VIEW, bench.KEY
FEATURES = [f"{VIEW}:wind", f"{VIEW}:noise", f"{VIEW}:carrier"]
PUSH_BASE = 1_000_000  # valid pushes: new flights from here on (never the checked ones)
FUZZ_BASE = 2_000_000  # hostile pushes: flights from here on
OVERSIZE = 2 << 20  # bytes: over the servers' 1 MiB default


class Req:
    """One request to send: method, path, headers, body; ``kind`` names its generator."""

    __slots__ = ("method", "path", "headers", "body", "chunked", "kind")

    def __init__(self, method, path, body=b"", headers=None, kind="", chunked=False):
        self.method, self.path, self.body, self.kind = method, path, body, kind
        self.headers = headers if headers is not None else auth(READ_KEY)
        self.chunked = chunked


def auth(key: str | None) -> dict:
    h = {"Content-Type": "application/json"}
    if key:
        h["Authorization"] = f"Bearer {key}"
    return h


def dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


# ---------------------------------------------------------------- valid requests

def lookup_body(keys: list[int]) -> dict:
    return {"features": FEATURES, "entities": {KEY: keys}}


def push_body(key: int, wind: float, when: str) -> dict:
    return {"feature_view": VIEW, "to": "online",
            "df": {KEY: [key], "event_timestamp": [when], "wind": [wind], "noise": [0.5],
                   "carrier": ["AA"]}}


def valid_set(rng: random.Random, n_entities: int) -> list[Req]:
    """The valid requests whose answers are recorded before the fuzz and compared after."""
    out = []
    for _ in range(40):
        keys = [rng.randrange(n_entities) for _ in range(rng.choice([1, 1, 3, 10]))]
        out.append(Req("POST", "/features/get-online-features", dumps(lookup_body(keys)),
                       kind="valid_lookup"))
        out.append(Req("POST", "/model/predict", dumps({"entities": {KEY: keys}}),
                       kind="valid_predict"))
    for _ in range(10):
        rows = {"wind": [round(rng.uniform(0, 40), 2) for _ in range(3)],
                "noise": [round(rng.gauss(0, 1), 3) for _ in range(3)],
                "carrier": [rng.choice(["AA", "BB", "CC", "ZZ"]) for _ in range(3)]}
        out.append(Req("POST", "/model/predict", dumps({"unit_id": "u1", "features": rows}),
                       kind="valid_predict"))
    return out


# ---------------------------------------------------------------- hostile requests

RAW_TOKENS = [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"9" * 5000, b"9" * 400,
              b'"\\ud800"', b'"\\udfff\\ud800x"', b'"\xff\xfe"', b'"\xc3\x28"', b'"\xed\xa0\x80"',
              b"tru", b"[1,]", b"01", b'"\\x41"', b"{", b'"\x00"', b"-0", b"1.0e-400", b'"\\u0000"']


def hostile_value(rng: random.Random):
    """A value that is wrong for most places in a request (never a flight number 0..1999)."""
    return rng.choice([
        lambda: 10 ** 30, lambda: -(2 ** 63) - 1, lambda: 2 ** 63, lambda: 2 ** 64,
        lambda: 10 ** 400, lambda: 1e308, lambda: -1e308, lambda: 5e-324, lambda: -1,
        lambda: True, lambda: False, lambda: None, lambda: "", lambda: "x" * rng.choice(
            [257, 1025, 5000, 100_000]), lambda: "é" * 2000, lambda: "\u0000",
        lambda: "\ud800", lambda: "\udfff" * 3, lambda: "🛫" * 10, lambda: "JFK", lambda: "1",
        lambda: "2024-13-45T99:99", lambda: [], lambda: {}, lambda: [[]],
        lambda: {"a": {"b": 1}}, lambda: list(range(3_000_000, 3_002_000)),
        lambda: [None] * 5, lambda: 3.5, lambda: "serve_bench:wind", lambda: "online",
        lambda: "offline", lambda: nested(rng.choice([2, 3, 9, 50, 3000])),
        lambda: Raw(rng.choice(RAW_TOKENS)),
    ])()


class Raw:
    """Bytes put into the serialized body as they are (not JSON-encodable otherwise)."""

    def __init__(self, data: bytes) -> None:
        self.data = data


def nested(depth: int):
    """Lists and objects ``depth`` deep (as raw bytes past what json.dumps recurses into)."""
    if depth > 500:
        return Raw(b'{"a":[' * (depth // 2) + b"1" + b"]}" * (depth // 2))
    v: object = 1
    for i in range(depth):
        v = [v] if i % 2 else {"a": v}
    return v


def paths(obj, prefix=()):
    """Every (path, node) of a JSON object down to 6 levels, containers included."""
    yield prefix, obj
    if len(prefix) >= 6:
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from paths(v, (*prefix, i))


def set_at(obj, path, value):
    if not path:
        return value
    node = obj
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return obj


def mutate(obj, rng: random.Random):
    """``obj`` (a valid body, copied) with one to three hostile changes."""
    obj = copy.deepcopy(obj)
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        all_paths = list(paths(obj))
        path, node = rng.choice(all_paths)
        op = rng.random()
        if op < 0.55:
            obj = set_at(obj, path, hostile_value(rng))
        elif op < 0.65 and isinstance(node, dict) and node:
            node.pop(rng.choice(list(node)))
        elif op < 0.75 and isinstance(node, dict):
            node[rng.choice(["extra", "x" * 300, "\ud800", "features ", "", "to"])] = \
                hostile_value(rng)
        elif op < 0.85 and isinstance(node, list):
            node.extend([rng.choice([1, "AA", 2.5, None])] * rng.choice([1001, 5000]))
        elif op < 0.90:
            obj = set_at(obj, path, nested(rng.choice([2, 9, 200, 2000])))
        else:
            obj = rng.choice([[obj], "body", 3, None, True, [], {}])
    return obj


def serialize(obj) -> bytes:
    """JSON bytes of ``obj`` with every Raw value's bytes put in place."""
    raws: list[bytes] = []

    def default(o):
        if isinstance(o, Raw):
            raws.append(o.data)
            return f"\u0001RAW{len(raws) - 1}\u0001"
        raise TypeError(type(o).__name__)

    try:
        text = json.dumps(obj, default=default, separators=(",", ":"))
    except RecursionError:
        text = "[" * 100_000
    data = text.encode("utf-8", "surrogatepass")
    for i, raw in enumerate(raws):
        data = data.replace(f'"\\u0001RAW{i}\\u0001"'.encode(), raw)
    return data[:OVERSIZE]  # a body bigger than this says nothing more (it gets a 413)


def hostile(rng: random.Random, i: int, n_entities: int) -> Req:
    """Request ``i`` of the fuzz: a hostile one of a randomly drawn kind."""
    when = "2024-01-02T00:00:00Z"
    templates = [
        ("/features/get-online-features", lookup_body([rng.randrange(n_entities)]), READ_KEY),
        ("/features/get-online-features", {"feature_service": VIEW, "entities": {KEY: [1, 2]},
                                           "full_feature_names": True}, READ_KEY),
        ("/features/push", push_body(FUZZ_BASE + i, 3.5, when), PUSH_KEY),
        ("/features/push", {"push_source_name": VIEW, "df": [
            {KEY: FUZZ_BASE + i, "event_timestamp": when, "wind": 1.0, "carrier": "BB"}]},
         PUSH_KEY),
        ("/model/predict", {"unit_id": "u", "entities": {KEY: [rng.randrange(n_entities)]}},
         READ_KEY),
        ("/model/predict", {"features": {"wind": [1.0, 2.0], "noise": [0.0, None],
                                         "carrier": ["AA", "ZZ"]}}, READ_KEY),
    ]
    path, body, key = rng.choice(templates)
    r = rng.random()
    if r < 0.55:  # a valid body with hostile changes
        return Req("POST", path, serialize(mutate(body, rng)), auth(key), "mutated")
    if r < 0.63:  # bytes that are not (UTF-8) JSON
        good = dumps(body)
        data = rng.choice([
            lambda: bytes(rng.randrange(256) for _ in range(rng.randrange(1, 2000))),
            lambda: good[:rng.randrange(len(good))],
            lambda: good.decode().encode("utf-16"),
            lambda: b"\xef\xbb\xbf" + good,
            lambda: good.replace(b'"', b'"\xff', 1),
            lambda: good.replace(b"AA", b"\xc3\x28") if b"AA" in good else good + b"\xff",
            lambda: b"",
            lambda: b"[" * rng.choice([9, 1000, 100_000]),
            lambda: b'{"a":' * 50_000,
            lambda: good + b" " + good,
        ])()
        return Req("POST", path, data, auth(key), "bytes")
    if r < 0.70:  # an over-long list (rows, entities, features)
        n = rng.choice([1001, 1500, 20_000])
        if "predict" in path:
            body = {"entities": {KEY: [1] * n}}
        elif "push" in path:
            body = {"feature_view": VIEW, "df": {KEY: list(range(FUZZ_BASE, FUZZ_BASE + n)),
                                                 "event_timestamp": [when] * n}}
        else:
            body = rng.choice([lookup_body([1] * n), {"features": FEATURES * (n // 3 + 1),
                                                      "entities": {KEY: [1]}}])
        return Req("POST", path, dumps(body), auth(key), "long_list")
    if r < 0.71:  # oversize: Content-Length, or chunked without one
        data = b'{"features":["' + b"x" * rng.randrange(OVERSIZE // 2 + 100_000, OVERSIZE) + b'"]}'
        return Req("POST", path, data, auth(key), "oversize", chunked=rng.random() < 0.5)
    if r < 0.79:  # wrong methods and paths
        method = rng.choice(["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "POST"])
        p = rng.choice([path, path + "/x", path + "?q=%ff", "/features/nope", "/model/%ff%fe",
                        "/model/" + "a" * 3000, "/features//push", "/features/../model/predict",
                        "/features/health", "/model/health", "/", "/model/predict/"])
        if method == "POST" and p in (path,):
            p = "/features/health"
        return Req(method, p, dumps(body) if rng.random() < 0.5 else b"", auth(key), "method")
    if r < 0.90:  # API keys: missing, wrong, under-scoped, malformed
        h = {"Content-Type": "application/json"}
        choice = rng.randrange(9)
        if choice == 1:
            h["Authorization"] = "Bearer " + "x" * 40
        elif choice == 2 and "push" in path:
            h["Authorization"] = f"Bearer {READ_KEY}"
        elif choice == 3:
            h["Authorization"] = "Bearer"
        elif choice == 4:
            h["Authorization"] = f"Basic {READ_KEY}"
        elif choice == 5:
            h["Authorization"] = "Bearer " + "k" * 8000
        elif choice == 6:
            h["X-API-Key"] = READ_KEY[:-1]
        elif choice == 7:
            h["Authorization"] = b"Bearer \xff\xfe\xe9"
        elif choice == 8:
            h["Authorization"] = f"bearer  {READ_KEY[:10]}"
        return Req("POST", path, dumps(body), h, "auth")
    if r < 0.95:  # offline pushes (refused) and pushes with wrong shapes
        b = push_body(FUZZ_BASE + i, 2.0, when)
        b["to"] = rng.choice(["offline", "online_and_offline", "both", 1, None, ["online"]])
        if rng.random() < 0.3:
            b["df"]["wind"] = [1.0, 2.0]
        return Req("POST", "/features/push", dumps(b), auth(PUSH_KEY), "push_offline")
    # headers and content types that are odd but harmless
    h = auth(key)
    h["Content-Type"] = rng.choice(["text/plain", "application/x-www-form-urlencoded",
                                    "application/json; charset=latin-1", "multipart/form-data"])
    h["X-Extra"] = "y" * rng.choice([10, 4000])
    return Req("POST", path, dumps(body), h, "headers")


# ---------------------------------------------------------------- the client

class Client:
    """One keep-alive connection, reopened after the server closes it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def send(self, req: Req) -> tuple[int, bytes]:
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            try:
                return self._send(req)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                self.close()
                # A kept-alive connection the server closed while idle: one retry.
                if attempt or req.kind == "oversize":
                    raise exc
            except Exception:
                self.close()
                raise
        raise AssertionError("unreachable")

    def _send(self, req: Req) -> tuple[int, bytes]:
        conn = self.conn
        assert conn is not None
        conn.putrequest(req.method, req.path, skip_accept_encoding=True)
        for k, v in req.headers.items():
            conn.putheader(k, v)
        if req.chunked:
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            for at in range(0, len(req.body), 65536):
                chunk = req.body[at:at + 65536]
                conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            conn.send(b"0\r\n\r\n")
        else:
            if req.body or req.method in ("POST", "PUT", "PATCH"):
                conn.putheader("Content-Length", str(len(req.body)))
            conn.endheaders(req.body or None)
        resp = conn.getresponse()
        data = resp.read()
        if resp.getheader("connection", "").lower() == "close":
            self.close()
        return resp.status, data

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
            self.conn = None


def answer_of(req: Req, status: int, data: bytes):
    """What must stay the same for a valid request: lookups whole, predictions' scores."""
    if status != 200:
        return ("status", status)
    body = json.loads(data)
    if req.kind == "valid_predict":
        return (body["model"], body["version"], body["predictions"])
    return body


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.server_errors = 0
        self.wrong_answers = 0
        self.closed_early = 0
        self.statuses: Counter = Counter()
        self.samples: list[str] = []

    def note(self, req: Req, status: int | None, detail: str = "") -> None:
        with self.lock:
            self.requests += 1
            self.statuses[(req.kind, status)] += 1
            if status is None or status >= 500:
                self.server_errors += 1
                if len(self.samples) < 10:
                    self.samples.append(f"{req.kind} {req.method} {req.path[:60]} "
                                        f"{req.body[:120]!r}: {status} {detail[:300]}")

    def wrong(self, req: Req, detail: str) -> None:
        with self.lock:
            self.wrong_answers += 1
            if len(self.samples) < 20:
                self.samples.append(f"WRONG {req.kind} {req.body[:120]!r}: {detail[:300]}")


def run_fuzz(port: int, args, valid: list[Req], known: list, stats: Stats) -> None:
    counter = iter(range(args.requests))
    lock = threading.Lock()
    stop = time.monotonic() + args.max_seconds

    def next_index():
        with lock:
            return next(counter, None)

    def worker() -> None:
        client = Client(port)
        while time.monotonic() < stop:
            i = next_index()
            if i is None:
                break
            rng = random.Random(args.seed * 1_000_003 + i)
            if rng.random() < 0.15:  # valid
                if rng.random() < 0.25:
                    check_push(client, rng, i, stats)
                else:
                    j = rng.randrange(len(valid))
                    send_checked(client, valid[j], known[j], stats)
                continue
            req = hostile(rng, i, args.entities)
            try:
                status, data = client.send(req)
            except Exception as exc:
                if req.kind == "oversize":  # closed after (or instead of) its 413: allowed
                    with stats.lock:
                        stats.closed_early += 1
                    stats.note(req, 413)
                else:
                    stats.note(req, None, f"{type(exc).__name__}: {exc}")
                continue
            stats.note(req, status, data.decode("utf-8", "replace"))
        client.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.concurrency)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    last = 0
    while any(t.is_alive() for t in threads):
        time.sleep(1)
        if time.monotonic() - last > 15:
            last = time.monotonic()
            print(f"  {stats.requests:,} requests in {last - t0:.0f}s, server_errors "
                  f"{stats.server_errors}, wrong_answers {stats.wrong_answers}", flush=True)
    for t in threads:
        t.join()


def send_checked(client: Client, req: Req, want, stats: Stats) -> None:
    try:
        status, data = client.send(req)
    except Exception as exc:
        stats.note(req, None, f"{type(exc).__name__}: {exc}")
        return
    stats.note(req, status, data.decode("utf-8", "replace"))
    if status < 500 and answer_of(req, status, data) != want:
        stats.wrong(req, f"{status} {data[:300]!r}")


def check_push(client: Client, rng: random.Random, i: int, stats: Stats) -> None:
    """A valid push of a new flight, read back at once: its values must be there."""
    key, wind = PUSH_BASE + i, round(rng.uniform(0, 50), 3)
    push = Req("POST", "/features/push", dumps(push_body(key, wind, "2024-01-02T00:00:00Z")),
               auth(PUSH_KEY), "valid_push")
    read = Req("POST", "/features/get-online-features", dumps(lookup_body([key])),
               kind="valid_pushed_read")
    for req in (push, read):
        try:
            status, data = client.send(req)
        except Exception as exc:
            stats.note(req, None, f"{type(exc).__name__}: {exc}")
            return
        stats.note(req, status, data.decode("utf-8", "replace"))
        if status != 200:
            stats.wrong(req, f"{status} {data[:300]!r}")
            return
    got = json.loads(data)["results"]
    if [c["values"][0] for c in got[1:]] != [wind, 0.5, "AA"]:
        stats.wrong(read, f"pushed wind {wind}, read {data[:300]!r}")


# ---------------------------------------------------------------- setup and checks

def deploy(work: Path, args):
    """The lake, the two servers on one Serve instance; returns (port, lake, features)."""
    from ray import serve

    from raylake.features.online.settings import store_settings
    from raylake.features.server import build_app as feature_app
    from raylake.serve.app import build_app as model_app

    lake, features, _ = bench.build_lake(work, args.entities)
    keys = work / "api_keys"
    keys.write_text(f"reader:read:{READ_KEY}\npusher:read+push:{PUSH_KEY}\n")
    conf = bench.raylake_conf(str(work / "lake"), 1)
    conf.model_server.api_keys_file = str(keys)
    conf.model_server.log_flush_s = 1.0
    conf.feature_server.api_keys_file = str(keys)
    conf.feature_server.max_replicas = 1
    port = bench.free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(feature_app(conf, lake, store_settings(conf, lake)), name="features",
              route_prefix="/features")
    serve.run(model_app(conf, lake), name="model", route_prefix="/model")
    return port, lake, features, conf


def known_answers(port: int, valid: list[Req], features, lake) -> list:
    """The valid requests' answers, checked against the feature table and the model."""
    import numpy as np

    from raylake.models.registry import ModelRegistry

    _, booster = ModelRegistry(lake).load(bench.MODEL, 1)
    table = {k: features.column(k).to_pylist() for k in ("wind", "noise", "carrier")}
    client, out = Client(port), []
    for req in valid:
        status, data = client.send(req)
        if status != 200:
            raise RuntimeError(f"valid {req.kind} answered {status}: {data[:300]!r}")
        body = json.loads(data)
        sent = json.loads(req.body)
        if req.kind == "valid_lookup":
            keys = sent["entities"][KEY]
            got = [c["values"] for c in body["results"][1:]]
            if got != [[table[f][k] for k in keys] for f in ("wind", "noise", "carrier")]:
                raise RuntimeError(f"lookup of {keys} answered {got}, the table has other values")
        elif "entities" in sent:
            want = bench.expected(booster, features, sent["entities"][KEY])
            if not np.allclose(body["predictions"], want, rtol=1e-6, atol=1e-7):
                raise RuntimeError(f"predictions {body['predictions']} differ from {want}")
        out.append(answer_of(req, status, data))
    client.close()
    return out


def final_checks(port: int, valid: list[Req], known: list, stats: Stats) -> bool:
    """Valid requests once more, both /health routes and Serve's status."""
    from ray import serve

    client = Client(port)
    for req, want in zip(valid, known):
        send_checked(client, req, want, stats)
    ok = True
    for path in ("/features/health", "/model/health"):
        try:
            status, data = client.send(Req("GET", path, b"", {}, "health"))
            ok &= status == 200 and json.loads(data)["status"] == "ok"
        except Exception as exc:
            print(f"{path}: {type(exc).__name__}: {exc}")
            ok = False
    client.close()
    status = serve.status()
    for name in ("features", "model"):
        app = status.applications[name]
        healthy = str(app.status).endswith("RUNNING") and all(
            str(d.status).endswith("HEALTHY") for d in app.deployments.values())
        if not healthy:
            print(f"application {name}: {app.status}; "
                  f"{ {k: str(d.status) for k, d in app.deployments.items()} }")
        ok &= healthy
    return ok


def request_log_check(lake, conf, limit: int) -> str:
    """The longest unit_id in the request log (the limit is ``limit``)."""
    try:
        table = lake.read(conf.model_server.request_log_table, columns=["unit_id"])
        ids = [u for u in table.column("unit_id").to_pylist() if u]
        longest = max((len(u) for u in ids), default=0)
        return (f"request log: {table.num_rows:,} rows, longest unit_id {longest} characters "
                f"(limit {limit}): {'ok' if longest <= limit else 'OVER THE LIMIT'}")
    except Exception as exc:  # the fuzz's verdict does not depend on it
        return f"request log: not read ({type(exc).__name__}: {exc})"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=24_000)
    p.add_argument("--concurrency", type=int, default=8, help="client threads (connections)")
    p.add_argument("--seed", type=int, default=12)
    p.add_argument("--entities", type=int, default=2000, help="flights in the online store")
    p.add_argument("--max-seconds", type=float, default=1500, help="stop sending after this")
    p.add_argument("--workdir", default=str(HERE.parent / ".bench" / "fuzz"))
    args = p.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    import ray
    from ray import serve

    bench.start_ray()
    stats, healthy = Stats(), False
    try:
        port, lake, features, conf = deploy(work, args)
        valid = valid_set(random.Random(args.seed), args.entities)
        known = known_answers(port, valid, features, lake)
        print(f"checked {len(valid)} valid requests against the feature table and the model; "
              f"fuzzing with {args.requests:,} requests, {args.concurrency} connections, "
              f"seed {args.seed}", flush=True)
        t0 = time.monotonic()
        run_fuzz(port, args, valid, known, stats)
        took = time.monotonic() - t0
        healthy = final_checks(port, valid, known, stats)
        by_kind: Counter = Counter()
        for (kind, status), n in stats.statuses.items():
            by_kind[f"{kind}:{status}"] += n
        print(f"{stats.requests:,} requests in {took:.0f}s ({stats.requests / took:.0f}/s); "
              f"oversize bodies whose connection closed early: {stats.closed_early}")
        print("answers by kind:status: " + ", ".join(f"{k} {n}" for k, n in sorted(by_kind.items())))
        for line in stats.samples:
            print("  " + line)
        time.sleep(2 * conf.model_server.log_flush_s + 1)  # the log's last batch
        print(request_log_check(lake, conf, conf.model_server.max_unit_id_length))
    finally:
        with contextlib.suppress(Exception):
            serve.shutdown()
        ray.shutdown()
    print(f"fuzz: requests {stats.requests}, server_errors {stats.server_errors}, "
          f"wrong_answers {stats.wrong_answers}, healthy {str(healthy).lower()}", flush=True)
    return 0 if stats.server_errors == 0 and stats.wrong_answers == 0 and healthy else 1


if __name__ == "__main__":
    sys.exit(main())
