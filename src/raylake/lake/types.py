"""Column type names (as dataset, entity, feature and request configs write them) and
their Arrow types, as the lake stores them."""

from __future__ import annotations

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
    """The Arrow type of a type name (``int16``, ``timestamp``, ...); ``column`` names
    where the name was written, for the error of an unknown name."""
    if name not in TYPES:
        raise ConfigError(
            f"Column {column!r} has unknown type {name!r}.{did_you_mean(name, TYPES)} "
            f"Valid types: {', '.join(TYPES)}."
        )
    return TYPES[name]


def type_name(t: pa.DataType) -> str:
    """The type name of an Arrow type (its Arrow spelling when no name maps to it)."""
    return next((n for n, v in TYPES.items() if v == t), str(t))
