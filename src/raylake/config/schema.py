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
class ArmConfig:
    # A registered model, NAME[:VERSION|champion|latest]; pinned to a version at deploy.
    model: str = MISSING
    # Share of the traffic (weights are normalised over the non-shadow arms).
    weight: float = 1.0
    # A shadow arm gets a copy of every request; its answer is logged, never returned.
    shadow: bool = False


@dataclass
class ModelServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    # Autoscaling of the model deployment (Ray Serve's autoscaling_config).
    min_replicas: int = 1
    max_replicas: int = 2
    target_ongoing_requests: float = 8.0
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 600.0
    replica_cpus: float = 0.25  # fractional: replicas share a small machine with other work
    # Requests a replica holds at once; at least max_batch_size, or batches stay small.
    max_ongoing_requests: int = 64
    # @serve.batch: requests scored together (one model call per arm).
    max_batch_size: int = 32
    batch_wait_timeout_s: float = 0.005
    max_rows: int = 1000  # rows per request; more gets a 413
    # A/B test: arm name -> model, weight, shadow. Empty: one arm "main" serving `model`.
    arms: dict[str, ArmConfig] = field(default_factory=dict)
    # Mixed into the assignment hash: a new salt reshuffles units between arms.
    salt: str = "raylake"
    # Entity-key requests look features up in the online store through this feature
    # service; None: requests must carry the feature values.
    feature_service: Optional[str] = None
    # Request log: every request and answer, appended in batches (None: no log).
    request_log_table: Optional[str] = "serving/requests"
    log_flush_rows: int = 500
    log_flush_s: float = 5.0
    # Where `raylake serve` writes the Serve config for `serve deploy`; None: not written.
    config_file: Optional[str] = None

    def __post_init__(self) -> None:
        if not 0 < self.min_replicas <= self.max_replicas and not (
                self.min_replicas == 0 and self.max_replicas > 0):
            raise ValueError(f"model_server: need 0 <= min_replicas ({self.min_replicas}) <= "
                             f"max_replicas ({self.max_replicas}) and max_replicas >= 1")
        for name in ("replica_cpus", "target_ongoing_requests", "log_flush_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"model_server.{name} must be > 0")
        for name in ("max_batch_size", "max_rows", "log_flush_rows", "max_ongoing_requests"):
            if getattr(self, name) < 1:
                raise ValueError(f"model_server.{name} must be at least 1")


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
    # Feature tables with fewer rows are joined by broadcast, larger ones shuffled
    # (None: raylake's default, 1,000,000 rows; 0 shuffles every view).
    broadcast_rows: Optional[int] = None


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
class SplitConfig:
    # Time-based splits: train < valid_start <= valid < test_start <= test. Without
    # dates, the time range is cut by fractions (the last test_fraction is test).
    time_column: str = "time_hour"
    valid_start: Optional[str] = None
    test_start: Optional[str] = None
    valid_fraction: float = 0.15
    test_fraction: float = 0.15


@dataclass
class ScalingSettings:
    # Ray Train's ScalingConfig: workers, GPUs and the resources each worker holds.
    num_workers: int = 2
    use_gpu: bool = False
    cpus_per_worker: float = 0.5
    # Threads a worker computes with (XGBoost nthread, torch threads); None: its CPUs,
    # at least 1. Resources are for scheduling; threads may exceed a fractional share.
    threads_per_worker: Optional[int] = None
    # DDP backend for torch: gloo on CPU, nccl on GPUs; None picks by use_gpu.
    backend: Optional[str] = None


@dataclass
class CostConfig:
    # The business metric: what a missed delay and a false alarm cost, giving the
    # expected cost per `per` flights against doing nothing (predicting no delay).
    missed: float = 100.0
    false_alarm: float = 20.0
    per: int = 1000


@dataclass
class XGBoostSettings:
    params: dict[str, Any] = field(default_factory=lambda: {
        "objective": "binary:logistic", "eval_metric": ["logloss", "auc"],
        "tree_method": "hist", "max_depth": 8, "eta": 0.1, "subsample": 0.8,
        "colsample_bytree": 0.8, "max_bin": 256})
    num_boost_round: int = 100
    early_stopping_rounds: Optional[int] = None


@dataclass
class TorchSettings:
    epochs: int = 5
    batch_size: int = 4096
    lr: float = 0.003
    weight_decay: float = 0.0
    embedding_dim: int = 8
    hidden: list[int] = field(default_factory=lambda: [64, 32])
    dropout: float = 0.1


@dataclass
class TrainConfig:
    name: str = "xgboost"
    trainer: str = "xgboost"  # xgboost | torch
    # The registered model's name, and whether to register the result as a candidate.
    model_name: str = "delay_model"
    register: bool = True
    # The training set: a lake table at a version (None: the latest, recorded).
    table: str = "training/flights_delay"
    table_version: Optional[str] = None
    label: str = "delayed"
    # Columns to learn from; empty: every column but the label, the split's time
    # column and `exclude`. Categorical ones are encoded with a vocabulary from train.
    features: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    split: SplitConfig = field(default_factory=SplitConfig)
    scaling: ScalingSettings = field(default_factory=ScalingSettings)
    xgboost: XGBoostSettings = field(default_factory=XGBoostSettings)
    torch: TorchSettings = field(default_factory=TorchSettings)
    # Report (and checkpoint) every N boosting rounds or epochs; retries of a failed run.
    checkpoint_every: int = 25
    max_failures: int = 2
    seed: int = 42
    cost: CostConfig = field(default_factory=CostConfig)
    # Ray Train's storage for checkpoints; None: <lake.root>/_train.
    storage_path: Optional[str] = None
    # Re-train from a run record's exact inputs and config (`raylake train --from-run`).
    from_run: Optional[str] = None


@dataclass
class TuneSchedulerConfig:
    # asha: stop trials whose metric trails the others' at each rung (grace_period,
    # grace_period * reduction_factor, ... up to max_t, in `time_attr` units); fifo:
    # run every trial to its end.
    type: str = "asha"
    # None: the trainer's whole budget (xgboost.num_boost_round, torch.epochs).
    max_t: Optional[int] = None
    grace_period: int = 10
    reduction_factor: float = 2.0

    def __post_init__(self) -> None:
        if self.type not in ("asha", "fifo"):
            raise ValueError(f"tune.scheduler.type={self.type!r} is not one of asha, fifo")
        if self.grace_period < 1 or (self.max_t is not None and self.grace_period > self.max_t):
            raise ValueError(f"tune.scheduler: grace_period={self.grace_period} must be >= 1 "
                             f"and <= max_t={self.max_t}")
        if self.reduction_factor <= 1:
            raise ValueError("tune.scheduler.reduction_factor must be > 1 (ASHA keeps the "
                             "best 1/reduction_factor of the trials at each rung)")


@dataclass
class TuneConfig:
    name: str = "xgboost"
    # The trainer the space's keys are written for; a sweep under another
    # train.trainer is refused. None: any trainer.
    trainer: Optional[str] = "xgboost"
    # A metric the trainer reports (valid_logloss, valid_auc, ...) and whether lower is better.
    metric: str = "valid_logloss"
    mode: str = "min"
    # The reported counter trial time is measured in: round (xgboost), epoch (torch).
    time_attr: str = "round"
    # Samples drawn from the space; each `grid` entry multiplies them.
    num_samples: int = 4
    # Trials at once. Each trial's Ray Train workers hold train.scaling CPUs: on a
    # small machine one at a time leaves CPUs for Ray Data to feed them.
    max_concurrent_trials: int = 1
    # CPUs of a trial's own process, which only starts and waits for Ray Train (the
    # workers reserve their own). Even 0.01 matters: a Ray Data read task holding one
    # whole CPU then no longer fits next to the workers on a 2-CPU machine.
    trial_cpus: float = 0.0
    # Inside trials the trainer reports every N rounds or epochs (train.checkpoint_every):
    # ASHA can only stop a trial at a report.
    report_every: int = 5
    scheduler: TuneSchedulerConfig = field(default_factory=TuneSchedulerConfig)
    # Dotted train-config key -> one distribution: {choice: [a, b]}, {uniform: [lo, hi]},
    # {loguniform: [lo, hi]}, {randint: [lo, hi]} (hi excluded), {grid: [a, b]} (every value).
    space: dict[str, dict[str, Any]] = field(default_factory=dict)
    seed: int = 42
    # The lake table of the sweep's trials (appended); None: tune/<train.model_name>_trials.
    trials_table: Optional[str] = None
    # Register the best trial's model as a candidate of train.model_name.
    register: bool = True
    # Tune's experiment state; None: <lake.root>/_tune.
    storage_path: Optional[str] = None

    def __post_init__(self) -> None:
        if self.mode not in ("min", "max"):
            raise ValueError(f"tune.mode={self.mode!r} is not one of min, max")
        for name, value in (("num_samples", self.num_samples),
                            ("max_concurrent_trials", self.max_concurrent_trials),
                            ("report_every", self.report_every)):
            if value < 1:
                raise ValueError(f"tune.{name}={value} must be at least 1")
        if self.trial_cpus < 0:
            raise ValueError(f"tune.trial_cpus={self.trial_cpus} must be >= 0")


@dataclass
class BatchPredictConfig:
    # Where predictions go; None: predictions/<model name>.
    output_table: Optional[str] = None
    # Input columns carried next to each prediction; empty: every non-feature column.
    keep_columns: list[str] = field(default_factory=list)
    # The actor pool: each actor loads the model once and scores `batch_rows` at a time.
    actors: int = 2
    actor_cpus: float = 0.5
    threads_per_actor: int = 1
    batch_rows: int = 250_000


@dataclass
class AbReportConfig:
    """`raylake ab report`: an A/B experiment's logged answers joined with outcomes."""

    # The experiment: model_server.salt of the deployment (the request log's
    # `experiment` column); None: the configured model_server.salt.
    experiment: Optional[str] = None
    # None: model_server.request_log_table.
    request_log_table: Optional[str] = None
    # A lake table of outcomes that arrived later, keyed by `join_on`.
    outcomes_table: Optional[str] = None
    join_on: str = "request_id"  # or unit_id: one observation per unit (the randomised unit)
    outcome: str = "outcome"  # its column: 0/1 (a rate) or numbers (a mean)
    metric: str = "auto"  # auto | rate | mean
    control: Optional[str] = None  # None: the arm named "control", else the heaviest arm
    alpha: float = 0.05
    power: float = 0.8
    # The smallest difference worth detecting, for the sample size; None: the observed one.
    mde: Optional[float] = None
    since: Optional[str] = None  # ISO times bounding the requests' `at`
    until: Optional[str] = None
    # Each report is appended here (None: not written).
    report_table: Optional[str] = "ab/reports"

    def __post_init__(self) -> None:
        if self.join_on not in ("request_id", "unit_id"):
            raise ValueError(f"ab_report.join_on={self.join_on!r}: use request_id or unit_id")
        if self.metric not in ("auto", "rate", "mean"):
            raise ValueError(f"ab_report.metric={self.metric!r}: use auto, rate or mean")
        for key in ("alpha", "power"):
            if not 0 < getattr(self, key) < 1:
                raise ValueError(f"ab_report.{key}={getattr(self, key)!r} must be in (0, 1), "
                                 "e.g. alpha=0.05 power=0.8")
        if self.mde is not None and not self.mde > 0:
            raise ValueError(f"ab_report.mde={self.mde!r} must be a positive difference "
                             "(e.g. 0.02 for two points of a rate)")


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
    model_server: ModelServerConfig = field(default_factory=ModelServerConfig)
    materialize: MaterializeConfig = field(default_factory=MaterializeConfig)
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    batch_predict: BatchPredictConfig = field(default_factory=BatchPredictConfig)
    ab_report: AbReportConfig = field(default_factory=AbReportConfig)
    # A registered model, NAME[:VERSION|champion|latest], for jobs that use one.
    model: Optional[str] = None
    tune: TuneConfig = field(default_factory=TuneConfig)
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



