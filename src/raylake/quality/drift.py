"""Drift between two profiles, column by column, and a verdict for the dataset.

Numeric columns compare quantile sketches: Kolmogorov-Smirnov (the largest
gap between the two CDFs, with its p-value), Hellinger distance and PSI over
bins at the reference's deciles. Categorical columns compare frequent-item
counts: chi-square (p-value), Jensen-Shannon distance, Hellinger and PSI.
Each column is judged by one metric against a threshold; the dataset drifts
when the share of drifted columns reaches ``dataset_share``. Statistics, not
p-values, decide by default: with many rows every tiny shift is "significant".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats
from scipy.spatial.distance import jensenshannon

from raylake.errors import ConfigError
from raylake.quality.profile import Profile

METRICS = ("ks", "hellinger", "psi", "js", "chi2_pvalue")
DEFAULTS = {"numeric": ("ks", 0.1), "categorical": ("js", 0.1)}
_EPS = 1e-6


@dataclass
class ColumnDrift:
    column: str
    kind: str
    metric: str
    threshold: float
    value: float
    drifted: bool
    scores: dict[str, float] = field(default_factory=dict)


@dataclass
class DriftReport:
    columns: list[ColumnDrift]
    dataset_share: float
    reference_rows: int
    current_rows: int

    @property
    def drifted_columns(self) -> list[str]:
        """The names of the columns judged drifted."""
        return [c.column for c in self.columns if c.drifted]

    @property
    def share(self) -> float:
        """The share of compared columns that drifted (0.0 when none was compared)."""
        return len(self.drifted_columns) / len(self.columns) if self.columns else 0.0

    @property
    def drifted(self) -> bool:
        """True when the share of drifted columns reaches ``dataset_share`` (never when no
        column was compared)."""
        return bool(self.columns) and self.share >= self.dataset_share

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready dicts: verdict, share, drifted columns, row counts and
        every column's scores."""
        return {
            "drifted": self.drifted, "share": round(self.share, 4),
            "dataset_share": self.dataset_share, "drifted_columns": self.drifted_columns,
            "reference_rows": self.reference_rows, "current_rows": self.current_rows,
            "columns": [c.__dict__ for c in self.columns],
        }


def compare(reference: Profile, current: Profile, *, columns: list[str] | None = None,
            thresholds: dict[str, dict[str, Any]] | None = None,
            dataset_share: float = 0.3) -> DriftReport:
    """Drift of ``current`` against ``reference`` for ``columns`` (default: every column in
    both profiles), each judged by its kind's default metric or the ``metric`` and
    ``threshold`` of ``thresholds[column]``; columns empty in either profile, or of
    different kinds, are skipped. ConfigError for a column not in both profiles or a metric
    its kind lacks."""
    thresholds = thresholds or {}
    shared = [c for c in reference.columns if c in current.columns]
    wanted = columns or shared
    missing = [c for c in wanted if c not in shared]
    if missing:
        raise ConfigError(f"Columns {missing} are not in both profiles; profiled: {shared}.")
    results = []
    for col in wanted:
        ref, cur = reference.summary(col), current.summary(col)
        if ref.kind == "empty" or cur.kind == "empty" or ref.kind != cur.kind:
            continue
        scores = _numeric(reference, current, col) if ref.kind == "numeric" else \
            _categorical(reference, current, col)
        metric, threshold = DEFAULTS[ref.kind]
        override = thresholds.get(col, {})
        metric = override.get("metric", metric)
        threshold = float(override.get("threshold", threshold))
        if metric not in scores:
            raise ConfigError(
                f"Drift metric {metric!r} for column {col!r} ({ref.kind}) is not one of "
                f"{sorted(scores)}."
            )
        value = scores[metric]
        drifted = value < threshold if metric.endswith("pvalue") else value > threshold
        results.append(ColumnDrift(col, ref.kind, metric, threshold, round(value, 6), drifted,
                                   {k: round(v, 6) for k, v in scores.items()}))
    return DriftReport(results, dataset_share, reference.rows, current.rows)


def _numeric(reference: Profile, current: Profile, col: str) -> dict[str, float]:
    r, c = reference.summary(col), current.summary(col)
    (r_lo, r_hi), (c_lo, c_hi) = r.bounds(), c.bounds()
    lo, hi = min(r_lo, c_lo), max(r_hi, c_hi)
    grid = np.unique(np.concatenate([np.linspace(lo, hi, 512),
                                     list(r.quantiles.values()), list(c.quantiles.values())]))
    cdf_r, cdf_c = reference.cdf(col, list(grid)), current.cdf(col, list(grid))
    ks = float(np.max(np.abs(cdf_r - cdf_c)))
    n, m = r.count - r.nulls, c.count - c.nulls
    n_eff = max(1, round(n * m / (n + m))) if n and m else 1
    edges = np.unique(reference_deciles(reference, col))
    p = _bin_probs(reference, col, edges)
    q = _bin_probs(current, col, edges)
    return {"ks": ks, "ks_pvalue": float(stats.kstwo.sf(ks, n_eff)),
            "hellinger": _hellinger(p, q), "psi": _psi(p, q)}


def reference_deciles(profile: Profile, col: str) -> list[float]:
    """The 10th to 90th percentiles of numeric column ``col``, read off the profile's
    quantile sketch on a 2048-point grid between its min and max."""
    s = profile.summary(col)
    lo, hi = s.bounds()
    grid = np.linspace(lo, hi, 2048)
    cdf = profile.cdf(col, list(grid))
    return [float(grid[min(np.searchsorted(cdf, q), len(grid) - 1)]) for q in np.arange(0.1, 1.0, 0.1)]


def _bin_probs(profile: Profile, col: str, edges: np.ndarray) -> np.ndarray:
    cdf = np.concatenate([[0.0], profile.cdf(col, list(edges)), [1.0]])
    return np.clip(np.diff(cdf), 0.0, 1.0)


def _categorical(reference: Profile, current: Profile, col: str) -> dict[str, float]:
    fr, fc = reference.frequencies(col), current.frequencies(col)
    cats = sorted(set(fr) | set(fc))
    rc = np.array([fr.get(k, 0) for k in cats], dtype=float)
    cc = np.array([fc.get(k, 0) for k in cats], dtype=float)
    p, q = rc / rc.sum(), cc / cc.sum()
    expected = np.clip(p, _EPS, None) * cc.sum()
    expected *= cc.sum() / expected.sum()
    chi2 = stats.chisquare(cc, expected)
    return {"js": float(jensenshannon(p, q, base=2)), "chi2": float(chi2.statistic),
            "chi2_pvalue": float(chi2.pvalue), "hellinger": _hellinger(p, q), "psi": _psi(p, q)}


def _hellinger(p: np.ndarray, q: np.ndarray) -> float:
    return float(np.sqrt(max(0.0, 1.0 - np.sum(np.sqrt(p * q)))))


def _psi(p: np.ndarray, q: np.ndarray) -> float:
    p, q = np.clip(p, _EPS, None), np.clip(q, _EPS, None)
    return float(np.sum((q - p) * np.log(q / p)))
