"""Feature definitions (the ``features`` group), the online store, materialization,
training sets and the feature server."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Optional

from omegaconf import MISSING

from raylake.config.values import (
    Choice,
    ColumnType,
    at_least,
    check_duration,
    choice,
    is_set,
    port,
    positive,
    replicas,
)
from raylake.errors import ConfigValueError


class AggFunction(Choice):
    # Members are named as their values (the YAML reads names): `count` hides str.count.
    mean = "mean"
    sum = "sum"
    count = "count"  # type: ignore[assignment]
    min = "min"
    max = "max"


class OnlineStoreType(Choice):
    sqlite = "sqlite"  # an embedded file, the default
    redis = "redis"


@dataclass
class EntityConfig:
    join_keys: list[str] = field(default_factory=list)
    # The type of the join keys' values: requests are checked against it.
    value_type: ColumnType = ColumnType.string
    description: str = ""

    def __post_init__(self) -> None:
        self.value_type = choice(ColumnType, self.value_type, "entity value_type")


@dataclass
class FeatureConfig:
    type: ColumnType = ColumnType.float64
    description: str = ""

    def __post_init__(self) -> None:
        self.type = choice(ColumnType, self.type, "feature type")


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
    # How old a feature row may be at the entity's time (a duration: 2h, 7d); None: no limit.
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
    functions: list[AggFunction] = field(
        default_factory=lambda: [AggFunction.mean, AggFunction.count])
    window: str = "7d"  # durations
    step: str = "1d"
    output_table: str = MISSING

    def __post_init__(self) -> None:
        self.functions = [choice(AggFunction, f, "aggregation function")
                          for f in self.functions]


@dataclass
class OnDemandFeatureViewConfig:
    # "package.module:function": DataFrame of inputs -> DataFrame of the features below.
    function: str = MISSING
    # Feature views whose features the function reads (by their plain names).
    sources: list[str] = field(default_factory=list)
    # Fields that come with each request or entity row: name -> type.
    request: dict[str, ColumnType] = field(default_factory=dict)
    features: dict[str, FeatureConfig] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        self.request = {k: choice(ColumnType, t, f"request field {k!r} type")
                        for k, t in self.request.items()}


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

    def __post_init__(self) -> None:
        # Views and aggregations sit in mappings: only here is their full key known.
        for name, entity in self.entities.items():
            if not entity.join_keys:
                raise ConfigValueError(f"features.entities.{name}.join_keys is empty; name "
                                       f"the key columns, e.g. join_keys: [{name}_id].")
        for name, view in self.feature_views.items():
            check_duration(view.ttl, f"features.feature_views.{name}.ttl")
        for name, agg in self.aggregations.items():
            check_duration(agg.window, f"features.aggregations.{name}.window")
            check_duration(agg.step, f"features.aggregations.{name}.step")
            if not agg.functions:
                raise ConfigValueError(f"features.aggregations.{name}.functions is empty; "
                                       "e.g. functions: [mean, count].")


@dataclass
class OnlineStoreConfig:
    # Secrets (REDIS_PASSWORD) come from the environment.
    type: OnlineStoreType = OnlineStoreType.sqlite
    path: Optional[str] = None  # sqlite file; None: <lake.root>/_online/online.db
    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    prefix: str = "raylake:"

    def __post_init__(self) -> None:
        self.type = choice(OnlineStoreType, self.type, "online.type")
        port("online.port", self.port)
        at_least("online.db", self.db, 0, "0")


@dataclass
class MaterializeConfig:
    # ISO times; start None = from the beginning, end None = now.
    start: Optional[str] = None
    end: Optional[str] = None
    views: list[str] = field(default_factory=list)


@dataclass
class TrainingSetConfig:
    # The entity rows: a lake table (pinned to a version if given) and its columns.
    entity_table: str = MISSING
    entity_version: Optional[str] = None
    entity_columns: list[str] = field(default_factory=list)
    event_timestamp_column: str = MISSING
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
    output_table: str = MISSING
    # Feature tables with fewer rows are joined by broadcast, larger ones shuffled
    # (None: raylake's default, 1,000,000 rows; 0 shuffles every view).
    broadcast_rows: Optional[int] = None
    # Only entity rows whose event time is in [start, end) (ISO times, naive = UTC;
    # None: no bound): `raylake ct` rebuilds the training set on a recent window.
    start: Optional[str] = None
    end: Optional[str] = None

    def __post_init__(self) -> None:
        at_least("training_set.broadcast_rows", self.broadcast_rows, 0, "1000000")
        bounds = [_iso_time(f"training_set.{k}", v)
                  for k, v in (("start", self.start), ("end", self.end))]
        if bounds[0] is not None and bounds[1] is not None and bounds[0] >= bounds[1]:
            raise ConfigValueError(f"training_set.start={self.start!r} is not before "
                                   f"training_set.end={self.end!r}; the window is [start, end).")
        if not self.label_name:
            raise ConfigValueError("training_set.label_name is empty; name the label "
                                   "column, e.g. training_set.label_name=delayed.")


def _iso_time(key: str, text: Optional[str]) -> Optional[dt.datetime]:
    """``text`` as an aware UTC datetime (naive = UTC); None when unset."""
    if not is_set(text):
        return None
    try:
        t = dt.datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigValueError(f"{key}={text!r} is not an ISO time; write e.g. 2013-07-01 "
                               "or 2013-07-01T06:00:00+00:00.") from None
    return t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t


@dataclass
class FeatureServerConfig:
    host: str = "127.0.0.1"
    port: int = 6566
    min_replicas: int = 1
    max_replicas: int = 2
    target_ongoing_requests: float = 8.0
    replica_cpus: float = 0.25
    # Request limits (docs/security.md#http). Entity rows, pushed rows and features per
    # request: more gets a 413, as does a body over max_body_bytes; longer text a 422.
    max_batch: int = 1000
    max_body_bytes: int = 1_048_576
    max_string_length: int = 1024
    max_depth: int = 8  # nesting of lists and objects in a body; deeper gets a 400
    # API keys (never in config): a file of NAME:SCOPES:SECRET lines, re-read when it
    # changes, and/or the RAYLAKE_API_KEYS environment variable. No key: reads are open
    # and /push is off.
    api_keys_file: Optional[str] = None
    # Features whose lake column is classified `restricted` (the `_classification` table,
    # docs/governance.md) are refused (403) unless listed here: "view:feature", or "view"
    # for all of a view's features.
    allow_restricted: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for i, name in enumerate(self.allow_restricted):
            view, _, feature = str(name).partition(":")
            if not view or (":" in str(name) and not feature):
                raise ConfigValueError(
                    f"feature_server.allow_restricted[{i}]={name!r} is not a feature or a "
                    "view; write view:feature (e.g. customers:card) or view.")
        port("feature_server.port", self.port)
        replicas("feature_server", self.min_replicas, self.max_replicas)
        positive("feature_server.target_ongoing_requests", self.target_ongoing_requests, "8")
        positive("feature_server.replica_cpus", self.replica_cpus, "0.25")
        at_least("feature_server.max_batch", self.max_batch, 1, "1000")
        at_least("feature_server.max_body_bytes", self.max_body_bytes, 1024, "1048576")
        at_least("feature_server.max_string_length", self.max_string_length, 1, "1024")
        at_least("feature_server.max_depth", self.max_depth, 4, "8")
