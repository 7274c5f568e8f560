"""Point-in-time correct training sets: a distributed as-of join on Ray.

For each entity row and feature view, the feature row with the same join keys
and the latest event time ``t`` with ``entity_ts - ttl <= t <= entity_ts``
(ties broken by the larger created time) supplies the features; none gives
nulls. Feature tables are read with Ray Data at pinned versions, limited
to the columns the views need. Both sides are hash-partitioned on the
join keys by tasks that return one object per partition, and one task per
partition joins its share: rows stay in the object store, never all on the
driver, and a key with many feature rows costs one sorted merge, not a
key-then-time explosion. Static views (no timestamp field) join on keys alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import ray

from raylake.errors import ConfigError
from raylake.features import on_demand
from raylake.features.definitions import FeatureView, Registry

ROW = "_rl_entity_row"  # entity row order, kept through the joins


@dataclass
class RetrievalJob:
    """A training set, computed: ``to_arrow()``, ``to_pandas()``, or ``refs`` (one per partition)."""

    refs: list[ray.ObjectRef]
    views: list[dict[str, Any]]  # view, table, version used
    columns: list[str]

    def to_arrow(self) -> pa.Table:
        tables = [t for t in ray.get(self.refs) if t.num_rows]
        if not tables:
            return pa.table({c: [] for c in self.columns})
        table = pa.concat_tables(tables, promote_options="permissive")
        return table.sort_by(ROW).select(self.columns)

    def to_pandas(self) -> pd.DataFrame:
        return self.to_arrow().to_pandas()

    def to_dataset(self) -> ray.data.Dataset:
        return ray.data.from_arrow_refs(self.refs)


def get_historical_features(
    lake: Any,
    registry: Registry,
    entity_df: pd.DataFrame | pa.Table | ray.data.Dataset,
    features: list[str] | str,
    *,
    event_timestamp_column: str = "event_timestamp",
    full_feature_names: bool = False,
    partitions: int | None = None,
) -> RetrievalJob:
    """Feast's ``get_historical_features`` over lake tables."""
    # On-demand views add their source features to the fetch (hidden unless asked for).
    plan = on_demand.plan(registry, registry.select(features))
    wanted = plan.fetch
    parts = partitions or max(2, int(ray.cluster_resources().get("CPU", 2)) * 2)
    blocks, columns = _entity_blocks(entity_df)
    if event_timestamp_column not in columns:
        raise ConfigError(
            f"The entity rows have no {event_timestamp_column!r} column (columns: {columns}); "
            "name the time of each row with event_timestamp_column=."
        )
    request = [f for odfv, _ in plan.on_demand for f in odfv.request_names if f not in columns]
    if request:
        raise ConfigError(
            f"On-demand features need request field(s) {request} as columns of the entity rows "
            f"(columns: {columns})."
        )
    out_cols = list(columns)
    used = []
    for view_name, feats in wanted.items():
        view = registry.view(view_name)
        missing = [k for k in view.join_keys if k not in out_cols]
        if missing:
            raise ConfigError(f"The entity rows lack join key(s) {missing} of feature view {view_name!r}.")
        names = {f: plan.column(view_name, f, full_feature_names) for f in feats}
        clash = [n for n in names.values() if n in out_cols]
        if clash:
            raise ConfigError(
                f"Feature column(s) {clash} of view {view_name!r} collide with existing columns; "
                "pass full_feature_names=True (names become view__feature)."
            )
        feature_refs, version = _feature_blocks(lake, view, feats)
        used.append({"view": view_name, "table": view.source, "version": version})
        keys = list(view.join_keys)
        ent_parts = [_split.options(num_returns=parts).remote(b, keys, parts) for b in blocks]
        feat_parts = [_split.options(num_returns=parts).remote(b, keys, parts) for b in feature_refs]
        ent_parts = [p if isinstance(p, list) else [p] for p in ent_parts]
        feat_parts = [p if isinstance(p, list) else [p] for p in feat_parts]
        blocks = [
            _join.remote(view, feats, names, event_timestamp_column,
                         [e[i] for e in ent_parts], *[f[i] for f in feat_parts])
            for i in range(parts)
        ]
        out_cols += list(names.values())
    if plan.on_demand:
        blocks = [_on_demand.remote(b, plan, registry, full_feature_names) for b in blocks]
        out_cols += [f"{o.name}__{f}" if full_feature_names else f
                     for o, outs in plan.on_demand for f in outs]
    out_cols = [c for c in out_cols if not c.startswith(on_demand.HIDDEN)]
    return RetrievalJob(blocks, used, out_cols)


@ray.remote(num_cpus=0.5)
def _on_demand(block: pa.Table, plan: on_demand.Plan, registry: Registry,
               full_feature_names: bool) -> pa.Table:
    return on_demand.apply_to_table(block, plan, registry, full_feature_names)


def _entity_blocks(entity_df: Any) -> tuple[list[ray.ObjectRef], list[str]]:
    if isinstance(entity_df, ray.data.Dataset):
        refs = entity_df.to_arrow_refs()
        columns = entity_df.schema().names
    else:
        table = pa.Table.from_pandas(entity_df, preserve_index=False) if isinstance(
            entity_df, pd.DataFrame) else entity_df
        refs, columns = [ray.put(table)], table.column_names
    # Number the rows so the training set keeps the entity order.
    sizes = ray.get([_num_rows.remote(r) for r in refs])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int).tolist()
    return [_number.remote(r, s) for r, s in zip(refs, starts)], list(columns)


@ray.remote(num_cpus=0.25)
def _num_rows(block: pa.Table) -> int:
    return block.num_rows


@ray.remote(num_cpus=0.25)
def _number(block: pa.Table, start: int) -> pa.Table:
    return block.append_column(ROW, pa.array(np.arange(start, start + block.num_rows, dtype=np.int64)))


def _feature_blocks(lake: Any, view: FeatureView, feats: list[str]) -> tuple[list[ray.ObjectRef], int]:
    dtab = lake.table(view.source, view.source_version)
    cols = list(dict.fromkeys([*view.join_keys, *(c for c in (view.timestamp_field,
                               view.created_timestamp_column) if c), *feats]))
    ds = ray.data.read_delta(dtab.table_uri, version=dtab.version(), columns=cols,
                             storage_options=lake.storage.delta_options())
    return ds.to_arrow_refs(), dtab.version()


def _hash_parts(table: pa.Table, keys: list[str], parts: int) -> np.ndarray:
    frame = pd.DataFrame({k: pc.cast(table.column(k), pa.string()).to_pandas() for k in keys})
    return (pd.util.hash_pandas_object(frame, index=False).to_numpy() % parts).astype(np.int64)


@ray.remote(num_cpus=0.5)
def _split(block: pa.Table, keys: list[str], parts: int):
    part = _hash_parts(block, keys, parts)
    out = [block.filter(pa.array(part == i)) for i in range(parts)]
    return out if parts > 1 else out[0]


@ray.remote(num_cpus=0.5)
def _join(view: FeatureView, feats: list[str], names: dict[str, str], ts_col: str,
          entity_parts: list, *feature_parts: pa.Table) -> pa.Table:
    # A list argument's refs are not resolved by Ray; the varargs ones are.
    parts = ray.get(list(entity_parts))
    ent = [t for t in parts if t.num_rows]
    if not ent:  # an empty partition keeps the schema, with the new columns as nulls
        empty = parts[0] if parts else pa.table({})
        for feat in feats:
            empty = empty.append_column(names[feat], pa.nulls(0, dict(view.features)[feat]))
        return empty
    e = pa.concat_tables(ent, promote_options="permissive").to_pandas()
    fs = [t for t in feature_parts if t.num_rows]
    cols = [*view.join_keys, *(c for c in (view.timestamp_field, view.created_timestamp_column) if c),
            *feats]
    f = pa.concat_tables(fs).select(cols).to_pandas() if fs else pd.DataFrame(
        {c: pd.Series(dtype="object") for c in cols})
    out = join_frames(e, f, view, feats, names, ts_col)
    table = pa.Table.from_pandas(out, preserve_index=False)
    # Back to the entity columns' own types (pandas made times nanoseconds).
    for fld in ent[0].schema:
        idx = table.schema.get_field_index(fld.name)
        table = table.set_column(idx, fld.name, _as_type(table.column(idx), fld.type))
    for feat in feats:
        want = dict(view.features)[feat]
        name = names[feat]
        table = table.set_column(table.schema.get_field_index(name), name,
                                 _as_type(table.column(name), want))
    return table


def _as_type(col: pa.ChunkedArray, want: pa.DataType) -> pa.ChunkedArray:
    if col.type == want:
        return col
    if pa.types.is_null(col.type):
        return pa.chunked_array([pa.nulls(len(col), want)])
    return col.cast(want, safe=False)


def join_frames(e: pd.DataFrame, f: pd.DataFrame, view: FeatureView, feats: list[str],
                names: dict[str, str], ts_col: str) -> pd.DataFrame:
    """The as-of join of one partition (pandas; exact semantics, see module doc)."""
    keys = list(view.join_keys)
    tsf, created, ttl = view.timestamp_field, view.created_timestamp_column, view.ttl
    rename = {c: f"_f_{c}" for c in f.columns if c not in keys}
    f = f.rename(columns=rename)
    for k in keys:  # the two sides may type a key differently (int32 vs int64)
        if len(f) and len(e) and f[k].dtype != e[k].dtype:
            f[k] = f[k].astype(e[k].dtype)
    fe = {f"_f_{x}": names[x] for x in feats}
    e = e.copy()
    e[ts_col] = _utc(e[ts_col])
    if tsf is None:
        f = f.drop_duplicates(subset=keys, keep="last")
        out = e.merge(f[[*keys, *fe]], on=keys, how="left")
        return out.rename(columns=fe)
    ftime = f"_f_{tsf}"
    f[ftime] = _utc(f[ftime])
    f = f.dropna(subset=[ftime])
    sort_cols = [ftime] + ([f"_f_{created}"] if created else [])
    f = f.sort_values(sort_cols, kind="stable")
    f = f.drop_duplicates(subset=[*keys, ftime], keep="last")  # ties: larger created wins
    usable = e[ts_col].notna() & e[keys].notna().all(axis=1)
    left = e[usable].sort_values(ts_col, kind="stable")
    joined = pd.merge_asof(
        left, f[[*keys, ftime, *fe]], left_on=ts_col, right_on=ftime, by=keys,
        direction="backward", allow_exact_matches=True,
        tolerance=pd.Timedelta(ttl) if ttl is not None else None,
    )
    out = pd.concat([joined, e[~usable]], ignore_index=True)
    return out.drop(columns=[ftime]).rename(columns=fe)


def _utc(series: pd.Series) -> pd.Series:
    s = pd.to_datetime(series, utc=True)
    return s.astype("datetime64[ns, UTC]")
