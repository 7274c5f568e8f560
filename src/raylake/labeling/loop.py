"""The active-learning loop over lake tables: a pool table, its features, the queue.

:func:`load_pool` reads the pool table (ids, texts, and the true labels where the table
has them: simulate answers from those), featurises the texts (hashed tf-idf from
:mod:`raylake.labeling.text`, then, by default, a truncated SVD of the pool's tf-idf:
dense LSA features, fitted on the unlabelled pool only) and :func:`query_next` puts the
next batch in the queue: the labels given so far train the model, the strategy picks
the rows. The page and ``raylake label simulate`` both call it when a batch completes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from raylake.config.active_labeling import ActiveLabelingConfig
from raylake.labeling.active import fit_model, knn_density, select
from raylake.labeling.errors import LabelingError
from raylake.labeling.linear import LogisticRegression
from raylake.labeling.queue import QueueState, enqueue, read_queue
from raylake.labeling.text import featurize, fit_idf, hashed_counts
from raylake.lake.tables import Lake

__all__ = ["Pool", "TextFeatures", "class_names", "labelled_rows", "load_pool",
           "load_table", "query_next"]


@dataclass
class TextFeatures:
    """Hashed tf-idf (idf of the texts it was fitted on), optionally projected on the
    top ``svd_dim`` singular vectors of that tf-idf and L2-normalised."""

    dim: int
    idf: np.ndarray
    components: np.ndarray | None = None

    @classmethod
    def fit(cls, texts: list[str], dim: int = 4096, svd_dim: int = 0,
            seed: int = 0) -> tuple[TextFeatures, Any]:
        """Fit on ``texts``; returns the features and the texts' rows."""
        feats = cls(dim, fit_idf(hashed_counts(texts, dim)))
        tfidf = featurize(texts, dim, idf=feats.idf)
        k = min(svd_dim, min(tfidf.shape) - 1)
        if k >= 1:
            v0 = np.random.default_rng(seed).random(min(tfidf.shape))
            _, _, vt = spla.svds(tfidf, k=k, v0=v0)
            feats.components = np.ascontiguousarray(vt.T)
        return feats, feats._project(tfidf)

    def transform(self, texts: list[str]) -> Any:
        """Rows for new ``texts``, featurised as the fitted ones were."""
        return self._project(featurize(texts, self.dim, idf=self.idf))

    def _project(self, tfidf: sp.csr_matrix) -> Any:
        if self.components is None:
            return tfidf
        dense = np.column_stack([tfidf @ self.components[:, j]
                                 for j in range(self.components.shape[1])])
        norms = np.linalg.norm(dense, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return np.asarray(dense / norms)


@dataclass
class Pool:
    """A table of items to label: ids, texts, features, and the true labels where the
    table holds them (None otherwise)."""

    table: str
    version: int
    ids: np.ndarray
    texts: list[str]
    X: Any
    truth: np.ndarray | None
    features: TextFeatures
    n_classes: int
    index: dict[str, int] = field(default_factory=dict)
    _density: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.index = {str(k): i for i, k in enumerate(self.ids)}

    def density(self, neighbors: int) -> np.ndarray:
        """The rows' k-NN density (:func:`~raylake.labeling.active.knn_density`), computed
        once per pool and ``neighbors``."""
        if neighbors not in self._density:
            self._density[neighbors] = knn_density(self.X, neighbors)
        return self._density[neighbors]

    @property
    def source(self) -> str:
        """``table@version``, as queue rows record it."""
        return f"{self.table}@{self.version}"


def class_names(conf: ActiveLabelingConfig, n_classes: int) -> list[str]:
    """The configured class names, or ``0..k-1``."""
    names = list(conf.classes)
    return names if len(names) >= n_classes else [str(i) for i in range(n_classes)]


def load_table(lake: Lake, conf: ActiveLabelingConfig, table: str, version: Any = None,
               ) -> tuple[np.ndarray, list[str], np.ndarray | None, int]:
    """ids, texts, labels (None when the table has no label column) and the version of
    ``table``, rows sorted by id; LabelingError naming a missing id or text column."""
    dtab = lake.table(table, version)
    names = list(pa.schema(dtab.schema().to_arrow()).names)
    for key, col in (("id_column", conf.id_column), ("text_column", conf.text_column)):
        if col not in names:
            raise LabelingError(f"Table {table!r} has no column {col!r} "
                                f"(active_labeling.{key}); its columns: {', '.join(names)}.")
    cols = [conf.id_column, conf.text_column] + (
        [conf.label_column] if conf.label_column in names else [])
    # Sorted by id: a Delta table's row order is not promised (files may come back in any
    # order), and seeded draws over the rows must pick the same rows every run.
    data = lake.read(table, dtab.version(), columns=cols).sort_by(conf.id_column)
    ids = np.asarray([str(v) for v in data.column(conf.id_column).to_pylist()], dtype=object)
    texts = [t or "" for t in data.column(conf.text_column).to_pylist()]
    truth = None
    if conf.label_column in names:
        raw = data.column(conf.label_column).to_pylist()
        if all(v is not None for v in raw):
            truth = np.asarray(raw, dtype=np.int64)
    return ids, texts, truth, dtab.version()


def load_pool(lake: Lake, conf: ActiveLabelingConfig, version: Any = None) -> Pool:
    """The pool table featurised (features fitted on the pool's texts)."""
    if not conf.pool_table:
        raise LabelingError("No pool table: set active_labeling.pool_table=<table> "
                            "(or active_labeling=youtube_spam).")
    ids, texts, truth, v = load_table(lake, conf, conf.pool_table, version)
    # The queue names items by id: a row repeated whole is one item (YouTube spam has two);
    # one id with two texts is refused.
    first: dict[str, int] = {}
    keep = []
    for i, (item_id, text) in enumerate(zip(ids.tolist(), texts)):
        j = first.setdefault(item_id, i)
        if j == i:
            keep.append(i)
        elif texts[j] != text:
            raise LabelingError(f"Id {item_id!r} names two different rows of {conf.pool_table!r} "
                                f"(column {conf.id_column!r}); the queue names items by it: "
                                "choose a unique active_labeling.id_column.")
    if len(keep) != len(ids):
        ids, texts = ids[keep], [texts[i] for i in keep]
        truth = truth[keep] if truth is not None else None
    features, X = TextFeatures.fit(texts, conf.features_dim, conf.svd_dim, conf.seed)
    k = max(len(conf.classes), int(truth.max()) + 1 if truth is not None and truth.size else 2)
    return Pool(conf.pool_table, v, ids, texts, X, truth, features, k)


def labelled_rows(pool: Pool, state: QueueState) -> tuple[np.ndarray, np.ndarray]:
    """A mask over the pool's rows of the items the queue has labels for, and the labels
    (by pool row; -1 where unlabelled). Labels of items not in the pool are ignored."""
    mask = np.zeros(len(pool.ids), dtype=bool)
    y = np.full(len(pool.ids), -1, dtype=np.int64)
    for item_id, label in state.labelled().items():
        row = pool.index.get(item_id)
        if row is not None:
            mask[row] = True
            y[row] = label
    return mask, y


def train_on_queue(pool: Pool, state: QueueState, alpha: float) -> LogisticRegression | None:
    """The loop's model on the labels given so far (None before two classes are labelled)."""
    mask, y = labelled_rows(pool, state)
    if np.unique(y[mask]).size < 2:
        return None
    return fit_model(pool.X[mask], y[mask], pool.n_classes, alpha=alpha)


def query_next(lake: Lake, conf: ActiveLabelingConfig, pool: Pool, state: QueueState | None = None,
               *, run_id: str | None = None, job: str | None = None) -> QueueState | None:
    """Queue the next batch when the newest one is complete: the rows the strategy picks,
    with the model's guess and score. Returns the new queue state, or None when nothing
    was queued (a batch is still open, the pool is used up, or max_labels is reached)."""
    state = state if state is not None else read_queue(lake, conf.queue)
    if not state.batch_complete():
        return None
    mask, y = labelled_rows(pool, state)
    queued = np.zeros(len(pool.ids), dtype=bool)
    for item_id in state.items:
        row = pool.index.get(item_id)
        if row is not None:
            queued[row] = True
    budget = len(pool.ids) if conf.max_labels is None else conf.max_labels
    n = min(conf.batch_size, budget - int(queued.sum()))
    if n <= 0 or queued.all():
        return None
    batch = state.batch + 1
    rng = np.random.default_rng([conf.seed, batch])
    # Rows queued but unlabelled (an abandoned item) count as taken: mark them labelled
    # for the selection only.
    taken = mask | queued
    rows, guess, score = select(str(conf.strategy), pool.X, taken, np.where(mask, y, 0), n,
                                pool.n_classes, rng=rng, alpha=conf.alpha,
                                committee=conf.committee, pool_factor=conf.pool_factor,
                                fit_mask=mask, density_beta=conf.density_beta,
                                density=(pool.density(conf.density_neighbors)
                                         if str(conf.strategy) == "density" else None))
    items = [{"item_id": pool.ids[r], "text": pool.texts[r],
              "guess": None if guess is None else int(guess[j]),
              "score": float(score[j])} for j, r in enumerate(rows)]
    enqueue(lake, conf.queue, items, batch=batch, source=pool.source, run_id=run_id, job=job)
    return read_queue(lake, conf.queue)
