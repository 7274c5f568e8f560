"""The CTGAN paper's data transformer (Xu et al., NeurIPS 2019, section 4.2).

Each continuous column gets *mode-specific normalization*: a variational Gaussian mixture
(a Dirichlet-process prior, at most ``max_modes`` modes, those weighing over 0.005 kept) is
fitted to the column; a value is represented by a mode drawn from its posterior over the
modes (a one-hot, a softmax span) and its offset from that mode's mean in units of four
standard deviations (a scalar in (-1, 1), a tanh span). Discrete columns are one-hot. A
continuous column with nulls gets a null indicator (a softmax span of two); nulls of a
discrete column are one more category. Datetimes and timedeltas are continuous, as int64
nanoseconds. On the way back, integers are rounded, values are clipped to the ``[min, max]``
seen at fit, and each column gets its dtype back.

A column with a single value (a constant) is kept: it becomes a one-category discrete
column and comes back constant. An all-null column is refused (SynthError): there is
nothing to learn; drop it. The mixture is written here in numpy (1-D variational
Bayes, as scikit-learn's ``BayesianGaussianMixture(weight_concentration_prior_type=
"dirichlet_process")``), so fitting needs no scikit-learn.

The fitted transformer is JSON (:meth:`DataTransformer.to_json`): modes, categories and
bounds, nothing pickled.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy.special import digamma

from raylake.errors import SynthError, did_you_mean

WEIGHT_THRESHOLD = 0.005  # a mixture mode weighing less is dropped (the paper's 0.005)
NULL_CATEGORY = None  # a discrete column's null, in ``categories``


class SynthWarning(UserWarning):
    """Something about the data that a synthesizer can learn, though poorly: a category
    with one row, a table small enough to memorise."""


class Span(NamedTuple):
    """A block of the transformed array: ``dim`` columns activated as ``kind`` (``"tanh"``
    or ``"softmax"``), belonging to ``column``. ``role``: ``"value"`` (a continuous column's
    offset from its mode), ``"mode"`` (which mode), ``"null"`` (a continuous column's null
    indicator: [value, null]) or ``"category"`` (a discrete column's one-hot)."""

    dim: int
    kind: str
    column: str
    role: str = "value"


@dataclass
class Column:
    """One fitted column. Continuous: ``means``/``stds``/``logw`` of the kept modes (in the
    column's units), ``lo``/``hi`` the bounds seen. Discrete: ``categories`` (JSON values,
    None is null) and their ``counts``."""

    name: str
    dtype: str
    kind: str  # "continuous" | "discrete"
    time: str = ""  # "datetime" | "timedelta" | "" (as int64 ns when continuous)
    tz: str | None = None
    integer: bool = False
    # Values come back as multiples of ``step`` (times: the coarsest of a day, an hour, ...,
    # a nanosecond that all values are multiples of) or with ``decimals`` digits (floats:
    # the fewest that write every value seen, up to 10), as SDV's rounding does.
    step: int = 1
    decimals: int | None = None
    nulls: bool = False  # a continuous column's null indicator is there
    null_share: float = 0.0
    lo: float = 0.0
    hi: float = 0.0
    means: list[float] = field(default_factory=list)
    stds: list[float] = field(default_factory=list)
    logw: list[float] = field(default_factory=list)
    categories: list[Any] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    # A pandas categorical's own categories and order (to give the dtype back).
    cat_dtype: list[Any] | None = None
    ordered: bool = False

    def spans(self) -> list[Span]:
        """The spans this column occupies, in order."""
        if self.kind == "discrete":
            return [Span(len(self.categories), "softmax", self.name, "category")]
        out = [Span(1, "tanh", self.name, "value"),
               Span(len(self.means), "softmax", self.name, "mode")]
        if self.nulls:
            out.append(Span(2, "softmax", self.name, "null"))
        return out


def _json_value(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, (pd.Timestamp, pd.Timedelta)):
        return str(v)
    if isinstance(v, float) and math.isnan(v):
        return None
    if not isinstance(v, (str, int, float, bool)):
        return str(v)
    return v


def _time_kind(dtype: Any) -> str:
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if pd.api.types.is_timedelta64_dtype(dtype):
        return "timedelta"
    return ""


def _is_discrete_dtype(dtype: Any) -> bool:
    return not (pd.api.types.is_numeric_dtype(dtype) or _time_kind(dtype)) or \
        pd.api.types.is_bool_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype)


def _as_float(series: pd.Series, time: str) -> np.ndarray:
    """A continuous column as float64 (NaN for nulls; times as int64 nanoseconds)."""
    if time == "datetime":
        s = series
        if getattr(s.dtype, "tz", None) is not None:
            s = s.dt.tz_convert("UTC").dt.tz_localize(None)
        mask = s.isna().to_numpy()
        ns = s.to_numpy(dtype="datetime64[ns]").astype("int64").astype("float64")
        ns[mask] = np.nan
        return ns
    if time == "timedelta":
        mask = series.isna().to_numpy()
        ns = series.to_numpy(dtype="timedelta64[ns]").astype("int64").astype("float64")
        ns[mask] = np.nan
        return ns
    return np.asarray(pd.to_numeric(series).to_numpy(dtype="float64", na_value=np.nan))


def _discrete_keys(series: pd.Series, time: str) -> pd.Series:
    if time:
        return series.astype(object).map(lambda v: None if pd.isna(v) else str(v))
    if isinstance(series.dtype, pd.CategoricalDtype):
        return series.astype(object)
    return series


# ---- the variational Gaussian mixture (1-D) ---------------------------------------------


@dataclass
class Mixture:
    weights: np.ndarray
    means: np.ndarray
    stds: np.ndarray
    logw: np.ndarray  # log prior weight plus the per-mode constant of the log density


def fit_mixture(x: np.ndarray, max_modes: int, *, concentration: float = 1e-3,
                max_iter: int = 100, tol: float = 1e-4) -> Mixture:
    """A 1-D variational Gaussian mixture with a Dirichlet-process (stick-breaking) prior on
    the weights, Normal-Wishart priors on the modes (scikit-learn's defaults: mean prior the
    data mean, precision prior 1, degrees of freedom 1, covariance prior the data variance),
    started from k-means. Fitted on the distinct values weighted by their counts (the same
    fit as on every row, and far fewer rows in most columns); vectorised over values and
    modes."""
    center = float(x.mean())
    scale = float(x.std()) or 1.0
    uniq, counts = np.unique((x - center) / scale, return_counts=True)
    w = counts.astype(np.float64)[:, None]  # [values, 1]
    n, k = float(len(x)), max(1, min(max_modes, len(uniq)))
    z = uniq[:, None]
    # k-means (Lloyd) from quantile centres: deterministic, a few passes.
    c = np.quantile(x, (np.arange(k) + 0.5) / k)
    c = (c - center) / scale
    for _ in range(10):
        lab = np.abs(z - c[None, :]).argmin(1)
        sums = np.bincount(lab, weights=uniq * counts, minlength=k)
        cnt = np.bincount(lab, weights=counts, minlength=k)
        c = np.where(cnt > 0, sums / np.maximum(cnt, 1), c)
    resp = np.zeros((len(uniq), k))
    resp[np.arange(len(uniq)), lab] = 1.0
    eps = 10 * np.finfo(float).eps
    m0 = 0.0
    var0 = float(np.var((x - center) / scale, ddof=1)) if len(x) > 1 else 1.0
    beta0 = nu0 = 1.0
    prev = None
    for _ in range(max_iter):
        # M step (responsibilities weighted by each value's count)
        rw = resp * w
        nk = rw.sum(0) + eps
        xk = (rw * z).sum(0) / nk
        sk = (rw * (z - xk) ** 2).sum(0) / nk + 1e-6
        a = 1.0 + nk
        b = concentration + (nk.sum() - np.cumsum(nk))
        beta = beta0 + nk
        m = (beta0 * m0 + nk * xk) / beta
        nu = nu0 + nk
        cov = (var0 + nk * sk + nk * beta0 / beta * (xk - m0) ** 2) / nu
        # E step
        dg = digamma(a + b)
        logw = digamma(a) - dg + np.concatenate([[0.0], np.cumsum(digamma(b) - dg)[:-1]])
        const = (logw - 0.5 * np.log(2 * np.pi) - 0.5 * np.log(cov) - 0.5 * np.log(nu)
                 + 0.5 * (np.log(2.0) + digamma(0.5 * nu) - 1.0 / beta))
        logp = const - 0.5 * (z - m) ** 2 / cov
        logp -= logp.max(1, keepdims=True)
        resp = np.exp(logp)
        resp /= resp.sum(1, keepdims=True)
        share = nk / n
        if prev is not None and np.abs(share - prev).max() < tol:
            break
        prev = share
    weights = a / (a + b) * np.concatenate([[1.0], np.cumprod(b / (a + b))[:-1]])
    weights /= weights.sum()
    std = np.sqrt(cov)
    return Mixture(weights, m * scale + center, std * scale, const - np.log(scale))


# ---- the transformer ---------------------------------------------------------------------


class DataTransformer:
    """Mode-specific normalization of continuous columns, one-hot discrete columns; see
    the module's docstring. Build with :meth:`fit` or :meth:`from_json`."""

    def __init__(self, columns: list[Column]) -> None:
        self.columns = columns
        self.spans: list[Span] = [s for c in columns for s in c.spans()]
        self.discrete_columns: list[str] = [c.name for c in columns if c.kind == "discrete"]
        self.output_dim = sum(s.dim for s in self.spans)
        self.warnings: list[str] = []

    # -- fit -----------------------------------------------------------------------------

    @classmethod
    def fit(cls, df: pd.DataFrame, *, discrete: Sequence[str] | None = None,
            max_modes: int = 10, seed: int = 0, max_fit_rows: int = 50_000
            ) -> DataTransformer:
        """Fit on ``df``: columns named in ``discrete`` and those that can only be
        categories (strings, booleans, categoricals) are one-hot; the others get a
        mixture of at most ``max_modes`` modes, fitted on at most ``max_fit_rows`` rows (a
        seeded sample). SynthError on an empty table or an all-null column."""
        if not isinstance(df, pd.DataFrame):
            raise SynthError(f"A synthesizer fits a pandas DataFrame, got {type(df).__name__}; "
                             "pass table.to_pandas().")
        if df.shape[1] == 0:
            raise SynthError("The table has no columns: give the columns to synthesize.")
        if len(df) == 0:
            raise SynthError(f"The table has no rows (columns {', '.join(map(str, df.columns))})"
                             ": a synthesizer needs rows to learn from; pick a table version "
                             "with data.")
        if max_modes < 1:
            raise SynthError(f"max_modes={max_modes!r} must be at least 1, e.g. 10.")
        names = [str(c) for c in df.columns]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise SynthError(f"Column names repeat ({', '.join(dup)}): rename them apart.")
        asked = list(discrete or [])
        unknown = [d for d in asked if d not in names]
        if unknown:
            raise SynthError(f"discrete names {unknown[0]!r}, which is not a column."
                             f"{did_you_mean(unknown[0], names)} Columns: {', '.join(names)}.")
        empty = [n for n in names if df[n].isna().all()]
        if empty:
            raise SynthError(f"Column {empty[0]!r} is null in all {len(df):,} rows: there is "
                             "nothing to learn about it; drop it (synth.columns=[...] without "
                             f"it) and add it back as nulls after sampling."
                             + (f" Also all null: {', '.join(empty[1:])}." if empty[1:] else ""))
        rng = np.random.default_rng(seed)
        columns, notes = [], []
        for name in names:
            s = df[name]
            time = _time_kind(s.dtype)
            nonnull = s.dropna()
            is_discrete = (name in asked or _is_discrete_dtype(s.dtype)
                           or nonnull.nunique() <= 1)
            tz = getattr(s.dtype, "tz", None)
            base: dict[str, Any] = dict(name=name, dtype=str(s.dtype), time=time,
                                        tz=str(tz) if tz is not None else None)
            if isinstance(s.dtype, pd.CategoricalDtype):
                base["cat_dtype"] = [_json_value(v) for v in s.dtype.categories]
                base["ordered"] = bool(s.dtype.ordered)
            if is_discrete:
                keys = _discrete_keys(s, time)
                counts = keys.value_counts(dropna=True)
                try:
                    order = sorted(counts.index.tolist())
                except TypeError:  # mixed types: keep first-seen order
                    order = counts.index.tolist()
                cats = [_json_value(v) for v in order]
                cnts = [int(counts[v]) for v in order]
                nnull = int(s.isna().sum())
                if nnull:
                    cats.append(NULL_CATEGORY)
                    cnts.append(nnull)
                ones = [str(c) for c, k in zip(cats, cnts) if k == 1]
                if ones and len(df) > len(cats):
                    notes.append(f"column {name!r}: {len(ones)} categor"
                                 f"{'y has' if len(ones) == 1 else 'ies have'} a single row "
                                 f"({', '.join(ones[:5])}{', ...' if len(ones) > 5 else ''}); "
                                 "kept, but a synthesizer can only copy or drop such a value")
                columns.append(Column(kind="discrete", categories=cats, counts=cnts, **base))
                continue
            x = _as_float(s, time)
            ok = ~np.isnan(x)
            vals = x[ok]
            if len(vals) > max_fit_rows:
                vals = vals[rng.choice(len(vals), max_fit_rows, replace=False)]
            mix = fit_mixture(vals, max_modes)
            keep = mix.weights > WEIGHT_THRESHOLD
            integer = bool(pd.api.types.is_integer_dtype(s.dtype))
            nnull = int((~ok).sum())
            columns.append(Column(
                kind="continuous", integer=integer, nulls=nnull > 0,
                step=_time_step(x[ok]) if time else 1,
                decimals=None if (time or integer) else _decimals(x[ok]),
                null_share=nnull / len(s), lo=float(np.nanmin(x)), hi=float(np.nanmax(x)),
                means=mix.means[keep].tolist(), stds=mix.stds[keep].tolist(),
                logw=mix.logw[keep].tolist(), **base))
        out = cls(columns)
        for note in notes:
            warnings.warn(note, SynthWarning, stacklevel=2)
        out.warnings = notes
        return out

    # -- raw values: one float64 per column (continuous values; category codes) ---------

    def raw(self, df: pd.DataFrame) -> np.ndarray:
        """``df`` as float64 [n, columns]: a continuous column's values (NaN for null,
        times as ns), a discrete column's category index. SynthError on a missing column
        or a category not seen at fit."""
        missing = [c.name for c in self.columns if c.name not in df.columns]
        if missing:
            raise SynthError(f"Column {missing[0]!r} is missing: the transformer was fitted "
                             f"on {', '.join(c.name for c in self.columns)}.")
        out = np.empty((len(df), len(self.columns)), dtype=np.float64)
        for j, c in enumerate(self.columns):
            s = df[c.name]
            if c.kind == "continuous":
                out[:, j] = _as_float(s, c.time)
                continue
            known = [v for v in c.categories if v is not None]
            keys = _discrete_keys(s, c.time)
            codes = pd.Categorical(keys, categories=known).codes.astype(np.int64)
            isnull = keys.isna().to_numpy()
            bad = (codes < 0) & ~isnull
            if bad.any():
                v = keys[bad].iloc[0]
                raise SynthError(f"Column {c.name!r} has the value {v!r}, not seen at fit "
                                 f"(known: {', '.join(map(repr, known[:8]))}"
                                 f"{', ...' if len(known) > 8 else ''}): refit on data with it.")
            if isnull.any():
                if NULL_CATEGORY not in c.categories:
                    raise SynthError(f"Column {c.name!r} has nulls, none seen at fit: refit "
                                     "on data with them, or fill them first.")
                codes[isnull] = c.categories.index(NULL_CATEGORY)
            out[:, j] = codes
        return out

    def from_raw(self, raw: np.ndarray) -> pd.DataFrame:
        """The inverse of :meth:`raw` (values clipped to the fit's bounds, integers
        rounded, each column's dtype restored)."""
        cols: dict[str, pd.Series] = {}
        for j, c in enumerate(self.columns):
            v = raw[:, j]
            if c.kind == "discrete":
                cats = np.empty(len(c.categories), dtype=object)
                cats[:] = c.categories
                values = cats[np.clip(v.astype(np.int64), 0, len(cats) - 1)]
                cols[c.name] = _restore(pd.Series(values, dtype=object), c)
                continue
            null = np.isnan(v)
            x = np.clip(v, c.lo, c.hi)
            if c.time:
                x = np.round(x / c.step) * c.step
            elif c.integer:
                x = np.round(x)
            elif c.decimals is not None:
                x = np.round(x, c.decimals)
            if c.time:
                ns = np.where(null, 0, x).astype(np.int64)
                unit = "datetime64[ns]" if c.time == "datetime" else "timedelta64[ns]"
                s = pd.Series(ns.view(unit))
                s[null] = None
                if c.tz:
                    s = s.dt.tz_localize("UTC").dt.tz_convert(c.tz)
                cols[c.name] = s.astype(c.dtype)
                continue
            if null.any() and c.integer and c.dtype.startswith(("int", "uint")):
                # a plain int column holds no null: the nullable Int64 keeps them
                cols[c.name] = pd.Series(x).astype("Int64").where(~null, pd.NA)
                continue
            s = pd.Series(x)
            s[null] = np.nan
            cols[c.name] = s.astype(c.dtype) if not null.any() else _nullable(s, c.dtype)
        return pd.DataFrame(cols)

    # -- the encoded array -----------------------------------------------------------------

    def transform(self, df: pd.DataFrame, *, seed: int = 0) -> np.ndarray:
        """``df`` as float32 [n, output_dim]; each continuous value's mode is drawn from its
        posterior over the modes with a generator seeded by ``seed``."""
        return self.encode_raw(self.raw(df), seed=seed)

    def encode_raw(self, raw: np.ndarray, *, seed: int = 0) -> np.ndarray:
        """:meth:`transform` from :meth:`raw`'s array."""
        rng = np.random.default_rng(seed)
        n = raw.shape[0]
        out = np.zeros((n, self.output_dim), dtype=np.float32)
        pos = 0
        for j, c in enumerate(self.columns):
            v = raw[:, j]
            if c.kind == "discrete":
                out[np.arange(n), pos + v.astype(np.int64)] = 1.0
                pos += len(c.categories)
                continue
            k = len(c.means)
            mu, sd, lw = (np.asarray(c.means), np.asarray(c.stds), np.asarray(c.logw))
            null = np.isnan(v)
            x = np.where(null, mu[np.argmax(lw)], v)
            logp = lw[None, :] - 0.5 * ((x[:, None] - mu[None, :]) / sd[None, :]) ** 2
            logp -= logp.max(1, keepdims=True)
            p = np.exp(logp)
            p /= p.sum(1, keepdims=True)
            p += 1e-6
            cum = np.cumsum(p, 1)
            u = rng.random(n) * cum[:, -1]
            mode = np.minimum((cum < u[:, None]).sum(1), k - 1)
            alpha = np.clip((x - mu[mode]) / (4 * sd[mode]), -0.99, 0.99)
            alpha[null] = 0.0
            out[:, pos] = alpha
            out[np.arange(n), pos + 1 + mode] = 1.0
            pos += 1 + k
            if c.nulls:
                out[np.arange(n), pos + null.astype(np.int64)] = 1.0
                pos += 2
        return out

    def decode_raw(self, data: np.ndarray) -> np.ndarray:
        """The raw array (see :meth:`raw`) of an encoded one: the mode and category are the
        largest entry of their span; the offset is clipped to [-1, 1]."""
        data = np.asarray(data)
        if data.ndim != 2 or data.shape[1] != self.output_dim:
            raise SynthError(f"Expected an array of {self.output_dim} columns, got shape "
                             f"{data.shape}.")
        n = data.shape[0]
        raw = np.empty((n, len(self.columns)), dtype=np.float64)
        pos = 0
        for j, c in enumerate(self.columns):
            if c.kind == "discrete":
                raw[:, j] = data[:, pos:pos + len(c.categories)].argmax(1)
                pos += len(c.categories)
                continue
            k = len(c.means)
            alpha = np.clip(data[:, pos].astype(np.float64), -1.0, 1.0)
            mode = data[:, pos + 1:pos + 1 + k].argmax(1)
            x = alpha * 4 * np.asarray(c.stds)[mode] + np.asarray(c.means)[mode]
            pos += 1 + k
            if c.nulls:
                x[data[:, pos:pos + 2].argmax(1) == 1] = np.nan
                pos += 2
            raw[:, j] = x
        return raw

    def inverse(self, data: np.ndarray) -> pd.DataFrame:
        """An encoded array back to a frame with the fit's columns and dtypes."""
        return self.from_raw(self.decode_raw(data))

    # -- lookups for the models ---------------------------------------------------------------

    def column(self, name: str) -> Column:
        """The fitted column ``name``; SynthError naming the columns when there is none."""
        for c in self.columns:
            if c.name == name:
                return c
        names = [c.name for c in self.columns]
        raise SynthError(f"No column {name!r} was fitted.{did_you_mean(name, names)} "
                         f"Columns: {', '.join(names)}.")

    def category_index(self, name: str, value: Any) -> int:
        """The index of ``value`` among discrete column ``name``'s categories; SynthError
        when the column is continuous or the value was never seen at fit."""
        c = self.column(name)
        if c.kind != "discrete":
            raise SynthError(
                f"A condition on {name!r} ({c.dtype}, continuous) cannot be met exactly: "
                f"conditions apply to discrete columns ({', '.join(self.discrete_columns)}"
                "); fit with discrete=[..., " + repr(name) + "] (synth.discrete in config) to condition on it, or filter "
                "the sampled rows.")
        key = _json_value(value)
        if c.time and key is not None:
            key = str(pd.Timestamp(value) if c.time == "datetime" else pd.Timedelta(value))
        for i, cat in enumerate(c.categories):
            if _same(cat, key):
                return i
        for i, cat in enumerate(c.categories):  # '2007' for 2007, 'True' for True
            if cat is not None and str(cat) == str(key):
                return i
        known = [v for v in c.categories]
        raise SynthError(f"Condition {name}={value!r}: the value was never seen in column "
                         f"{name!r} at fit, so no row can have it; known values: "
                         f"{', '.join(map(repr, known[:10]))}"
                         f"{f' and {len(known) - 10} more' if len(known) > 10 else ''}.")

    # -- JSON ----------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The fitted transformer as JSON-safe values."""
        return {"format": 1, "columns": [asdict(c) for c in self.columns]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DataTransformer:
        """A transformer from :meth:`to_json`'s value."""
        if not isinstance(d, dict) or d.get("format") != 1 or "columns" not in d:
            raise SynthError("Not a raylake DataTransformer's JSON (format 1 with columns).")
        return cls([Column(**c) for c in d["columns"]])


TIME_STEPS = (86_400 * 10**9, 3_600 * 10**9, 60 * 10**9, 10**9, 10**6, 10**3, 1)


def _time_step(ns: np.ndarray) -> int:
    """The coarsest of a day, an hour, a minute, ..., a nanosecond that divides every
    value (int64 nanoseconds as float64)."""
    values = ns.astype(np.int64)
    for step in TIME_STEPS:
        if not (values % step).any():
            return step
    return 1


def _decimals(x: np.ndarray, most: int = 10) -> int | None:
    """The fewest decimal digits that write every value, or None past ``most``."""
    sample = x[:10_000]
    for d in range(most + 1):
        scaled = sample * 10.0 ** d
        if np.allclose(scaled, np.round(scaled), rtol=0, atol=1e-6 * max(1.0, 10.0 ** d / 1e6)):
            return d
    return None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a is b
    return bool(a == b)


def _nullable(s: pd.Series, dtype: str) -> pd.Series:
    try:
        return s.astype(dtype)
    except (TypeError, ValueError):
        return s


def _restore(values: pd.Series, c: Column) -> pd.Series:
    """A discrete column's values (JSON categories, None for null) in its fit dtype."""
    if c.cat_dtype is not None:
        dt = pd.CategoricalDtype(c.cat_dtype, ordered=c.ordered)
        return pd.Series(pd.Categorical(values, dtype=dt))
    if c.time:
        return pd.Series(pd.to_datetime(values) if c.time == "datetime"
                         else pd.to_timedelta(values)).astype(c.dtype)
    try:
        return values.astype(c.dtype)
    except (TypeError, ValueError):
        if c.dtype.startswith(("int", "uint")):  # nulls in an int column: nullable Int64
            return values.astype("Int64")
        if c.dtype == "bool":
            return values.astype("boolean")
        return values
