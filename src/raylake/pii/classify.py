"""A column's class from a sample of its values: an entity's column, free text carrying
PII, or the default class; the dataset config's overrides win.

Per column (cast to strings), per entity: the share of non-null sampled values that *are*
one match (``whole``) and the share that *contain* one. An entity whose whole share reaches
``scan.min_share`` makes the column that entity's (``email`` -> EMAIL_ADDRESS, class from
ENTITY_CLASS); otherwise every entity contained in at least ``scan.min_text_share`` of the
values is recorded, and the column takes the most restrictive of their classes (free text,
``whole=False``: policies act on each match); otherwise ``scan.default_class``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from raylake.config.governance import ENTITY_CLASS, DataClass, Entity, ScanConfig
from raylake.errors import GovernanceError, did_you_mean
from raylake.pii.recognizers import NER_ENTITIES, RECOGNIZERS, as_strings, find, whole_rows
from raylake.pii.types import ColumnClass

# Ranks, least to most restrictive (the class of free text is its strictest entity's).
RANK = {c.value: i for i, c in enumerate(DataClass)}


def scanned_entities(scan: ScanConfig) -> list[str]:
    """The entity types a scan looks for: the pattern ones of ``scan.entities``, and
    PERSON / LOCATION only with ``scan.ner_model`` (those listed, or both when the list
    names neither)."""
    listed = [str(e) for e in scan.entities]
    out = [e for e in listed if e in RECOGNIZERS]
    if scan.ner_model:
        ner = [e for e in listed if e in NER_ENTITIES] or list(NER_ENTITIES)
        out += ner
    return out


def classify_table(sample: pa.Table, scan: ScanConfig,
                   overrides: dict[str, str]) -> list[ColumnClass]:
    """One ColumnClass per column of ``sample``, in order. ``overrides`` (column -> class
    or entity type, from the dataset config's ``classification``) win, source "config"."""
    names = sample.column_names
    for col, value in overrides.items():
        if col not in names:
            raise GovernanceError(f"classification.{col}: no column {col!r} in the table; "
                                  f"columns: {', '.join(names)}.{did_you_mean(col, names)}")
        _override(col, str(value), 0)  # refuses an unknown class before any scan
    entities = scanned_entities(scan)
    out = []
    for col in names:
        values = sample.column(col)
        if col in overrides:
            out.append(_override(col, str(overrides[col]), len(values) - values.null_count))
        else:
            out.append(classify_column(col, values, scan, entities))
    return out


def classify_column(name: str, values: pa.Array | pa.ChunkedArray, scan: ScanConfig,
                    entities: list[str] | None = None) -> ColumnClass:
    """The class of one column from its sampled values (see the module docstring)."""
    default = ColumnClass(name, DataClass(scan.default_class).value)
    wanted = scanned_entities(scan) if entities is None else entities
    try:
        arr = as_strings(values)
    except GovernanceError:  # lists, structs: nothing to scan, the default class
        return default
    sampled = len(arr) - arr.null_count
    default.sampled = sampled
    if not sampled or not wanted:
        return default
    found = find(arr, wanted, scan.ner_model)
    whole = {e: float(whole_rows(arr, m).sum()) / sampled for e, m in found.items()}
    best = max(whole, key=lambda e: (whole[e], RANK[ENTITY_CLASS[e].value]))
    if whole[best] >= scan.min_share:
        return ColumnClass(name, ENTITY_CLASS[best].value, {best: round(whole[best], 4)},
                           sampled, whole=True)
    contains = {e: np.unique(m.rows).size / sampled for e, m in found.items()}
    text = {e: round(s, 4) for e, s in contains.items() if s > 0 and s >= scan.min_text_share}
    if not text:
        return default
    cls = max((ENTITY_CLASS[e].value for e in text), key=RANK.__getitem__)
    return ColumnClass(name, cls, text, sampled, whole=False)


def _override(col: str, value: str, sampled: int) -> ColumnClass:
    """The class the config gives a column: a class, or an entity type (its class, and
    the entity, so entity-type policies apply)."""
    if value in RANK:
        return ColumnClass(col, value, {}, sampled, source="config", whole=True)
    if value in ENTITY_CLASS:
        return ColumnClass(col, ENTITY_CLASS[value].value, {value: 1.0}, sampled,
                           source="config", whole=True)
    known = [*RANK, *(e.value for e in Entity)]
    raise GovernanceError(f"classification.{col}={value!r} is neither a class nor an entity "
                          f"type; use one of {', '.join(known)}.{did_you_mean(value, known)}")


def sample_rows(table: pa.Table, n: int, seed: int = 0) -> pa.Table:
    """Up to ``n`` rows of ``table`` drawn without replacement with ``seed``, in table
    order (all of it when it is no larger)."""
    if table.num_rows <= n:
        return table
    pick = np.sort(np.random.default_rng(seed).choice(table.num_rows, n, replace=False))
    return table.take(pa.array(pick))
