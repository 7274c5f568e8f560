"""Structured configuration: dataclasses registered with Hydra's ConfigStore."""

from raylake.config.schema import (
    ColumnConfig,
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

__all__ = [
    "ColumnConfig",
    "CsvConfig",
    "DatasetConfig",
    "IngestConfig",
    "LakeConfig",
    "RayConfig",
    "RaylakeConfig",
    "SourceConfig",
    "TableConfig",
    "WriteMode",
    "register_configs",
]
