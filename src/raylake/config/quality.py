"""Data quality: constraints (the ``quality`` group), profiles and drift."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING

from raylake.config.values import (
    Choice,
    at_least,
    check_duration,
    choice,
    fraction,
    optional_choice,
    ordered,
    positive,
)


class Check(Choice):
    # Row checks: each row passes or fails (quarantine applies to these).
    not_null = "not_null"
    range = "range"
    in_set = "in_set"
    regex = "regex"
    rule = "rule"
    reference = "reference"
    # Table checks: the version as a whole.
    null_share = "null_share"
    unique = "unique"
    row_count = "row_count"
    freshness = "freshness"
    distribution = "distribution"


class Policy(Choice):
    quarantine = "quarantine"  # row checks during ingestion: the row goes aside
    fail = "fail"  # commit nothing
    warn = "warn"  # record it


class DriftMetric(Choice):
    # Numeric columns: pvalue (KS or mean test), ks, ks_pvalue, mean_pvalue, hellinger,
    # psi; categorical: pvalue (chi-square), js, chi2_pvalue, hellinger, psi. A p-value
    # drifts below its threshold, a statistic above it.
    pvalue = "pvalue"
    ks = "ks"
    ks_pvalue = "ks_pvalue"
    mean_pvalue = "mean_pvalue"
    hellinger = "hellinger"
    psi = "psi"
    js = "js"
    chi2_pvalue = "chi2_pvalue"


@dataclass
class ConstraintConfig:
    name: str = MISSING
    check: Check = MISSING
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
    max_age: Optional[str] = None  # freshness: a duration, e.g. 36h, 7d
    as_of: Optional[str] = None  # freshness: the "now" (ISO); default the run time
    policy: Policy = Policy.warn

    def __post_init__(self) -> None:
        where = f"constraint {self.name!r}"
        if self.check != MISSING:
            self.check = choice(Check, self.check, f"{where}: check")
        self.policy = choice(Policy, self.policy, f"{where}: policy")

    def validate(self, key: str) -> None:
        """Value checks, with ``key`` the constraint's full key (a list item knows none)."""
        ordered(f"{key}.min", self.min, f"{key}.max", self.max)
        if self.check == Check.null_share:
            fraction(f"{key}.max", self.max)
        check_duration(self.max_age, f"{key}.max_age")


@dataclass
class TableQualityConfig:
    constraints: list[ConstraintConfig] = field(default_factory=list)


@dataclass
class QualityConfig:
    name: str = "none"
    # Constraints per table name of the lake.
    tables: dict[str, TableQualityConfig] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for table, tq in self.tables.items():
            for i, c in enumerate(tq.constraints):
                c.validate(f"quality.tables.{table}.constraints[{i}]")


@dataclass
class ProfileConfig:
    # Profile each ingested table version in the same pass (stored in _profiles).
    on_ingest: bool = True
    # Also keep one profile per value of this column (e.g. origin).
    segment_by: Optional[str] = None
    # How many profiling tasks run at once and the CPU each reserves (the names are
    # from when they were actors; kept so existing overrides still work).
    actors: int = 2
    actor_cpus: float = 0.5
    batch_rows: int = 100_000

    def __post_init__(self) -> None:
        at_least("profile.actors", self.actors, 1, "2")
        positive("profile.actor_cpus", self.actor_cpus, "0.5")
        at_least("profile.batch_rows", self.batch_rows, 1, "100000")


@dataclass
class DriftThreshold:
    # None: the column kind's default (pvalue below 0.001, raylake.quality.drift.ALPHA).
    metric: Optional[DriftMetric] = None
    threshold: Optional[float] = None

    def __post_init__(self) -> None:
        self.metric = optional_choice(DriftMetric, self.metric, "drift threshold metric")


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

    def __post_init__(self) -> None:
        fraction("drift.dataset_share", self.dataset_share)
        for col, t in self.thresholds.items():
            at_least(f"drift.thresholds.{col}.threshold", t.threshold, 0, "0.1")
