"""Declared columns of a dataset table, resolved for the ingestion pipeline
(type names map to Arrow types in :mod:`raylake.lake.types`)."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from raylake.errors import ConfigError
from raylake.lake.types import arrow_type


@dataclass(frozen=True)
class ColumnSpec:
    """One declared column, resolved for the pipeline (picklable, small)."""

    name: str
    type: pa.DataType
    nullable: bool
    source: str
    format: str | None = None
    # Float columns only: keep inf and NaN instead of quarantining the row.
    allow_non_finite: bool = False


def column_specs(columns: dict, table: str) -> list[ColumnSpec]:
    """Resolve a dataset's ``columns`` mapping into specs; checks every type name."""
    if not columns:
        raise ConfigError(
            f"Table {table!r} declares no columns; add `columns:` with a type per column "
            "(e.g. `year: {type: int16, nullable: false}`)."
        )
    return [
        ColumnSpec(
            name=name,
            type=arrow_type(col.type, name),
            nullable=bool(col.nullable),
            source=col.source or name,
            format=col.format,
            allow_non_finite=bool(getattr(col, "allow_non_finite", False)),
        )
        for name, col in columns.items()
    ]


def declared_schema(specs: list[ColumnSpec]) -> pa.Schema:
    """The table's Arrow schema: the declared columns, in order, with their nullability."""
    return pa.schema([pa.field(s.name, s.type, nullable=s.nullable) for s in specs])
