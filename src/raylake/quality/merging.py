"""Serialized whylogs profiles merged as they are read: the sketches merge in C++, and
one whylogs view is built at the end.

``DatasetProfileView.deserialize`` builds a Python class for every metric component it
reads (about 340 for flights' 19 columns, 25 ms a profile), and ``merge`` builds new
components again: merging the ten block profiles of an ingestion took 0.3 s on the
driver, after every task had finished. Here each part is parsed with whylogs's own
protobuf messages and each component is merged the way whylogs merges it:

- counts and type counters (``n``/``d`` with no type id) add up; the ints metric's
  min (type id 1) and max (type id 2) take the min and max;
- distribution: whylogs's ``DistributionMetric.merge`` formula for mean and m2 (n from
  the KLL sketches), the KLL sketches merged;
- cardinality: an HLL union (largest lg_k and target type, as whylogs's aggregator);
- frequent items: merged part after part into a copy made through the sketch's bytes,
  as whylogs's aggregator does (the copy's order decides later purges).

Parts merge left to right, as ``a.merge(b).merge(c)`` does, so the numbers are the same
(KLL compaction is randomized either way). A part with anything else (other metrics,
segments) makes ``merged_view`` return None and the
caller merges with whylogs. Metadata (``why.log`` writes some) merges as whylogs merges
it: later parts' keys win.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from raylake.quality._whylogs import (
    WHYLOGS_MAGIC_HEADER_BYTES,
    ChunkHeader,
    ChunkMessage,
    ColumnMessage,
    ColumnProfileView,
    DatasetProfileHeader,
    DatasetProfileView,
    DatasetSegmentHeader,
    FrequentItemsSketchMessage,
    HllSketchMessage,
    KllSketchMessage,
    MetricComponentMessage,
    sketching,
)

# Metric namespaces merged here: those raylake.quality.sketch and why.log write for
# raylake's column types.
_KNOWN = {"counts", "types", "ints", "distribution", "cardinality", "frequent_items"}
_MIN_ID, _MAX_ID = 1, 2  # whylogs's MinIntegralComponent / MaxIntegralComponent type ids
_DISTRIBUTION = ("distribution/kll", "distribution/mean", "distribution/m2")


class _Unmergeable(Exception):
    """A part this module does not merge (the caller falls back to whylogs)."""


@dataclass
class _Column:
    """One column's components, merged so far: path -> (type id, oneof field, value)."""

    parts: dict[str, tuple[int, str, Any]] = field(default_factory=dict)


def merged_view(parts: Sequence[bytes]) -> DatasetProfileView | None:
    """The whylogs view of the serialized profiles ``parts`` merged left to right, or None
    when one holds something this module does not merge. Empty parts are skipped; None
    for no parts either."""
    columns: dict[str, _Column] = {}
    stamps: list[tuple[int, int]] = []
    metadata: dict[str, str] | None = None
    try:
        for data in parts:
            if not data:
                continue
            created, made, meta, comps = _read(data)
            stamps.append((created, made))
            if meta:
                metadata = {**metadata, **meta} if metadata else meta
            for name, paths in comps.items():
                values = {p: _value(m) for p, m in paths.items()}
                if name in columns:
                    _merge(columns[name], values)
                else:
                    _check_namespaces(values)
                    columns[name] = _Column(values)
        if not stamps:
            return None
        views = {name: ColumnProfileView.from_protobuf(_message(col))
                 for name, col in sorted(columns.items())}
    except _Unmergeable:
        return None
    return DatasetProfileView(
        columns=views,
        dataset_timestamp=_time(min(s[0] for s in stamps)),
        creation_timestamp=_time(min(s[1] for s in stamps)),
        metadata=metadata,
    )


def _read(data: bytes) -> tuple[int, int, dict[str, str] | None,
                               dict[str, dict[str, MetricComponentMessage]]]:
    """A serialized profile's timestamps (ms), metadata (tags included, as whylogs reads
    them) and its columns' component messages by path, read as
    ``DatasetProfileView._do_read`` reads them."""
    if not data.startswith(WHYLOGS_MAGIC_HEADER_BYTES):
        raise _Unmergeable("not a whylogs profile")
    segment, pos = _delimited(data, len(WHYLOGS_MAGIC_HEADER_BYTES), DatasetSegmentHeader)
    if segment.has_segments:
        raise _Unmergeable("segmented profile")
    header, start = _delimited(data, pos, DatasetProfileHeader)
    props = header.properties
    meta = {**props.tags, **props.metadata} or None
    paths = header.indexed_metric_paths
    columns: dict[str, dict[str, MetricComponentMessage]] = {}
    for name, offsets in header.column_offsets.items():
        comps: dict[str, MetricComponentMessage] = {}
        for offset in offsets.offsets:
            chunk, body = _delimited(data, start + offset, ChunkHeader)
            if chunk.type != ChunkHeader.ChunkType.COLUMN:
                raise _Unmergeable("not a column chunk")
            msg = ChunkMessage.FromString(data[body:body + chunk.length])
            for index, comp in msg.metric_components.items():
                comps[paths[index]] = comp
        columns[name] = comps
    return props.dataset_timestamp, props.creation_timestamp, meta, columns


def _delimited(data: bytes, pos: int, kind: Any) -> tuple[Any, int]:
    """The length-delimited message of type ``kind`` at ``pos`` and the position after it."""
    size = shift = 0
    while True:  # a base-128 varint length
        byte = data[pos]
        pos += 1
        size |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return kind.FromString(data[pos:pos + size]), pos + size


def _value(msg: MetricComponentMessage) -> tuple[int, str, Any]:
    kind = msg.WhichOneof("value")
    if kind == "n":
        return msg.type_id, kind, int(msg.n)
    if kind == "d":
        return msg.type_id, kind, float(msg.d)
    if kind == "kll":
        return msg.type_id, kind, sketching.kll_doubles_sketch.deserialize(msg.kll.sketch)
    if kind == "hll":
        return msg.type_id, kind, sketching.hll_sketch.deserialize(msg.hll.sketch)
    if kind == "frequent_items":
        return msg.type_id, kind, sketching.frequent_strings_sketch.deserialize(
            msg.frequent_items.sketch)
    raise _Unmergeable(f"component of kind {kind}")


def _check_namespaces(values: dict[str, tuple[int, str, Any]]) -> None:
    if any(p.split("/")[0] not in _KNOWN for p in values):
        raise _Unmergeable("unknown metric")
    if any(p in values for p in _DISTRIBUTION) and not all(p in values for p in _DISTRIBUTION):
        raise _Unmergeable("partial distribution")


def _merge(col: _Column, other: dict[str, tuple[int, str, Any]]) -> None:
    """Merge ``other``'s components into ``col`` as whylogs's metric merges would: a metric
    on one side only is kept as it is; one on both sides needs the same components."""
    _check_namespaces(other)
    mine = col.parts
    for metric in {p.split("/")[0] for p in other}:
        theirs = {p for p in other if p.split("/")[0] == metric}
        ours = {p for p in mine if p.split("/")[0] == metric}
        if not ours:
            mine.update({p: other[p] for p in theirs})
            continue
        if ours != theirs:
            raise _Unmergeable(f"metric {metric} with other components")
        if metric == "distribution":
            _merge_distribution(mine, other)
            continue
        for p in theirs:
            mine[p] = _merge_component(mine[p], other[p])


def _merge_distribution(mine: dict[str, tuple[int, str, Any]],
                        other: dict[str, tuple[int, str, Any]]) -> None:
    """whylogs's ``DistributionMetric.merge``: mean and m2 from both sides' n (their KLL
    sketches' n), then the sketches merged."""
    kll_id, _, kll = mine["distribution/kll"]
    other_kll = other["distribution/kll"][2]
    a_n, b_n = kll.get_n(), other_kll.get_n()
    a_mean, b_mean = mine["distribution/mean"][2], other["distribution/mean"][2]
    a_m2, b_m2 = mine["distribution/m2"][2], other["distribution/m2"][2]
    delta = b_mean - a_mean
    new_n = a_n + b_n
    if a_n != 0 or b_n != 0:
        m2 = a_m2 + b_m2 + delta**2 * a_n * b_n / new_n
        mean = (a_n / new_n) * a_mean + (b_n / new_n) * b_mean
    else:
        m2 = mean = 0.0
    kll.merge(other_kll)
    mine["distribution/mean"] = (mine["distribution/mean"][0], "d", float(mean))
    mine["distribution/m2"] = (mine["distribution/m2"][0], "d", float(m2))
    mine["distribution/kll"] = (kll_id, "kll", kll)


def _merge_component(a: tuple[int, str, Any], b: tuple[int, str, Any]) -> tuple[int, str, Any]:
    """One component merged by whylogs's aggregator for its type id, else its type."""
    type_id, kind, value = a
    if (b[0], b[1]) != (type_id, kind):
        raise _Unmergeable("components of different types")
    other = b[2]
    if kind in ("n", "d"):
        if type_id == _MIN_ID:
            return type_id, kind, min(value, other)
        if type_id == _MAX_ID:
            return type_id, kind, max(value, other)
        if type_id == 0:
            return type_id, kind, value + other
        raise _Unmergeable(f"number component with type id {type_id}")
    if type_id:
        raise _Unmergeable(f"sketch component with type id {type_id}")
    if kind == "hll":
        target = value.tgt_type if value.tgt_type.value >= other.tgt_type.value else other.tgt_type
        union = sketching.hll_union(max(value.lg_config_k, other.lg_config_k))
        union.update(value)
        union.update(other)
        return type_id, kind, union.get_result(target)
    if kind == "frequent_items":  # whylogs merges into a copy made through its bytes
        copy = sketching.frequent_strings_sketch.deserialize(value.serialize())
        copy.merge(other)
        return type_id, kind, copy
    raise _Unmergeable(f"{kind} outside a distribution")


def _message(col: _Column) -> ColumnMessage:
    """The merged column as whylogs's serializers write it."""
    out: dict[str, MetricComponentMessage] = {}
    for path, (type_id, kind, value) in col.parts.items():
        if kind == "n":
            msg = MetricComponentMessage(n=int(value))
        elif kind == "d":
            msg = MetricComponentMessage(d=value)
        elif kind == "kll":
            msg = MetricComponentMessage(kll=KllSketchMessage(sketch=value.serialize()))
        elif kind == "hll":
            msg = MetricComponentMessage(hll=HllSketchMessage(sketch=value.serialize_compact()))
        else:
            msg = MetricComponentMessage(
                frequent_items=FrequentItemsSketchMessage(sketch=value.serialize()))
        msg.type_id = type_id
        out[path] = msg
    return ColumnMessage(metric_components=out)


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000.0, tz=timezone.utc)
