"""Model monitoring (``monitor``), outcomes (``outcomes``) and continuous training (``ct``).

Example values (alert rules, windows) live in ``conf/monitor/``; the dataclasses hold
neutral defaults and check what a type cannot say.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Optional

from omegaconf import MISSING

from raylake.config.quality import DriftThreshold
from raylake.config.serving import JoinOn
from raylake.config.values import (
    Choice,
    at_least,
    check_duration,
    choice,
    fraction,
    is_set,
    optional_choice,
    parse_duration,
    positive,
)
from raylake.errors import ConfigValueError


class AlertKind(Choice):
    drift_share = "drift_share"  # share of the features that drifted in a window, above x
    auc_drop = "auc_drop"  # AUC (realised, else CBPE's estimate) below training's by x
    volume_drop = "volume_drop"  # rows in a window fell by this share vs the previous ones
    null_share_jump = "null_share_jump"  # a feature's null share rose by x vs the reference


class CtTrigger(Choice):
    always = "always"  # every run retrains (a schedule: cron, a long-running Ray job)
    # only when an alert of the monitored model was raised after the last triggered ct run
    # (before the first one: any alert), delivered or not
    alert = "alert"
    new_data = "new_data"  # only when the source table has a version newer than training's


class OutcomeFormat(Choice):
    csv = "csv"
    parquet = "parquet"
    jsonl = "jsonl"


@dataclass
class AlertRuleConfig:
    kind: AlertKind = MISSING
    threshold: float = MISSING
    # auc_drop: before outcomes arrive, judge CBPE's estimate (labelled as such).
    use_estimate: bool = True

    def __post_init__(self) -> None:
        if is_set(self.kind):
            self.kind = choice(AlertKind, self.kind, "monitor.alerts.<rule>.kind")


def _time(key: str, value: Optional[str]) -> None:
    """An ISO time key that is set must parse (lake.clock is one layer up; same rule)."""
    if not is_set(value):
        return
    try:
        dt.datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigValueError(f"{key}={value!r} is not an ISO time; write e.g. 2013-07-01 "
                               "or 2013-07-01T06:00:00+00:00.") from None


def _table_at(key: str, value: Optional[str]) -> None:
    if not is_set(value):
        return
    table, sep, version = str(value).rpartition("@")
    if not sep or not table or not version.strip().isdigit():
        raise ConfigValueError(f"{key}={value!r} is not TABLE@VERSION; write e.g. "
                               f"{key}=training/flights_delay@3, or drop it to use the "
                               "model's training set at the version it was trained on.")


def _start(text: object) -> str:
    """The first 12 characters of ``text`` and "...": enough to recognise a bad URL by its
    scheme, short of a token in its path or query (a URL without a scheme, which
    ``redact.redact_url`` leaves whole, included)."""
    text = str(text)
    return text if len(text) <= 12 else text[:12] + "..."


@dataclass
class MonitorConfig:
    # Width of a monitoring window (aligned to the UNIX epoch, lake.clock).
    window: str = "1d"
    # Where results go; None: monitoring/<model name>.
    table: Optional[str] = None
    # TABLE@VERSION; None: the model's training set at the version it was trained on.
    reference: Optional[str] = None
    # ISO bounds of the windows; None: from the first traffic / up to now.
    since: Optional[str] = None
    until: Optional[str] = None
    # The replayed clock (ISO), for replays and backtests; None: the current time.
    now: Optional[str] = None
    # Features to check; empty: the model's.
    features: list[str] = field(default_factory=list)
    # Per column drift test (quality's type); default: the column kind's p-value test.
    thresholds: dict[str, DriftThreshold] = field(default_factory=dict)
    # Performance per segment too ("<column>=<value>" rows).
    segment_by: list[str] = field(default_factory=list)
    # A window with fewer rows records state "too_few_rows" and runs no tests.
    min_rows: int = 30
    out_of_range_share: float = 0.01
    unseen_share: float = 0.01
    null_share_jump: float = 0.1
    profile_table: str = "_live_profiles"
    # None: model_server.request_log_table.
    request_log_table: Optional[str] = None
    # Alert rules by name.
    alerts: dict[str, AlertRuleConfig] = field(default_factory=dict)
    # Alerts are POSTed here as JSON (None: lake and gauges only).
    webhook_url: Optional[str] = None
    webhook_timeout_s: float = 5.0
    # `raylake monitor report` writes here (relative: under the working directory).
    report_dir: str = "reports"

    def __post_init__(self) -> None:
        check_duration(self.window, "monitor.window")
        _table_at("monitor.reference", self.reference)
        for key in ("since", "until", "now"):
            _time(f"monitor.{key}", getattr(self, key))
        at_least("monitor.min_rows", self.min_rows, 1, "30")
        for key in ("out_of_range_share", "unseen_share", "null_share_jump"):
            fraction(f"monitor.{key}", getattr(self, key))
        positive("monitor.webhook_timeout_s", self.webhook_timeout_s, "5")
        for col, t in self.thresholds.items():
            at_least(f"monitor.thresholds.{col}.threshold", t.threshold, 0, "0.001")
        for name, rule in self.alerts.items():
            rule.kind = choice(AlertKind, rule.kind, f"monitor.alerts.{name}.kind")
            at_least(f"monitor.alerts.{name}.threshold", rule.threshold, 0, "0.3")
        if is_set(self.webhook_url) and not str(self.webhook_url).startswith(
                ("http://", "https://")):
            # The URL may hold a token (in its path, for chat webhooks): show its start.
            raise ConfigValueError(f"monitor.webhook_url={_start(self.webhook_url)!r} is not an "
                                   "http(s) URL; write e.g. http://127.0.0.1:9000/alerts.")


@dataclass
class OutcomesConfig:
    # The lake table outcomes go to (and the A/B report and monitor read).
    table: str = "serving/outcomes"
    # What an outcome is keyed by: the request id, or the unit id.
    join_on: JoinOn = JoinOn.request_id
    outcome: str = "outcome"  # the outcome's column in a file
    # The file `raylake outcomes add` reads (CSV, Parquet, JSON Lines).
    path: Optional[str] = None
    # None: by the file's suffix.
    format: Optional[OutcomeFormat] = None
    max_rows_per_request: int = 1000

    def __post_init__(self) -> None:
        self.join_on = choice(JoinOn, self.join_on, "outcomes.join_on")
        self.format = optional_choice(OutcomeFormat, self.format, "outcomes.format")
        at_least("outcomes.max_rows_per_request", self.max_rows_per_request, 1, "1000")


@dataclass
class CtConfig:
    trigger: CtTrigger = CtTrigger.always
    # The training set's window: the last train_window up to now, of which the last
    # `holdout` is the labelled holdout both models are judged on.
    train_window: str = "90d"
    holdout: str = "14d"
    # The challenger's cost must be lower than the champion's by this share.
    margin: float = 0.0
    # A registered version to judge instead of training one (NAME:VERSION or VERSION).
    challenger: Optional[str] = None
    # The replayed clock (ISO); None: the current time.
    now: Optional[str] = None
    promote: bool = True
    # First run the challenger as a shadow arm and decide from the A/B report.
    shadow: bool = False

    def __post_init__(self) -> None:
        self.trigger = choice(CtTrigger, self.trigger, "ct.trigger")
        check_duration(self.train_window, "ct.train_window")
        check_duration(self.holdout, "ct.holdout")
        if is_set(self.train_window) and is_set(self.holdout) and \
                parse_duration(self.holdout, "ct.holdout") >= \
                parse_duration(self.train_window, "ct.train_window"):
            raise ConfigValueError(f"ct.holdout={self.holdout!r} must be shorter than "
                                   f"ct.train_window={self.train_window!r} (the holdout is "
                                   "its last part), e.g. ct.train_window=90d ct.holdout=14d.")
        fraction("ct.margin", self.margin, open_high=True)
        _time("ct.now", self.now)
