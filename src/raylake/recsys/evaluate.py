"""Offline quality of the recommendation pipeline on the time-split holdout.

For a seeded sample of the users who clicked in the holdout (their clicked items are the
relevant ones), every method ranks the whole catalogue or its candidates:

- ``random``: a seeded random order (the floor);
- ``popularity``: items by their clicks before the holdout (the fallback of a cold user);
- ``two_tower``: the user's vector against every item vector (retrieval alone);
- ``pipeline``: the two-tower's top ``recsys.candidates`` re-ranked by the ranker (what
  ``POST /recommend`` answers);
- ``oracle``: items by the generator's true affinity (truth/), which no model reads: the
  ceiling that the clicks' noise leaves.

Scores: recall@``candidates`` (retrieval's job: is the clicked item among the
candidates), and NDCG@20 and recall@20 of the final list.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from raylake.train.ranking import ndcg_at_k, recall_at_k

K = 20


class Holdout:
    """The evaluation users (ids), their relevant (row, item id) pairs, and every item id."""

    def __init__(self, users: np.ndarray, rel_rows: np.ndarray, rel_items: np.ndarray,
                 items: np.ndarray, popular: np.ndarray) -> None:
        self.users, self.rel_rows, self.rel_items = users, rel_rows, rel_items
        self.items, self.popular = items, popular


def holdout(impressions: pa.Table, items: np.ndarray, start: Any, n_users: int,
            seed: int = 0) -> Holdout:
    """Users with a click at or after ``start`` (a seeded sample of ``n_users``), their
    clicked items, and the items by clicks before ``start`` (most first)."""
    ts_type = impressions.schema.field("ts").type
    after = pc.greater_equal(impressions["ts"], pa.scalar(start, ts_type))
    clicked = impressions.filter(pc.and_(impressions["clicked"], after))
    before = impressions.filter(pc.and_(impressions["clicked"], pc.invert(after)))
    users = np.unique(clicked["user_id"].to_numpy())
    if len(users) > n_users:
        users = np.sort(np.random.default_rng(seed).choice(users, n_users, replace=False))
    cu, ci = clicked["user_id"].to_numpy(), clicked["item_id"].to_numpy()
    keep = np.isin(cu, users)
    rel_rows = np.searchsorted(users, cu[keep])
    ids, counts = np.unique(before["item_id"].to_numpy(), return_counts=True)
    clicks = dict(zip(ids.tolist(), counts.tolist(), strict=True))
    popular = np.array(sorted(items.tolist(), key=lambda i: (-clicks.get(i, 0), i)), np.int64)
    return Holdout(users, rel_rows, ci[keep], np.sort(items), popular)


def top_k(scores: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    """Per row of ``scores`` (users, items), the ``k`` ids of the highest scores, best first."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(scores, part, axis=1).argsort(axis=1)[:, ::-1]
    return ids[np.take_along_axis(part, order, axis=1)]


def truth_scores(truth_dir: str | Path, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """The generator's true affinity (users, items): user vector . item vector + item bias."""
    u = pq.read_table(Path(truth_dir) / "users.parquet")
    i = pq.read_table(Path(truth_dir) / "items.parquet")
    uv = _rows(u, "user_id", users)
    iv = _rows(i, "item_id", items)
    bias = i["bias"].to_numpy()[_positions(i["item_id"].to_numpy(), items)]
    return uv @ iv.T + bias[None, :]


def _positions(ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    order = ids.argsort()
    return order[np.searchsorted(ids, wanted, sorter=order)]


def _rows(t: pa.Table, key: str, wanted: np.ndarray) -> np.ndarray:
    vec = t["vector"].combine_chunks()
    dim = vec.type.list_size
    flat = vec.flatten().to_numpy().reshape(-1, dim)
    return flat[_positions(t[key].to_numpy(), wanted)]


def score(h: Holdout, lists: dict[str, np.ndarray], candidates: int) -> dict[str, dict[str, float]]:
    """recall@candidates (where the list is that long), NDCG@20 and recall@20 per method."""
    out: dict[str, dict[str, float]] = {}
    for name, ranked in lists.items():
        m = {f"ndcg@{K}": ndcg_at_k(ranked, h.rel_rows, h.rel_items, K),
             f"recall@{K}": recall_at_k(ranked, h.rel_rows, h.rel_items, K)}
        if ranked.shape[1] >= candidates:
            m[f"recall@{candidates}"] = recall_at_k(ranked, h.rel_rows, h.rel_items, candidates)
        out[name] = {k: round(float(v), 4) for k, v in m.items()}
    return out


def evaluate(h: Holdout, user_vectors: np.ndarray, known: np.ndarray,
             item_vectors: np.ndarray, candidates: int,
             rank: Callable[[np.ndarray, np.ndarray], np.ndarray] | None,
             truth_dir: str | Path | None, seed: int = 0) -> dict[str, Any]:
    """The quality table. ``user_vectors`` (users, dim) of ``h.users`` (rows of unknown
    users, ``~known``, are ignored: they get the popular items, as the server answers a
    cold user); ``item_vectors`` (items, dim) of ``h.items``; ``rank(users, candidate ids
    (users, c)) -> scores (users, c)`` the ranker, None to skip the pipeline row."""
    n = len(h.users)
    c = min(candidates, len(h.items))
    rng = np.random.default_rng(seed)
    lists: dict[str, np.ndarray] = {
        "random": np.stack([rng.permutation(h.items)[:c] for _ in range(n)]),
        "popularity": np.tile(h.popular[:c], (n, 1)),
    }
    retrieved = top_k(user_vectors @ item_vectors.T, h.items, c)
    retrieved[~known] = h.popular[:c]
    lists["two_tower"] = retrieved
    if rank is not None:
        s = rank(h.users, retrieved)
        order = np.argsort(-s, axis=1, kind="stable")
        lists["pipeline"] = np.take_along_axis(retrieved, order, axis=1)[:, :K]
    if truth_dir is not None and Path(truth_dir, "users.parquet").exists():
        lists["oracle"] = top_k(truth_scores(truth_dir, h.users, h.items), h.items, c)
    return {"users": n, "cold_users": int((~known).sum()), "candidates": c,
            "relevant": len(h.rel_items), "methods": score(h, lists, c)}


def table_lines(quality: dict[str, Any]) -> list[str]:
    """The quality table as terminal lines (one per method)."""
    c = quality["candidates"]
    lines = [f"offline quality on the holdout ({quality['users']:,} users, "
             f"{quality['relevant']:,} clicks; {quality['cold_users']} cold):",
             f"  {'method':<11} {'recall@' + str(c):>11} {'ndcg@20':>8} {'recall@20':>9}"]
    for name, m in quality["methods"].items():
        rc = m.get(f"recall@{c}")
        lines.append(f"  {name:<11} {'-' if rc is None else f'{rc:.4f}':>11} "
                     f"{m['ndcg@20']:>8.4f} {m['recall@20']:>9.4f}")
    return lines
