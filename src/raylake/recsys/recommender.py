"""The per-replica core of ``POST /recommend``: retrieval, ranking, the cold-start
fallback, for a whole batch of requests at once.

>>> rec = Recommender.open(lake, conf)
>>> answers = rec.recommend([(17, 20), (999_999, 5)])   # (user_id, k) pairs

What one batch costs, whatever the number of requests in it:

1. **User vectors**: a row take from a matrix. The user tower reads nothing but the
   user's id (embedding, then an MLP), so a user's vector is fixed for a tower version:
   every known user's vector is computed once when the replica loads (one torch call;
   50,000 users x 32 dimensions are 6.4 MB) instead of a torch call per batch. A user the
   towers never saw (no click before the holdout, code 0) is a *cold* user.
2. **Retrieval**: one :meth:`AnnIndex.search <raylake.models.ann.AnnIndex.search>` over
   the batch's user vectors for ``recsys.candidates`` candidates each.
3. **Ranking**: one :meth:`RankerScorer.score <raylake.recsys.scoring.RankerScorer.score>`
   over every request's candidates: one batched online-store read per feature view for
   the whole batch, then one model call. The top ``k`` of each row, best first.

Cold users get the most popular items: items by their clicks before the holdout
(``recsys/impressions`` rows with ``clicked`` and ``ts`` before the holdout start of
``raylake.recsys.split``), which is exactly the ``popularity`` row of the offline
evaluation (``evaluate.py``), so the quality measured offline for a cold user is what the
server answers. The answer says ``cold_start: true`` and ``fallback: "popularity"``;
its scores are each item's share of those clicks (descending), not ranker scores.

An empty or short candidate set (an index with fewer items than ``k``, candidates the
index could not fill: id -1) is filled up with the most popular items not already in
the list, after the ranked ones; the answer then says ``fallback: "popularity"`` and
``filled`` (how many came from it). No request fails for want of candidates.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raylake.errors import ModelError
from raylake.lake.tables import Lake

POPULARITY = "popularity"


@dataclass
class Answer:
    """One request's answer."""

    request_id: str
    user_id: Any
    items: list[int]
    scores: list[float]
    cold_start: bool
    fallback: str | None
    filled: int
    candidates: int  # (user, item) pairs the ranker scored for this request

    def to_dict(self, versions: dict[str, str]) -> dict[str, Any]:
        """The JSON answer, with the model versions that made it."""
        out: dict[str, Any] = {"request_id": self.request_id, "user_id": self.user_id,
                               "items": self.items, "scores": self.scores,
                               "cold_start": self.cold_start, "models": versions,
                               "candidates_scored": self.candidates}
        if self.fallback:
            out["fallback"] = self.fallback
            out["filled"] = self.filled
        return out


class Recommender:
    """The registered towers, index and ranker of one replica, and the popular items.

    ``user_ids`` (sorted int64) and ``user_vectors`` (same rows) are the known users;
    ``index`` an :class:`~raylake.models.ann.AnnIndex`; ``scorer`` a
    :class:`~raylake.recsys.scoring.RankerScorer`; ``popular`` item ids, most clicked
    first, and ``popular_scores`` their share of the clicks."""

    def __init__(self, user_ids: np.ndarray, user_vectors: np.ndarray, index: Any, scorer: Any,
                 popular: np.ndarray, popular_scores: np.ndarray, candidates: int,
                 versions: dict[str, str]) -> None:
        if user_vectors.shape[0] != len(user_ids):
            raise ModelError(f"{len(user_ids)} user ids for {user_vectors.shape[0]} user "
                             "vectors; load the recommender with Recommender.open.")
        if user_vectors.shape[1] != index.dim:
            raise ModelError(f"The towers' user vectors have {user_vectors.shape[1]} dimensions "
                             f"and the index {index.dim}: the index was built from another "
                             "two-tower version. Run `raylake recsys-train experiment=recsys` "
                             "(or build the index from this version's item vectors).")
        order = np.argsort(user_ids, kind="stable")
        self.user_ids = np.asarray(user_ids, np.int64)[order]
        self.user_vectors = np.ascontiguousarray(user_vectors[order], dtype=np.float32)
        self.index, self.scorer = index, scorer
        self.popular = np.asarray(popular, np.int64)
        self.popular_scores = np.asarray(popular_scores, np.float64)
        self.candidates = int(candidates)
        self.versions = versions

    # -- loading ---------------------------------------------------------------------

    @classmethod
    def open(cls, lake: Lake, conf: Any, *, threads: int = 1) -> Recommender:
        """Load the registered models of ``conf.recsys`` (each its champion, else its
        latest version): the towers (torch flavor), the index (ann_index flavor), the ranker
        (``scoring.open_ranker``, with the online store of ``conf.online``), and the
        popular items. ``threads``: the ranker's and torch's threads."""
        import torch

        from raylake.models.registry import ModelRegistry
        from raylake.models.spec import FeatureSpec
        from raylake.recsys import scoring
        from raylake.recsys.towers import encode_ids
        from raylake.recsys.vectors import tower_version

        r = conf.recsys
        registry = ModelRegistry(lake)
        imv, index = registry.load(r.index_model)
        if not hasattr(index, "search"):
            raise ModelError(f"Model {imv.ref} is a {imv.flavor} model, not an item index "
                             f"(ann_index flavor); set recsys.index_model to the index.")
        # The towers whose item vectors the index holds (its lineage): user vectors of
        # another version would live in another space.
        tmv = tower_version(lake, conf, _lineage_towers(imv))
        _, towers = registry.load(tmv.name, tmv.version)
        scorer = scoring.open_ranker(lake, conf)
        booster: Any = getattr(scorer.predict, "args", (None,))[0]
        if hasattr(booster, "set_param"):  # an XGBoost ranker: its threads
            booster.set_param({"nthread": int(threads)})
        spec = FeatureSpec.from_dict(tmv.preprocessing)
        ids = np.array([int(v) for v in spec.vocab["user_id"]], np.int64)
        codes = encode_ids(spec, "user_id", ids)
        torch.set_num_threads(int(threads))
        with torch.no_grad():
            uv = towers.user_vectors(torch.tensor(codes)).numpy()
        popular, share = popular_items(lake, conf)
        versions = {"towers": tmv.ref, "index": imv.ref, "ranker": scorer.ref}
        return cls(ids, uv, index, BatchScorer(scorer), popular, share,
                   int(r.candidates), versions)

    # -- serving ---------------------------------------------------------------------

    def known(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(is known, row in ``user_vectors``) per user id."""
        pos = np.searchsorted(self.user_ids, users)
        pos = np.minimum(pos, max(len(self.user_ids) - 1, 0))
        hit = (self.user_ids[pos] == users) if len(self.user_ids) else np.zeros(len(users), bool)
        return hit, pos

    def recommend(self, requests: list[tuple[Any, int]],
                  request_ids: list[str] | None = None) -> list[Answer]:
        """Answers for ``requests`` (user id, k), in order, scored together: one index
        search and one ranker call for the whole batch. User ids that are not integers
        are cold users."""
        n = len(requests)
        rids = request_ids or [uuid.uuid4().hex for _ in range(n)]
        users = np.array([_as_id(u) for u, _ in requests], np.int64)
        hit, pos = self.known(users)
        # An id that is no integer maps to -1 and is never known.
        hit &= users >= 0
        answers: list[Answer | None] = [None] * n
        warm = np.flatnonzero(hit)
        if len(warm):
            q = self.user_vectors[pos[warm]]
            cand, _ = self.index.search(q, self.candidates)
            valid = cand >= 0
            scores = self.scorer.score(users[warm], np.where(valid, cand, 0))
            scores = np.where(valid, scores, -np.inf)
            for row, i in enumerate(warm):
                k = int(requests[i][1])
                answers[i] = self._ranked(rids[i], requests[i][0], cand[row], scores[row], k,
                                          int(valid[row].sum()))
        for i in np.flatnonzero(~hit):
            k = int(requests[i][1])
            answers[i] = Answer(rids[i], requests[i][0], self.popular[:k].tolist(),
                                [float(s) for s in self.popular_scores[:k]], True, POPULARITY,
                                min(k, len(self.popular)), 0)
        return [a for a in answers if a is not None]

    def _ranked(self, rid: str, user: Any, cand: np.ndarray, scores: np.ndarray, k: int,
                scored: int) -> Answer:
        take = min(k, scored)
        if take:
            top = np.argpartition(-scores, take - 1)[:take] if take < len(scores) else \
                np.arange(len(scores))
            top = top[np.argsort(-scores[top], kind="stable")][:take]
            items, got = cand[top].tolist(), [float(s) for s in scores[top]]
        else:
            items, got = [], []
        filled = 0
        if len(items) < k:  # too few candidates: popular items not already in the list
            have = set(items)
            extra = [int(i) for i in self.popular if int(i) not in have][: k - len(items)]
            filled = len(extra)
            floor = got[-1] if got else 0.0
            items += extra
            got += [floor] * filled  # after the ranked ones, never above them
        return Answer(rid, user, items, got, False, POPULARITY if filled else None, filled,
                      scored)


class BatchScorer:
    """:class:`~raylake.recsys.scoring.RankerScorer`'s rows built faster, the same values:
    the serving path of a batch whose candidates are all catalogue items.

    - Every row's key of every view is coded as one integer (the item's catalogue
      position, the user's place among the batch's users, the catalogue column's
      dictionary code), so finding a view's distinct keys is an integer ``np.unique``,
      not one over records of Python objects.
    - The online-store key strings of the item views are made once, at load, for every
      catalogue item (``entity_keys``), not per request.
    - One ``store.get`` for the distinct keys of every view together: one round trip to
      Redis for the whole batch (SQLite: its 500-key queries).

    Views are read without a TTL, as ``RankerScorer`` reads them. A batch with an item
    outside the catalogue goes through ``RankerScorer.rows`` unchanged."""

    def __init__(self, scorer: Any) -> None:
        from raylake.features.online.base import entity_keys

        self.base = scorer
        self.item_ids = scorer.item_ids
        n = len(self.item_ids)
        ids = [(int(i),) for i in self.item_ids.tolist()]
        self.item_keys = {r.view: np.array(entity_keys(r.view, r.keys, ids), dtype=object)
                          for r in scorer.reads if list(r.keys) == ["item_id"]}
        # Catalogue columns used as keys or inputs: dictionary codes per catalogue row.
        self.codes: dict[str, tuple[np.ndarray, list[Any]]] = {}
        for c in {k for r in scorer.reads for k in r.keys} | set(scorer.direct):
            if c in ("user_id", "item_id") or c not in scorer.catalogue:
                continue
            enc = pc.dictionary_encode(scorer.catalogue[c]).combine_chunks() \
                if isinstance(scorer.catalogue[c], pa.ChunkedArray) \
                else pc.dictionary_encode(scorer.catalogue[c])
            idx = enc.indices.to_numpy(zero_copy_only=False)
            if enc.null_count:  # null keys: code = number of values (decoded as None)
                idx = np.where(enc.is_valid().to_numpy(zero_copy_only=False), idx,
                               len(enc.dictionary))
            self.codes[c] = (idx.astype(np.int64), enc.dictionary.to_pylist() + [None])
        self.n_items = n

    def score(self, users: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """Scores (n, c) of each row's candidates for its user (``RankerScorer.score``)."""
        n, c = candidates.shape
        flat_users = np.repeat(np.asarray(users, np.int64), c)
        table = self.rows(flat_users, candidates.reshape(-1))
        return self.base.predict(table).reshape(n, c)

    def rows(self, users: np.ndarray, items: np.ndarray) -> pa.Table:
        """The ranker's input columns for pairs (``users[j]``, ``items[j]``)."""
        b = self.base
        items = np.asarray(items, np.int64)
        pos = np.minimum(np.searchsorted(self.item_ids, items), self.n_items - 1)
        if not (self.item_ids[pos] == items).all():
            return b.rows(users, items)
        uniq_users, user_row = np.unique(np.asarray(users, np.int64), return_inverse=True)
        # Per key column: (code per row, number of codes, decode code -> key value).
        parts: dict[str, tuple[np.ndarray, int, Any]] = {
            "item_id": (pos, self.n_items, lambda k: self.item_ids[k].tolist()),
            "user_id": (user_row, len(uniq_users), lambda k: uniq_users[k].tolist()),
        }
        for col, (idx, values) in self.codes.items():
            parts[col] = (idx[pos], len(values), lambda k, v=values: [v[i] for i in k.tolist()])
        plans = []
        keys: list[str] = []
        from raylake.features.online.base import entity_keys

        for r in b.reads:
            code = np.zeros(len(items), np.int64)
            for k in r.keys:
                part, size, _ = parts[k]
                code = code * size + part
            distinct, inverse = np.unique(code, return_inverse=True)
            if r.view in self.item_keys:
                view_keys = self.item_keys[r.view][distinct].tolist()
            else:
                rest, decoded = distinct, []
                for k in reversed(r.keys):
                    _, size, decode = parts[k]
                    decoded.append(decode(rest % size))
                    rest = rest // size
                view_keys = entity_keys(r.view, r.keys, list(zip(*reversed(decoded))))
            plans.append((r, len(keys), len(view_keys), inverse))
            keys += view_keys
        stored = b.store.get(keys) if keys else []
        cols: dict[str, Any] = {}
        for r, at, count, inverse in plans:
            rows = stored[at:at + count]
            for f, col in r.features:
                values = [None if row is None else row[1].get(f) for row in rows]
                if values and isinstance(next((v for v in values if v is not None), 0.0), str):
                    cols[col] = pa.array(values, pa.string()).take(pa.array(inverse))
                else:
                    cols[col] = np.array(values, dtype=np.float64)[inverse]
        for c in b.direct:
            if c == "user_id":
                cols[c] = users
            elif c == "item_id":
                cols[c] = items
            else:
                cols[c] = b.catalogue[c].take(pa.array(pos))
        return pa.table({c: cols[c] for c in b.spec.names})


def popular_items(lake: Lake, conf: Any) -> tuple[np.ndarray, np.ndarray]:
    """Every catalogue item by its clicks before the holdout start (most first; ties by
    id), and each one's share of those clicks: the offline evaluation's popularity."""
    from raylake.recsys.split import holdout_start

    r = conf.recsys
    items = np.sort(lake.read(r.items_table, columns=["item_id"])["item_id"].to_numpy())
    start = holdout_start(lake, conf)
    t = lake.read(r.impressions_table, columns=["ts", "item_id", "clicked"])
    before = pc.less(t["ts"], pa.scalar(start, t.schema.field("ts").type))
    ids = t.filter(pc.and_(t["clicked"], before))["item_id"].to_numpy()
    counts = np.zeros(len(items), np.float64)
    if len(ids):
        clicked, n = np.unique(ids, return_counts=True)
        pos = np.searchsorted(items, clicked)
        ok = (pos < len(items)) & (items[np.minimum(pos, len(items) - 1)] == clicked)
        counts[pos[ok]] = n[ok]
    order = np.lexsort((items, -counts))
    total = counts.sum() or 1.0
    return items[order], counts[order] / total


def _as_id(u: Any) -> int:
    if isinstance(u, bool):
        return -1
    if isinstance(u, (int, np.integer)):
        return int(u)
    if isinstance(u, str) and u.strip().lstrip("-").isdigit():
        return int(u)
    return -1


def _lineage_towers(mv: Any) -> str | None:
    lineage = (mv.training or {}).get("towers") if isinstance(mv.training, dict) else None
    if isinstance(lineage, dict) and "name" in lineage:
        return f"{lineage['name']}:{lineage.get('version')}"
    return None

