"""Materialize: the latest feature row per entity, from the lake into an online store.

One Ray task per block of the source table (read at its pinned or latest version)
keeps the latest row per key within [start, end] and writes it to the store; the
store keeps the newer row per key, so tasks need no coordination and a re-run
changes nothing. A table under ``SMALL_ROWS`` rows (by its Delta log) is read and
written by one task instead: Ray Data's planning costs seconds per dataset, which an
hourly or daily ``materialize-incremental`` of a few rows would pay for every view.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import ray

from raylake.features.definitions import FeatureView, Registry
from raylake.features.online.base import entity_key
from raylake.features.online.settings import StoreSettings

SMALL_ROWS = 1_000_000


def materialize(lake: Any, registry: Registry, store: StoreSettings,
                start: dt.datetime | None, end: dt.datetime, views: list[str] | None = None) -> dict[str, dict]:
    """The latest row per entity of each view (all, or ``views``) with event time in
    [start, end] into the online store; returns table, version and rows per view."""
    out = {}
    for name in views or list(registry.views):
        view = registry.view(name)
        dtab = lake.table(view.source, view.source_version)
        cols = list(dict.fromkeys([*view.join_keys, *(c for c in (view.timestamp_field,
                                   view.created_timestamp_column) if c), *view.feature_names]))
        if lake.count(view.source, dtab.version()) <= SMALL_ROWS:
            written = ray.get(_write_small.remote(lake.storage, view.source, dtab.version(),
                                                  cols, view, store, start, end))
        else:
            ds = ray.data.read_delta(dtab.table_uri, version=dtab.version(), columns=cols,
                                     storage_options=lake.storage.delta_options())
            written = sum(ray.get([_write_latest.remote(ref, view, store, start, end)
                                   for ref in ds.to_arrow_refs()]))
        out[name] = {"table": view.source, "version": dtab.version(), "rows": written}
    return out


@ray.remote(num_cpus=0.5)
def _write_small(storage: Any, source: str, version: int, cols: list[str], view: FeatureView,
                 store: StoreSettings, start: dt.datetime | None, end: dt.datetime) -> int:
    from raylake.lake import Lake

    block = Lake(storage).read(source, version, columns=cols)
    return _latest_to_store(block, view, store, start, end)


@ray.remote(num_cpus=0.5)
def _write_latest(block: pa.Table, view: FeatureView, store: StoreSettings,
                  start: dt.datetime | None, end: dt.datetime) -> int:
    return _latest_to_store(block, view, store, start, end)


def _latest_to_store(block: pa.Table, view: FeatureView, store: StoreSettings,
                     start: dt.datetime | None, end: dt.datetime) -> int:
    from raylake.features.online import open_store

    if block.num_rows == 0:
        return 0
    keys = list(view.join_keys)
    if view.timestamp_field:
        ts = block.column(view.timestamp_field)
        mask = pc.less_equal(ts, pa.scalar(end, ts.type))
        if start is not None:
            mask = pc.and_(mask, pc.greater_equal(ts, pa.scalar(start, ts.type)))
        block = block.filter(pc.fill_null(mask, False))
    if block.num_rows == 0:
        return 0
    frame = pd.DataFrame({k: pc.cast(block.column(k), pa.string()).to_pandas() for k in keys})
    frame["_idx"] = np.arange(block.num_rows)
    frame["_ts"] = _epoch(block.column(view.timestamp_field).to_pandas()) if view.timestamp_field else 0.0
    frame["_created"] = _epoch(block.column(view.created_timestamp_column).to_pandas()) \
        if view.created_timestamp_column else 0.0
    frame = frame.sort_values(["_ts", "_created"], kind="stable").drop_duplicates(keys, keep="last")
    # Values come from Arrow, so ints stay ints and nulls are None.
    latest = block.take(pa.array(frame["_idx"].to_numpy())).select([*keys, *view.feature_names])
    rows = [
        (entity_key(view.name, keys, [r[k] for k in keys]), float(ts), float(created),
         {f: _json_value(r[f]) for f in view.feature_names})
        for r, ts, created in zip(latest.to_pylist(), frame["_ts"], frame["_created"])
    ]
    kind, settings = store
    return open_store(kind, **settings).write(rows)


def _epoch(series: pd.Series) -> np.ndarray:
    s = pd.to_datetime(series, utc=True)
    return (s.astype("int64") / 1e9).to_numpy() if s.dt.unit == "ns" else \
        s.astype("datetime64[ns, UTC]").astype("int64").to_numpy() / 1e9


def _json_value(v: Any) -> Any:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    if hasattr(v, "item"):
        return v.item()
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v
