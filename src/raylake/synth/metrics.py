"""The quality score of synthetic data as SDMetrics defines it (its single-table
``QualityReport``): the mean of two properties.

- **Column Shapes**, per column: ``KSComplement`` (1 - the two-sample Kolmogorov-Smirnov
  statistic, nulls dropped) for numbers and times, ``TVComplement`` (1 - total variation
  distance of the category frequencies, nulls dropped) for categories and booleans.
- **Column Pair Trends**, per pair of columns: ``CorrelationSimilarity`` (1 - |r_real -
  r_synthetic| / 2, Pearson's r on the rows where both are set) for two numbers/times,
  ``ContingencySimilarity`` (1 - total variation distance of the joint frequencies, nulls a
  value of their own) for any other pair, a number or time then binned into
  ``numpy.histogram_bin_edges``' ten bins with ``numpy.digitize``.

SDMetrics' own details are kept so that the two agree to rounding (the benchmark checks it
against sdmetrics on the same frames): a column is binned on its own frame's edges (the
synthetic column on the synthetic data's range, not the real one's), ``digitize`` puts a
null and a column's maximum in the same last bin, a pair with a constant column gets no
correlation score, and a score that cannot be computed is left out of the mean. Newer
SDMetrics reports (0.2x) count only the pairs whose real correlation exceeds 0.5 or whose
real association (Cramér's V) exceeds 0.3; both thresholds are parameters here, 0 by
default: the classic score that SDGym's published figures use.

Everything is vectorised: categories become integer codes once, a contingency table is one
``bincount``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from raylake.errors import SynthError

NUMERICAL, DATETIME, CATEGORICAL = "numerical", "datetime", "categorical"
SDTYPES = (NUMERICAL, DATETIME, CATEGORICAL)
_CONTINUOUS = {NUMERICAL, DATETIME}
# SDMetrics rounds numbers to the float's significant digits less one before the KS test.
_KS_DECIMALS = np.finfo(np.float64).precision - 1


def infer_sdtypes(df: pd.DataFrame, *, discrete: Iterable[str] | None = None) -> dict[str, str]:
    """Each column's SDMetrics type: ``datetime`` for times, ``numerical`` for numbers (not
    booleans), ``categorical`` for the rest and for every column named in ``discrete``."""
    forced = set(discrete or ())
    unknown = forced - set(df.columns)
    if unknown:
        raise SynthError(f"discrete names {sorted(unknown)}, not columns of the table "
                         f"(columns: {list(df.columns)}); drop them from `discrete`")
    out: dict[str, str] = {}
    for col in df.columns:
        s = df[col]
        if col in forced or pd.api.types.is_bool_dtype(s):
            out[col] = CATEGORICAL
        elif pd.api.types.is_datetime64_any_dtype(s):
            out[col] = DATETIME
        elif pd.api.types.is_numeric_dtype(s):
            out[col] = NUMERICAL
        else:
            out[col] = CATEGORICAL
    return out


def as_float(s: pd.Series) -> np.ndarray:
    """A number or time column as float64, nulls as NaN (times as their int64 count)."""
    if pd.api.types.is_datetime64_any_dtype(s):
        if isinstance(s.dtype, pd.DatetimeTZDtype):
            s = s.dt.tz_convert(None)
        mask = s.isna().to_numpy()  # nanoseconds whatever the unit (pandas 3 reads us)
        values = s.to_numpy(dtype="datetime64[ns]").view("int64").astype(np.float64)
        values[mask] = np.nan
        return values
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def ks_complement(real: pd.Series, synthetic: pd.Series) -> float:
    """1 - the KS statistic between the two columns' non-null values (NaN if one is empty)."""
    a, b = as_float(real), as_float(synthetic)
    a = np.sort(np.round(a[~np.isnan(a)], _KS_DECIMALS))
    b = np.sort(np.round(b[~np.isnan(b)], _KS_DECIMALS))
    if not len(a) or not len(b):
        return float("nan")
    grid = np.concatenate([a, b])
    d = np.abs(np.searchsorted(a, grid, "right") / len(a)
               - np.searchsorted(b, grid, "right") / len(b))
    return float(1.0 - d.max())


def tv_complement(real: pd.Series, synthetic: pd.Series) -> float:
    """1 - the total variation distance between the non-null category frequencies."""
    p = real.dropna().value_counts(normalize=True)
    q = synthetic.dropna().value_counts(normalize=True)
    if not len(p) or not len(q):
        return float("nan")
    p, q = p.align(q, fill_value=0.0)
    return float(1.0 - 0.5 * np.abs(p.to_numpy(float) - q.to_numpy(float)).sum())


def _bins(x: np.ndarray) -> np.ndarray:
    """SDMetrics' discretisation of a number column: ten equal bins over its own non-null
    range; ``digitize`` gives 0..11 (a null and the maximum both land in 11)."""
    edges = np.histogram_bin_edges(x[~np.isnan(x)])
    return np.digitize(x, edges).astype(np.int64)


def _codes(real: pd.Series, synthetic: pd.Series) -> tuple[np.ndarray, np.ndarray, int]:
    """Category codes shared by both frames, a null a category of its own."""
    both = pd.concat([real, synthetic], ignore_index=True).astype(object)
    codes, uniques = pd.factorize(both, use_na_sentinel=False)
    return codes[:len(real)].astype(np.int64), codes[len(real):].astype(np.int64), len(uniques)


def _joint(a: np.ndarray, b: np.ndarray, kb: int, size: int) -> np.ndarray:
    return np.bincount(a * kb + b, minlength=size).astype(np.float64)


def cramers_v(table: np.ndarray) -> float:
    """Cramér's V of a contingency table (rows and columns with no count dropped)."""
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    n = table.sum()
    if n == 0 or min(table.shape) < 2:
        return float("nan")
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / n
    chi2 = ((table - expected) ** 2 / expected).sum()
    return float(np.sqrt(chi2 / n / (min(table.shape) - 1)))


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    ok = ~(np.isnan(x) | np.isnan(y))
    x, y = x[ok], y[ok]
    if len(x) < 2:
        return float("nan")
    x, y = x - x.mean(), y - y.mean()
    denom = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denom) if denom > 0 else float("nan")


def _nunique(x: np.ndarray) -> int:
    return len(np.unique(x[~np.isnan(x)]))


class _Frame:
    """One frame's columns prepared once: floats for numbers/times, bin codes, and the
    category codes shared with the other frame."""

    def __init__(self, df: pd.DataFrame, sdtypes: Mapping[str, str]) -> None:
        self.floats = {c: as_float(df[c]) for c, t in sdtypes.items() if t in _CONTINUOUS}
        self.bins = {c: _bins(x) for c, x in self.floats.items()}
        self.codes: dict[str, np.ndarray] = dict(self.bins)


def _check(real: pd.DataFrame, synthetic: pd.DataFrame, sdtypes: Mapping[str, str]) -> None:
    missing = [c for c in real.columns if c not in synthetic.columns]
    extra = [c for c in synthetic.columns if c not in real.columns]
    if missing or extra:
        raise SynthError(f"the synthetic table's columns differ from the real one's: missing "
                         f"{missing}, extra {extra}; compare frames with the same columns")
    if not len(real) or not len(synthetic):
        raise SynthError(f"cannot score an empty table (real {len(real)} rows, synthetic "
                         f"{len(synthetic)} rows); sample some rows first")
    bad = {c: t for c, t in sdtypes.items() if t not in SDTYPES or c not in real.columns}
    if bad:
        raise SynthError(f"sdtypes {bad} name no column or no type of {SDTYPES}")


def quality(real: pd.DataFrame, synthetic: pd.DataFrame, *,
            sdtypes: Mapping[str, str] | None = None, discrete: Iterable[str] | None = None,
            real_correlation_threshold: float = 0.0,
            real_association_threshold: float = 0.0) -> dict[str, Any]:
    """The quality report: ``score`` (the mean of ``column_shapes`` and
    ``column_pair_trends``), and per column and per pair the metric and its score, with each
    pair's real and synthetic trend (Pearson's r for two numbers, Cramér's V otherwise).
    A score that cannot be computed is NaN and left out of the means."""
    sdtypes = dict(sdtypes) if sdtypes is not None else infer_sdtypes(real, discrete=discrete)
    _check(real, synthetic, sdtypes)
    columns = [c for c in real.columns if c in sdtypes]
    shapes = []
    for c in columns:
        continuous = sdtypes[c] in _CONTINUOUS
        score = (ks_complement if continuous else tv_complement)(real[c], synthetic[c])
        shapes.append({"column": c, "sdtype": sdtypes[c], "score": score,
                       "metric": "KSComplement" if continuous else "TVComplement"})

    r, s = _Frame(real, sdtypes), _Frame(synthetic, sdtypes)
    sizes = {c: 12 for c in r.bins}
    for c in columns:
        if sdtypes[c] == CATEGORICAL:
            r.codes[c], s.codes[c], sizes[c] = _codes(real[c], synthetic[c])
    pairs = []
    for c1, c2 in itertools.combinations(columns, 2):
        pairs.append(_pair(c1, c2, sdtypes, r, s, sizes, real_correlation_threshold,
                           real_association_threshold))
    shape_score = _nanmean([x["score"] for x in shapes])
    trend_score = _nanmean([x["score"] for x in pairs if x["counted"]])
    return {
        "score": _nanmean([shape_score, trend_score]),
        "column_shapes": shape_score,
        "column_pair_trends": trend_score,
        "columns": shapes,
        "pairs": pairs,
        "thresholds": {"real_correlation": real_correlation_threshold,
                       "real_association": real_association_threshold},
        "rows": {"real": len(real), "synthetic": len(synthetic)},
    }


def _pair(c1: str, c2: str, sdtypes: Mapping[str, str], r: _Frame, s: _Frame,
          sizes: Mapping[str, int], corr_threshold: float,
          assoc_threshold: float) -> dict[str, Any]:
    k1, k2 = sizes[c1], sizes[c2]
    real_table = _joint(r.codes[c1], r.codes[c2], k2, k1 * k2)
    syn_table = _joint(s.codes[c1], s.codes[c2], k2, k1 * k2)
    real_v = cramers_v(real_table.reshape(k1, k2))
    syn_v = cramers_v(syn_table.reshape(k1, k2))
    out: dict[str, Any] = {"column_1": c1, "column_2": c2, "real_association": real_v,
                           "synthetic_association": syn_v}
    if sdtypes[c1] in _CONTINUOUS and sdtypes[c2] in _CONTINUOUS:
        x1, x2, y1, y2 = r.floats[c1], r.floats[c2], s.floats[c1], s.floats[c2]
        rr, rs = _pearson(x1, x2), _pearson(y1, y2)
        constant = any(_nunique(v) == 1 for v in (x1, x2, y1, y2))
        score = float("nan") if constant else 1.0 - abs(rr - rs) / 2.0
        counted = True
        if corr_threshold > 0:
            counted = not np.isnan(rr) and abs(rr) > corr_threshold
            score = score if counted else float("nan")
        out.update(metric="CorrelationSimilarity", score=score, real=rr, synthetic=rs,
                   counted=counted)
        return out
    p = real_table / real_table.sum()
    q = syn_table / syn_table.sum()
    score = float(1.0 - 0.5 * np.abs(p - q).sum())
    counted = True
    if assoc_threshold > 0:
        counted = not np.isnan(real_v) and real_v > assoc_threshold
        score = score if counted else float("nan")
    out.update(metric="ContingencySimilarity", score=score, real=real_v, synthetic=syn_v,
               counted=counted)
    return out


def _nanmean(values: list[float]) -> float:
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    return float(arr.mean()) if len(arr) else float("nan")
