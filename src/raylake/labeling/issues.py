"""Label issues by confident learning (Northcutt, Jiang and Chuang, 2021), the way
cleanlab's ``find_label_issues(labels, pred_probs, filter_by="prune_by_noise_rate",
return_indices_ranked_by="self_confidence")`` does it:

1. out-of-fold predicted probabilities (stratified k-fold: every row scored by a model
   that never saw it), :func:`out_of_fold_probs`;
2. a threshold per class: the mean probability of class ``j`` over the rows labelled
   ``j`` (the model's self-confidence on that class);
3. the confident joint ``C[i][j]``: rows labelled ``i`` whose probability of ``j`` is at
   least ``t_j`` (the largest such ``j`` when several are), calibrated so each row of
   ``C`` sums to the count of label ``i``;
4. prune by noise rate: for each ``i != j``, the ``C[i][j]`` rows labelled ``i`` with the
   largest margin ``p_j - p_i`` are issues;
5. ranked by self-confidence ``p[given]``, lowest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from raylake.labeling.errors import LabelingError
from raylake.labeling.linear import LogisticRegression

__all__ = ["LabelIssues", "confident_joint", "find_label_issues", "out_of_fold_probs",
           "rank_all"]


@dataclass
class LabelIssues:
    """Issues found: row numbers ranked (most likely wrong first), the suggested label
    and the self-confidence of each, and the statistics behind them."""

    index: np.ndarray
    suggested: np.ndarray
    self_confidence: np.ndarray
    thresholds: np.ndarray
    joint: np.ndarray
    pred_probs: np.ndarray


def out_of_fold_probs(X: Any, labels: np.ndarray, n_classes: int, *, folds: int = 5,
                      alpha: float = 1.0, seed: int = 0) -> np.ndarray:
    """Each row's class probabilities from a model fitted on the other folds (folds
    stratified by label)."""
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=n_classes)
    if (counts[counts > 0] < folds).any():
        small = [int(c) for c in np.flatnonzero((counts > 0) & (counts < folds))]
        raise LabelingError(f"Classes {small} have fewer rows than folds={folds}; lower "
                            "active_labeling.issues.folds or label more rows of them.")
    rng = np.random.default_rng(seed)
    fold = np.empty(len(labels), dtype=np.int64)
    for c in np.flatnonzero(counts):
        rows = rng.permutation(np.flatnonzero(labels == c))
        fold[rows] = np.arange(rows.size) % folds
    probs = np.zeros((len(labels), n_classes))
    for f in range(folds):
        test = fold == f
        model = LogisticRegression(alpha=alpha).fit(X[~test], labels[~test], n_classes=n_classes)
        probs[test] = model.predict_proba(X[test])
    return probs


def confident_joint(labels: np.ndarray, pred_probs: np.ndarray,
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class thresholds, the calibrated confident joint and each row's confidently
    counted class (-1 where no class reaches its threshold)."""
    labels = np.asarray(labels, dtype=np.int64)
    k = pred_probs.shape[1]
    thresholds = np.array([pred_probs[labels == j, j].mean() if (labels == j).any() else 1.0
                           for j in range(k)])
    above = pred_probs >= thresholds - 1e-6
    masked = np.where(above, pred_probs, -np.inf)
    counted = np.where(above.any(axis=1), masked.argmax(axis=1), -1)
    joint = np.zeros((k, k))
    for i in range(k):
        for j in range(k):
            joint[i, j] = np.sum((labels == i) & (counted == j))
    # Calibrate: each row sums to the number of rows labelled i.
    label_counts = np.bincount(labels, minlength=k)
    row_sums = joint.sum(axis=1, keepdims=True)
    joint = np.where(row_sums > 0, joint / np.where(row_sums > 0, row_sums, 1.0), 0.0)
    joint = joint * label_counts[:, None]
    return thresholds, joint, counted


def find_label_issues(labels: np.ndarray, pred_probs: np.ndarray) -> LabelIssues:
    """Likely label errors, ranked by self-confidence (see the module)."""
    labels = np.asarray(labels, dtype=np.int64)
    k = pred_probs.shape[1]
    thresholds, joint, _ = confident_joint(labels, pred_probs)
    issue = np.zeros(len(labels), dtype=bool)
    for i in range(k):
        given = np.flatnonzero(labels == i)
        for j in range(k):
            n = int(round(joint[i, j]))
            if i == j or n == 0 or given.size == 0:
                continue
            margin = pred_probs[given, j] - pred_probs[given, i]
            issue[given[np.argsort(-margin, kind="stable")[:n]]] = True
    # A row whose given label is its most probable class is not an issue.
    issue &= pred_probs.argmax(axis=1) != labels
    rows = np.flatnonzero(issue)
    self_conf = pred_probs[rows, labels[rows]]
    order = np.argsort(self_conf, kind="stable")
    rows = rows[order]
    return LabelIssues(rows, pred_probs[rows].argmax(axis=1), self_conf[order], thresholds,
                       joint, pred_probs)


def rank_all(labels: np.ndarray, pred_probs: np.ndarray, issues: LabelIssues) -> np.ndarray:
    """Every row ranked: the issues first (their order), then the rest by self-confidence."""
    labels = np.asarray(labels, dtype=np.int64)
    rest = np.setdiff1d(np.arange(len(labels)), issues.index)
    rest = rest[np.argsort(pred_probs[rest, labels[rest]], kind="stable")]
    return np.concatenate([issues.index, rest])
