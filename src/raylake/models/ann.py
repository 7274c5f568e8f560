"""A nearest-neighbour index over item vectors: the candidates of a recommendation request.

>>> index = AnnIndex.build(item_ids, vectors, kind="hnsw")
>>> ids, scores = index.search(user_vectors, k=500)   # (q, 500) each, best first

Items are unit vectors (a two-tower's item tower output), so the inner product is the
cosine. Two kinds, chosen in benchmarks/ann.py (docs/recommendations.md, "Nearest-neighbour
search"): ``exact``, a matrix product over every item (recall 1, nothing to build: the
fastest below a few tens of thousands of items), and ``hnsw``, a faiss ``IndexHNSWFlat``
graph (M=16, efConstruction=200, efSearch=600; recall@500 0.996-0.999 measured). The
``ann_index`` flavor (models/flavors/ann_index.py) stores one without pickle.

faiss is imported inside the functions that need it: importing raylake.models does not
import it, and an ``exact`` index never does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from raylake.errors import ModelError

KINDS = ("exact", "hnsw")
# The graph parameters measured in benchmarks/ann.py.
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 200
HNSW_EF_SEARCH = 600
# How far a vector's norm may be from 1 (float32 rounding of a normalised vector).
_UNIT_TOLERANCE = 1e-3


class AnnIndex:
    """Item ids and their unit vectors, searched by inner product, exactly or through an
    HNSW graph.

    ``search`` clips ``k`` to the number of items (an index of 200 items asked for 500
    answers 200): a request for more candidates than the catalogue holds is not an error,
    the ranker just gets every item.
    """

    def __init__(self, ids: Any, vectors: Any, kind: str = "exact", *,
                 params: dict[str, int] | None = None, graph: Any = None) -> None:
        """An index over ``ids`` (n,) int64 and ``vectors`` (n, dim) float32 unit vectors;
        ``graph`` is the faiss HNSW index of a ``hnsw`` kind (see :meth:`build`, which
        makes it). ModelError for anything that does not fit."""
        if kind not in KINDS:
            raise ModelError(f"Index kind {kind!r} is not one of {', '.join(KINDS)}; "
                             "use 'exact' or 'hnsw'.")
        self.ids = _check_ids(ids)
        self.vectors = _check_vectors(vectors, len(self.ids))
        self.kind = kind
        self.params = {"m": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION,
                       "ef_search": HNSW_EF_SEARCH, **(params or {})}
        if kind == "hnsw":
            if graph is None:
                raise ModelError("An hnsw index needs its faiss graph: make one with "
                                 "AnnIndex.build(ids, vectors, kind='hnsw').")
            if int(graph.ntotal) != len(self.ids) or int(graph.d) != self.dim:
                raise ModelError(f"The HNSW graph holds {graph.ntotal} vectors of dimension "
                                 f"{graph.d}, the index {len(self.ids)} of dimension {self.dim}: "
                                 "they were not built together. Build the index again.")
        elif graph is not None:
            raise ModelError("An exact index has no graph; pass graph=None or kind='hnsw'.")
        self.graph = graph

    @classmethod
    def build(cls, ids: Any, vectors: Any, kind: str = "exact", *, m: int = HNSW_M,
              ef_construction: int = HNSW_EF_CONSTRUCTION,
              ef_search: int = HNSW_EF_SEARCH) -> AnnIndex:
        """An index of ``kind`` over ``ids`` and ``vectors``; for ``hnsw`` the graph is built
        here (seconds per ten thousand items on one core)."""
        ids = _check_ids(ids)
        vectors = _check_vectors(vectors, len(ids))
        if kind != "hnsw":
            return cls(ids, vectors, kind)
        for what, v in (("m", m), ("ef_construction", ef_construction),
                        ("ef_search", ef_search)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ModelError(f"HNSW {what}={v!r} must be an integer >= 1 (measured: m=16, "
                                 "ef_construction=200, ef_search=600).")
        faiss = load_faiss()
        graph = faiss.IndexHNSWFlat(vectors.shape[1], int(m), faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = int(ef_construction)
        graph.hnsw.efSearch = int(ef_search)
        graph.add(vectors)
        return cls(ids, vectors, kind, graph=graph,
                   params={"m": int(m), "ef_construction": int(ef_construction),
                           "ef_search": int(ef_search)})

    @property
    def dim(self) -> int:
        """The vectors' dimension."""
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"<AnnIndex {self.kind}: {len(self):,} items of dimension {self.dim}>"

    def search(self, queries: Any, k: int,
               exclude: Iterable[Iterable[int]] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` items nearest each query by inner product, best first: ids (q, k) int64
        and scores (q, k) float32. ``queries`` is one vector (dim,) or a batch (q, dim);
        the answer is (q, k) either way. ``k`` above the number of items is clipped to it.
        ``exclude``: per query, item ids not to return (items a user has seen); the answer
        is then filled from further down the list, and a row that runs out of items ends
        with id -1 and score -inf."""
        q = self._check_queries(queries)
        k = _check_k(k)
        n = len(self.ids)
        skip = None
        if exclude is not None:
            skip = [np.asarray(list(e), np.int64) for e in exclude]
            if len(skip) != len(q):
                raise ModelError(f"exclude has {len(skip)} lists for {len(q)} queries; give one "
                                 "list of item ids per query (an empty one for none).")
        extra = max((len(s) for s in skip), default=0) if skip else 0
        want = min(k + extra, n)
        if self.kind == "exact":
            pos, scores = _exact(self.vectors, q, want)
        else:
            pos, scores = self._graph_search(q, want)
        ids = self.ids[pos]
        if skip is not None:
            ids, scores = _drop(ids, scores, skip, min(k, n))
        return ids[:, :min(k, n)].copy(), scores[:, :min(k, n)].copy()

    def _graph_search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        faiss = load_faiss()
        # efSearch per call (not set on the shared graph): it must be at least k, and a
        # graph searched by several threads is not changed under them.
        params = faiss.SearchParametersHNSW(efSearch=max(int(self.params["ef_search"]), k))
        scores, pos = self.graph.search(q, k, params=params)
        missing = (pos < 0).any(axis=1)
        if missing.any():
            # The graph found fewer than k neighbours (k near the number of items): those
            # rows are answered exactly instead.
            pos[missing], scores[missing] = _exact(self.vectors, q[missing], k)
        return pos.astype(np.int64), scores.astype(np.float32)

    def _check_queries(self, queries: Any) -> np.ndarray:
        q = np.asarray(queries)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.dim or not q.shape[0]:
            raise ModelError(f"Queries of shape {np.shape(queries)} do not fit an index of "
                             f"dimension {self.dim}: give one vector ({self.dim},) or a batch "
                             f"(q, {self.dim}) with q >= 1.")
        if not np.issubdtype(q.dtype, np.number) or np.issubdtype(q.dtype, np.complexfloating):
            raise ModelError(f"Queries must be real numbers (float32), got dtype {q.dtype}.")
        q = np.ascontiguousarray(q, np.float32)
        if not np.isfinite(q).all():
            raise ModelError("A query vector holds NaN or infinity; score only finite vectors "
                             "(a user tower's output is a unit vector).")
        return q


def load_faiss() -> Any:
    """The faiss module, imported on first use (an exact index never needs it); typed as
    Any: faiss's bundled type hints lack parts of its SWIG API (SearchParametersHNSW)."""
    import importlib

    return importlib.import_module("faiss")


def _exact(vectors: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions (q, k) and scores of the k largest inner products, best first; ties by
    position (items the towers never saw share one vector), so the answer is the same on
    every run and for every batch."""
    s = q @ vectors.T
    n = s.shape[1]
    if k < n:
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]
        # argpartition picks any of the items tied with the k-th: a row with such a tie is
        # sorted whole instead (rare: exact ties).
        kth = np.take_along_axis(s, part, 1).min(axis=1)
        tied = (s >= kth[:, None]).sum(axis=1) > k
        if tied.any():
            part[tied] = np.argsort(-s[tied], axis=1, kind="stable")[:, :k]
    else:
        part = np.broadcast_to(np.arange(n), s.shape).copy()
    part.sort(axis=1)  # by position first, so a stable sort by score breaks ties by it
    top = np.take_along_axis(s, part, 1)
    order = np.argsort(-top, axis=1, kind="stable")
    return (np.take_along_axis(part, order, 1).astype(np.int64),
            np.take_along_axis(top, order, 1).astype(np.float32))


def _drop(ids: np.ndarray, scores: np.ndarray, skip: list[np.ndarray],
          k: int) -> tuple[np.ndarray, np.ndarray]:
    out_ids = np.full((len(ids), k), -1, np.int64)
    out_scores = np.full((len(ids), k), -np.inf, np.float32)
    for r, s in enumerate(skip):
        keep = ~np.isin(ids[r], s) if len(s) else np.ones(ids.shape[1], bool)
        got = ids[r][keep][:k]
        out_ids[r, :len(got)] = got
        out_scores[r, :len(got)] = scores[r][keep][:k]
    return out_ids, out_scores


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ModelError(f"k={k!r} must be an integer >= 1 (the number of items to return).")
    return int(k)


def _check_ids(ids: Any) -> np.ndarray:
    a = np.asarray(ids)
    if a.ndim != 1 or not (np.issubdtype(a.dtype, np.integer) or a.size == 0):
        raise ModelError(f"Item ids must be a 1-d array of integers, got shape {a.shape} "
                         f"dtype {a.dtype}.")
    if not a.size:
        raise ModelError("An index needs at least one item; the item vectors are empty. "
                         "Write the item vectors of a two-tower version first.")
    a = np.ascontiguousarray(a, np.int64)
    if len(np.unique(a)) != len(a):
        _, counts = np.unique(a, return_counts=True)
        raise ModelError(f"Item ids repeat ({int((counts > 1).sum())} ids more than once); "
                         "an index holds one vector per item.")
    return a


def _check_vectors(vectors: Any, n: int | None) -> np.ndarray:
    v = np.asarray(vectors)
    if v.ndim != 2 or not v.shape[1] or not np.issubdtype(v.dtype, np.floating):
        raise ModelError(f"Item vectors must be a float array (n, dim), got shape {v.shape} "
                         f"dtype {v.dtype}.")
    if n is not None and len(v) != n:
        raise ModelError(f"{len(v)} item vectors for {n} item ids; give one vector per id.")
    if not len(v):
        raise ModelError("An index needs at least one item; the item vectors are empty. "
                         "Write the item vectors of a two-tower version first.")
    v = np.ascontiguousarray(v, np.float32)
    if not np.isfinite(v).all():
        raise ModelError("An item vector holds NaN or infinity; check the model that made them.")
    norms = np.linalg.norm(v, axis=1)
    off = np.abs(norms - 1) > _UNIT_TOLERANCE
    if off.any():
        raise ModelError(f"{int(off.sum())} item vectors are not unit vectors (norms "
                         f"{norms[off].min():.3g}..{norms[off].max():.3g}); the index ranks by "
                         "inner product as cosine: normalise them first (v / |v|).")
    return v
