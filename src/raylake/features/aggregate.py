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

import numpy as np
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
    result = windows(pa.concat_tables(tables).to_pandas(), keys, ts, column, functions,
                     window_label, window, step)
    if result is None:
        return []
    arrow = pa.Table.from_pandas(result, preserve_index=False)
    return file_records(write_files(arrow, storage, table, ()), arrow.schema)


def windows(frame: pd.DataFrame, keys: list[str], ts: str, column: str, functions: list[str],
            window_label: str, window: Any, step: Any) -> pd.DataFrame | None:
    """The rows of one partition: per entity and step boundary ``end`` with events in
    ``[end - window, end)``, the functions of ``column`` over them.

    Vectorized over all entities at once (a loop per entity cost hours at a million
    entities): events are summed per (entity, step bucket); the window ends an entity has
    are the union of its buckets' reach ``[b + 1, b + n_steps]`` (in steps), enumerated
    per merged run; sums and counts over a window are differences of prefix sums found
    by binary search on (entity, bucket) codes. min and max, which have no prefix form,
    take each bucket to the n_steps ends it reaches and group."""
    frame = frame.loc[:, [*keys, ts, column]]
    frame[ts] = pd.to_datetime(frame[ts], utc=True)
    frame = frame.dropna(subset=[ts])
    if frame.empty:
        return None
    step_td, n_steps = pd.Timedelta(step), int(pd.Timedelta(window) / pd.Timedelta(step))
    origin = pd.Timestamp("1970-01-01", tz="UTC")
    # Bucket t covers [origin + t*step, origin + (t+1)*step).
    frame["_t"] = ((frame[ts] - origin) // step_td).astype("int64")
    value = frame[column].astype("float64")
    frame["_v"], frame["_n"] = value.fillna(0.0), value.notna().astype("int64")
    frame["_min"], frame["_max"] = value, value
    grouped = frame.groupby([*keys, "_t"], dropna=False, sort=True).agg(
        s=("_v", "sum"), n=("_n", "sum"), lo=("_min", "min"), hi=("_max", "max")).reset_index()
    # Sorted by (keys, bucket): the entity's group number grows along the rows.
    g = grouped.groupby(keys, dropna=False, sort=False).ngroup().to_numpy(np.int64)
    t = grouped["_t"].to_numpy(np.int64)
    t0 = int(t.min())
    t = t - t0  # buckets from 0, so that codes g * span + t fit in int64
    span = int(t.max()) + n_steps + 2
    # Runs of buckets whose reach overlaps or touches: one run of window ends each.
    new_run = np.ones(len(t), dtype=bool)
    new_run[1:] = (g[1:] != g[:-1]) | (t[1:] > t[:-1] + n_steps)
    first = np.flatnonzero(new_run)
    last = np.append(first[1:], len(t)) - 1
    starts, stops = t[first] + 1, t[last] + n_steps
    lengths = stops - starts + 1
    run_of_row = np.repeat(np.arange(len(first)), lengths)
    offset = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    end = starts[run_of_row] + offset
    end_g = g[first][run_of_row]
    codes = g * span + t
    # A window ending at `end` holds buckets end - n_steps .. end - 1.
    hi_pos = np.searchsorted(codes, end_g * span + end - 1, side="right")
    lo_pos = np.searchsorted(codes, end_g * span + end - n_steps, side="left")
    prefix_s = np.concatenate([[0.0], np.cumsum(grouped["s"].to_numpy(np.float64))])
    prefix_n = np.concatenate([[0], np.cumsum(grouped["n"].to_numpy(np.int64))])
    total, count = prefix_s[hi_pos] - prefix_s[lo_pos], prefix_n[hi_pos] - prefix_n[lo_pos]
    keep = count > 0
    out = pd.DataFrame({"_g": end_g[keep], "_end": end[keep], "sum": total[keep],
                        "count": count[keep]})
    out["mean"] = out["sum"] / out["count"]
    if {"min", "max"} & set(functions):
        reach = pd.DataFrame({"_g": np.repeat(g, n_steps),
                              "_end": (t[:, None] + np.arange(1, n_steps + 1)).ravel(),
                              "lo": np.repeat(grouped["lo"].to_numpy(), n_steps),
                              "hi": np.repeat(grouped["hi"].to_numpy(), n_steps)})
        extremes = reach.groupby(["_g", "_end"], sort=False).agg(min=("lo", "min"),
                                                                  max=("hi", "max"))
        out = out.join(extremes, on=["_g", "_end"])
    key_values = grouped.loc[first, keys].reset_index(drop=True)  # row r: entity of run r
    entity_row = np.searchsorted(g[first], out["_g"].to_numpy())
    names = dict(zip(functions, feature_names(column, functions, window_label)))
    result = key_values.iloc[entity_row].reset_index(drop=True)
    ends = origin + pd.to_timedelta((out["_end"].to_numpy() + t0) * step_td.value, unit="ns")
    result["window_end"] = pd.Series(ends).astype("datetime64[us, UTC]")
    for fn, name in names.items():
        col = out[fn].to_numpy()
        result[name] = col.astype("int64") if fn == "count" else col.astype("float64")
    return result
