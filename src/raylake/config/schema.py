"""The typed shape of raylake's configuration.

Hydra validates every YAML file and override against these dataclasses, so a
misspelled key or a value of the wrong type is an error rather than a silent
default. Each dataclass checks what a type cannot say in ``__post_init__``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


class WriteMode(str, Enum):
    append = "append"
    overwrite = "overwrite"
    merge = "merge"


@dataclass
class LakeConfig:
    # A local path or a URI (s3://bucket/prefix). Credentials are never set
    # here: deltalake and pyarrow read them from the environment.
    root: str = "lake"
    # Non-secret storage options passed to deltalake and pyarrow
    # (e.g. AWS_REGION, AWS_ENDPOINT_URL, AWS_ALLOW_HTTP).
    storage_options: dict[str, str] = field(default_factory=dict)


@dataclass
class RayConfig:
    # None: RAY_ADDRESS if set, else a new local Ray.
    address: Optional[str] = None
    num_cpus: Optional[int] = None
    include_dashboard: bool = False
    namespace: str = "raylake"
    # CPUs reserved by each Ray Data task of raylake's pipelines. Ingestion
    # fuses read, cast and write into one task per file: a whole CPU each runs
    # fastest (measured by benchmarks/ingest.py); a fraction shares the CPU
    # with actors or Serve replicas on a small machine.
    data_task_cpus: float = 1.0


@dataclass
class ColumnConfig:
    # bool, int8, int16, int32, int64, float32, float64, string, date,
    # timestamp (UTC), timestamp_ntz (no time zone).
    type: str = "string"
    nullable: bool = True
    # Name of the column in the source when it differs.
    source: Optional[str] = None
    # strptime format for date and timestamp columns read from text;
    # None accepts ISO 8601.
    format: Optional[str] = None


@dataclass
class CsvConfig:
    delimiter: str = ","
    quote_char: str = '"'
    null_values: list[str] = field(default_factory=lambda: ["", "NA", "NULL", "null"])
    encoding: str = "utf8"


@dataclass
class SourceConfig:
    # A file, a folder, a glob; local, s3://..., or pkg://package/path for
    # files shipped inside a Python package (the bundled datasets).
    path: str = MISSING
    # csv, parquet or jsonl; None infers it from the file extension.
    format: Optional[str] = None
    csv: CsvConfig = field(default_factory=CsvConfig)


@dataclass
class CleanseStepConfig:
    # trim, lower, upper, impute, clip, scale, coerce, dedup_latest
    op: str = MISSING
    columns: list[str] = field(default_factory=list)
    # impute: a constant `value`, or `strategy` median / mode from the data's profile.
    value: Optional[Any] = None
    strategy: Optional[str] = None
    # clip: bounds as numbers or profile quantiles ("q01", "q99").
    lower: Optional[str] = None
    upper: Optional[str] = None
    # scale: x * factor + offset (units, e.g. Fahrenheit -> Celsius).
    factor: float = 1.0
    offset: float = 0.0
    # coerce: the new column type.
    to: Optional[str] = None
    # dedup_latest: among rows sharing the primary key, keep the latest by this column.
    order_by: Optional[str] = None


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


@dataclass
class DatasetConfig:
    name: str = MISSING
    tables: dict[str, TableConfig] = field(default_factory=dict)


@dataclass
class IngestConfig:
    # Ingest only these tables of the dataset; empty means all.
    tables: list[str] = field(default_factory=list)
    # Fail the run when more than this share of rows is quarantined.
    max_quarantine_fraction: float = 1.0
    # Fault injection for tests and drills: "write" fails a worker after it
    # wrote its files, "commit" fails the driver just before the table commit.
    inject_failure: Optional[str] = None

    def __post_init__(self) -> None:
        if self.inject_failure not in (None, "write", "commit"):
            raise ValueError(
                f"ingest.inject_failure={self.inject_failure!r} is not one of "
                "null, 'write', 'commit'"
            )


@dataclass
class ConstraintConfig:
    name: str = MISSING
    # Row checks: not_null, range, in_set, regex, rule, reference.
    # Table checks: null_share, unique, row_count, freshness, distribution.
    check: str = MISSING
    column: Optional[str] = None
    columns: list[str] = field(default_factory=list)  # unique: the key
    min: Optional[float] = None  # range, row_count, distribution bounds
    max: Optional[float] = None  # range, row_count, distribution, null_share
    values: list[Any] = field(default_factory=list)  # in_set
    pattern: Optional[str] = None  # regex (whole value must match)
    expr: Optional[str] = None  # rule: a selection every row must satisfy
    ref_table: Optional[str] = None  # reference: values must be in ref_table.ref_column
    ref_column: Optional[str] = None
    stat: Optional[str] = None  # distribution: mean, stddev, min, max, q01..q99
    max_age: Optional[str] = None  # freshness: e.g. 36h, 7d
    as_of: Optional[str] = None  # freshness: the "now" (ISO); default the run time
    # quarantine (row checks during ingestion), fail (commit nothing), warn (record).
    policy: str = "warn"

    def __post_init__(self) -> None:
        if self.policy not in ("quarantine", "fail", "warn"):
            raise ValueError(
                f"constraint {self.name!r}: policy={self.policy!r} is not one of "
                "quarantine, fail, warn"
            )


@dataclass
class TableQualityConfig:
    constraints: list[ConstraintConfig] = field(default_factory=list)


@dataclass
class QualityConfig:
    name: str = "none"
    # Constraints per table name of the lake.
    tables: dict[str, TableQualityConfig] = field(default_factory=dict)


@dataclass
class EntityConfig:
    join_keys: list[str] = field(default_factory=list)
    # The type of the join keys' values (string, int64, ...): requests are checked against it.
    value_type: str = "string"
    description: str = ""


@dataclass
class FeatureConfig:
    type: str = "float64"
    description: str = ""


@dataclass
class FeatureViewConfig:
    # The lake table the features are read from, and optionally its pinned version.
    source: str = MISSING
    source_version: Optional[str] = None
    entities: list[str] = field(default_factory=list)
    # Event time of each feature row; None for static attributes (always valid).
    timestamp_field: Optional[str] = None
    # Breaks ties between rows with the same event time: the larger wins.
    created_timestamp_column: Optional[str] = None
    # How old a feature row may be at the entity's time (e.g. 2h, 7d); None: no limit.
    ttl: Optional[str] = None
    features: dict[str, FeatureConfig] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    owner: str = ""
    description: str = ""


@dataclass
class AggregationConfig:
    # Rolling aggregates of `column` over `window`, per entity, at every `step`
    # boundary: row (keys, window_end, <column>_<fn>_<window>) covers events in
    # [window_end - window, window_end). Written to `output_table` by a Ray job.
    source: str = MISSING
    source_version: Optional[str] = None
    entities: list[str] = field(default_factory=list)
    timestamp_field: str = MISSING
    column: str = MISSING
    functions: list[str] = field(default_factory=lambda: ["mean", "count"])
    window: str = "7d"
    step: str = "1d"
    output_table: str = MISSING


@dataclass
class OnDemandFeatureViewConfig:
    # "package.module:function": DataFrame of inputs -> DataFrame of the features below.
    function: str = MISSING
    # Feature views whose features the function reads (by their plain names).
    sources: list[str] = field(default_factory=list)
    # Fields that come with each request or entity row: name -> type.
    request: dict[str, str] = field(default_factory=dict)
    features: dict[str, FeatureConfig] = field(default_factory=dict)
    description: str = ""


@dataclass
class FeaturesConfig:
    name: str = "none"
    entities: dict[str, EntityConfig] = field(default_factory=dict)
    feature_views: dict[str, FeatureViewConfig] = field(default_factory=dict)
    # Request-time features computed by Python functions, offline and online alike.
    on_demand_feature_views: dict[str, OnDemandFeatureViewConfig] = field(default_factory=dict)
    aggregations: dict[str, AggregationConfig] = field(default_factory=dict)
    # name -> ["view" | "view:feature", ...]
    feature_services: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class FeatureServerConfig:
    host: str = "127.0.0.1"
    port: int = 6566
    min_replicas: int = 1
    max_replicas: int = 2
    target_ongoing_requests: float = 8.0
    replica_cpus: float = 0.25
    max_batch: int = 1000  # entity rows per request; more gets a 413


@dataclass
class OnlineStoreConfig:
    # sqlite (embedded default) or redis. Secrets (REDIS_PASSWORD) come from the environment.
    type: str = "sqlite"
    path: Optional[str] = None  # sqlite file; None: <lake.root>/_online/online.db
    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    prefix: str = "raylake:"


@dataclass
class MaterializeConfig:
    # ISO times; start None = from the beginning, end None = now.
    start: Optional[str] = None
    end: Optional[str] = None
    views: list[str] = field(default_factory=list)


@dataclass
class TrainingSetConfig:
    # The entity rows: a lake table (pinned to a version if given) and its columns.
    entity_table: str = "flights"
    entity_version: Optional[str] = None
    entity_columns: list[str] = field(default_factory=list)
    event_timestamp_column: str = "time_hour"
    # The label: a selection that is true or false per row ("dep_delay > 15").
    label_name: str = "label"
    label: Optional[str] = None
    drop_null_label: bool = True
    # Entity columns needed for the label but not to be learned from (leakage).
    drop_columns: list[str] = field(default_factory=list)
    # A feature service name, or a list of "view" / "view:feature".
    features: list[str] = field(default_factory=list)
    feature_service: Optional[str] = None
    full_feature_names: bool = True
    output_table: str = "training/flights_delay"


@dataclass
class ProfileConfig:
    # Profile each ingested table version in the same pass (stored in _profiles).
    on_ingest: bool = True
    # Also keep one profile per value of this column (e.g. origin).
    segment_by: Optional[str] = None
    actors: int = 2
    actor_cpus: float = 0.5
    batch_rows: int = 100_000


@dataclass
class DriftThreshold:
    # ks, hellinger, psi (numeric); js, chi2_pvalue, hellinger, psi (categorical).
    metric: Optional[str] = None
    threshold: Optional[float] = None


@dataclass
class DriftConfig:
    # Selections of rows ("month in [1]") and/or versions (int or tag) to compare.
    reference: Optional[str] = None
    current: Optional[str] = None
    reference_version: Optional[str] = None
    current_version: Optional[str] = None
    columns: list[str] = field(default_factory=list)
    thresholds: dict[str, DriftThreshold] = field(default_factory=dict)
    # The dataset drifts when at least this share of its columns drifted.
    dataset_share: float = 0.3


@dataclass
class RaylakeConfig:
    lake: LakeConfig = field(default_factory=LakeConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    training_set: TrainingSetConfig = field(default_factory=TrainingSetConfig)
    online: OnlineStoreConfig = field(default_factory=OnlineStoreConfig)
    feature_server: FeatureServerConfig = field(default_factory=FeatureServerConfig)
    materialize: MaterializeConfig = field(default_factory=MaterializeConfig)
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    # The table (and version: an int, a tag or an ISO timestamp) a job reads,
    # for jobs over one table: profile, drift, validate, quality report.
    table: Optional[str] = None
    version: Optional[str] = None
    # Where reports are written; None: <lake.root>/_reports.
    output_dir: Optional[str] = None
    # Set by the CLI: the job being run.
    job: str = "ingest"


def register_configs() -> None:
    """Register the schemas with Hydra; safe to call more than once."""
    cs = ConfigStore.instance()
    cs.store(name="raylake_schema", node=RaylakeConfig)



