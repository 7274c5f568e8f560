"""Semi-supervised training: the unlabelled rows help the few labelled ones.

- :func:`self_training`: fit on the labels, pseudo-label the unlabelled rows the model
  is sure of (top probability at least ``threshold``), at most a quota per class each
  round so the pseudo-labels keep the labelled rows' class shares (per-class balance;
  a model that leans to one class would otherwise feed itself that class), refit; stop
  after ``rounds`` or when no row passes.
- :func:`label_propagation`: label spreading (Zhou et al., 2004) over a symmetric k-NN
  graph of the rows (cosine similarity), class mass normalised, then a model fitted on
  every row with the propagated labels weighted by their confidence.

Both return a :class:`~raylake.labeling.linear.LogisticRegression` and what they did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from raylake.labeling.linear import LogisticRegression

__all__ = ["SemiResult", "knn_graph", "label_propagation", "self_training"]


@dataclass
class SemiResult:
    """The fitted model and, per round, how many rows were pseudo-labelled."""

    model: LogisticRegression
    pseudo_labelled: int = 0
    rounds: list[int] = field(default_factory=list)


def _stack(a: Any, b: Any) -> Any:
    if sp.issparse(a) or sp.issparse(b):
        return sp.vstack([sp.csr_matrix(a), sp.csr_matrix(b)]).tocsr()
    return np.vstack([a, b])


def self_training(X_l: Any, y_l: np.ndarray, X_u: Any, n_classes: int, *,
                  threshold: float = 0.9, per_class: int = 50, rounds: int = 10,
                  alpha: float = 1.0) -> SemiResult:
    """Self-training with a confidence threshold and per-class quotas (see the module)."""
    y_l = np.asarray(y_l, dtype=np.int64)
    prior = np.bincount(y_l, minlength=n_classes) / max(len(y_l), 1)
    quota = np.maximum(1, np.round(per_class * n_classes * prior)).astype(int)
    pseudo = np.full(X_u.shape[0], -1, dtype=np.int64)
    model = LogisticRegression(alpha=alpha).fit(X_l, y_l, n_classes=n_classes)
    result = SemiResult(model)
    for _ in range(rounds):
        free = np.flatnonzero(pseudo < 0)
        if free.size == 0:
            break
        probs = model.predict_proba(X_u[free])
        top, conf = probs.argmax(axis=1), probs.max(axis=1)
        added = 0
        for c in range(n_classes):
            sure = np.flatnonzero((top == c) & (conf >= threshold))
            take = sure[np.argsort(-conf[sure], kind="stable")][: quota[c]]
            pseudo[free[take]] = c
            added += take.size
        result.rounds.append(added)
        if added == 0:
            break
        used = np.flatnonzero(pseudo >= 0)
        model = LogisticRegression(alpha=alpha).fit(
            _stack(X_l, X_u[used]), np.concatenate([y_l, pseudo[used]]), n_classes=n_classes)
    result.model, result.pseudo_labelled = model, int((pseudo >= 0).sum())
    return result


def _unit(X: Any) -> Any:
    if sp.issparse(X):
        norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        return sp.csr_matrix(sp.diags(1.0 / norms) @ X)
    D = np.asarray(X, dtype=np.float64)
    norms = np.linalg.norm(D, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return D / norms


def knn_graph(X: Any, k: int = 10, block: int = 2048) -> sp.csr_matrix:
    """Symmetric k-nearest-neighbour graph in cosine similarity (weights = similarity,
    clipped at 0), computed a block of rows at a time."""
    U = _unit(X)
    n = U.shape[0]
    k = min(k, n - 1)
    rows, cols, vals = [], [], []
    for start in range(0, n, block):
        stop = min(start + block, n)
        S = U[start:stop] @ U.T
        S = np.asarray(S.toarray() if sp.issparse(S) else S)
        S[np.arange(stop - start), np.arange(start, stop)] = -np.inf  # no self-loops
        nn = np.argpartition(-S, k, axis=1)[:, :k]
        rows.append(np.repeat(np.arange(start, stop), k))
        cols.append(nn.ravel())
        vals.append(np.take_along_axis(S, nn, axis=1).ravel())
    W = sp.csr_matrix((np.clip(np.concatenate(vals), 0.0, None),
                       (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    return sp.csr_matrix(W.maximum(W.T))


def label_propagation(X_l: Any, y_l: np.ndarray, X_u: Any, n_classes: int, *,
                      neighbors: int = 10, propagation_alpha: float = 0.99,
                      iterations: int = 50, alpha: float = 1.0) -> SemiResult:
    """Label spreading over the k-NN graph of all rows, then a model on every row with
    its propagated label, each unlabelled row weighted by its label's share of mass."""
    y_l = np.asarray(y_l, dtype=np.int64)
    X = _stack(X_l, X_u)
    n_l = len(y_l)
    W = knn_graph(X, neighbors)
    d = np.asarray(W.sum(axis=1)).ravel()
    d[d == 0] = 1.0
    inv = sp.diags(1.0 / np.sqrt(d))
    S = sp.csr_matrix(inv @ W @ inv)
    Y0 = np.zeros((X.shape[0], n_classes))
    Y0[np.arange(n_l), y_l] = 1.0
    F = Y0.copy()
    for _ in range(iterations):
        F = propagation_alpha * np.column_stack([S @ F[:, j] for j in range(n_classes)]) + (
            1 - propagation_alpha) * Y0
    # Class mass normalisation (Zhu, Ghahramani and Lafferty, 2003): scale each class's
    # column to the labelled rows' class shares, so a class whose seeds sit in a dense
    # region does not flood the graph.
    prior = np.bincount(y_l, minlength=n_classes) / max(n_l, 1)
    totals = F.sum(axis=0)
    F = F * np.where(totals > 0, prior / np.where(totals > 0, totals, 1.0), 0.0)
    mass = F.sum(axis=1)
    reached = mass > 0
    share = np.where(reached[:, None], F / np.where(reached, mass, 1.0)[:, None], 0.0)
    labels = share.argmax(axis=1)
    labels[:n_l] = y_l
    weight = np.where(reached, share.max(axis=1), 0.0)
    weight[:n_l] = 1.0
    keep = weight > 0
    model = LogisticRegression(alpha=alpha).fit(X[keep], labels[keep], n_classes=n_classes,
                                                sample_weight=weight[keep])
    return SemiResult(model, int(keep[n_l:].sum()), [int(keep[n_l:].sum())])
