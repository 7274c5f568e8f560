"""Model server throughput over HTTP: raylake's /predict against the same model on bare Serve.

    python benchmarks/serve.py [--entities 10000] [--seconds 10] [--rounds 2]

Builds its own lake under --workdir (default .bench/serve, gitignored): a small
training table, an XGBoost model trained on it here (no Ray) and registered with
``ModelRegistry.register`` (UBJSON, the registry's safe format), and a feature
table of --entities flights (wind, noise, carrier; some wind values null, some
carriers unseen in training) that raylake's own materialize code writes into the
default online store (SQLite, ``<lake>/_online/online.db``). On a local Ray
(2 CPUs, no dashboard) it then serves, side by side, one Serve application each:

- raylake: ``build_app(conf, lake)``, the model server as `raylake serve` runs it,
  with the feature service for entity lookups, request logging (the default
  ``serving/requests`` table) and live-traffic profiles on (the defaults), at 1 and
  at 2 replicas (min = max replicas);
- raylake, profiles off: the same at 1 replica with ``model_server.live_profile=false``,
  for the cost of live-traffic profiling (``monitor_ratio``);
- bare: a plain ``@serve.deployment`` doing the same work with no raylake layer:
  it parses the JSON body, reads the same rows from the same SQLite file with
  plain ``sqlite3`` (the store's own key format and JSON payload), builds the
  float32 feature row (numbers, then the carrier's code: NaN for null or unseen),
  calls the same Booster's ``inplace_predict`` (the registered model's bytes) and
  returns JSON. Same replica count, fractional ``num_cpus`` and
  ``max_ongoing_requests`` as raylake's deployment.

Before timing, each target answers the same keys once, and raylake's predictions
must equal the bare deployment's (float32 equality) and the in-process booster's.

Load: wrk (Debian's package, a separate process), --connections connections,
``POST .../predict`` with one entity key per request (``{"entities": {"flight":
[k]}}``), bodies rotating through random keys; a --warmup, then --seconds of
load. Targets take turns, round after round, and each figure is the best of
--rounds: other work on a shared machine only ever makes a round slower.

The headline uses 1 replica: on a 2-core machine the HTTP proxy, wrk and the
replicas already share both cores at 1 replica, so a second replica adds no
CPU, only contention, and its figures say more about the machine than about
raylake's cost per request; the 2-replica figures are printed too.

Every process started here (Ray, Serve, wrk) is stopped on the way out, also on
errors and SIGTERM. The last line is (1 replica):
    serve: raylake_rps <a>, bare_rps <b>, ratio <a/b>, raylake_p99_ms <x>, monitor_ratio <m>
Targets: ratio at least 0.8 (raylake's validation, lookup, logging, profiling and
routing cost at most 20% of the throughput); monitor_ratio (requests/s with live
profiles on over off, same load and rounds) at least 0.9.
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
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from online import free_port, measure, post, run_wrk, show  # noqa: E402  (same load and report)

MODEL, VIEW, SERVICE, KEY = "serve_bench", "serve_bench", "serve_bench", "flight"
CARRIERS = ["AA", "BB", "CC"]
T0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
REPLICAS = (1, 2)


def spec():
    from raylake.models.spec import FeatureSpec

    return FeatureSpec(["wind", "noise"], ["carrier"], {"carrier": CARRIERS}, "delayed")


# ---------------------------------------------------------------- data, model, store

def features_config():
    from raylake.config.schema import EntityConfig, FeatureConfig, FeaturesConfig, FeatureViewConfig

    return FeaturesConfig(
        name="serve_bench",
        entities={KEY: EntityConfig(join_keys=[KEY], value_type="int64")},
        feature_views={VIEW: FeatureViewConfig(
            source="bench/serve_features", entities=[KEY], timestamp_field="event_timestamp",
            features={"wind": FeatureConfig("float64"), "noise": FeatureConfig("float64"),
                      "carrier": FeatureConfig("string")})},
        feature_services={SERVICE: [VIEW]})


def raylake_conf(root: str, replicas: int, live_profile: bool = True):
    from raylake.config.loader import compose_config, to_config

    conf = to_config(compose_config([f"lake.root={root}", f"model={MODEL}:1",
                                     f"model_server.min_replicas={replicas}",
                                     f"model_server.max_replicas={replicas}",
                                     f"model_server.live_profile={str(live_profile).lower()}"],
                                    job="serve"))
    conf.features = features_config()
    conf.model_server.feature_service = SERVICE
    return conf


def build_lake(work: Path, n_entities: int, seed: int = 7):
    """The lake: training table, registered model, feature table materialized online."""
    import xgboost

    from raylake.features.definitions import resolve
    from raylake.features.online.materialize import materialize
    from raylake.features.online.settings import store_settings
    from raylake.lake import Lake, Storage
    from raylake.lake.commit import write_table
    from raylake.models.registry import ModelRegistry

    root = work / "lake"
    shutil.rmtree(root, ignore_errors=True)  # the online store lives inside it
    lake = Lake(Storage.from_config(str(root)))
    rng = np.random.default_rng(seed)

    n = 5000
    wind = rng.gamma(2.0, 5.0, n)
    carrier = rng.choice(CARRIERS, n)
    label = rng.random(n) < 1 / (1 + np.exp(-(-2.0 + 0.12 * wind + (carrier == "BB"))))
    wind[rng.random(n) < 0.05] = np.nan
    train = pa.table({"wind": pa.array(wind, from_pandas=True), "noise": rng.normal(size=n),
                      "carrier": carrier, "delayed": label})
    write_table(lake, "bench/serve_train", train)
    s = spec()
    d = xgboost.DMatrix(s.matrix(train), label=s.labels(train), feature_types=s.feature_types(),
                        enable_categorical=True)
    booster = xgboost.train({"objective": "binary:logistic", "max_depth": 4, "nthread": 2}, d, 50)
    mv = ModelRegistry(lake).register(
        MODEL, booster, flavor="xgboost",
        features=[{"name": "wind", "type": "float64"}, {"name": "noise", "type": "float64"},
                  {"name": "carrier", "type": "string"}],
        training={"table": "bench/serve_train", "version": lake.table("bench/serve_train").version()},
        config={}, metrics={}, run_id=None, preprocessing=s.to_dict())

    keys = np.arange(n_entities, dtype=np.int64)
    wind = rng.gamma(2.0, 5.0, n_entities).round(3)
    features = pa.table({
        KEY: keys,
        "event_timestamp": pa.array([T0 + dt.timedelta(seconds=int(x))
                                     for x in rng.integers(0, 86_400, n_entities)],
                                    pa.timestamp("us", tz="UTC")),
        "wind": pa.array(np.where(rng.random(n_entities) < 0.05, np.nan, wind), from_pandas=True),
        "noise": rng.normal(size=n_entities).round(4),
        "carrier": rng.choice([*CARRIERS, "ZZ"], n_entities, p=[0.3, 0.3, 0.3, 0.1]),
    })
    write_table(lake, "bench/serve_features", features)
    conf = raylake_conf(str(root), 1)
    t0 = time.perf_counter()
    written = materialize(lake, resolve(conf.features), store_settings(conf, lake), None,
                          T0 + dt.timedelta(days=2))
    print(f"model {MODEL}:{mv.version} registered; materialized {written[VIEW]['rows']:,} rows "
          f"into SQLite with raylake in {time.perf_counter() - t0:.1f}s", flush=True)
    return lake, features, store_settings(conf, lake).options["path"]


def write_bodies(work: Path, n_entities: int, count: int = 1000) -> Path:
    rng = random.Random(n_entities)
    path = work / "bodies.jsonl"
    with path.open("w") as out:
        for _ in range(count):
            out.write(json.dumps({"entities": {KEY: [rng.randrange(n_entities)]}},
                                 separators=(",", ":")) + "\n")
    return path


# ---------------------------------------------------------------- bare Serve

def bare_app(model: bytes, vocab: list[str], db_path: str, options: dict):
    """The same work as raylake's /predict, written straight on Serve and sqlite3."""
    from ray import serve
    from starlette.responses import JSONResponse

    @serve.deployment
    class BarePredict:
        def __init__(self, model: bytes, vocab: list[str], db_path: str) -> None:
            import sqlite3

            import xgboost

            self.booster = xgboost.Booster()
            self.booster.load_model(bytearray(model))
            self.booster.set_param({"nthread": 1})
            self.codes = {c: float(i) for i, c in enumerate(vocab)}
            self.db = sqlite3.connect(db_path, check_same_thread=False)

        async def __call__(self, request) -> JSONResponse:
            body = json.loads(await request.body())
            keys = body["entities"][KEY]
            rows = np.full((len(keys), 3), np.nan, dtype=np.float32)
            for i, k in enumerate(keys):
                # The store's key: view|[["flight", 17]], its value the features as JSON.
                found = self.db.execute("SELECT payload FROM features WHERE key = ?",
                                        (f'{VIEW}|[["{KEY}", {int(k)}]]',)).fetchone()
                if found is None:
                    return JSONResponse({"error": f"no features for {k}"}, status_code=404)
                f = json.loads(found[0])
                rows[i, 0] = np.nan if f["wind"] is None else f["wind"]
                rows[i, 1] = np.nan if f["noise"] is None else f["noise"]
                rows[i, 2] = self.codes.get(f["carrier"], np.nan)
            p = self.booster.inplace_predict(rows)
            return JSONResponse({"model": MODEL, "version": 1,
                                 "predictions": [float(x) for x in p]})

    return BarePredict.options(**options).bind(model, vocab, db_path)


# ---------------------------------------------------------------- run

def start_ray() -> None:
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             namespace="raylake-bench")
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False


def expected(booster, features: pa.Table, keys: list[int]) -> np.ndarray:
    """The registered model's predictions, computed here from the feature table."""
    import xgboost

    rows = features.take(pa.array(keys))
    s = spec()
    return booster.predict(xgboost.DMatrix(s.matrix(rows), feature_types=s.feature_types(),
                                           enable_categorical=True))


def answer(url: str, body: dict) -> dict:
    """The JSON answer to one request; an error status fails with the server's message."""
    import urllib.error

    try:
        return json.loads(post(url, json.dumps(body)))
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"{url} answered {exc.code}: {exc.read().decode()[:500]}") from exc


def deploy(work: Path, lake, features: pa.Table, db_path: str, url: str) -> None:
    """raylake and bare at 1 and 2 replicas, and raylake without live profiles at 1, each
    its own app and route; checks answers."""
    from ray import serve

    from raylake.models.registry import ModelRegistry
    from raylake.serve.app import build_app, deployment_options

    _, booster = ModelRegistry(lake).load(MODEL, 1)
    model = bytes(booster.save_raw("ubj"))
    for k in REPLICAS:
        conf = raylake_conf(str(work / "lake"), k)
        serve.run(build_app(conf, lake), name=f"raylake-{k}", route_prefix=f"/raylake-{k}")
        serve.run(bare_app(model, CARRIERS, db_path, deployment_options(conf.model_server)),
                  name=f"bare-{k}", route_prefix=f"/bare-{k}")
    off = raylake_conf(str(work / "lake"), 1, live_profile=False)
    serve.run(build_app(off, lake), name="raylake-off-1", route_prefix="/raylake-off-1")
    # Keys with a null wind and with an unseen carrier, and plain ones.
    wind, carrier = features.column("wind"), features.column("carrier").to_pylist()
    keys = [i for i in range(features.num_rows) if wind[i].as_py() is None][:3]
    keys += [i for i in range(features.num_rows) if carrier[i] not in CARRIERS][:3]
    keys += list(range(0, features.num_rows, max(1, features.num_rows // 20)))
    want = expected(booster, features, keys).astype(np.float32)
    for k in REPLICAS:
        got = {}
        for name in (f"raylake-{k}", f"bare-{k}", *(["raylake-off-1"] if k == 1 else [])):
            got[name] = np.array([answer(f"{url}/{name}/predict", {"entities": {KEY: [key]}})
                                  ["predictions"][0] for key in keys], np.float32)
        if not np.array_equal(got[f"raylake-{k}"], got[f"bare-{k}"]):
            bad = int(np.argmax(got[f"raylake-{k}"] != got[f"bare-{k}"]))
            raise RuntimeError(f"{k} replica(s): raylake predicts {got[f'raylake-{k}'][bad]} for "
                               f"{KEY} {keys[bad]}, the bare deployment {got[f'bare-{k}'][bad]}")
        if not np.allclose(got[f"raylake-{k}"], want, rtol=1e-6, atol=1e-7):
            raise RuntimeError(f"{k} replica(s): predictions differ from the registered model's "
                               f"computed here: {got[f'raylake-{k}'][:3]} vs {want[:3]}")
        if k == 1 and not np.array_equal(got["raylake-1"], got["raylake-off-1"]):
            raise RuntimeError("raylake predicts differently with live profiles off")
    print(f"checked: raylake and bare predict the same for {len(keys)} keys "
          f"(null wind, unseen carrier, plain), at 1 and 2 replicas", flush=True)


def run(args, work: Path) -> dict:
    import ray
    from ray import serve

    start_ray()
    try:
        lake, features, db_path = build_lake(work, args.entities)
        bodies = write_bodies(work, args.entities)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        deploy(work, lake, features, db_path, url)
        targets = []
        for k in REPLICAS:
            # Profiles off next to on, so both see the same machine, round after round.
            for kind in ("raylake", "bare") if k > 1 else ("raylake", "raylake-off", "bare"):
                targets.append((f"{kind.replace('-', '_')}_x{k}", lambda r=f"{kind}-{k}": run_wrk(
                    f"{url}/{r}/predict", bodies, args)))
        return measure(targets, args.rounds)
    finally:
        with contextlib.suppress(Exception):
            serve.shutdown()
        ray.shutdown()


def report(args, res: dict) -> None:
    print(f"\nbest of {args.rounds} rounds, {args.connections} connections, 1 entity per "
          f"request, {os.cpu_count()} cores:")
    for label, r in res.items():
        show(label, r)
    for k in REPLICAS:
        r, b = res[f"raylake_x{k}"], res[f"bare_x{k}"]
        print(f"{k} replica(s): raylake {r['rps'] / b['rps']:.2f}x bare's requests/s, "
              f"p50 {r['p50_ms'] - b['p50_ms']:+.2f} ms, p99 {r['p99_ms'] - b['p99_ms']:+.2f} ms")
    r, b, off = res["raylake_x1"], res["bare_x1"], res["raylake_off_x1"]
    paired = [f"{a['rps'] / o['rps']:.2f}" for a, o in zip(r["rounds"], off["rounds"])]
    print(f"1 replica: live profiles on {r['rps'] / off['rps']:.2f}x off's requests/s "
          f"(round by round: {', '.join(paired)}), p99 {r['p99_ms'] - off['p99_ms']:+.2f} ms")
    print(f"serve: raylake_rps {r['rps']:.0f}, bare_rps {b['rps']:.0f}, "
          f"ratio {r['rps'] / b['rps']:.2f}, raylake_p99_ms {r['p99_ms']:.1f}, "
          f"monitor_ratio {r['rps'] / off['rps']:.2f}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--entities", type=int, default=10_000, help="flights in the online store")
    p.add_argument("--seconds", type=int, default=10, help="measured load per target and round")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--workdir", default=str(HERE.parent / ".bench" / "serve"))
    args = p.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    # SIGTERM unwinds like Ctrl-C, so the finally blocks stop Serve and Ray.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(f"data: {args.entities:,} flights; wrk {args.threads} threads, {args.connections} "
          f"connections, {args.warmup}s warmup + {args.seconds}s per target and round; "
          f"{os.cpu_count()} cores", flush=True)
    res = run(args, work)
    report(args, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
