"""Serving models: the model server (the ``serve`` group), its A/B arms and report,
and batch prediction."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from omegaconf import MISSING

from raylake.config.values import (
    Choice,
    at_least,
    check_duration,
    choice,
    port,
    positive,
    replicas,
)
from raylake.errors import ConfigValueError


class JoinOn(Choice):
    request_id = "request_id"  # one observation per request
    unit_id = "unit_id"  # one observation per unit (the randomised unit)


class LogKeys(Choice):
    """What the model server's request log keeps of entity keys classified pii or restricted."""

    hash = "hash"  # keyed HMAC-SHA256 (governance.key_env): joins and erasure still work
    keep = "keep"  # the values as requested
    drop = "drop"  # not logged


class AbMetric(Choice):
    auto = "auto"  # rate for 0/1 outcomes, else mean
    rate = "rate"
    mean = "mean"


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
    # Request limits (docs/security.md#http): a body over max_body_bytes gets a 413, a
    # longer string (or unit_id) a 422, deeper nesting a 400.
    max_body_bytes: int = 1_048_576
    max_string_length: int = 1024
    max_unit_id_length: int = 256
    max_depth: int = 8
    # API keys (never in config): a file of NAME:SCOPES:SECRET lines, re-read when it
    # changes, and/or the RAYLAKE_API_KEYS environment variable. With keys, /predict needs
    # the read scope; without, it is open.
    api_keys_file: Optional[str] = None
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
    # Local folder where each replica spools its log rows until they are in the lake (a
    # killed replica's rows are committed by the next replica on its node); one
    # subfolder per table. None: the system temp folder.
    log_spool_dir: Optional[str] = None
    # The request's entity keys are logged (column `entities`); those whose column is
    # classified pii or restricted in a feature view's table (`_classification`) are
    # hashed with the key in governance.key_env (a server that has such keys to hash and
    # no key refuses to start), kept, or dropped.
    log_keys: LogKeys = LogKeys.hash
    # Where `raylake serve` writes the Serve config for `serve deploy`; None: not written.
    config_file: Optional[str] = None
    # Live-traffic profiles (serve/live_profile.py): each replica profiles the features
    # and predictions it answers, per arm and per `profile_window` (epoch-aligned), and
    # appends one row per window to the system table `profile_table` (`raylake monitor`
    # reads them). Off: nothing is profiled (`raylake profile-requests` can do it later
    # from the request log).
    live_profile: bool = True
    profile_window: str = "1h"
    profile_table: str = "_live_profiles"
    # Honour the request header `X-Raylake-Clock: <ISO time>` as the request's time (the
    # TTL of looked-up features, the request log's `at`, the profile window): for
    # replays and backtests only. Off: the header is refused (400).
    replay_clock: bool = False
    # Seconds between re-reads of the `_alerts` table and the monitoring tables into
    # the replicas' Prometheus gauges (serve/alert_gauges.py); 0: no gauges.
    alerts_refresh_s: float = 60.0

    def __post_init__(self) -> None:
        self.log_keys = choice(LogKeys, self.log_keys, "model_server.log_keys")
        port("model_server.port", self.port)
        check_duration(self.profile_window, "model_server.profile_window")
        replicas("model_server", self.min_replicas, self.max_replicas)
        for name in ("replica_cpus", "target_ongoing_requests", "log_flush_s"):
            positive(f"model_server.{name}", getattr(self, name))
        for name in ("upscale_delay_s", "downscale_delay_s", "batch_wait_timeout_s",
                     "alerts_refresh_s"):
            at_least(f"model_server.{name}", getattr(self, name), 0)
        for name in ("max_batch_size", "max_rows", "log_flush_rows", "max_ongoing_requests",
                     "max_string_length", "max_unit_id_length"):
            at_least(f"model_server.{name}", getattr(self, name), 1)
        at_least("model_server.max_body_bytes", self.max_body_bytes, 1024, "1048576")
        at_least("model_server.max_depth", self.max_depth, 4, "8")
        for name, arm in self.arms.items():
            at_least(f"model_server.arms.{name}.weight", arm.weight, 0, "0.1")


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

    def __post_init__(self) -> None:
        at_least("batch_predict.actors", self.actors, 1, "2")
        positive("batch_predict.actor_cpus", self.actor_cpus, "0.5")
        at_least("batch_predict.threads_per_actor", self.threads_per_actor, 1, "1")
        at_least("batch_predict.batch_rows", self.batch_rows, 1, "250000")


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
    join_on: JoinOn = JoinOn.request_id
    outcome: str = "outcome"  # its column: 0/1 (a rate) or numbers (a mean)
    metric: AbMetric = AbMetric.auto
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
        self.join_on = choice(JoinOn, self.join_on, "ab_report.join_on")
        self.metric = choice(AbMetric, self.metric, "ab_report.metric")
        for key in ("alpha", "power"):
            if not 0 < getattr(self, key) < 1:
                raise ConfigValueError(f"ab_report.{key}={getattr(self, key)!r} must be in "
                                       "(0, 1), e.g. alpha=0.05 power=0.8")
        if self.mde is not None and not self.mde > 0:
            raise ConfigValueError(f"ab_report.mde={self.mde!r} must be a positive difference "
                                   "(e.g. 0.02 for two points of a rate)")
