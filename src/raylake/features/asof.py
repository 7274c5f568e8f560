"""The as-of join of one block of entity rows against one feature view's rows.

No Ray here: ``prepare`` turns a view's feature rows into a ``FeatureSide``
(rows sorted by key and time, plus the arrays the lookup searches) and
``probe`` finds each entity row's feature row with two binary searches, in
numpy and Arrow. Entity rows are never sorted, hashed through pandas or
reordered, so a block comes out in the order it went in, one row per entity
row (duplicates included), with its own column types.

Semantics (the reference is a brute-force join in the tests): for an entity
row with keys ``k`` and time ``t``, the feature row with keys ``k`` and the
largest event time ``f <= t``, with ``t - ttl <= f`` when the view has a TTL;
among rows with the same keys and time, the larger created time wins (a
missing created time sorts last), then the later row as read. A null key or
entity time matches nothing. Static views (no timestamp field) take the last
row read per key, at any time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from raylake.errors import ConfigError, RaylakeError

_NO_TIME = np.iinfo(np.int64).max
# Up to this many (key, time rank) cells, a view keeps the answer of every cell, so a
# lookup is one gather instead of a binary search per entity row.
LOOKUP_CELLS = 1 << 22


@dataclass
class FeatureSide:
    """One view's feature rows, ready to be probed by any number of entity blocks."""

    view: str
    keys: tuple[str, ...]
    # Per join key: its distinct non-null values, and (from the second key on) the
    # sorted distinct combined codes, so a code stays below the row count.
    levels: list[tuple[pa.Array, np.ndarray | None]]
    code: np.ndarray  # per sorted row: its key code
    search: np.ndarray  # sorted: code * span + time rank + 1 (timed views) or code (static)
    codes: int  # how many key codes there are (all below this)
    lookup: np.ndarray | None  # cell -> row (-1: none), cell = code * span + rank, or code
    times: np.ndarray | None  # distinct event times (ns), sorted; None for static views
    ts: np.ndarray | None  # per sorted row: its event time (ns)
    ttl_ns: int | None
    values: pa.Table  # the feature columns, in sorted row order, with the declared types


def nanos(col: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Instants as int64 nanoseconds since the epoch (UTC; naive means UTC) and a validity mask."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    if pa.types.is_timestamp(col.type):
        col = col.cast(pa.timestamp("ns", col.type.tz)) if col.type.unit != "ns" else col
    elif len(col):  # strings, dates: the same parsing as pandas' to_datetime
        col = pa.array(pd.to_datetime(col.to_pandas(), utc=True).astype("datetime64[ns, UTC]"))
    else:
        col = pa.array([], pa.timestamp("ns", "UTC"))
    ints = col.view(pa.int64()) if col.offset == 0 else col.cast(pa.int64())
    if ints.null_count:
        return ints.fill_null(0).to_numpy(), ints.is_valid().to_numpy(zero_copy_only=False)
    return ints.to_numpy(), np.ones(len(ints), dtype=bool)


def prepare(view: str, table: pa.Table, keys: list[str], features: list[tuple[str, pa.DataType]],
            timestamp: str | None = None, created: str | None = None,
            ttl_ns: int | None = None) -> FeatureSide:
    """Sort and index a view's feature rows (one per view, then probed by every entity block)."""
    n = table.num_rows
    keep = np.ones(n, dtype=bool)
    code = np.zeros(n, dtype=np.int64)
    levels: list[tuple[pa.Array, np.ndarray | None]] = []
    for i, key in enumerate(keys):
        col = _plain(table.column(key))
        uniq = pc.unique(col).drop_null()
        c = _codes(col, uniq)
        keep &= c >= 0
        if i == 0:
            code, dense = c, None
        else:
            combined = code * len(uniq) + c
            dense = np.unique(combined[keep])
            code = np.searchsorted(dense, combined)
        levels.append((uniq, dense))
    if timestamp is not None:
        t, valid = nanos(table.column(timestamp))
        keep &= valid
    rows = np.flatnonzero(keep)
    code = code[rows]
    times: np.ndarray | None = None  # distinct event times (ns), sorted; None for static views
    ts: np.ndarray | None = None  # per sorted row: its event time (ns); None for static views
    if timestamp is not None:
        t = t[rows]
        if created is not None:
            c_ns, c_valid = nanos(table.column(created))
            c_ns = np.where(c_valid, c_ns, _NO_TIME)[rows]
            order = np.lexsort((c_ns, t, code))  # stable: equal rows keep their read order
        else:
            order = np.lexsort((t, code))
        code, t = code[order], t[order]
        times = np.unique(t)
        search = code * (len(times) + 1) + np.searchsorted(times, t) + 1
        taken = rows[order]
        ts = t
    else:
        order = np.argsort(code, kind="stable")
        code = code[order]
        last = np.ones(len(code), dtype=bool)
        last[:-1] = code[1:] != code[:-1]  # the last row read of each key wins
        code, taken = code[last], rows[order[last]]
        search = code
    codes = len(levels[-1][1]) if levels[-1][1] is not None else len(levels[-1][0])
    cells = codes * (len(times) + 1) if times is not None else codes
    lookup = None
    if times is not None and cells <= LOOKUP_CELLS:
        lookup = np.searchsorted(search, np.arange(cells), side="right") - 1
    elif times is None:
        lookup = np.full(cells, -1, dtype=np.int64)
        lookup[search] = np.arange(len(search))
    values = table.select([f for f, _ in features]).take(pa.array(taken, pa.int64()))
    values = pa.table([_as_type(values.column(f), typ) for f, typ in features],
                      names=[f for f, _ in features]).combine_chunks()
    return FeatureSide(view, tuple(keys), levels, code, search, codes, lookup, times, ts, ttl_ns,
                       values)


def probe(side: FeatureSide, block: pa.Table, times: tuple[np.ndarray, np.ndarray] | None = None
          ) -> pa.Table:
    """The feature columns for each row of ``block``, in its order (nulls where none matches).

    ``times``: the block's entity times from :func:`nanos`, shared by the views of one block.
    """
    n = block.num_rows
    if not len(side.code):
        return side.values.slice(0, 0).take(pa.nulls(n, pa.int64()))
    ok = np.ones(n, dtype=bool)
    code = np.zeros(n, dtype=np.int64)
    for i, (key, (uniq, dense)) in enumerate(zip(side.keys, side.levels)):
        col = _plain(block.column(key))
        col, uniq_here = _aligned(col, uniq, key, side.view)
        c = _codes(col, uniq_here)
        ok &= c >= 0
        combined = c if i == 0 else code * len(uniq) + c
        if dense is None:
            code = combined
        else:
            pos = np.minimum(np.searchsorted(dense, combined), len(dense) - 1)
            ok &= dense[pos] == combined
            code = pos
    # Rows whose keys matched nothing keep a code in range, to index with; ok drops them.
    code = np.clip(code, 0, side.codes - 1)
    if side.times is None:
        if side.lookup is None:  # prepare gives every static view a lookup
            raise RaylakeError(f"Static view {side.view!r} has no lookup table; prepare it again.")
        idx = side.lookup[code]
        ok &= idx >= 0
        np.maximum(idx, 0, out=idx)
    else:
        if times is None or side.ts is None:
            raise RaylakeError(f"View {side.view!r} joins by event time: probe needs the block's "
                               "entity times (times=nanos(entity time column)).")
        t, valid = times
        ok &= valid
        # 1 + the rank of the latest feature time <= t (0: earlier than all), then the
        # last row of this key at or before that rank.
        cell = code * (len(side.times) + 1) + np.searchsorted(side.times, t, side="right")
        if side.lookup is not None:
            idx = side.lookup[cell]
        else:
            idx = np.searchsorted(side.search, cell, side="right") - 1
        ok &= idx >= 0
        np.maximum(idx, 0, out=idx)
        ok &= side.code[idx] == code
        if side.ttl_ns is not None:
            ok &= (t - side.ts[idx]) <= side.ttl_ns
    return side.values.take(pa.array(idx, pa.int64(), mask=~ok))


def _plain(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return col.dictionary_decode() if pa.types.is_dictionary(col.type) else col


def _codes(col: pa.Array, uniq: pa.Array) -> np.ndarray:
    """Position of each value in ``uniq``; -1 for a null or a value not there."""
    if not len(uniq):
        return np.full(len(col), -1, dtype=np.int64)
    idx = pc.index_in(col, value_set=uniq)
    return idx.fill_null(-1).to_numpy().astype(np.int64, copy=False)


def _aligned(col: pa.Array, uniq: pa.Array, key: str, view: str) -> tuple[pa.Array, pa.Array]:
    """One type for both sides of a key (int32 entity keys against int64 features...)."""
    if col.type == uniq.type:
        return col, uniq
    for cast in (lambda: (col, uniq.cast(col.type)), lambda: (col.cast(uniq.type), uniq)):
        try:
            return cast()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    raise ConfigError(
        f"Join key {key!r} is {col.type} in the entity rows and {uniq.type} in feature view "
        f"{view!r}; give the entity rows the view's key type."
    )


def _as_type(col: pa.ChunkedArray, want: pa.DataType) -> pa.ChunkedArray:
    if col.type == want:
        return col
    if pa.types.is_null(col.type):
        return pa.chunked_array([pa.nulls(len(col), want)])
    return col.cast(want, safe=False)
