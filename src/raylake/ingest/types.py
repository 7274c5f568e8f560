"""Declared column types: the names used in dataset configs and their Arrow types."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from raylake.errors import ConfigError, did_you_mean

# Delta Lake stores timestamps in microseconds; "timestamp" is UTC-adjusted
# (Delta's TIMESTAMP), "timestamp_ntz" has no time zone (TIMESTAMP_NTZ).
TYPES: dict[str, pa.DataType] = {
    "bool": pa.bool_(),
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "string": pa.string(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "timestamp_ntz": pa.timestamp("us"),
}


def arrow_type(name: str, column: str = "?") -> pa.DataType:
    if name not in TYPES:
        raise ConfigError(
            f"Column {column!r} has unknown type {name!r}.{did_you_mean(name, TYPES)} "
            f"Valid types: {', '.join(TYPES)}."
        )
    return TYPES[name]


@dataclass(frozen=True)
class ColumnSpec:
    """One declared column, resolved for the pipeline (picklable, small)."""

    name: str
    type: pa.DataType
    nullable: bool
    source: str
    format: str | None = None


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
        )
        for name, col in columns.items()
    ]


def declared_schema(specs: list[ColumnSpec]) -> pa.Schema:
    return pa.schema([pa.field(s.name, s.type, nullable=s.nullable) for s in specs])
