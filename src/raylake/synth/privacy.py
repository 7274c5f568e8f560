"""Privacy of synthetic rows against the real rows a synthesizer was trained on.

- **Distance to the closest record (DCR).** Rows are encoded once on the training rows'
  terms: numbers and times min-max scaled to [0, 1] (a null: the median, plus an indicator
  column when the training rows have nulls there), categories one-hot scaled by 1/sqrt(2)
  (so two different categories are 1 apart, as two numbers at the ends of their range are).
  A synthetic row's DCR is its Euclidean distance to the nearest training row; a real
  **holdout** row's DCR to the training rows is the baseline: what a fresh record from the
  same population looks like. Synthetic rows much closer than that are near-copies.
- **Closer to training than to holdout**: the share of synthetic rows nearer the training
  rows than an equally large holdout (SDMetrics' DCR overfitting idea); 0.5 when the
  synthesizer learnt the population, 1.0 when it copies its training rows.
- **Exact copies**: the share of synthetic rows equal in every column to a training row,
  beside the share of holdout rows that are (what chance gives on this table).
- **Membership inference**: an attacker holding the synthetic rows scores a candidate by
  minus its distance to the nearest synthetic row; the AUC of that score at telling training
  rows (members) from holdout rows. 0.5: no better than a coin; 1.0: membership leaks.

Distances are exact (no index): chunked matrix products in float64, a sample of
``sample`` rows per side, so a 50,000-row table takes seconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from raylake.errors import SynthError
from raylake.synth.metrics import CATEGORICAL, as_float, infer_sdtypes
from raylake.train.metrics import auc

_MAX_CATEGORIES = 200  # one-hot columns per category column (the most frequent ones)


class RowEncoder:
    """Encodes rows as vectors on the training rows' terms (see the module docstring)."""

    def __init__(self, train: pd.DataFrame, *, discrete: Iterable[str] | None = None) -> None:
        self.sdtypes = infer_sdtypes(train, discrete=discrete)
        self.numeric: dict[str, tuple[float, float, float, bool]] = {}
        self.categories: dict[str, pd.Index] = {}
        for col, kind in self.sdtypes.items():
            if kind == CATEGORICAL:
                top = train[col].astype(object).value_counts(dropna=False)
                self.categories[col] = pd.Index(top.index[:_MAX_CATEGORIES])
            else:
                x = as_float(train[col])
                ok = x[~np.isnan(x)]
                lo, hi = (float(ok.min()), float(ok.max())) if len(ok) else (0.0, 1.0)
                med = float(np.median(ok)) if len(ok) else 0.0
                self.numeric[col] = (lo, (hi - lo) or 1.0, med, bool(np.isnan(x).any()))

    def encode(self, df: pd.DataFrame) -> np.ndarray:
        """The rows as a float64 matrix (unseen categories encode as all zeros)."""
        missing = [c for c in self.sdtypes if c not in df.columns]
        if missing:
            raise SynthError(f"rows to encode lack the training columns {missing}; compare "
                             "frames with the same columns")
        blocks = []
        for col, (lo, span, med, nulls) in self.numeric.items():
            x = as_float(df[col])
            null = np.isnan(x)
            blocks.append(((np.where(null, med, x) - lo) / span)[:, None])
            if nulls:
                blocks.append(null.astype(np.float64)[:, None])
        for col, cats in self.categories.items():
            codes = cats.get_indexer(df[col].astype(object))
            onehot = np.zeros((len(df), len(cats)), dtype=np.float64)
            hit = codes >= 0
            onehot[np.flatnonzero(hit), codes[hit]] = 1.0 / np.sqrt(2.0)
            blocks.append(onehot)
        return np.hstack(blocks) if blocks else np.zeros((len(df), 0))


def nearest(a: np.ndarray, b: np.ndarray, *, chunk: int = 512) -> np.ndarray:
    """For each row of ``a``, the Euclidean distance to its nearest row of ``b``."""
    if not len(b):
        raise SynthError("nearest: the reference set is empty; pass at least one row")
    bb = (b * b).sum(axis=1)
    out = np.empty(len(a), dtype=np.float64)
    for start in range(0, len(a), chunk):
        x = a[start:start + chunk]
        d2 = (x * x).sum(axis=1)[:, None] + bb[None, :] - 2.0 * (x @ b.T)
        out[start:start + chunk] = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
    return out


def _row_hashes(df: pd.DataFrame, columns: list[str]) -> np.ndarray:
    frame = df[columns].copy()
    for c in columns:  # one representation per value, whatever the dtype
        if not pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c]):
            frame[c] = frame[c].astype(object).where(frame[c].notna(), None).astype(str)
        elif not pd.api.types.is_datetime64_any_dtype(frame[c]):
            frame[c] = frame[c].astype(np.float64)
    return pd.util.hash_pandas_object(frame, index=False).to_numpy()


def copy_share(rows: pd.DataFrame, train: pd.DataFrame) -> float:
    """The share of ``rows`` equal in every column to some row of ``train``."""
    columns = list(train.columns)
    if not len(rows):
        return float("nan")
    return float(np.isin(_row_hashes(rows, columns), _row_hashes(train, columns)).mean())


def _sample(df: pd.DataFrame, n: int, rng: np.random.Generator) -> pd.DataFrame:
    if len(df) <= n:
        return df
    return df.iloc[np.sort(rng.choice(len(df), n, replace=False))]


def privacy(train: pd.DataFrame, synthetic: pd.DataFrame, holdout: pd.DataFrame, *,
            discrete: Iterable[str] | None = None, sample: int = 2000,
            attack_rows: int = 50_000, seed: int = 0) -> dict[str, Any]:
    """DCR of synthetic rows against a holdout's, the closer-to-training share, exact copies
    and the membership-inference AUC (see the module docstring). ``holdout`` must be real
    rows of the same population that the synthesizer never saw."""
    for name, df in (("train", train), ("synthetic", synthetic), ("holdout", holdout)):
        if not len(df):
            raise SynthError(f"privacy: the {name} table is empty; pass real training rows, "
                             "synthetic rows and real holdout rows the synthesizer never saw")
    rng = np.random.default_rng(seed)
    enc = RowEncoder(train, discrete=discrete)
    train_x = enc.encode(train)
    n = min(sample, len(synthetic), len(holdout), len(train))
    syn_s = enc.encode(_sample(synthetic, n, rng))
    hold_s = enc.encode(_sample(holdout, n, rng))
    members = train_x[rng.choice(len(train_x), n, replace=False)]
    dcr_syn = nearest(syn_s, train_x)
    dcr_hold = nearest(hold_s, train_x)
    # Closer to training than to holdout: the training side cut to the holdout's size.
    m = min(len(train), len(holdout))
    train_m = train_x[rng.choice(len(train_x), m, replace=False)]
    hold_m = enc.encode(_sample(holdout, m, rng))
    d_train, d_hold = nearest(syn_s, train_m), nearest(syn_s, hold_m)
    closer = float(np.mean(d_train < d_hold) + 0.5 * np.mean(d_train == d_hold))
    # Membership inference: nearer a synthetic row = more likely a member.
    syn_all = enc.encode(_sample(synthetic, attack_rows, rng))
    candidates = np.vstack([members, hold_s])
    is_member = np.r_[np.ones(len(members)), np.zeros(len(hold_s))]
    mia = auc(is_member, -nearest(candidates, syn_all))
    return {
        "rows": {"train": len(train), "synthetic": len(synthetic), "holdout": len(holdout),
                 "sample": n},
        "dcr_synthetic_median": float(np.median(dcr_syn)),
        "dcr_holdout_median": float(np.median(dcr_hold)),
        "dcr_synthetic_p05": float(np.quantile(dcr_syn, 0.05)),
        "dcr_holdout_p05": float(np.quantile(dcr_hold, 0.05)),
        "dcr_ratio": float(np.median(dcr_syn) / np.median(dcr_hold))
        if np.median(dcr_hold) > 0 else float("nan"),
        "dcr_synthetic_hist": _hist(dcr_syn, dcr_hold),
        "closer_to_training_share": closer,
        "exact_copy_share": copy_share(synthetic, train),
        "holdout_exact_copy_share": copy_share(holdout, train),
        "membership_auc": mia,
    }


def _hist(syn: np.ndarray, hold: np.ndarray, bins: int = 20) -> dict[str, list[float]]:
    """Both DCR distributions on shared edges (for the report's chart)."""
    top = float(np.quantile(np.r_[syn, hold], 0.99)) or 1.0
    edges = np.linspace(0.0, top, bins + 1)
    share = [np.histogram(np.minimum(x, top), edges)[0] / max(len(x), 1) for x in (syn, hold)]
    return {"edges": edges.tolist(), "synthetic": share[0].tolist(), "holdout": share[1].tolist()}
