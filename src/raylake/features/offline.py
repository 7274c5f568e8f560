"""Point-in-time correct training sets: a distributed as-of join on Ray.

For each entity row and feature view, the feature row with the same join keys
and the latest event time ``t`` with ``entity_ts - ttl <= t <= entity_ts``
(ties broken by the larger created time) supplies the features; none gives
nulls. Static views (no timestamp field) join on keys alone. The join of a
block with one view is ``asof.probe``: binary searches in numpy, no sort of the
entity rows.

Feature tables are read at pinned versions, limited to the columns the views
need. A table with fewer rows than a threshold (Delta's log counts them, so
nothing is read to decide) is broadcast: one task reads and indexes it, the
object store shares the result, and one task per entity block joins every such
view at once. A larger table is shuffled: both sides hash-partitioned on the join
keys by tasks that return one object per partition, one join task per partition.
Either way rows stay in the object store, never all on the driver, and a
cluster splits the entity rows across its nodes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import ray

from raylake.errors import ConfigError
from raylake.features import asof, on_demand
from raylake.features.definitions import FeatureView, Registry

ROW = "_rl_entity_row"  # entity row order, kept through the joins
# Feature tables with fewer rows are broadcast (a copy per node) instead of shuffled.
BROADCAST_ROWS = 1_000_000
MIN_BLOCK_ROWS = 50_000  # entity rows from the driver: no smaller slices than this


@dataclass
class RetrievalJob:
    """A training set, computed: ``to_arrow()``, ``to_pandas()``, or ``refs`` (one per partition)."""

    refs: list[ray.ObjectRef]
    views: list[dict[str, Any]]  # view, table, version used
    columns: list[str]

    def to_arrow(self) -> pa.Table:
        """All rows in entity order, the requested columns only."""
        tables = [t for t in ray.get(self.refs) if t.num_rows]
        if not tables:
            return pa.table({c: [] for c in self.columns})
        table = pa.concat_tables(tables, promote_options="permissive")
        row = table.column(ROW).to_numpy()
        # Broadcast joins keep the entity order; only shuffled partitions need the sort.
        if len(row) > 1 and not (row[1:] > row[:-1]).all():
            table = table.sort_by(ROW)
        return table.select(self.columns)

    def to_pandas(self) -> pd.DataFrame:
        """``to_arrow()`` as a DataFrame."""
        return self.to_arrow().to_pandas()

    def to_dataset(self) -> ray.data.Dataset:
        """The partitions as a Ray Dataset (not in entity order; with the row index column)."""
        # Ray types from_arrow_refs with its documentation-only ray.types.ObjectRef.
        return ray.data.from_arrow_refs(self.refs)  # type: ignore[arg-type]


def get_historical_features(
    lake: Any,
    registry: Registry,
    entity_df: pd.DataFrame | pa.Table | ray.data.Dataset,
    features: list[str] | str,
    *,
    event_timestamp_column: str = "event_timestamp",
    full_feature_names: bool = False,
    partitions: int | None = None,
    broadcast_rows: int | None = None,
) -> RetrievalJob:
    """Feast's ``get_historical_features`` over lake tables.

    A view whose table has fewer than ``broadcast_rows`` rows (Delta's own count;
    default ``BROADCAST_ROWS``) is joined by broadcast; larger ones are shuffled.
    """
    # On-demand views add their source features to the fetch (hidden unless asked for).
    plan = on_demand.plan(registry, registry.select(features))
    wanted = plan.fetch
    parts = partitions or max(2, int(ray.cluster_resources().get("CPU", 2)) * 2)
    blocks, columns = _entity_blocks(entity_df, parts)
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
    used, joins = [], []
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
        version, rows = _source(lake, view)
        used.append({"view": view_name, "table": view.source, "version": version})
        joins.append(_ViewJoin(view, feats, names, version, rows))
        out_cols += list(names.values())
    # The joined blocks (entity columns, ROW, every view's features), still in the
    # object store: one per entity block, or per partition once a view is shuffled.
    blocks = _join_views(lake, joins, blocks, event_timestamp_column, parts,
                         BROADCAST_ROWS if broadcast_rows is None else broadcast_rows)
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


def _entity_blocks(entity_df: Any, parts: int) -> tuple[list[ray.ObjectRef], list[str]]:
    if isinstance(entity_df, ray.data.Dataset):
        # Blocks in the dataset's own order, not in the order its tasks finish: the rows
        # are numbered next, and that number orders the result. Without it, rebuilding
        # a training set from the same versions could shuffle its rows (and so change
        # what a model trained on it learns).
        entity_df.context.execution_options.preserve_order = True
        refs = entity_df.to_arrow_refs()
        columns = entity_df.schema().names
        # Number the rows so the training set keeps the entity order.
        sizes = ray.get([_num_rows.remote(r) for r in refs])
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int).tolist()
        # Empty blocks are left out: a filter upstream (a time window, a null label)
        # can leave blocks that Ray Data hands on without their columns.
        return [_number.remote(r, s) for r, s, n in zip(refs, starts, sizes) if n], \
            list(columns)
    table = pa.Table.from_pandas(entity_df, preserve_index=False) if isinstance(
        entity_df, pd.DataFrame) else entity_df
    # Rows on the driver: numbered here and put as a few slices, so the joins run
    # in parallel without a pass of tasks that only count and number rows.
    n = table.num_rows
    count = max(1, min(parts, -(-n // MIN_BLOCK_ROWS)))
    bounds = [n * i // count for i in range(count + 1)]
    return [ray.put(table.slice(a, b - a).append_column(ROW, pa.array(np.arange(a, b, dtype=np.int64))))
            for a, b in zip(bounds, bounds[1:])], list(table.column_names)


@ray.remote(num_cpus=0.25)
def _num_rows(block: pa.Table) -> int:
    return block.num_rows


@ray.remote(num_cpus=0.25)
def _number(block: pa.Table, start: int) -> pa.Table:
    return block.append_column(ROW, pa.array(np.arange(start, start + block.num_rows, dtype=np.int64)))


@dataclass
class _ViewJoin:
    view: FeatureView
    feats: list[str]
    names: dict[str, str]  # feature -> output column
    version: int
    rows: int | None  # from the Delta log; None when a file has no row count

    @property
    def columns(self) -> list[str]:
        """The columns read from the view's source: join keys, the timestamp and
        created-timestamp columns where set, then the features joined (each once)."""
        v = self.view
        return list(dict.fromkeys([*v.join_keys, *(c for c in (v.timestamp_field,
                                   v.created_timestamp_column) if c), *self.feats]))

    def prepare(self, table: pa.Table) -> asof.FeatureSide:
        """``table`` (rows of the view's source) as the feature side of the as-of join, with
        the view's TTL in nanoseconds (None without a TTL or a timestamp field)."""
        v = self.view
        types = dict(v.features)
        ttl = None if v.ttl is None or v.timestamp_field is None else \
            v.ttl // dt.timedelta(microseconds=1) * 1000
        return asof.prepare(v.name, table, list(v.join_keys), [(f, types[f]) for f in self.feats],
                            v.timestamp_field, v.created_timestamp_column, ttl)


def _source(lake: Any, view: FeatureView) -> tuple[int, int | None]:
    """The view's table version and row count, from the Delta log alone."""
    dtab = lake.table(view.source, view.source_version)
    actions = dtab.get_add_actions(flatten=True)
    records = actions.column("num_records").to_pylist() if actions.num_rows else []
    rows = int(sum(records)) if all(r is not None for r in records) else None
    return dtab.version(), rows


def _join_views(lake: Any, joins: list[_ViewJoin], blocks: list[ray.ObjectRef], ts_col: str,
                parts: int, broadcast_rows: int) -> list[ray.ObjectRef]:
    """Large views are shuffled (both sides hash-partitioned on the keys, one join task
    per partition), so a cluster splits them; then every small view is joined in one
    task per block against a copy of its table that the object store shares."""
    small = [j for j in joins if j.rows is not None and j.rows < broadcast_rows]
    for j in joins:
        if any(j is s for s in small):
            continue
        keys = list(j.view.join_keys)
        feature_refs = _feature_blocks(lake, j)
        ent_parts = [_refs(split_by_keys.options(num_returns=parts).remote(b, keys, parts))
                     for b in blocks]
        feat_parts = [_refs(split_by_keys.options(num_returns=parts).remote(b, keys, parts))
                      for b in feature_refs]
        blocks = [_join.remote(j, ts_col, [e[i] for e in ent_parts], *[f[i] for f in feat_parts])
                  for i in range(parts)]
    if not small:
        return blocks
    sides = [_broadcast_side.remote(lake, j) for j in small]
    order = [n for j in joins for n in j.names.values()]  # the views' order, whichever path
    return [_join_broadcast.remote(b, small, ts_col, order, *sides) for b in blocks]


def _refs(out: ray.ObjectRef | list[ray.ObjectRef]) -> list[ray.ObjectRef]:
    """A task's refs: ``num_returns=n`` gives a list, or one ref when n is 1."""
    return out if isinstance(out, list) else [out]


def _feature_blocks(lake: Any, j: _ViewJoin) -> list[ray.ObjectRef]:
    dtab = lake.table(j.view.source, j.version)
    ds = ray.data.read_delta(dtab.table_uri, version=j.version, columns=j.columns,
                             storage_options=lake.storage.delta_options())
    return ds.to_arrow_refs()


@ray.remote(num_cpus=0.5)
def _broadcast_side(lake: Any, j: _ViewJoin) -> asof.FeatureSide:
    return j.prepare(lake.read(j.view.source, j.version, columns=j.columns))


@ray.remote(num_cpus=0.5)
def _join_broadcast(block: pa.Table, joins: list[_ViewJoin], ts_col: str, order: list[str],
                    *sides: asof.FeatureSide) -> pa.Table:
    times = asof.nanos(block.column(ts_col))
    for j, side in zip(joins, sides):
        block = _append(block, j, asof.probe(side, block, times))
    fixed = [c for c in block.column_names if c not in set(order)]
    return block.select([*fixed, *(c for c in order if c in block.column_names)])


def _append(block: pa.Table, j: _ViewJoin, values: pa.Table) -> pa.Table:
    for f in j.feats:
        block = block.append_column(pa.field(j.names[f], values.schema.field(f).type), values.column(f))
    return block


def _hash_parts(table: pa.Table, keys: list[str], parts: int) -> np.ndarray:
    frame = pd.DataFrame({k: pc.cast(table.column(k), pa.string()).to_pandas() for k in keys})
    return (pd.util.hash_pandas_object(frame, index=False).to_numpy() % parts).astype(np.int64)


@ray.remote(num_cpus=0.5)
def split_by_keys(block: pa.Table, keys: list[str], parts: int):
    """A Ray task: ``block`` split into ``parts`` tables by a hash of its ``keys`` columns,
    so rows with the same keys land in the same part whichever block they come from.

    Call it with ``.options(num_returns=parts)``: one object ref per part (a table, not
    a list, when ``parts`` is 1)."""
    part = _hash_parts(block, keys, parts)
    out = [block.filter(pa.array(part == i)) for i in range(parts)]
    return out if parts > 1 else out[0]


@ray.remote(num_cpus=0.5)
def _join(j: _ViewJoin, ts_col: str, entity_parts: list, *feature_parts: pa.Table) -> pa.Table:
    # A list argument's refs are not resolved by Ray; the varargs ones are.
    parts = ray.get(list(entity_parts))
    ent = [t for t in parts if t.num_rows] or parts[:1]
    if not ent:
        return pa.table({})
    block = pa.concat_tables(ent, promote_options="permissive")
    fs = [t.select(j.columns) for t in feature_parts if t.num_rows]
    table = pa.concat_tables(fs, promote_options="permissive") if fs else pa.table(
        {c: pa.array([], pa.null()) for c in j.columns})
    side = j.prepare(table)
    times = asof.nanos(block.column(ts_col)) if j.view.timestamp_field else None
    return _append(block, j, asof.probe(side, block, times))
