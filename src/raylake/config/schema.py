"""The typed shape of raylake's configuration: the root, assembled from the domains.

Hydra validates every YAML file and override against these dataclasses, so a
misspelled key or a value of the wrong type is an error rather than a silent
default. Each domain's dataclasses live in their own module (lake, ingest,
quality, features, training, serving) and check what a type cannot say in
``__post_init__``; this module re-exports them all, so
``from raylake.config.schema import X`` works for every config class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from hydra.core.config_store import ConfigStore

from raylake.config.active_labeling import (
    ActiveLabelingConfig,
    IssuesConfig,
    QueryStrategy,
    SemiConfig,
    SemiMethod,
)
from raylake.config.features import (
    AggFunction,
    AggregationConfig,
    EntityConfig,
    FeatureConfig,
    FeaturesConfig,
    FeatureServerConfig,
    FeatureViewConfig,
    MaterializeConfig,
    OnDemandFeatureViewConfig,
    OnlineStoreConfig,
    OnlineStoreType,
    TrainingSetConfig,
)
from raylake.config.governance import (
    DataClass,
    DateUnit,
    Entity,
    GovernanceConfig,
    OpenLineageConfig,
    PolicyAction,
    PolicyConfig,
    RetentionConfig,
    ScanConfig,
)
from raylake.config.ingest import (
    CleanseOp,
    CleanseStepConfig,
    ColumnConfig,
    CsvConfig,
    DatasetConfig,
    ImputeStrategy,
    IngestConfig,
    InjectFailure,
    SourceConfig,
    SourceFormat,
    TableConfig,
    WriteMode,
)
from raylake.config.labeling import (
    DevSetConfig,
    EndModelConfig,
    LabelingConfig,
    LabelModelConfig,
    LabelModelKind,
    LFConfig,
    LFKind,
    ThresholdOp,
)
from raylake.config.lake import LakeConfig, LogLevel, RayConfig
from raylake.config.monitoring import (
    AlertKind,
    AlertRuleConfig,
    CtConfig,
    CtTrigger,
    MonitorConfig,
    OutcomeFormat,
    OutcomesConfig,
)
from raylake.config.quality import (
    Check,
    ConstraintConfig,
    DriftConfig,
    DriftMetric,
    DriftThreshold,
    Policy,
    ProfileConfig,
    QualityConfig,
    TableQualityConfig,
)
from raylake.config.recsys import IndexKind, RecommendServerConfig, RecsysConfig, TwoTowerSettings
from raylake.config.replay import ReplayConfig
from raylake.config.serving import (
    AbMetric,
    AbReportConfig,
    ArmConfig,
    BatchPredictConfig,
    JoinOn,
    LogKeys,
    ModelServerConfig,
)
from raylake.config.synth import (
    AugmentConfig,
    SynthConfig,
    SynthKind,
    SynthReportConfig,
    SynthScalingConfig,
)
from raylake.config.training import (
    CostConfig,
    DdpBackend,
    ScalingSettings,
    SchedulerType,
    SplitConfig,
    TimeAttr,
    TorchSettings,
    TrainConfig,
    TuneConfig,
    TuneMode,
    TuneSchedulerConfig,
    XGBoostSettings,
)
from raylake.config.values import Choice, ColumnType

__all__ = [
    "ActiveLabelingConfig", "IssuesConfig", "QueryStrategy", "SemiConfig", "SemiMethod",
    "AbMetric", "AbReportConfig", "AggFunction", "AggregationConfig", "AlertKind",
    "AlertRuleConfig", "ArmConfig", "CtConfig", "CtTrigger", "MonitorConfig", "OutcomeFormat",
    "OutcomesConfig",
    "BatchPredictConfig", "Check", "Choice", "CleanseOp", "CleanseStepConfig", "ColumnConfig",
    "ColumnType", "ConstraintConfig", "CostConfig", "CsvConfig", "DatasetConfig", "DdpBackend",
    "DriftConfig", "DriftMetric", "DriftThreshold", "EntityConfig", "FeatureConfig",
    "FeatureServerConfig", "FeatureViewConfig", "FeaturesConfig", "ImputeStrategy",
    "IngestConfig", "InjectFailure", "JoinOn", "LakeConfig", "LogKeys", "MaterializeConfig",
    "ModelServerConfig", "OnDemandFeatureViewConfig", "OnlineStoreConfig", "OnlineStoreType",
    "LogLevel", "Policy", "ProfileConfig", "QualityConfig", "RayConfig", "RaylakeConfig", "ReplayConfig",
    "ScalingSettings", "SchedulerType", "SourceConfig", "SourceFormat", "SplitConfig",
    "TableConfig", "TableQualityConfig", "TimeAttr", "TorchSettings", "TrainConfig",
    "TrainingSetConfig", "TuneConfig", "TuneMode", "TuneSchedulerConfig", "WriteMode",
    "XGBoostSettings", "register_configs",
    "DevSetConfig", "EndModelConfig", "LFConfig", "LFKind", "LabelModelConfig", "LabelModelKind",
    "LabelingConfig", "ThresholdOp",
    "DataClass", "DateUnit", "Entity", "GovernanceConfig", "OpenLineageConfig", "PolicyAction",
    "PolicyConfig", "RetentionConfig", "ScanConfig",
    "IndexKind", "RecommendServerConfig", "RecsysConfig", "TwoTowerSettings",
    "AugmentConfig", "SynthConfig", "SynthKind", "SynthReportConfig", "SynthScalingConfig",
]


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
    # Model monitoring, outcomes and continuous training (config/monitoring.py).
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    outcomes: OutcomesConfig = field(default_factory=OutcomesConfig)
    ct: CtConfig = field(default_factory=CtConfig)
    # `raylake replay`: monitoring and CT backtested on a replayed clock (config/replay.py).
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    # Weak supervision: labeling functions, label matrix, label model (config/labeling.py).
    labeling: LabelingConfig = field(default_factory=LabelingConfig)
    # PII scan and classification, policies, retention, erasure, OpenLineage
    # (config/governance.py).
    governance: GovernanceConfig = field(default_factory=GovernanceConfig)
    # Synthetic tabular data: copula, TVAE, CTGAN; sampling, augmentation, the report
    # (config/synth.py).
    synth: SynthConfig = field(default_factory=SynthConfig)
    # Recommendations: two-tower retrieval, the item index, POST /recommend
    # (config/recsys.py).
    recsys: RecsysConfig = field(default_factory=RecsysConfig)
    # A registered model, NAME[:VERSION|champion|latest], for jobs that use one.
    model: Optional[str] = None
    tune: TuneConfig = field(default_factory=TuneConfig)
    # Active learning, the labeling page, semi-supervised training, label issues
    # (config/active_labeling.py).
    active_labeling: ActiveLabelingConfig = field(default_factory=ActiveLabelingConfig)
    # The table (and version: an int, a tag or an ISO timestamp) a job reads,
    # for jobs over one table: profile, drift, validate, quality report.
    table: Optional[str] = None
    version: Optional[str] = None
    # Where reports are written; None: <lake.root>/_reports.
    output_dir: Optional[str] = None
    # Set by the CLI: the job being run.
    job: str = "ingest"
    # The terminal of `raylake <job>` and jobs/*.py (a job called from Python is left
    # alone): Ray's own lines at log_level or above are shown, all of them go to a log
    # file in log_dir (None: <lake.root>/_logs for a local lake, else .raylake/logs);
    # progress: Ray Data's progress bars (None: on an interactive terminal only).
    log_level: LogLevel = LogLevel.ERROR
    log_dir: Optional[str] = None
    progress: Optional[bool] = None


def register_configs() -> None:
    """Register the schemas with Hydra; safe to call more than once."""
    cs = ConfigStore.instance()
    if "raylake_schema.yaml" not in cs.repo:  # storing builds the schema: a quarter second
        cs.store(name="raylake_schema", node=RaylakeConfig)
