"""Structured configuration: dataclasses registered with Hydra's ConfigStore.

One module per domain (lake, ingest, quality, features, training, serving), typed
values in ``values`` (closed choices, durations), the root in ``schema``.
"""

from raylake.config.schema import (
    Choice,
    ColumnConfig,
    ColumnType,
    CsvConfig,
    DatasetConfig,
    IngestConfig,
    LakeConfig,
    RayConfig,
    RaylakeConfig,
    SourceConfig,
    TableConfig,
    WriteMode,
    register_configs,
)
from raylake.config.values import parse_duration

__all__ = [
    "Choice",
    "ColumnConfig",
    "ColumnType",
    "CsvConfig",
    "DatasetConfig",
    "IngestConfig",
    "LakeConfig",
    "RayConfig",
    "RaylakeConfig",
    "SourceConfig",
    "TableConfig",
    "WriteMode",
    "parse_duration",
    "register_configs",
]
