"""Ranking metrics (raylake.train.ranking) against a per-user loop written from the
definitions, and on cases worked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from raylake.train.ranking import ndcg_at_k, recall_at_k


def _loop(ranked, rel_users, rel_items, k):
    recalls, ndcgs = [], []
    for u in range(len(ranked)):
        rel = set(rel_items[rel_users == u].tolist())
        if not rel:
            continue
        top = ranked[u, :k].tolist()
        recalls.append(len(rel & set(top)) / len(rel))
        dcg = sum(1 / np.log2(j + 2) for j, item in enumerate(top) if item in rel)
        ideal = sum(1 / np.log2(j + 2) for j in range(min(len(rel), k)))
        ndcgs.append(dcg / ideal)
    return np.mean(recalls), np.mean(ndcgs)


def test_metrics_match_the_definition_on_random_lists():
    rng = np.random.default_rng(3)
    n_users, n_items = 300, 200
    ranked = np.stack([rng.permutation(n_items)[:50] for _ in range(n_users)])
    rel_users = rng.integers(0, n_users, size=900)
    rel_items = rng.integers(0, n_items, size=900)
    for k in (1, 5, 20, 50):
        recall, ndcg = _loop(ranked, rel_users, rel_items, k)
        assert recall_at_k(ranked, rel_users, rel_items, k) == pytest.approx(recall)
        assert ndcg_at_k(ranked, rel_users, rel_items, k) == pytest.approx(ndcg)


def test_worked_cases():
    ranked = np.array([[7, 3, 9], [1, 2, 3]])
    # User 0 likes 3 and 4 (one of two found, at rank 2); user 1 likes nothing (left out).
    users, items = np.array([0, 0, 0]), np.array([3, 4, 3])
    assert recall_at_k(ranked, users, items, 3) == pytest.approx(0.5)
    assert ndcg_at_k(ranked, users, items, 3) == pytest.approx(
        (1 / np.log2(3)) / (1 + 1 / np.log2(3)))
    assert recall_at_k(ranked, users, items, 1) == 0.0
    assert np.isnan(recall_at_k(ranked, np.array([], int), np.array([], int), 2))


def test_k_longer_than_the_lists_says_what_to_do():
    with pytest.raises(ValueError, match="retrieve more candidates or lower k"):
        recall_at_k(np.zeros((2, 3), int), np.array([0]), np.array([1]), 20)
