"""Window aggregations: rolling per-entity statistics computed by Ray into a lake table.

For each entity and each ``step`` boundary ``end``, the row covers the source's
events with ``end - window <= t < end`` (strictly before ``end``, so a feature
at time ``end`` never sees that moment's own events). Rows are hash-partitioned
on the entity keys by Ray tasks; each partition buckets its events per step and
sums the buckets over the window, so the cost is one pass, not one per window.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, cast

import pandas as pd
import pyarrow as pa
import ray

from raylake.config.values import parse_duration
from raylake.errors import ConfigError, did_you_mean

FUNCTIONS = ("mean", "sum", "count", "min", "max")


def feature_names(column: str, functions: list[str], window: str) -> list[str]:
    """The output columns of an aggregation: ``<column>_<function>_<window>``."""
    return [f"{column}_{fn}_{window}" for fn in functions]


def compute(lake: Any, name: str, agg: Any, join_keys: list[str], run_id: str) -> dict[str, Any]:
    """Aggregation ``name`` of ``agg.source`` into ``agg.output_table`` (one overwrite
    commit, skipped when these inputs were aggregated already); table, versions, rows."""
    from raylake.features.offline import split_by_keys
    from raylake.lake.commit import add_actions, already_committed, commit_files

    for fn in agg.functions:
        if fn not in FUNCTIONS:
            raise ConfigError(f"Aggregation {name!r}: function {fn!r} is unknown."
                              f"{did_you_mean(fn, FUNCTIONS)} Functions: {', '.join(FUNCTIONS)}.")
    key = f"features.aggregations.{name}"
    window, step = parse_duration(agg.window, f"{key}.window"), parse_duration(agg.step, f"{key}.step")
    if window < step:
        raise ConfigError(f"Aggregation {name!r}: window {agg.window} is shorter than step {agg.step}.")
    dtab = lake.table(agg.source, agg.source_version)
    version = dtab.version()
    app_id = "raylake.aggregate." + hashlib.sha256(json.dumps(
        [name, agg.source, version, join_keys, agg.timestamp_field, agg.column, list(agg.functions),
         agg.window, agg.step], default=str).encode()).hexdigest()[:24]
    if already_committed(lake, agg.output_table, app_id):
        return {"table": agg.output_table, "version": lake.version(agg.output_table),
                "source_version": version, "rows": lake.count(agg.output_table), "skipped": True}
    cols = [*join_keys, agg.timestamp_field, agg.column]
    ds = ray.data.read_delta(dtab.table_uri, version=version, columns=cols,
                             storage_options=lake.storage.delta_options())
    parts = max(2, int(ray.cluster_resources().get("CPU", 2)) * 2)
    # parts >= 2: each call gives a list of refs (Ray's stubs say one ref).
    split = [cast(list[ray.ObjectRef], split_by_keys.options(num_returns=parts).remote(b, join_keys, parts))
             for b in ds.to_arrow_refs()]
    results = ray.get([
        _aggregate_part.remote(lake.storage, agg.output_table, join_keys, agg.timestamp_field,
                               agg.column, list(agg.functions), agg.window, window, step,
                               *[s[i] for s in split])
        for i in range(parts)
    ])
    files = [f for part in results for f in part]
    if not files:
        raise ConfigError(f"Aggregation {name!r}: no events in {agg.source!r}@{version}.")
    schema = pa.ipc.read_schema(pa.py_buffer(files[0]["schema"]))
    out_version = commit_files(lake, agg.output_table, schema, add_actions(files), mode="overwrite",
                               app_id=app_id, run_id=run_id, job="aggregate",
                               description=f"{agg.window} {agg.functions} of {agg.source}.{agg.column}")
    return {"table": agg.output_table, "version": out_version, "source_version": version,
            "rows": sum(f["rows"] for f in files), "skipped": False}


@ray.remote(num_cpus=0.5)
def _aggregate_part(storage, table: str, keys: list[str], ts: str, column: str, functions: list[str],
                    window_label: str, window, step, *parts: pa.Table) -> list[dict]:
    from raylake.lake.files import file_records, write_files

    tables = [t for t in parts if t.num_rows]
    if not tables:
        return []
    frame = pa.concat_tables(tables).to_pandas()
    frame[ts] = pd.to_datetime(frame[ts], utc=True)
    frame = frame.dropna(subset=[ts])
    step_td, n_steps = pd.Timedelta(step), int(pd.Timedelta(window) / pd.Timedelta(step))
    # Bucket each event into the step it falls in; bucket b covers [b, b + step).
    origin = pd.Timestamp("1970-01-01", tz="UTC")
    frame["_bucket"] = origin + ((frame[ts] - origin) // step_td) * step_td
    value = frame[column].astype("float64")
    frame["_v"], frame["_n"] = value.fillna(0.0), value.notna().astype("int64")
    frame["_min"], frame["_max"] = value, value
    grouped = frame.groupby([*keys, "_bucket"], dropna=False).agg(
        s=("_v", "sum"), n=("_n", "sum"), lo=("_min", "min"), hi=("_max", "max")).reset_index()
    out = []
    for key, g in grouped.groupby(keys, dropna=False, sort=False):
        g = g.set_index("_bucket").sort_index()
        full = pd.date_range(g.index.min(), g.index.max() + step_td * n_steps, freq=step_td)
        g = g.reindex(full)
        # A window ending at `end` covers the n_steps buckets before it.
        roll = g[["s", "n"]].fillna(0).rolling(n_steps, min_periods=1).sum().shift(1)
        lo = g["lo"].rolling(n_steps, min_periods=1).min().shift(1)
        hi = g["hi"].rolling(n_steps, min_periods=1).max().shift(1)
        res = pd.DataFrame({"window_end": full, "sum": roll["s"], "count": roll["n"],
                            "min": lo, "max": hi}).iloc[1:]
        res = res[res["count"] > 0]
        res["mean"] = res["sum"] / res["count"]
        values = key if isinstance(key, tuple) else (key,)
        for k, v in zip(keys, values):
            res[k] = v
        out.append(res)
    if not out:
        return []
    frame = pd.concat(out, ignore_index=True)
    names = dict(zip(functions, feature_names(column, functions, window_label)))
    result = pd.DataFrame({k: frame[k] for k in keys})
    result["window_end"] = frame["window_end"].astype("datetime64[us, UTC]")
    for fn, name in names.items():
        result[name] = frame[fn].astype("int64") if fn == "count" else frame[fn].astype("float64")
    arrow = pa.Table.from_pandas(result, preserve_index=False)
    return file_records(write_files(arrow, storage, table, ()), arrow.schema)
