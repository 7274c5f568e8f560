"""Utility of synthetic rows: train on synthetic, test on real (TSTR), and augmentation.

TSTR fits the same XGBoost classifier (the project's parameters: ``train.xgboost`` in
``raylake.config.training``) once on the real training rows and once on the synthetic rows,
and scores both on the same real test rows the synthesizer never saw. ``ratio`` =
AUC(synthetic) / AUC(real): 1.0 means the synthetic rows teach the model as much as the real
ones. Several classes: the mean one-vs-rest AUC.

The label is ``target`` itself (a class column) or ``label(frame)`` computed from it (the
delay model's ``dep_delay > 15``); either way ``target`` is not a feature, nor is any
column in ``drop``. Categories become pandas categoricals on the real training rows'
categories (XGBoost's native categorical splits); an unseen one is missing.

Augmentation (``augmentation``): the minority class of the real training rows is topped up
with synthetic rows of that class to a target share; the recall on that class of a model
trained with and without them, on the same real test rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xgboost

from raylake.config.training import XGBoostSettings
from raylake.errors import SynthError
from raylake.synth.metrics import CATEGORICAL, as_float, infer_sdtypes
from raylake.train.metrics import auc

Label = Callable[[pd.DataFrame], pd.Series]


class Features:
    """The feature matrix on the real training rows' terms (columns, categories, classes)."""

    def __init__(self, train: pd.DataFrame, *, target: str, label: Label | None = None,
                 drop: Iterable[str] = (), discrete: Iterable[str] | None = None) -> None:
        if target not in train.columns:
            raise SynthError(f"target {target!r} is not a column of the table (columns: "
                             f"{list(train.columns)}); name the label's column")
        self.target, self.label = target, label
        skip = {target, *drop}
        unknown = skip - set(train.columns)
        if unknown:
            raise SynthError(f"drop names {sorted(unknown)}, not columns of the table")
        types = infer_sdtypes(train, discrete=discrete)
        self.columns = [c for c in train.columns if c not in skip]
        self.categories = {c: pd.Index(sorted(train[c].dropna().astype(str).unique()))
                           for c in self.columns if types[c] == CATEGORICAL}
        y = self._raw_labels(train)
        self.classes = sorted(pd.unique(y.dropna()).tolist())
        if len(self.classes) < 2:
            raise SynthError(f"the label of {target!r} has {len(self.classes)} class(es) in the "
                             "real training rows; a classifier needs at least two")

    def _raw_labels(self, df: pd.DataFrame) -> pd.Series:
        if self.target not in df.columns:
            raise SynthError(f"rows lack the target column {self.target!r}")
        y = self.label(df) if self.label is not None else df[self.target]
        return pd.Series(np.asarray(y, dtype=object), index=df.index).where(
            pd.notna(df[self.target]).to_numpy(), None)

    def xy(self, df: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
        """Features and class indices (rows with no label dropped)."""
        y = self._raw_labels(df)
        keep = y.notna().to_numpy()
        lookup = {v: i for i, v in enumerate(self.classes)}
        codes = np.array([lookup.get(v, -1) for v in y[keep]], dtype=np.int64)
        rows = df[keep]
        known = codes >= 0
        x = pd.DataFrame(index=range(int(known.sum())))
        for c in self.columns:
            if c in self.categories:
                values = rows[c].astype(object).where(rows[c].notna(), None)
                values = values.map(lambda v: None if v is None else str(v))
                x[c] = pd.Categorical(values.to_numpy()[known], categories=self.categories[c])
            else:
                x[c] = as_float(rows[c])[known]
        return x, codes[known]


def _params(n_classes: int, seed: int, threads: int | None) -> dict[str, Any]:
    params = {k: v for k, v in XGBoostSettings().params.items() if k != "eval_metric"}
    if n_classes > 2:
        params.update(objective="multi:softprob", num_class=n_classes)
    else:
        params["objective"] = "binary:logistic"
    params.update(seed=seed, nthread=threads or 0, verbosity=0)
    return params


def fit_predict(features: Features, train: pd.DataFrame, tests: Sequence[pd.DataFrame], *,
                num_boost_round: int = 100, seed: int = 0, threads: int | None = None,
                ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Fit on ``train``; (class indices, probabilities [n, classes]) for each test frame."""
    x, y = features.xy(train)
    if len(np.unique(y)) < 2:
        raise SynthError(f"the rows to train on hold {len(np.unique(y))} class(es) of "
                         f"{features.target!r}; a classifier needs at least two")
    k = len(features.classes)
    booster = xgboost.train(_params(k, seed, threads),
                            xgboost.DMatrix(x, label=y, enable_categorical=True),
                            num_boost_round=num_boost_round)
    out = []
    for test in tests:
        tx, ty = features.xy(test)
        p = booster.predict(xgboost.DMatrix(tx, enable_categorical=True))
        out.append((ty, np.c_[1 - p, p] if k == 2 else p.reshape(len(ty), k)))
    return out


def score_auc(y: np.ndarray, p: np.ndarray) -> float:
    """AUC for two classes; the mean one-vs-rest AUC for more."""
    if p.shape[1] == 2:
        return auc(y == 1, p[:, 1])
    per = [auc(y == k, p[:, k]) for k in range(p.shape[1]) if 0 < (y == k).sum() < len(y)]
    return float(np.mean(per)) if per else float("nan")


def tstr(train: pd.DataFrame, synthetic: pd.DataFrame, test: pd.DataFrame, *, target: str,
         label: Label | None = None, drop: Iterable[str] = (),
         discrete: Iterable[str] | None = None, num_boost_round: int = 100, seed: int = 0,
         threads: int | None = None, baseline: dict[str, Any] | None = None,
         ) -> dict[str, Any]:
    """Train on synthetic, test on real, against train on real (see the module docstring).
    ``baseline``: an earlier result on the same real rows, whose real-side scores are reused
    (scoring several synthesizers fits the real model once)."""
    feats = Features(train, target=target, label=label, drop=drop, discrete=discrete)
    scores = {}
    if baseline is not None:
        scores["real"] = (baseline["auc_real"], baseline["accuracy_real"])
    notes = []
    for name, rows in (("real", train), ("synthetic", synthetic)):
        if name in scores:
            continue
        _, y_rows = feats.xy(rows)
        held = np.unique(y_rows)
        if name == "synthetic" and len(held) < 2:
            # Nothing to learn: the model is a constant (AUC 0.5), not an error.
            y = feats.xy(test)[1]
            p = np.zeros((len(y), len(feats.classes)))
            p[:, held[0] if len(held) else 0] = 1.0
            notes.append(f"the synthetic rows hold {len(held)} class(es) of the label: "
                         "scored as a constant model")
        else:
            [(y, p)] = fit_predict(feats, rows, [test], num_boost_round=num_boost_round,
                                   seed=seed, threads=threads)
        scores[name] = (score_auc(y, p), float((p.argmax(axis=1) == y).mean()))
    real, syn = scores["real"], scores["synthetic"]
    return {"target": target, "classes": [_plain(c) for c in feats.classes],
            "model": f"xgboost, {num_boost_round} rounds",
            "auc_real": real[0], "auc_synthetic": syn[0],
            "accuracy_real": real[1], "accuracy_synthetic": syn[1],
            "ratio": syn[0] / real[0] if real[0] > 0 else float("nan"),
            "rows": {"train": len(train), "synthetic": len(synthetic), "test": len(test)},
            "notes": notes}


def rebalance(train: pd.DataFrame, pool: pd.DataFrame, *, target: str,
              label: Label | None = None, share: float = 0.5, seed: int = 0,
              ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``train`` plus synthetic rows of its minority class from ``pool`` up to ``share`` of
    the rows (all the pool has if that is fewer)."""
    feats = Features(train, target=target, label=label)
    out, info, _ = _rebalance(feats, train, pool, share, seed)
    return out, info


def _rebalance(feats: Features, train: pd.DataFrame, pool: pd.DataFrame, share: float,
               seed: int) -> tuple[pd.DataFrame, dict[str, Any], int]:
    if not 0 < share < 1:
        raise SynthError(f"share {share} must lie strictly between 0 and 1 (0.5: balanced)")
    _, y = feats.xy(train)
    counts = np.bincount(y, minlength=len(feats.classes))
    minority = int(counts.argmin())
    n, n_min = len(y), int(counts[minority])
    want = max(0, int(np.ceil((share * n - n_min) / (1 - share))))
    _, pool_y = feats.xy(pool)
    labelled = pool[feats._raw_labels(pool).notna().to_numpy()]
    in_class = np.flatnonzero(pool_y == minority)
    take = np.random.default_rng(seed).permutation(in_class)[:want]
    added = labelled.iloc[np.sort(take)]
    out = pd.concat([train, added[train.columns]], ignore_index=True)
    info = {"minority": _plain(feats.classes[minority]), "added": len(added), "wanted": want,
            "share_before": n_min / n, "share_after": (n_min + len(added)) / (n + len(added))}
    return out, info, minority


def augmentation(train: pd.DataFrame, pool: pd.DataFrame, test: pd.DataFrame, *,
                 target: str, label: Label | None = None, drop: Iterable[str] = (),
                 share: float = 0.5, threshold: float = 0.5, num_boost_round: int = 100,
                 seed: int = 0, threads: int | None = None) -> dict[str, Any]:
    """Recall (and precision, AUC) on the minority class with and without rebalancing the
    training rows by synthetic minority rows from ``pool``, on the same real test rows."""
    feats = Features(train, target=target, label=label, drop=drop)
    augmented, info, minority = _rebalance(feats, train, pool, share, seed)
    out: dict[str, Any] = {"target": target, "threshold": threshold, **info}
    for name, rows in (("real", train), ("augmented", augmented)):
        [(y, p)] = fit_predict(feats, rows, [test], num_boost_round=num_boost_round,
                               seed=seed, threads=threads)
        hit = p[:, minority] >= threshold
        pos = y == minority
        out[f"recall_{name}"] = float((hit & pos).sum() / max(pos.sum(), 1))
        out[f"precision_{name}"] = float((hit & pos).sum() / max(hit.sum(), 1))
        out[f"auc_{name}"] = auc(pos, p[:, minority])
    return out


def _plain(v: Any) -> Any:
    """A numpy scalar as its Python value (JSON-safe)."""
    return v.item() if isinstance(v, np.generic) else v
