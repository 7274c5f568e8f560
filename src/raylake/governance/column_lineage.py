"""Column-level lineage where raylake knows it: which input columns each output column of a
training set, a window aggregation or an online store view was made from, read from the
run's recorded config (the feature definitions as the run resolved them) and inputs.

Fields follow OpenLineage's ColumnLineageDatasetFacet: ``fields`` maps an output column to
its input fields, each with a transformation (``DIRECT`` IDENTITY, TRANSFORMATION or
AGGREGATION); ``dataset`` lists the columns that decide which rows exist (``INDIRECT``
JOIN, FILTER, GROUP_BY, WINDOW).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

Ident = Callable[[str], tuple[str, str]]  # table -> (namespace, name)

IDENTITY = {"type": "DIRECT", "subtype": "IDENTITY"}


def _field(ident: Ident, table: str, column: str, **transformation: Any) -> dict[str, Any]:
    ns, name = ident(table)
    return {"namespace": ns, "name": name, "field": column,
            "transformations": [transformation or dict(IDENTITY)]}


def training_set(record: dict[str, Any], columns: Iterable[str],
                 ident: Ident) -> dict[str, Any] | None:
    """Lineage of a training-set run's output columns: entity columns from the entity
    table, the label from the entity columns its expression names, each feature from its
    view's table, on-demand features from their source views' features and request fields.
    None when the record lacks the config or inputs to tell."""
    config = record.get("config") or {}
    ts, feats = config.get("training_set") or {}, config.get("features") or {}
    inputs = record.get("inputs") or []
    entity = next((i for i in inputs if i.get("role") == "entities"), None)
    if not ts or entity is None:
        return None
    etable = entity["table"]
    views = {i["view"]: i["table"] for i in inputs if i.get("role") == "features" and i.get("view")}
    defs = feats.get("feature_views") or {}
    full = bool(ts.get("full_feature_names", True))
    keep = [c for c in ts.get("entity_columns") or [] if c not in set(ts.get("drop_columns") or [])]

    def named(view: str, feature: str) -> str:
        return f"{view}__{feature}" if full else feature

    sources: dict[str, list[dict[str, Any]]] = {c: [_field(ident, etable, c)] for c in keep}
    label, expr = ts.get("label_name"), ts.get("label")
    if label and expr:
        used = _names_in(expr, ts.get("entity_columns") or [])
        sources[label] = [_field(ident, etable, c, type="DIRECT", subtype="TRANSFORMATION",
                                 description=f"label: {expr}") for c in used]
    for view, table in views.items():
        for f in (defs.get(view) or {}).get("features") or {}:
            sources[named(view, f)] = [_field(ident, table, f)]
    for name, odfv in (feats.get("on_demand_feature_views") or {}).items():
        reads = [_field(ident, views[src], f, type="DIRECT", subtype="TRANSFORMATION",
                        description=f"on-demand view {name}: {odfv.get('function')}")
                 for src in odfv.get("sources") or [] if src in views
                 for f in (defs.get(src) or {}).get("features") or {}]
        reads += [_field(ident, etable, r, type="DIRECT", subtype="TRANSFORMATION",
                         description=f"on-demand view {name}: {odfv.get('function')}")
                  for r in odfv.get("request") or {}]
        for f in odfv.get("features") or {}:
            sources[named(name, f)] = reads
    fields = {c: {"inputFields": sources[c]} for c in columns if sources.get(c)}
    if not fields:
        return None
    when = ts.get("event_timestamp_column")
    rows: list[dict[str, Any]] = []
    keys_of = _join_keys(feats)
    for view, table in views.items():
        d = defs.get(view) or {}
        for k in [k for e in d.get("entities") or [] for k in keys_of.get(e, [])]:
            join = {"type": "INDIRECT", "subtype": "JOIN", "description": f"feature view {view}"}
            rows += [_field(ident, etable, k, **join), _field(ident, table, k, **join)]
        if d.get("timestamp_field") and when:
            asof = {"type": "INDIRECT", "subtype": "FILTER",
                    "description": f"point in time: {view} rows as of each row's {when}"}
            rows += [_field(ident, etable, when, **asof),
                     _field(ident, table, d["timestamp_field"], **asof)]
    if when and (ts.get("start") or ts.get("end")):
        rows.append(_field(ident, etable, when, type="INDIRECT", subtype="FILTER",
                           description=f"rows in [{ts.get('start')}, {ts.get('end')})"))
    return {"fields": fields, **({"dataset": rows} if rows else {})}


def aggregation(record: dict[str, Any], table: str, columns: Iterable[str],
                ident: Ident) -> dict[str, Any] | None:
    """Lineage of an aggregate run's output ``table``: keys and ``window_end`` from the
    source, each ``<column>_<fn>_<window>`` an aggregation of the source column."""
    feats = (record.get("config") or {}).get("features") or {}
    agg = next((a for a in (feats.get("aggregations") or {}).values()
                if a.get("output_table") == table), None)
    if agg is None:
        return None
    src, col, window = agg["source"], agg["column"], agg.get("window")
    keys = [k for e in agg.get("entities") or [] for k in _join_keys(feats).get(e, [])]
    sources = {k: [_field(ident, src, k)] for k in keys}
    if agg.get("timestamp_field"):
        sources["window_end"] = [_field(ident, src, agg["timestamp_field"], type="DIRECT",
                                        subtype="TRANSFORMATION",
                                        description=f"end of each {agg.get('step')} step")]
    for fn in agg.get("functions") or []:
        sources[f"{col}_{fn}_{window}"] = [_field(
            ident, src, col, type="DIRECT", subtype="AGGREGATION",
            description=f"{fn} over {window} windows per {', '.join(keys)}")]
    fields = {c: {"inputFields": sources[c]} for c in columns if c in sources}
    if not fields:
        return None
    rows = [_field(ident, src, k, type="INDIRECT", subtype="GROUP_BY") for k in keys]
    if agg.get("timestamp_field"):
        rows.append(_field(ident, src, agg["timestamp_field"], type="INDIRECT",
                           subtype="WINDOW", description=f"{window} windows"))
    return {"fields": fields, "dataset": rows}


def online_view(record: dict[str, Any], view: str, table: str,
                ident: Ident) -> dict[str, Any] | None:
    """Lineage of a view materialized into the online store: its join keys and features,
    each the latest value of the source table's column."""
    feats = (record.get("config") or {}).get("features") or {}
    d = (feats.get("feature_views") or {}).get(view)
    if not d:
        return None
    keys = [k for e in d.get("entities") or [] for k in _join_keys(feats).get(e, [])]
    fields = {c: {"inputFields": [_field(ident, table, c)]} for c in [*keys, *(d.get("features") or {})]}
    rows = []
    if d.get("timestamp_field"):
        rows.append(_field(ident, table, d["timestamp_field"], type="INDIRECT", subtype="FILTER",
                           description="the latest row of each key"))
    return {"fields": fields, **({"dataset": rows} if rows else {})}


def _join_keys(feats: dict[str, Any]) -> dict[str, list[str]]:
    return {name: list(e.get("join_keys") or []) for name, e in (feats.get("entities") or {}).items()}


def _names_in(expr: str, columns: Iterable[str]) -> list[str]:
    """The columns an expression names, in the order of ``columns``."""
    words = set(re.findall(r"[A-Za-z_]\w*", expr))
    return [c for c in columns if c in words]
