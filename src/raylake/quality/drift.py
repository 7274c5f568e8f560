"""Drift between two profiles, column by column, and a verdict for the dataset.

Numeric columns compare quantile sketches and moments: Kolmogorov-Smirnov (the
largest gap between the two CDFs, with a p-value that allows for the sketches'
rank error), a two-sample z test of the means (exact: counts, means and variances
are kept exactly), Hellinger distance and PSI over bins at the reference's
deciles. Categorical columns compare item counts: a two-sample chi-square test
of homogeneity (p-value), Jensen-Shannon distance, Hellinger and PSI. Each
column is judged by one metric against a threshold; the dataset drifts when the
share of drifted columns reaches ``dataset_share``.

By default a test decides (``pvalue`` below ``ALPHA``): for numbers, KS or the
mean test (Bonferroni over the two); for categories, chi-square. Their false
alarms are at most ``ALPHA`` per column whatever the number of rows, and they
catch a 0.1 standard deviation mean shift or a 5-point shift in one category's
share at 10,000 rows a side (``benchmarks/drift_power.py``). With millions of
rows they flag shifts too small to matter: a column judged by a statistic
instead (``ks``, ``js``, ``psi``, ``hellinger`` above a threshold, set per
column) ignores those.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats
from scipy.spatial.distance import jensenshannon

from raylake.errors import ConfigError
from raylake.quality.profile import Profile

METRICS = ("pvalue", "ks", "ks_pvalue", "mean_pvalue", "hellinger", "psi", "js", "chi2_pvalue")
# The significance level of the default tests: the most false alarms per column.
ALPHA = 0.001
DEFAULTS = {"numeric": ("pvalue", ALPHA), "categorical": ("pvalue", ALPHA)}
_EPS = 1e-6
# whylogs' KLL sketches (k=1024) answer a rank to within this (DataSketches' a-priori
# bound, 99% confidence), and exactly while they hold at most k values.
_KLL_K = 1024
_KLL_RANK_ERROR = 0.0027
# Chi-square wants an expected count of at least this in each cell: rarer items pool.
_MIN_EXPECTED = 5.0


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
    n, m = r.count - r.nulls, c.count - c.nulls
    ks = _ks(reference, current, col)
    n_eff = n * m / (n + m) if n and m else 1.0
    # The sketches' CDFs are each off by up to their rank error: only the gap beyond
    # both errors is evidence, so sketch noise cannot raise false alarms on big tables.
    slack = sum(_KLL_RANK_ERROR for k in (n, m) if k > _KLL_K)
    ks_p = float(stats.kstwo.sf(max(0.0, ks - slack), max(1, round(n_eff))))
    mean_p = _mean_pvalue(r.mean, r.stddev, n, c.mean, c.stddev, m)
    edges = np.unique(reference_deciles(reference, col))
    p = _bin_probs(reference, col, edges)
    q = _bin_probs(current, col, edges)
    return {"pvalue": min(1.0, 2 * min(ks_p, mean_p)), "ks": ks, "ks_pvalue": ks_p,
            "mean_pvalue": mean_p, "hellinger": _hellinger(p, q), "psi": _psi(p, q)}


def _ks(reference: Profile, current: Profile, col: str) -> float:
    """The largest gap between the two sketched CDFs, on a grid refined where either CDF
    climbs steeply (steps of integer or clustered values), so the gap is not missed."""
    r, c = reference.summary(col), current.summary(col)
    (r_lo, r_hi), (c_lo, c_hi) = r.bounds(), c.bounds()
    lo, hi = min(r_lo, c_lo), max(r_hi, c_hi)
    grid = np.unique(np.concatenate([np.linspace(lo, hi, 1025),
                                     list(r.quantiles.values()), list(c.quantiles.values())]))
    ks = 0.0
    for _ in range(4):
        cdf_r, cdf_c = reference.cdf(col, list(grid)), current.cdf(col, list(grid))
        ks = max(ks, float(np.max(np.abs(cdf_r - cdf_c))))
        climb = np.maximum(np.diff(cdf_r), np.diff(cdf_c))
        steep = np.argsort(climb)[-512:]
        steep = np.sort(steep[climb[steep] > 0.002])
        if not len(steep):
            break
        left, width = grid[steep], np.diff(grid)[steep]
        finer = (left[:, None] + width[:, None] * np.linspace(0, 1, 17)[None, 1:-1]).ravel()
        grid = np.unique(np.concatenate([grid, finer]))
    return ks


def _mean_pvalue(mean_r: float | None, sd_r: float | None, n: int,
                 mean_c: float | None, sd_c: float | None, m: int) -> float:
    """Two-sided p-value of a two-sample z test of the means (Welch's statistic; the
    samples are large, so normal)."""
    if mean_r is None or mean_c is None or n < 2 or m < 2:
        return 1.0
    se = math.sqrt((sd_r or 0.0) ** 2 / n + (sd_c or 0.0) ** 2 / m)
    diff = abs(mean_c - mean_r)
    if se == 0.0 or not math.isfinite(se):
        return 1.0 if diff == 0.0 or not math.isfinite(diff) else 0.0
    return float(2 * stats.norm.sf(diff / se))


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
    rc, cc, floor = _aligned_counts(reference, current, col)
    p, q = rc / rc.sum(), cc / cc.sum()
    # A sketch that dropped items counts each listed one to within the smallest count it
    # lists: only items counted far beyond that error (under half their sampling error)
    # keep a cell of their own in the test; the rest pool with the unlisted values.
    coarse = np.minimum(rc, cc)[:-1] < 4 * floor ** 2 if floor else np.zeros(len(rc) - 1, bool)
    rest = np.append(coarse, True)
    chi2, chi2_p = _homogeneity(np.append(rc[~rest], rc[rest].sum()),
                                np.append(cc[~rest], cc[rest].sum()))
    return {"pvalue": chi2_p, "js": float(jensenshannon(p, q, base=2)), "chi2": chi2,
            "chi2_pvalue": chi2_p, "hellinger": _hellinger(p, q), "psi": _psi(p, q)}


def _aligned_counts(reference: Profile, current: Profile, col: str
                    ) -> tuple[np.ndarray, np.ndarray, float]:
    """Both profiles' counts over the same cells, the items both count and last the rest
    (values beyond the frequent-items sketch), and the sketches' count error. A profile
    whose frequent items add up to all its values knows every item's exact count (0 for
    an item it lacks); one whose do not only knows its listed items, each to within the
    smallest count it lists (the error returned: the largest such, 0 when both are
    exact), so an item it lacks goes to the rest on both sides."""
    sides = []
    for prof in (reference, current):
        s = prof.summary(col)
        freq = prof.frequencies(col)
        values = s.count - s.nulls
        sides.append((freq, values, sum(freq.values()) >= values))
    (fr, n, exact_r), (fc, m, exact_c) = sides
    cats = sorted(k for k in set(fr) | set(fc) if (k in fr or exact_r) and (k in fc or exact_c))
    rc = np.array([fr.get(k, 0) for k in cats] + [0], dtype=float)
    cc = np.array([fc.get(k, 0) for k in cats] + [0], dtype=float)
    rc[-1], cc[-1] = max(0.0, n - rc[:-1].sum()), max(0.0, m - cc[:-1].sum())
    floor = max([float(min(f.values())) for f, _, exact in sides if not exact and f] or [0.0])
    return rc, cc, floor


def _homogeneity(rc: np.ndarray, cc: np.ndarray) -> tuple[float, float]:
    """Chi-square test that two samples of counts come from one distribution (a 2 x k
    contingency table), with cells expected to hold under ``_MIN_EXPECTED`` pooled into
    one so the chi-square approximation holds."""
    n, m = rc.sum(), cc.sum()
    if n <= 0 or m <= 0:
        return 0.0, 1.0
    small = (rc + cc) * min(n, m) / (n + m) < _MIN_EXPECTED
    if small.any():
        rc = np.append(rc[~small], rc[small].sum())
        cc = np.append(cc[~small], cc[small].sum())
    table = np.vstack([rc, cc])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 0.0, 1.0
    result = stats.chi2_contingency(table, correction=False)
    return float(result.statistic), float(result.pvalue)


def _hellinger(p: np.ndarray, q: np.ndarray) -> float:
    return float(np.sqrt(max(0.0, 1.0 - np.sum(np.sqrt(p * q)))))


def _psi(p: np.ndarray, q: np.ndarray) -> float:
    p, q = np.clip(p, _EPS, None), np.clip(q, _EPS, None)
    return float(np.sum((q - p) * np.log(q / p)))
