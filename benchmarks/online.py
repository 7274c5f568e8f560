"""Feature server latency and throughput over HTTP: raylake against Serve's floor and Feast.

    python benchmarks/online.py [--entities 200000] [--seconds 10] [--rounds 2] [--options]

Builds a lake table of --entities rows (an int64 entity key, an event time and
50 features: 25 float64, 25 int64), declares a feature view over it in a
benchmark-only features config, and materializes it with raylake's own
materialize code into SQLite and into a redis-server started here. On a local
Ray it then serves, side by side (one Serve application each, one replica
with the configured fractional CPUs):

- raylake's feature server over SQLite and over Redis;
- the floor: a bare Serve deployment (same replicas, CPUs and route style)
  that returns raylake's response bytes for the request without doing
  anything: Serve's own per-request cost on this machine;
- Feast's feature server (`feast serve`; Feast in its own virtual
  environment, see _feast_env.py) on the same data (a Parquet FileSource) and
  the same kind of store (SQLite), after `feast apply` and `feast materialize`.

Each target gets `POST /get-online-features` from wrk (Debian's package, a
separate process; --connections connections, the same request bodies in
Feast's JSON shape) for 1 entity x 50 features and 100 entities x 50
features: a short warmup, then --seconds of load. Targets take turns, round
after round, and each figure is the best of --rounds: other work on a shared
machine only ever makes a round slower.

--options also measures ways past Serve's HTTP proxy for 1 entity: two
replicas, DeploymentHandle calls from another Ray driver (no HTTP at all),
and Serve's throughput-optimized mode (RAY_SERVE_THROUGHPUT_OPTIMIZED=1, in
a child process on a fresh Ray), through its proxy and straight to the
replica's own HTTP port (direct ingress).

Every process started here (Ray, Serve, redis, feast, wrk) is stopped on the
way out, also on errors. The last line is (raylake with SQLite, Feast's store):
    online: raylake_1_p99_ms <x>, floor_p99_ms <y>, raylake_100_rps <a>, feast_100_rps <b>, raylake_100_p99_ms <c>, feast_100_p99_ms <d>
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
VIEW, ENTITY, KEY = "bench", "item", "item_id"
T0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)

# One prepared request per line, sent in turn by each wrk thread (from its own
# offset) to the URL's path; `done` prints one JSON line with the figures read here.
WRK_LUA = r"""
local bodies = {}
local at = 0
local counter = 0

function setup(thread)
  thread:set("offset", counter * 97)
  counter = counter + 1
end

function init(args)
  for line in io.lines(args[1]) do
    bodies[#bodies + 1] = line
  end
  at = offset or 0
end

function request()
  at = at % #bodies + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, bodies[at])
end

function done(summary, latency, requests)
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "mean_us": %.1f, ' ..
    '"max_us": %d, "status_errors": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.mean, latency.max, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""

# DeploymentHandle calls from a separate Ray driver: Serve's path without HTTP.
HANDLE_CLIENT = r"""
import asyncio, json, sys, time
import ray
from ray import serve

address, app, bodies_path, conc, warmup, seconds = sys.argv[1:7]
ray.init(address=address, log_to_driver=False)
handle = serve.get_app_handle(app)
bodies = [json.loads(line) for line in open(bodies_path)]

async def worker(i, until, lat):
    k = i * 97
    while time.perf_counter() < until:
        k = (k + 1) % len(bodies)
        t = time.perf_counter()
        await handle.lookup.remote(bodies[k])
        lat.append(time.perf_counter() - t)

async def main():
    start = time.perf_counter()
    await asyncio.gather(*[worker(i, start + float(warmup), []) for i in range(int(conc))])
    lat = []
    t0 = time.perf_counter()
    await asyncio.gather(*[worker(i, t0 + float(seconds), lat) for i in range(int(conc))])
    took = time.perf_counter() - t0
    lat.sort()
    print(json.dumps({"rps": len(lat) / took, "p50_ms": lat[len(lat) // 2] * 1000,
                      "p99_ms": lat[int(len(lat) * 0.99)] * 1000}))

asyncio.run(main())
"""


def feature_names(n: int) -> list[tuple[str, str]]:
    half = n // 2
    return [(f"f{i:02d}", "float64" if i < half else "int64") for i in range(n)]


def features_config(n_features: int) -> dict:
    """The benchmark's own feature definitions (raylake's features config shape)."""
    return {
        "name": "online_bench",
        "entities": {ENTITY: {"join_keys": [KEY], "value_type": "int64"}},
        "feature_views": {VIEW: {
            "source": "bench/online_features", "entities": [ENTITY],
            "timestamp_field": "event_timestamp", "ttl": None,
            "features": {f: {"type": t} for f, t in feature_names(n_features)},
        }},
    }


def build_data(work: Path, n: int, n_features: int, seed: int = 7) -> pa.Table:
    rng = np.random.default_rng(seed)
    cols: dict[str, pa.Array] = {
        KEY: pa.array(np.arange(n, dtype=np.int64)),
        "event_timestamp": pa.array(
            (np.datetime64(T0.replace(tzinfo=None), "us")
             + rng.integers(0, 86_400_000_000, n).astype("timedelta64[us]")),
            pa.timestamp("us", tz="UTC")),
    }
    for f, t in feature_names(n_features):
        cols[f] = pa.array(rng.normal(50, 20, n).round(4) if t == "float64"
                           else rng.integers(0, 1_000_000, n))
    table = pa.table(cols)
    work.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, work / "features.parquet")
    return table


def write_bodies(work: Path, n_entities: int, n_rows: int, n_features: int, count: int = 500) -> Path:
    rng = random.Random(n_rows * 1000 + n_entities)
    feats = [f"{VIEW}:{f}" for f, _ in feature_names(n_features)]
    path = work / f"bodies-{n_rows}.jsonl"
    with path.open("w") as out:
        for _ in range(count):
            ids = rng.sample(range(n_entities), n_rows)
            out.write(json.dumps({"features": feats, "entities": {KEY: ids}},
                                 separators=(",", ":")) + "\n")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, seconds: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {seconds:.0f}s")


def post(url: str, body: str) -> bytes:
    req = urllib.request.Request(url, data=body.encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.read()


def check_response(resp: dict, req: dict, table: pa.Table) -> None:
    """The server answers with the stored values (so the load measures real lookups)."""
    names = resp["metadata"]["feature_names"]
    cols = dict(zip(names, resp["results"]))
    ids = req["entities"][KEY]
    for f in ("f00", names[-1]):
        want = table.column(f).take(pa.array(ids)).to_pylist()
        got = cols[f]["values"]
        if [round(float(v), 6) for v in got] != [round(float(v), 6) for v in want]:
            raise RuntimeError(f"{f}: the server returned {got[:3]}..., the table holds {want[:3]}...")
        if set(cols[f]["statuses"]) != {"PRESENT"}:
            raise RuntimeError(f"{f}: statuses {set(cols[f]['statuses'])}")


def show(label: str, res: dict) -> None:
    print(f"  {label:<34} {res['rps']:7.0f} req/s   p50 {res['p50_ms']:8.2f} ms   "
          f"p99 {res['p99_ms']:8.2f} ms", flush=True)


def run_wrk(url: str, bodies: Path, args) -> dict:
    script = Path(args.workdir) / "post.lua"
    script.write_text(WRK_LUA)
    res = {}
    for seconds in (args.warmup, args.seconds):
        if not seconds:
            continue
        cmd = ["wrk", "-t", str(args.threads), "-c", str(args.connections), "-d", f"{seconds}s",
               "--timeout", "10s", "-s", str(script), url, "--", str(bodies)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        stats = json.loads(out.strip().splitlines()[-1])
        if stats["status_errors"] or stats["socket_errors"]:
            raise RuntimeError(f"{url}: {stats['status_errors']} non-2xx responses and "
                               f"{stats['socket_errors']} socket errors under load:\n{out}")
        res = {"rps": stats["requests"] / (stats["duration_us"] / 1e6),
               "p50_ms": stats["p50_us"] / 1000, "p99_ms": stats["p99_us"] / 1000}
    return res


def run_handle(ray_address: str, app: str, bodies: Path, args) -> dict:
    script = Path(args.workdir) / "handle_client.py"
    script.write_text(HANDLE_CLIENT)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = subprocess.run([sys.executable, str(script), ray_address, app, str(bodies),
                          str(args.connections), str(args.warmup), str(args.seconds)],
                         check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def best(runs: list[dict]) -> dict:
    """Best of the rounds, figure by figure (a shared machine only adds to a round)."""
    return {"rps": max(r["rps"] for r in runs), "p50_ms": min(r["p50_ms"] for r in runs),
            "p99_ms": min(r["p99_ms"] for r in runs), "rounds": runs}


def measure(targets: list[tuple[str, callable]], rounds: int) -> dict[str, dict]:
    """Targets take turns, round after round; each figure is the best round's."""
    runs: dict[str, list[dict]] = {}
    for r in range(rounds):
        print(f"round {r + 1} of {rounds}", flush=True)
        for label, go in targets:
            res = go()
            show(label, res)
            runs.setdefault(label, []).append(res)
    return {label: best(rs) for label, rs in runs.items()}


class Processes:
    """Processes this benchmark started; each is stopped with its whole process group."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, cmd: list[str], **kw) -> subprocess.Popen:
        proc = subprocess.Popen(cmd, start_new_session=True, **kw)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            self.stop(proc)


def start_redis(procs: Processes, work: Path) -> int:
    import redis

    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    folder = work / "redis"
    folder.mkdir(exist_ok=True)
    procs.start([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            return port
        except redis.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError("redis-server did not start")


# ---------------------------------------------------------------- raylake on Serve

def raylake_conf(root: str, n_features: int, replicas: int):
    from omegaconf import OmegaConf

    from raylake.config.loader import compose_config, to_config
    from raylake.config.schema import FeaturesConfig

    conf = to_config(compose_config([f"lake.root={root}", f"feature_server.min_replicas={replicas}",
                                     f"feature_server.max_replicas={replicas}"],
                                    job="serve-features"))
    conf.features = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(FeaturesConfig),
                                                        features_config(n_features)))
    return conf


def floor_app(body: bytes, fs):
    """Serve's own cost: a deployment that reads the request and returns fixed bytes."""
    from ray import serve
    from starlette.responses import Response

    @serve.deployment
    class Floor:
        def __init__(self, body: bytes) -> None:
            self.body = body

        async def __call__(self, request) -> Response:
            await request.body()
            return Response(self.body, media_type="application/json")

    return Floor.options(
        autoscaling_config={"min_replicas": fs.min_replicas, "max_replicas": fs.max_replicas,
                            "target_ongoing_requests": fs.target_ongoing_requests},
        ray_actor_options={"num_cpus": fs.replica_cpus},
    ).bind(body)


def start_ray() -> None:
    import ray

    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False,
             log_to_driver=False, namespace="raylake-bench")
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False


def materialize_stores(work: Path, table: pa.Table, n_features: int, redis_port: int) -> dict:
    from raylake.features.definitions import resolve
    from raylake.features.online.materialize import materialize
    from raylake.features.online.settings import StoreSettings
    from raylake.lake import Lake, Storage
    from raylake.lake.commit import write_table

    root = work / "lake"
    shutil.rmtree(root, ignore_errors=True)
    for suffix in ("", "-wal", "-shm"):
        (work / f"online.db{suffix}").unlink(missing_ok=True)
    lake = Lake(Storage.from_config(str(root)))
    step = -(-table.num_rows // 4)  # a few files: materialize runs one task per block
    for i in range(0, table.num_rows, step):
        write_table(lake, "bench/online_features", table.slice(i, step))
    stores = {
        "sqlite": StoreSettings("sqlite", {"path": str(work / "online.db")}),
        "redis": StoreSettings("redis", {"host": "127.0.0.1", "port": redis_port,
                                         "prefix": "bench:"}),
    }
    registry = resolve(raylake_conf(str(root), n_features, 1).features)
    for name, store in stores.items():
        t0 = time.perf_counter()
        written = materialize(lake, registry, store, None, T0 + dt.timedelta(days=2))
        print(f"materialized {written[VIEW]['rows']:,} rows into {name} with raylake "
              f"in {time.perf_counter() - t0:.1f}s", flush=True)
    return stores


def deploy(args, work: Path, table: pa.Table, stores: dict, bodies: dict[int, Path],
           url: str, extra: bool) -> dict[str, str]:
    """Every app side by side, each under its own route; returns name -> route."""
    from ray import serve

    from raylake.features.server import build_app
    from raylake.lake import Lake, Storage

    lake = Lake(Storage.from_config(str(work / "lake")))
    conf = raylake_conf(str(work / "lake"), args.features, 1)
    routes = {}
    sample: dict[int, bytes] = {}
    for name, store in stores.items():
        routes[name] = f"/{name}"
        serve.run(build_app(conf, lake, store), name=name, route_prefix=routes[name])
        for n in args.shapes:
            body = bodies[n].open().readline().strip()
            got = post(f"{url}/{name}/get-online-features", body)
            check_response(json.loads(got), json.loads(body), table)
            sample.setdefault(n, got)
    fs = conf.feature_server
    floors = [(f"floor-{n}", sample[n], fs) for n in args.shapes]
    if extra:
        conf2 = raylake_conf(str(work / "lake"), args.features, 2)
        routes["sqlite-x2"] = "/sqlite-x2"
        serve.run(build_app(conf2, lake, stores["sqlite"]), name="sqlite-x2", route_prefix="/sqlite-x2")
        floors.append(("floor-1-x2", sample[1], conf2.feature_server))
    for name, body, settings in floors:
        routes[name] = f"/{name}"
        serve.run(floor_app(body, settings), name=name, route_prefix=routes[name])
        if post(f"{url}/{name}/get-online-features", "{}") != body:
            raise RuntimeError("the floor does not return raylake's response bytes")
    print("response bytes: " + ", ".join(f"{n} entity rows {len(b):,}" for n, b in sample.items()),
          flush=True)
    return routes


# ---------------------------------------------------------------- Feast

FEAST_REPO = '''
from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64

item = Entity(name="{entity}", join_keys=["{key}"], value_type=ValueType.INT64)
source = FileSource(path="{parquet}", timestamp_field="event_timestamp")
{view} = FeatureView(
    name="{view}", entities=[item], ttl=timedelta(days=3650), online=True, source=source,
    schema=[{fields}],
)
'''


def feast_repo(work: Path, n_entities: int, n_features: int) -> Path:
    """A Feast repo over the same Parquet data, applied and materialized (kept between runs:
    Feast's materialize of 200,000 x 50 values takes minutes)."""
    from _feast_env import feast_bin

    repo = work / "feast"
    marker = repo / "materialized"
    key = f"{n_entities} {n_features}"
    if marker.exists() and marker.read_text() == key:
        return repo
    shutil.rmtree(repo, ignore_errors=True)
    (repo / "data").mkdir(parents=True)
    (repo / "feature_store.yaml").write_text(
        "project: raylake_bench\nregistry: data/registry.db\nprovider: local\n"
        "online_store:\n  type: sqlite\n  path: data/online.db\n"
        "offline_store:\n  type: file\nentity_key_serialization_version: 3\n")
    fields = ", ".join(f'Field(name="{f}", dtype={"Float64" if t == "float64" else "Int64"})'
                       for f, t in feature_names(n_features))
    (repo / "repo.py").write_text(FEAST_REPO.format(entity=ENTITY, key=KEY, view=VIEW, fields=fields,
                                                    parquet=work / "features.parquet"))
    feast = str(feast_bin("feast"))
    t0 = time.perf_counter()
    subprocess.run([feast, "apply"], cwd=repo, check=True, capture_output=True)
    subprocess.run([feast, "materialize", "2023-12-31T00:00:00", "2024-01-03T00:00:00"],
                   cwd=repo, check=True, capture_output=True)
    print(f"feast apply + materialize: {time.perf_counter() - t0:.0f}s", flush=True)
    marker.write_text(key)
    return repo


def start_feast(procs: Processes, work: Path, repo: Path, table: pa.Table,
                bodies: dict[int, Path]) -> str:
    from _feast_env import feast_bin

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = procs.start([str(feast_bin("feast")), "serve", "-h", "127.0.0.1", "-p", str(port),
                        "--no-access-log"], cwd=repo, stdout=subprocess.DEVNULL,
                       stderr=(work / "feast-serve.log").open("w"))
    wait_http(url + "/health", 120, proc)
    for path in bodies.values():
        body = path.open().readline().strip()
        check_response(json.loads(post(url + "/get-online-features", body)), json.loads(body), table)
    return url


# ---------------------------------------------------------------- phases

def main_phase(args, work: Path, table: pa.Table, bodies: dict[int, Path], procs: Processes) -> dict:
    import ray
    from ray import serve

    redis_port = start_redis(procs, work)
    repo = None if args.no_feast else feast_repo(work, args.entities, args.features)
    start_ray()
    try:
        stores = materialize_stores(work, table, args.features, redis_port)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        routes = deploy(args, work, table, stores, bodies, url, args.options)
        feast_url = None if repo is None else start_feast(procs, work, repo, table, bodies)
        address = ray.get_runtime_context().gcs_address

        def http(route: str, n: int):
            return lambda: run_wrk(f"{url}{route}/get-online-features", bodies[n], args)

        targets = []
        for n in args.shapes:
            targets.append((f"floor_{n}", http(routes[f"floor-{n}"], n)))
            for name in stores:
                targets.append((f"raylake_{name}_{n}", http(routes[name], n)))
            if feast_url:
                targets.append((f"feast_{n}", lambda n=n: run_wrk(
                    f"{feast_url}/get-online-features", bodies[n], args)))
            if args.options and n == 1:
                targets.append(("floor_1_x2", http(routes["floor-1-x2"], 1)))
                targets.append(("raylake_sqlite_1_x2", http(routes["sqlite-x2"], 1)))
                targets.append(("handle_sqlite_1", lambda: run_handle(address, "sqlite", bodies[1], args)))
        return measure(targets, args.rounds)
    finally:
        with contextlib.suppress(Exception):
            serve.shutdown()
        ray.shutdown()


def optimized_phase(args, work: Path, table: pa.Table, bodies: dict[int, Path]) -> dict:
    """In a child process (Serve reads its mode from the environment at import): one
    raylake app and its floor under RAY_SERVE_THROUGHPUT_OPTIMIZED, through Serve's
    proxy and straight to each replica's own port (direct ingress)."""
    import ray
    from ray import serve

    from raylake.features.online.settings import StoreSettings

    start_ray()
    try:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        stores = {"sqlite": StoreSettings("sqlite", {"path": str(work / "online.db")})}
        args.shapes = [1]
        routes = deploy(args, work, table, stores, {1: bodies[1]}, url, False)
        client = serve.context._get_global_client()
        direct = {}
        for app in routes:
            groups = ray.get(client._controller.get_target_groups.remote(app))
            target = next(t for g in groups if g.protocol == "HTTP" for t in g.targets)
            direct[app] = f"http://127.0.0.1:{target.port}{routes[app]}/get-online-features"
            post(direct[app], bodies[1].open().readline().strip())
        targets = [
            ("optimized_floor_1", lambda: run_wrk(f"{url}/floor-1/get-online-features", bodies[1], args)),
            ("optimized_raylake_sqlite_1", lambda: run_wrk(f"{url}/sqlite/get-online-features",
                                                           bodies[1], args)),
            ("direct_floor_1", lambda: run_wrk(direct["floor-1"], bodies[1], args)),
            ("direct_raylake_sqlite_1", lambda: run_wrk(direct["sqlite"], bodies[1], args)),
        ]
        return measure(targets, args.rounds)
    finally:
        with contextlib.suppress(Exception):
            serve.shutdown()
        ray.shutdown()


def run_optimized_child(args) -> dict:
    env = dict(os.environ, RAY_SERVE_THROUGHPUT_OPTIMIZED="1")
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, __file__, "--phase", "optimized", "--workdir", args.workdir,
           "--entities", str(args.entities), "--features", str(args.features),
           "--seconds", str(args.seconds), "--warmup", str(args.warmup), "--rounds", str(args.rounds),
           "--connections", str(args.connections), "--threads", str(args.threads)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith(("  ", "round")):
            print(line, flush=True)
    if proc.returncode != 0:
        raise RuntimeError(f"the throughput-optimized phase failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report(args, res: dict) -> None:
    print(f"\nbest of {args.rounds} rounds, {args.connections} connections, {os.cpu_count()} cores:")
    for label, r in res.items():
        show(label, r)
    for store in ("sqlite", "redis"):
        if 1 in args.shapes and f"raylake_{store}_1" in res:
            ratio = res[f"raylake_{store}_1"]["p99_ms"] / res["floor_1"]["p99_ms"]
            print(f"target {store}, 1 entity: p99 {ratio:.2f}x the bare-Serve floor (at most 1.25x)")
        if 100 in args.shapes and "feast_100" in res and f"raylake_{store}_100" in res:
            r, f = res[f"raylake_{store}_100"], res["feast_100"]
            print(f"target {store}, 100 entities: {r['rps'] / f['rps']:.1f}x Feast's requests/s "
                  f"(at least 2x), p99 {r['p99_ms']:.1f} ms vs Feast's {f['p99_ms']:.1f} ms (lower)")
    if {1, 100} <= set(args.shapes) and "feast_100" in res:
        print(f"online: raylake_1_p99_ms {res['raylake_sqlite_1']['p99_ms']:.1f}, "
              f"floor_p99_ms {res['floor_1']['p99_ms']:.1f}, "
              f"raylake_100_rps {res['raylake_sqlite_100']['rps']:.0f}, "
              f"feast_100_rps {res['feast_100']['rps']:.0f}, "
              f"raylake_100_p99_ms {res['raylake_sqlite_100']['p99_ms']:.1f}, "
              f"feast_100_p99_ms {res['feast_100']['p99_ms']:.1f}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--entities", type=int, default=200_000, help="rows (entities) in the feature table")
    p.add_argument("--features", type=int, default=50)
    p.add_argument("--shapes", default="1,100", help="entity rows per request")
    p.add_argument("--seconds", type=int, default=10, help="measured load per target and round")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--options", action="store_true",
                   help="also 2 replicas, DeploymentHandle calls and throughput-optimized Serve")
    p.add_argument("--no-feast", action="store_true", help="skip the Feast reference")
    p.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "raylake-bench-online"))
    p.add_argument("--phase", default="main", choices=["main", "optimized"], help=argparse.SUPPRESS)
    args = p.parse_args()
    args.shapes = [int(s) for s in args.shapes.split(",")]
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2
    sys.path.insert(0, str(HERE))
    work = Path(args.workdir)
    if args.phase == "optimized":  # the child of run_optimized_child: data and stores exist
        table = pq.read_table(work / "features.parquet")
        bodies = {1: work / "bodies-1.jsonl"}
        print(json.dumps(optimized_phase(args, work, table, bodies)))
        return 0
    table = build_data(work, args.entities, args.features)
    bodies = {n: write_bodies(work, args.entities, n, args.features) for n in args.shapes}
    print(f"data: {args.entities:,} entities x {args.features} features; wrk {args.threads} threads, "
          f"{args.connections} connections, {args.warmup}s warmup + {args.seconds}s per target "
          f"and round; {os.cpu_count()} cores", flush=True)
    procs = Processes()
    try:
        res = main_phase(args, work, table, bodies, procs)
        procs.stop_all()  # redis and feast: the next phase needs neither
        if args.options and 1 in args.shapes:
            res.update(run_optimized_child(args))
    finally:
        procs.stop_all()
    report(args, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
