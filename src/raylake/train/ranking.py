"""Ranking metrics for recommendations: recall@k and NDCG@k over users.

A user's ranked list is a row of item ids (best first) and their relevant items a
ragged set (the items they clicked in the holdout). Both are flattened into arrays
with offsets so that a million users are scored with numpy, not a Python loop per user:
membership is a sorted search of (user, item) keys.
"""

from __future__ import annotations

import numpy as np


def _members(ranked: np.ndarray, rel_users: np.ndarray, rel_items: np.ndarray) -> np.ndarray:
    """hit[u, j]: is ``ranked[u, j]`` among user u's relevant items."""
    n_users, k = ranked.shape
    width = int(max(ranked.max(initial=0), rel_items.max(initial=0))) + 1
    keys = np.unique(rel_users.astype(np.int64) * width + rel_items)
    query = np.arange(n_users, dtype=np.int64)[:, None] * width + ranked.astype(np.int64)
    pos = np.minimum(np.searchsorted(keys, query), max(len(keys) - 1, 0))
    return (keys[pos] == query) if len(keys) else np.zeros((n_users, k), dtype=bool)


def _relevant(rel_users: np.ndarray, rel_items: np.ndarray, n_users: int) -> np.ndarray:
    """How many distinct relevant items each user has."""
    pairs = np.unique(np.stack([rel_users, rel_items]), axis=1)
    return np.bincount(pairs[0], minlength=n_users)


def recall_at_k(ranked: np.ndarray, rel_users: np.ndarray, rel_items: np.ndarray,
                k: int) -> float:
    """Mean over users with a relevant item of |top k & relevant| / |relevant|.

    ``ranked``: (users, >= k) item ids, best first; user u is row u.
    ``rel_users``, ``rel_items``: the relevant (user row, item id) pairs (repeats count once).
    """
    _check(ranked, k)
    n = _relevant(rel_users, rel_items, len(ranked))
    hits = _members(ranked[:, :k], rel_users, rel_items).sum(axis=1)
    has = n > 0
    return float((hits[has] / n[has]).mean()) if has.any() else float("nan")


def ndcg_at_k(ranked: np.ndarray, rel_users: np.ndarray, rel_items: np.ndarray,
              k: int) -> float:
    """Mean over users with a relevant item of binary-relevance NDCG@k: the discounted
    hits of the top k over those of the best possible top k."""
    _check(ranked, k)
    n = _relevant(rel_users, rel_items, len(ranked))
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (_members(ranked[:, :k], rel_users, rel_items) * discount).sum(axis=1)
    ideal = np.concatenate([[0.0], np.cumsum(discount)])[np.minimum(n, k)]
    has = n > 0
    return float((dcg[has] / ideal[has]).mean()) if has.any() else float("nan")


def _check(ranked: np.ndarray, k: int) -> None:
    if ranked.ndim != 2:
        raise ValueError(f"ranked lists must be a (users, items) array, got shape {ranked.shape}")
    if not 1 <= k <= ranked.shape[1]:
        raise ValueError(f"k={k} needs ranked lists of at least {k} items, "
                         f"got {ranked.shape[1]}: retrieve more candidates or lower k")
