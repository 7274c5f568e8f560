"""Governance inside ingestion: scan a sample, classify each column, resolve the policies,
and apply them in the write task before anything is written (docs/governance.md).

The driver reads a sample of the source as text (the values as they arrive), classifies
the columns and resolves one policy per column; the write tasks get a picklable
``Governance`` and apply it to every block after the casts and checks, so the table's
files, its profiles and its quarantine only ever see what the policy let through.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raylake.config.governance import DataClass, GovernanceConfig, PolicyConfig
from raylake.config.ingest import TableConfig
from raylake.ingest.cast import COLUMN, ERROR, RAW
from raylake.ingest.sources import SourceFile, SourceSpec, read_file
from raylake.ingest.types import ColumnSpec
from raylake.pii.classify import classify_table
from raylake.pii.policies import (
    apply_policies,
    check_policies,
    key_from_env,
    output_schema,
    redact_text,
    resolve_policies,
)
from raylake.pii.types import ColumnClass

# Reasons that quote the bad value (cast.py): the value is withheld when its column has a
# policy other than keep.
_QUOTED = re.compile(r"(cannot cast |non-finite value |raw bytes in hex: )('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[0-9a-f]+)")


@dataclass(frozen=True)
class Governance:
    """What the write tasks apply (picklable): the policy per column, the classes, the key."""

    policies: dict[str, PolicyConfig]
    classes: dict[str, ColumnClass]
    key: bytes | None = field(repr=False)  # never printed
    entities: tuple[str, ...]  # every entity type found in the table: redacted from raw text
    ner_model: str | None = None  # governance.scan.ner_model (PERSON, LOCATION)

    @property
    def active(self) -> bool:
        """Anything to do per block."""
        return bool(self.policies)


def explicit_key(gcfg: GovernanceConfig, tcfg: TableConfig) -> bytes | None:
    """The key, when the table's own policies need it: read before any source byte, so a
    missing key refuses the job before it reads anything."""
    if any(p.needs_key for p in tcfg.policies.values()):
        return key_from_env(gcfg.key_env)
    return None


def plan_governance(gcfg: GovernanceConfig, tcfg: TableConfig, table: str,
                    files: Sequence[SourceFile], spec: SourceSpec, specs: list[ColumnSpec],
                    schema: pa.Schema) -> tuple[Governance, list[ColumnClass], pa.Schema]:
    """Classify the table's columns from a sample and resolve its policies; the schema the
    table gets once the policies are applied (hashed columns are strings, dropped ones
    gone). Raises GovernanceError before anything is written."""
    key = explicit_key(gcfg, tcfg)
    if gcfg.scan.enabled:
        sample = read_sample(files, spec, specs, gcfg.scan.sample_rows, gcfg.scan.seed)
    else:
        sample = pa.table({s.name: pa.nulls(0, pa.string()) for s in specs})
    classes = classify_table(sample, gcfg.scan, dict(tcfg.classification))
    if not gcfg.scan.enabled:  # unscanned columns are the default class, overrides aside
        classes = [c if c.source == "config" else ColumnClass(c.column, gcfg.scan.default_class.value,
                                                              source="config")
                   for c in classes]
    policies = resolve_policies(classes, dict(tcfg.policies), dict(gcfg.policies))
    check_policies(table, schema, policies)
    if key is None and any(p.needs_key for p in policies.values()):
        key = key_from_env(gcfg.key_env)
    by_name = {c.column: c for c in classes}
    for col, policy in policies.items():
        if col in by_name:
            by_name[col].policy = policy.action.value
    entities = sorted({e for c in classes for e in c.entities})
    return (Governance(policies, by_name, key, tuple(entities), gcfg.scan.ner_model), classes,
            annotated(output_schema(schema, policies), classes))


def read_sample(files: Sequence[SourceFile], spec: SourceSpec, specs: list[ColumnSpec],
                rows: int, seed: int) -> pa.Table:
    """Up to ``rows`` rows of the source as text (named as declared), drawn with ``seed``
    from the first block of each file until enough rows are read."""
    names = [s.source for s in specs]
    parts: list[pa.Table] = []
    have = 0
    for i, f in enumerate(files):
        block = next(iter(read_file(f.path, i, spec, names, block_rows=max(rows * 10, 100_000))),
                     None)
        if block is None or block.num_rows == 0:
            continue
        cols = {s.name: _as_text(block.column(s.source)) if s.source in block.column_names
                else pa.nulls(block.num_rows, pa.string()) for s in specs}
        parts.append(pa.table(cols))
        have += block.num_rows
        if have >= rows:
            break
    if not parts:
        return pa.table({s.name: pa.nulls(0, pa.string()) for s in specs})
    table = pa.concat_tables(parts)
    if table.num_rows > rows:
        pick = np.sort(np.random.default_rng(seed).choice(table.num_rows, rows, replace=False))
        table = table.take(pa.array(pick))
    return table


def govern_block(block: pa.Table, gov: Governance) -> pa.Table:
    """Apply the policies to a cast block: the declared columns of every row, and the raw
    text and reasons of rows bound for the quarantine."""
    names = [c for c in gov.policies if c in block.column_names]
    if not names:
        return block
    data = block.select(names)
    done = apply_policies(data, {c: gov.policies[c] for c in names}, gov.key, gov.classes,
                          ner_model=gov.ner_model)
    out = block
    for c in names:
        i = out.schema.get_field_index(c)
        if c in done.column_names:
            out = out.set_column(i, c, done.column(c))
        else:
            out = out.remove_column(i)
    bad = out.column(ERROR).is_valid()
    if pc.any(bad).as_py():
        out = _govern_quarantined(out, gov, bad.to_numpy(zero_copy_only=False))
    return out


def _govern_quarantined(block: pa.Table, gov: Governance, bad: np.ndarray) -> pa.Table:
    """Rows for the quarantine keep their raw values and reason: withhold the values of
    columns with a policy and redact what the recognizers find in the rest."""
    raw = block.column(RAW).to_pylist()
    reason = block.column(ERROR).to_pylist()
    column = block.column(COLUMN).to_pylist()
    for i in np.flatnonzero(bad):
        raw[i] = _withhold(raw[i], gov.policies)
        if column[i] in gov.policies and reason[i]:
            withheld = f"<withheld: {column[i]} policy>"
            reason[i] = _QUOTED.sub(_replacement(withheld), reason[i])
    if gov.entities:
        raw = redact_text(pa.array(raw, pa.string()), gov.entities,
                          ner_model=gov.ner_model).to_pylist()
        reason = redact_text(pa.array(reason, pa.string()), gov.entities,
                             ner_model=gov.ner_model).to_pylist()
    block = block.set_column(block.schema.get_field_index(RAW), RAW, pa.array(raw, pa.string()))
    return block.set_column(block.schema.get_field_index(ERROR), ERROR,
                            pa.array(reason, pa.string()))


def _replacement(withheld: str) -> Callable[[re.Match[str]], str]:
    def sub(m: re.Match[str]) -> str:
        return m.group(1) + withheld
    return sub


def _withhold(raw: str | None, policies: dict[str, PolicyConfig]) -> str | None:
    """A raw row (JSON of its values, or a source line) with governed values withheld."""
    if raw is None:
        return None
    try:
        values = json.loads(raw)
    except ValueError:
        values = None
    if not isinstance(values, dict):  # a line that did not parse: the recognizers redact it
        return raw
    for col, policy in policies.items():
        if col in values and values[col] is not None:
            values[col] = f"<{policy.action.value}>"
    return json.dumps(values)


def annotated(schema: pa.Schema, classes: Sequence[ColumnClass]) -> pa.Schema:
    """The schema with each classified column's class in its Delta column metadata
    (``raylake.classification``: ``pii:EMAIL_ADDRESS``, ``restricted:CREDIT_CARD``, or a class
    from the dataset config), so any Delta reader sees it. Column metadata rather than
    table properties: delta-rs refuses custom table properties when it creates a table,
    and setting them afterwards would add a version to every new table."""
    marks = {}
    for c in classes:
        if c.data_class in (DataClass.pii.value, DataClass.restricted.value) or c.source == "config":
            marks[c.column] = c.data_class + (":" + ",".join(sorted(c.entities)) if c.entities else "")
    fields = [f.with_metadata({**(f.metadata or {}), b"raylake.classification": marks[f.name].encode()})
              if f.name in marks else f for f in schema]
    return pa.schema(fields, metadata=schema.metadata)


def _as_text(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        return arr.cast(pa.string())
    if pa.types.is_binary(arr.type):
        return pc.cast(arr, pa.string(), safe=False)
    try:
        return pc.cast(arr, pa.string())
    except pa.ArrowNotImplementedError:
        return pa.array([None if v is None else str(v) for v in arr.to_pylist()], pa.string())
