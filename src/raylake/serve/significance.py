"""Two-sample tests for A/B reports: intervals, p-values, sample sizes.

Rates (an outcome that is 0 or 1 per unit) use the two-proportion z-test with the
pooled rate under the null, Wilson intervals per arm (sound near 0 and 1 and for
small n) and the Wald interval of the difference; means use Welch's t-test (unequal
variances, Welch–Satterthwaite degrees of freedom). Sample sizes are per arm, for a
two-sided test at ``alpha`` with ``power`` against a difference ``delta``. The
distributions come from SciPy (already installed with the model libraries).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ArmSummary:
    n: int
    value: float  # the rate or the mean
    low: float  # its confidence interval
    high: float
    sd: float


@dataclass(frozen=True)
class Comparison:
    test: str  # "two-proportion z" | "welch t"
    difference: float  # treatment - control
    relative: float | None  # difference / control value
    low: float  # confidence interval of the difference
    high: float
    statistic: float
    p_value: float
    significant: bool
    delta: float  # the difference the sample size is for
    n_needed_per_arm: int | None  # None: delta is 0, no finite sample detects it
    n_more_per_arm: int | None  # beyond the smaller arm's n

    def to_dict(self) -> dict[str, Any]:
        """The comparison's fields as a dict."""
        return asdict(self)


def is_rate(values: np.ndarray) -> bool:
    """An outcome whose every value is 0 or 1 (booleans included)."""
    v = np.asarray(values, dtype=float)
    return v.size > 0 and bool(np.all((v == 0) | (v == 1)))


def summarize(values: np.ndarray, *, rate: bool, alpha: float = 0.05) -> ArmSummary:
    """The rate or mean of ``values`` with its two-sided ``1 - alpha`` interval (Wilson for
    a rate, Student's t for a mean) and standard deviation; NaN where there are too few
    values."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    n = int(v.size)
    if n == 0:
        return ArmSummary(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(v.mean())
    if rate:
        z = stats.norm.ppf(1 - alpha / 2)
        centre = (mean + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * math.sqrt(mean * (1 - mean) / n + z * z / (4 * n * n))
        return ArmSummary(n, mean, float(max(0.0, centre - half)), float(min(1.0, centre + half)),
                          math.sqrt(mean * (1 - mean)))
    sd = float(v.std(ddof=1)) if n > 1 else math.nan
    half = stats.t.ppf(1 - alpha / 2, n - 1) * sd / math.sqrt(n) if n > 1 else math.nan
    return ArmSummary(n, mean, mean - half, mean + half, sd)


def compare(control: np.ndarray, treatment: np.ndarray, *, rate: bool, alpha: float = 0.05,
            power: float = 0.8, mde: float | None = None) -> Comparison:
    """Treatment against control, two-sided. ``mde``: the smallest difference worth
    detecting, for the sample size; None takes the observed difference."""
    from scipy import stats

    a, b = np.asarray(control, dtype=float), np.asarray(treatment, dtype=float)
    n1, n2 = a.size, b.size
    if n1 < 2 or n2 < 2:
        raise ValueError(f"each arm needs at least 2 outcomes; got control {n1}, "
                         f"treatment {n2}")
    m1, m2 = float(a.mean()), float(b.mean())
    diff = m2 - m1
    z = stats.norm.ppf(1 - alpha / 2)
    if rate:
        pooled = (a.sum() + b.sum()) / (n1 + n2)
        se0 = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
        statistic = diff / se0 if se0 > 0 else 0.0
        p = float(2 * stats.norm.sf(abs(statistic))) if se0 > 0 else 1.0
        se = math.sqrt(m1 * (1 - m1) / n1 + m2 * (1 - m2) / n2)
        low, high = diff - z * se, diff + z * se
        test = "two-proportion z"
    else:
        v1, v2 = a.var(ddof=1) / n1, b.var(ddof=1) / n2
        se = math.sqrt(v1 + v2)
        df = (v1 + v2) ** 2 / (v1**2 / (n1 - 1) + v2**2 / (n2 - 1)) if se > 0 else 1.0
        if se > 0:
            statistic = diff / se
            p = float(2 * stats.t.sf(abs(statistic), df))
        else:  # no spread in either arm: the means differ or they do not, for certain
            statistic = math.copysign(math.inf, diff) if diff else 0.0
            p = 0.0 if diff else 1.0
        t = stats.t.ppf(1 - alpha / 2, df)
        low, high = diff - t * se, diff + t * se
        test = "welch t"
    # The sample size is for a difference in the observed direction: for rates the
    # variance, so the size, depends on which way the rate moves.
    delta = abs(mde) if mde is not None else abs(diff)
    signed = math.copysign(delta, diff) if diff else delta
    needed = sample_size(m1, signed, rate=rate, sd1=float(a.std(ddof=1)),
                         sd2=float(b.std(ddof=1)), alpha=alpha, power=power)
    return Comparison(
        test=test, difference=diff, relative=diff / m1 if m1 else None, low=low, high=high,
        statistic=float(statistic), p_value=p, significant=p < alpha, delta=delta,
        n_needed_per_arm=needed,
        n_more_per_arm=None if needed is None else max(0, needed - min(n1, n2)))


def sample_size(base: float, delta: float, *, rate: bool, sd1: float = 0.0, sd2: float = 0.0,
                alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Units per arm for a two-sided test to detect a change of ``delta`` (signed: for
    rates, ``base + delta`` is the treatment rate; it is turned round where it would
    leave [0, 1]) with ``power``."""
    from scipy import stats

    if delta == 0 or not math.isfinite(delta):
        return None
    za, zb = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    if rate:
        p1 = base
        p2 = base + delta if 0 <= base + delta <= 1 else base - delta
        p2 = min(1.0, max(0.0, p2))
        if p2 == p1:
            return None
        pbar = (p1 + p2) / 2
        num = za * math.sqrt(2 * pbar * (1 - pbar)) + zb * math.sqrt(
            p1 * (1 - p1) + p2 * (1 - p2))
        return math.ceil((num / abs(p2 - p1)) ** 2)
    return math.ceil((za + zb) ** 2 * (sd1**2 + sd2**2) / delta**2)
