"""Model metrics: technical (AUC, log loss, accuracy, calibration error) and the
business one (expected cost per N flights against doing nothing).

Computed on the driver from (label, probability) pairs: two floats per row,
small even for millions of rows, so the metrics are exact rather than
averaged over workers' shards.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def hard_labels(y: np.ndarray) -> np.ndarray:
    """Labels as 0/1 for scoring: a soft label (a label model's probability, which XGBoost's
    binary:logistic trains on as it is) counts as its more likely class (>= 0.5)."""
    return (np.asarray(y, dtype=np.float64) >= 0.5).astype(np.float64)


def auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum formula, ties given their mean rank."""
    y = np.asarray(y, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p), dtype=np.float64)
    sorted_p = np.asarray(p)[order]
    # Mean rank over each run of equal scores.
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_p)) + 1]
    ends = np.r_[starts[1:], len(p)]
    mean_ranks = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(mean_ranks, ends - starts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def log_loss(y: np.ndarray, p: np.ndarray, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy of labels ``y`` against probabilities ``p`` (clipped to
    [eps, 1 - eps])."""
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: |mean label - mean probability| over equal-width bins,
    weighted by the share of rows in each bin."""
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.mean() * abs(y[m].mean() - p[m].mean())
    return float(total)


def expected_cost(y: np.ndarray, p: np.ndarray, threshold: float, cost: Any) -> float:
    """Cost per ``cost.per`` rows of acting when p >= threshold."""
    act = p >= threshold
    missed = np.sum(~act & (y == 1))
    false_alarms = np.sum(act & (y == 0))
    return float((missed * cost.missed + false_alarms * cost.false_alarm) / len(y) * cost.per)


def best_threshold(y: np.ndarray, p: np.ndarray, cost: Any) -> float:
    """The threshold with the lowest expected cost (chosen on validation, applied to test)."""
    y = hard_labels(y)
    grid = np.linspace(0.01, 0.99, 99)
    costs = [expected_cost(y, p, t, cost) for t in grid]
    return float(grid[int(np.argmin(costs))])


def evaluate(y: np.ndarray, p: np.ndarray, threshold: float, cost: Any) -> dict[str, float]:
    """Metrics of probabilities ``p`` against labels ``y``: rows, positive rate, AUC, log
    loss, accuracy at 0.5, calibration error, and the expected cost per ``cost.per`` rows at
    ``threshold``, that of doing nothing and the saving between them."""
    y = hard_labels(y)  # soft labels are scored as their more likely class
    p = np.asarray(p, dtype=np.float64)
    do_nothing = float(np.sum(y == 1) * cost.missed / len(y) * cost.per) if len(y) else 0.0
    model_cost = expected_cost(y, p, threshold, cost) if len(y) else 0.0
    return {
        "rows": int(len(y)),
        "positive_rate": float(y.mean()) if len(y) else float("nan"),
        "auc": auc(y, p),
        "log_loss": log_loss(y, p),
        "accuracy": float(np.mean((p >= 0.5) == (y == 1))),
        "calibration_error": calibration_error(y, p),
        "threshold": threshold,
        f"cost_per_{cost.per}": model_cost,
        f"cost_per_{cost.per}_do_nothing": do_nothing,
        f"saving_per_{cost.per}": do_nothing - model_cost,
    }
