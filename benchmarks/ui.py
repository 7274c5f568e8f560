"""Page times of `raylake ui` on a lake with 1,000 runs and a table of 10,000 versions.

    python benchmarks/ui.py [--renders 40] [--dir /tmp/ui-bench]

Builds the lake (once: ``--dir`` keeps it for the next run), serves the UI with uvicorn
on a free local port and times each page over HTTP, ``--renders`` times, each time
asking for something else (another version, page, run, lineage start), so that a
render reads what that page needs rather than answering from a cache of the same page;
the first render of each (lake-wide caches empty) is printed apart. The lake:

- ``events``: 10,000 versions, each an append of one Parquet file of 10 rows (10,000
  files at the latest version), written by 1,000 runs (ten versions each); its Delta
  log is written the way delta-rs writes an append (a ``commitInfo`` with raylake's
  run id and job, an ``add`` with the file's statistics), with deltalake's own
  checkpoint every 100 versions, as delta-rs makes them. Building it with one
  deltalake transaction per version would take ~20 ms x 10,000; the log is the same.
- ``_runs``: the 1,000 runs' records (``RunRecord.to_row``, each with the resolved
  default config, ~20 KB of JSON), a row when the run started and one when it ended:
  2,000 versions, as the runner leaves them. Run ``i`` read ``events@10i-1`` and wrote
  ``events@10i .. 10i+9``: lineage from the latest version walks a chain of runs.
- ``features/daily`` and ``training/set``: two small tables read and written by runs.

Prints a line per page (p50, p99, first render), then the five heaviest pages (by
p99) and last:

    ui: p99_ms <the largest p99 of the five heaviest pages>

Target: under 300 ms.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

VERSIONS, RUNS, ROWS_PER_VERSION = 10_000, 1_000, 10
JOBS = ("ingest", "profile", "training-set", "train", "batch-predict")


def _stats(t: pa.Table) -> str:
    mins, maxs, nulls = {}, {}, {}
    for name in t.column_names:
        col = t[name]
        nulls[name] = col.null_count
        if pa.types.is_timestamp(col.type):
            times = [v for v in col.to_pylist() if v is not None]
            if times:
                mins[name] = min(times).isoformat().replace("+00:00", "Z")
                maxs[name] = max(times).isoformat().replace("+00:00", "Z")
        elif pa.types.is_string(col.type):
            vals = [v for v in col.to_pylist() if v is not None]
            if vals:
                mins[name], maxs[name] = min(vals)[:32], max(vals)[:32]
        elif pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
            vals = [v for v in col.to_pylist() if v is not None]
            if vals:
                mins[name], maxs[name] = min(vals), max(vals)
    return json.dumps({"numRecords": t.num_rows, "minValues": mins, "maxValues": maxs,
                       "nullCount": nulls})


class LogWriter:
    """Appends to one Delta table by writing its log as delta-rs does, checkpointing
    every 100 versions with deltalake."""

    def __init__(self, lake, name: str, first: pa.Table, run_id: str, job: str) -> None:
        from deltalake import DeltaTable

        from raylake.lake.commit import write_table

        write_table(lake, name, first, run_id=run_id, job=job, system=name.startswith("_"))
        self.dir = Path(lake.uri(name, system=name.startswith("_")))
        self.dtab = DeltaTable(str(self.dir))
        self.version = self.dtab.version()

    def append(self, t: pa.Table, run_id: str, job: str, when_ms: int) -> int:
        path = f"part-{uuid.uuid4().hex}.parquet"
        pq.write_table(t, self.dir / path)
        size = (self.dir / path).stat().st_size
        self.version += 1
        info = {"timestamp": when_ms, "operation": "WRITE",
                "operationParameters": {"mode": "Append"},
                "operationMetrics": {"num_added_files": 1, "num_added_rows": t.num_rows},
                "engineInfo": "delta-rs:py-1.6.6", "raylake.run_id": run_id,
                "raylake.job": job, "raylake.rows": t.num_rows}
        add = {"path": path, "partitionValues": {}, "size": size, "modificationTime": when_ms,
               "dataChange": True, "stats": _stats(t)}
        with open(self.dir / "_delta_log" / f"{self.version:020d}.json", "w") as f:
            f.write(json.dumps({"commitInfo": info}) + "\n" + json.dumps({"add": add}) + "\n")
        if self.version % 100 == 0:
            self.dtab.update_incremental()
            self.dtab.create_checkpoint()
        return self.version


def build(root: str) -> dict:
    from raylake.config.loader import compose_config
    from raylake.lake import Lake, Storage
    from raylake.lake.runs import RUNS_SCHEMA, RunRecord

    t0 = time.perf_counter()
    lake = Lake(Storage.from_config(root))
    config = json.loads(json.dumps(_plain(compose_config([f"lake.root={root}"])), default=str))
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)

    def rows(v: int) -> pa.Table:
        base = v * ROWS_PER_VERSION
        return pa.table({"id": pa.array(range(base, base + ROWS_PER_VERSION), pa.int64()),
                         "value": pa.array([(i * 7919 % 1000) / 10 for i in range(
                             base, base + ROWS_PER_VERSION)], pa.float64()),
                         "carrier": pa.array([("UA", "DL", "AA", "B6")[i % 4] for i in range(
                             base, base + ROWS_PER_VERSION)])})

    run_ids = [f"{JOBS[i % len(JOBS)]}-2026{i:08d}-{uuid.uuid4().hex[:8]}" for i in range(RUNS)]
    events = LogWriter(lake, "events", rows(0), run_ids[0], JOBS[0])
    for v in range(1, VERSIONS):
        i = v // (VERSIONS // RUNS)
        when = start + dt.timedelta(minutes=v)
        events.append(rows(v), run_ids[i], JOBS[i % len(JOBS)], int(when.timestamp() * 1000))
    print(f"events: {events.version + 1:,} versions ({time.perf_counter() - t0:.0f}s)",
          file=sys.stderr)

    from raylake.lake.commit import write_table

    write_table(lake, "features/daily", pa.table({"carrier": ["UA", "DL"], "mean": [1.0, 2.0]}))
    write_table(lake, "training/set", pa.table({"value": [1.0, 2.0], "label": [0, 1]}))

    def record(i: int, status: str) -> pa.Table:
        per = VERSIONS // RUNS
        rec = RunRecord(job=JOBS[i % len(JOBS)], config=config, run_id=run_ids[i],
                        code_version="0.1.0+bench",
                        started_at=start + dt.timedelta(minutes=i * per))
        if i:
            rec.add_input(table="events", version=i * per - 1)
        if i % 50 == 7:
            rec.add_input(table="features/daily", version=0)
            rec.add_output(table="training/set", version=0, rows=2)
        for v in range(i * per, (i + 1) * per):
            rec.add_output(table="events", version=v, rows=ROWS_PER_VERSION)
        rec.metrics = {"rows": per * ROWS_PER_VERSION, "auc": 0.8 + (i % 10) / 100,
                       "wall_s": 1.5}
        rec.status = status
        if status != "running":
            rec.ended_at = rec.started_at + dt.timedelta(seconds=90)
            if status == "failed":
                rec.error = "ValueError: planted failure"
        return pa.Table.from_pylist([rec.to_row()], schema=RUNS_SCHEMA)

    runs = LogWriter(lake, "_runs", record(0, "running"), run_ids[0], JOBS[0])
    for i in range(RUNS):
        if i:
            runs.append(record(i, "running"), run_ids[i], JOBS[i % len(JOBS)],
                        int((start + dt.timedelta(minutes=10 * i)).timestamp() * 1000))
        status = "failed" if i % 97 == 13 else "succeeded"
        runs.append(record(i, status), run_ids[i], JOBS[i % len(JOBS)],
                    int((start + dt.timedelta(minutes=10 * i + 2)).timestamp() * 1000))
    print(f"_runs: {runs.version + 1:,} versions, {RUNS:,} runs "
          f"({time.perf_counter() - t0:.0f}s)", file=sys.stderr)
    check = Lake(Storage.from_config(root))
    assert check.version("events") == VERSIONS - 1
    assert check.count("events") == VERSIONS * ROWS_PER_VERSION
    Path(root, "_bench.json").write_text(json.dumps({"run_ids": run_ids}))
    return {"run_ids": run_ids}


def _plain(cfg):
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=False)


def serve(root: str):
    import uvicorn

    from raylake.lake import Lake, Storage
    from raylake.ui.app import check_lake, make_app

    lake = Lake(Storage.from_config(root))
    check_lake(lake)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(make_app(lake), host="127.0.0.1", port=port,
                                           log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def timed(url: str) -> float:
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as r:
        r.read()
        assert r.status == 200, (url, r.status)
    return (time.perf_counter() - t) * 1000


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--renders", type=int, default=40)
    p.add_argument("--dir", help="keep the lake here (built once, reused)")
    a = p.parse_args()
    tmp = None
    if a.dir:
        root = str(Path(a.dir) / "lake")
    else:
        tmp = tempfile.mkdtemp(prefix="ui-bench-")
        root = str(Path(tmp) / "lake")
    try:
        if not Path(root, "_bench.json").exists():
            if Path(root).exists():
                shutil.rmtree(root)
            built = build(root)
        else:
            built = json.loads(Path(root, "_bench.json").read_text())
        run_ids = built["run_ids"]
        server, base = serve(root)
        n = a.renders
        # Each render asks for something else (another version, page, run, start), so
        # what is timed is the page's own reads, not a cached answer; the lake-wide
        # caches (the runs index, the latest snapshot) are warm after the cold render.
        pages = {
            "tables list": ["/tables?all=1"] * n,
            "table at a version": [f"/table/events?version={VERSIONS - 1 - 237 * i}"
                                   for i in range(n)],
            "history page": [f"/history/events?page={(i * 37) % 200}" for i in range(n)],
            "rows page": [f"/rows/events?page={(i * 997) % 2000}" for i in range(n)],
            "runs list (1,000 runs)": [f"/runs?page={i % 20}" for i in range(n)],
            "runs filtered": [f"/runs?job={JOBS[i % 5]}&status=succeeded" for i in range(n)],
            "run page": [f"/runs/{run_ids[(i * 131) % RUNS]}" for i in range(n)],
            "lineage graph": [f"/lineage?ref=events@{VERSIONS - 1 - 211 * i}"
                              for i in range(n)],
            "diff of two versions": [f"/diff/events?from={VERSIONS - 2 - 241 * i}"
                                     f"&to={VERSIONS - 1 - 241 * i}" for i in range(n)],
        }
        results = {}
        for name, paths in pages.items():
            cold = timed(base + paths[0])
            warm = [timed(base + path) for path in paths[1:]]
            results[name] = (pct(warm, 0.5), pct(warm, 0.99), cold)
            print(f"{name:<24} p50 {results[name][0]:7.1f} ms  p99 {results[name][1]:7.1f} ms"
                  f"  first {cold:7.1f} ms  e.g. {paths[-1]}")
        server.should_exit = True
        heaviest = sorted(results.items(), key=lambda kv: kv[1][1], reverse=True)[:5]
        print("five heaviest pages (by p99): " + "; ".join(
            f"{n} p50 {r[0]:.0f} ms p99 {r[1]:.0f} ms" for n, r in heaviest))
        print("first render (empty caches) of those: " + "; ".join(
            f"{n} {r[2]:.0f} ms" for n, r in heaviest))
        print(f"ui: p99_ms {max(r[1] for _, r in heaviest):.0f}")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("RAYLAKE_CODE_VERSION", "0.1.0+bench")
    main()
