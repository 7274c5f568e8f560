"""whylogs profiles filled straight from Arrow arrays: the same sketches, in bulk.

``why.log`` turns a table into pandas and walks the values of every column
through per-value Python calls (``Series.apply`` for NaN, inf and type masks),
about 64,000 flights rows/s. Here each column is read once as Arrow and NumPy
arrays and the metrics whylogs would write are filled in bulk:

- counts, types, ints (min/max) from Arrow compute and NumPy;
- distribution: the KLL sketch (``kll_doubles_sketch``) takes the whole NumPy
  array in one call (sorted, when there are few distinct values: see
  ``_distribution``); the mean is whylogs's own formula on the same array, so it
  agrees with ``why.log`` to the last bit, and m2 to rounding;
- frequent items and cardinality (HLL) from ``pyarrow.compute.value_counts``: each
  distinct value once, with its count as the weight (HLL ignores repeats).

The columns get the whylogs type, metric names and components that ``why.log`` gives
the pandas frame of ``profile._profilable`` (Arrow ints with nulls become pandas
floats, so they are profiled as fractional; bools with nulls become the strings
"True"/"False"), so these profiles serialize, deserialize and merge with whylogs's.
Column types not handled here (decimals, binary, nested, durations) are left to
the caller, who profiles them with ``why.log``.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raylake.quality._whylogs import (
    CardinalityMetric,
    ColumnCountsMetric,
    ColumnProfileView,
    DistributionMetric,
    FrequentItemsMetric,
    IntsMetric,
    MetricConfig,
    TypeCountersMetric,
    VarianceM2Result,
    parallel_variance_m2,
    welford_online_variance_m2,
)

_CONFIG = MetricConfig()
_ITEM_CHARS = _CONFIG.max_frequent_item_size  # whylogs truncates frequent strings to this
_BOOL_CHUNK = 1000  # whylogs feeds booleans to its distribution in lists of this size
_SORTED_FEED = 8  # rows per distinct value from which KLL gets the values sorted

Column: TypeAlias = "pa.Array | pa.ChunkedArray"


def column_views(table: pa.Table) -> tuple[dict[str, ColumnProfileView], list[str]]:
    """whylogs column views of ``table``'s columns, filled in bulk, and the names of the
    columns whose types this module leaves to ``why.log``."""
    views: dict[str, ColumnProfileView] = {}
    rest: list[str] = []
    for name, col in zip(table.column_names, table.columns):
        view = column_view(col)
        if view is None:
            rest.append(name)
        else:
            views[name] = view
    return views, rest


def column_view(col: Column) -> ColumnProfileView | None:
    """The whylogs view of one column, or None for a type left to ``why.log``."""
    try:
        return _column_view(col)
    except (pa.ArrowNotImplementedError, pa.ArrowTypeError):  # e.g. no value_counts kernel
        return None


def _column_view(col: Column) -> ColumnProfileView | None:
    col = profilable(col)
    t = col.type
    n = len(col)
    if pa.types.is_boolean(t):
        if col.null_count:  # pandas object column -> the strings "True"/"False"
            return _strings(pc.if_else(col, "True", "False"), n, nan=0)
        return _booleans(col, n)
    if pa.types.is_integer(t):
        if col.null_count:  # pandas makes it float64 with NaN
            return _fractional(col, n)
        if pa.types.is_uint64(t) and n and pc.max(col).as_py() > np.iinfo(np.int64).max:
            return None  # whylogs's int64 cast would wrap these
        return _integral(col, n)
    if pa.types.is_floating(t):
        return _fractional(col, n)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return _strings(col, n, nan=col.null_count)  # pandas "str": nulls are NaN
    if pa.types.is_null(t):
        return _strings(pa.nulls(n, pa.string()), n, nan=0)  # pandas object of None
    return None


def profilable(col: Column) -> Column:
    """Dictionary columns as their values; timestamps and dates as float epoch seconds,
    computed as ``profile._profilable`` does; string views as strings."""
    t = col.type
    if pa.types.is_dictionary(t):
        col = col.cast(t.value_type)
        t = col.type
    if pa.types.is_string_view(t):  # value_counts of views loses their nulls (pyarrow 26)
        return col.cast(pa.string())
    if pa.types.is_timestamp(t):
        return pc.divide(col.cast(pa.timestamp("us", tz=t.tz)).cast(pa.int64()), 1_000_000.0)
    if pa.types.is_date64(t):
        col = col.cast(pa.date32())
        t = col.type
    if pa.types.is_date32(t):
        return pc.multiply(col.cast(pa.int32()).cast(pa.float64()), 86_400.0)
    return col


def _numpy(col: Column) -> np.ndarray:
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return col.to_numpy(zero_copy_only=False)


def _mean_m2(values: np.ndarray) -> VarianceM2Result:
    """whylogs's ``DistributionMetric.columnar_update`` on one array, from zero: the same
    NumPy mean (bit for bit: NumPy sums integers as float64 whatever their width) and
    m2 from Arrow's variance (NumPy's makes three temporary arrays; they agree to
    rounding)."""
    first = VarianceM2Result(n=0, mean=0.0, m2=0.0)
    n = len(values)
    if n > 1:
        var = pc.variance(pa.array(values), ddof=1).as_py()
        second = VarianceM2Result(n=n, mean=values.mean(dtype=np.float64), m2=var * (n - 1))
        return parallel_variance_m2(first=first, second=second)
    if n == 1:
        return welford_online_variance_m2(existing=first, new_value=values[0])
    return first


def _distribution(values: np.ndarray | None, distinct: np.ndarray | None = None,
                  counts: np.ndarray | None = None) -> DistributionMetric:
    """whylogs's distribution of ``values``: all of them into the KLL sketch, in one call.

    With the distinct values and their counts at hand and few distinct values (at most
    one in ``_SORTED_FEED`` rows), the KLL sketch gets the same values in sorted order
    (``np.repeat`` of the sorted distinct values): its compactions sort their buffers,
    and sorted input halves the update's time (measured 50 -> 20 ms for 1M values).
    KLL's error guarantee holds for any order of the stream."""
    dist = DistributionMetric.zero(_CONFIG)
    if values is not None and len(values):
        if distinct is not None and counts is not None \
                and len(distinct) * _SORTED_FEED <= len(values):
            order = np.argsort(distinct, kind="stable")
            feed = np.repeat(np.asarray(distinct[order], dtype=np.float64), counts[order])
        else:
            feed = np.ascontiguousarray(values, dtype=np.float64)
        dist.kll.value.update(feed)
        result = _mean_m2(values)
        dist.mean.set(result.mean)
        dist.m2.set(result.m2)
    return dist


def _counts(n: int, null: int = 0, nan: int = 0, inf: int = 0, true: int = 0) -> ColumnCountsMetric:
    counts = ColumnCountsMetric.zero(_CONFIG)
    counts.n.set(n)
    counts.null.set(null)
    counts.nan.set(nan)
    counts.inf.set(inf)
    counts.true.set(true)
    return counts


def _types(**kinds: int) -> TypeCountersMetric:
    types = TypeCountersMetric.zero(_CONFIG)
    for kind, count in kinds.items():
        getattr(types, kind).set(count)
    return types


def _value_counts(col: Column) -> tuple[pa.Array, np.ndarray]:
    """The distinct non-null values of ``col`` and how often each occurs."""
    vc = pc.value_counts(col)
    values, counts = vc.field("values"), vc.field("counts")
    if values.null_count:
        valid = values.is_valid()
        values, counts = values.filter(valid), counts.filter(valid)
    return values, counts.to_numpy(zero_copy_only=False)


def _heaviest_first(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the values seen more than once, by descending count, and of those
    seen once (fed last, in one bulk call).

    Frequent items get each distinct value once, weighted by its count. With no more
    distinct values than the sketch keeps (768) it is exact in any order; with more,
    its purges subtract from the values it holds and the order matters. Heaviest
    first, the frequent values are held through every purge, so each estimate
    (what ``summary`` reports) is its exact count, as with ``why.log``'s row-by-row
    stream, and the guaranteed lower bounds are looser."""
    once = np.flatnonzero(counts == 1)
    many = np.flatnonzero(counts != 1)
    return many[np.argsort(-counts[many], kind="stable")], once


def _feed_ints(fi: FrequentItemsMetric, values: np.ndarray, counts: np.ndarray) -> None:
    """Weighted updates of the frequent-items sketch with int64 values, written as
    whylogs's ``update_np`` writes them (``str(int)``)."""
    sketch = fi.frequent_strings.value
    many, once = _heaviest_first(counts)
    for v, c in zip(values[many].tolist(), counts[many].tolist()):
        sketch.update(str(v), c)
    if len(once):
        sketch.update_np(np.ascontiguousarray(values[once]))


def _feed_strings(fi: FrequentItemsMetric, values: list[str], counts: np.ndarray) -> None:
    """Weighted updates of the frequent-items sketch with strings truncated as whylogs
    truncates them."""
    sketch = fi.frequent_strings.value
    many, once = _heaviest_first(counts)
    for i, c in zip(many.tolist(), counts[many].tolist()):
        sketch.update(values[i][:_ITEM_CHARS], c)
    if len(once):
        sketch.update_str_list([values[i][:_ITEM_CHARS] for i in once.tolist()])


def _view(metrics: dict[str, Any], successes: int) -> ColumnProfileView:
    return ColumnProfileView(metrics=metrics, success_count=successes, failure_count=0)


def _fractional(col: Column, n: int) -> ColumnProfileView:
    """Floats, or ints with nulls (pandas floats): nulls and NaN are both whylogs's null
    (and nan) count; the sketches get float64."""
    values = _numpy(col.cast(pa.float64()))  # nulls arrive as NaN
    nan = np.isnan(values)
    nulls = int(nan.sum())
    if nulls:
        values = values[~nan]
    inf = int(np.isinf(values).sum())
    card = CardinalityMetric.zero(_CONFIG)
    uniq = counts = None
    if len(values):
        distinct, counts = _value_counts(col)
        uniq = _numpy(distinct.cast(pa.float64()))
        if nulls:  # NaN: one of the distinct values
            real = ~np.isnan(uniq)
            uniq, counts = uniq[real], counts[real]
        card.hll.value.update_np(uniq)
    return _view({
        "counts": _counts(n, nulls, nulls, inf),
        "types": _types(fractional=len(values)),
        "distribution": _distribution(values, uniq, counts),
        "cardinality": card,
    }, n + 2 * len(values))


def _integral(col: Column, n: int) -> ColumnProfileView:
    """Ints without nulls (whylogs casts them to int64; the sketches get the same
    values)."""
    values = _numpy(col)
    ints = IntsMetric.zero(_CONFIG)
    card = CardinalityMetric.zero(_CONFIG)
    fi = FrequentItemsMetric.zero(_CONFIG)
    uniq_np = counts = None
    if n:
        ints.max.set(max(ints.max.value, int(values.max())))
        ints.min.set(min(ints.min.value, int(values.min())))
        uniq, counts = _value_counts(col)
        uniq_np = _numpy(uniq.cast(pa.int64()))
        card.hll.value.update_np(uniq_np)
        _feed_ints(fi, uniq_np, counts)
    return _view({
        "counts": _counts(n),
        "types": _types(integral=n),
        "distribution": _distribution(values, uniq_np, counts),
        "ints": ints,
        "cardinality": card,
        "frequent_items": fi,
    }, 5 * n)


def _booleans(col: Column, n: int) -> ColumnProfileView:
    """bool values without nulls, as whylogs counts them (distribution of 1s and 0s)."""
    true = int(pc.sum(col).as_py() or 0)
    false = n - true
    dist = DistributionMetric.zero(_CONFIG)
    result = VarianceM2Result(n=0, mean=0.0, m2=0.0)
    for value, count in ((1, true), (0, false)):
        if count:
            dist.kll.value.update(np.full(count, float(value)))
        while count > 0:  # whylogs's chunks: same floating-point steps, same mean and m2
            size = min(count, _BOOL_CHUNK)
            if size > 1:
                result = parallel_variance_m2(
                    first=result, second=VarianceM2Result(n=size, mean=value, m2=0))
            else:
                result = welford_online_variance_m2(existing=result, new_value=value)
            count -= size
    dist.mean.set(result.mean)
    dist.m2.set(result.m2)
    card = CardinalityMetric.zero(_CONFIG)
    if true and false:
        card.hll.value.update_int_list([1, 0])
    elif true:
        card.hll.value.update(1)
    elif false:
        card.hll.value.update(0)
    fi = FrequentItemsMetric.zero(_CONFIG)
    if true:
        fi.frequent_strings.value.update("True", true)
    if false:
        fi.frequent_strings.value.update("False", false)
    return _view({
        "counts": _counts(n, true=true),
        "types": _types(boolean=n),
        "distribution": dist,
        "ints": IntsMetric.zero(_CONFIG),
        "cardinality": card,
        "frequent_items": fi,
    }, 3 * n)


def _strings(col: Column, n: int, nan: int) -> ColumnProfileView:
    """Strings: frequent items (truncated as whylogs does) and HLL from value counts."""
    valid = n - col.null_count
    card = CardinalityMetric.zero(_CONFIG)
    fi = FrequentItemsMetric.zero(_CONFIG)
    if valid:
        values, counts = _value_counts(col)
        items = values.to_pylist()
        card.hll.value.update_str_list(items)
        _feed_strings(fi, items, counts)
    return _view({
        "counts": _counts(n, col.null_count, nan),
        "types": _types(string=valid),
        "distribution": _distribution(None),
        "cardinality": card,
        "frequent_items": fi,
    }, n + 3 * valid)
