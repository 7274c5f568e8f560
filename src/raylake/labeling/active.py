"""Active learning: which unlabeled rows a person should label next.

A strategy takes the model's class probabilities over the candidate rows (and, for the
ones that need them, the rows' features, the labelled rows' features or a committee's
probabilities) and returns the positions of the ``n`` rows to ask about, most useful
first, with a score per row (higher: more useful). They are plain numpy, as modAL's and
scikit-activeml's are:

- ``least_confidence``: ``1 - max_k p_k``;
- ``margin``: ``1 - (p_top1 - p_top2)`` (smallest margin first);
- ``entropy``: ``-sum_k p_k log p_k``;
- ``qbc`` (query by committee): vote entropy of a committee of models fitted on
  bootstrap resamples of the labelled rows;
- ``density`` (information density, Settles and Craven 2008, with the k-nearest-neighbour
  density of Zhu et al. 2008): the margin score times the row's density to the power
  ``beta``, the density being its mean cosine similarity to its ``k`` nearest pool rows,
  so a query goes to an uncertain row that stands for many others rather than to an
  uncertain outlier;
- ``kcenter`` (diversity for batches): the ``pool_factor * n`` rows of smallest margin,
  then k-center greedy over them (each pick is the candidate farthest, in cosine
  distance, from the labelled rows and the picks so far), so a batch does not spend its
  labels on near-duplicates;
- ``random``: the baseline.

:func:`select` runs one strategy; :func:`simulate_curve` answers the queries from known
labels (the learning curve the benchmark and ``raylake label simulate`` measure).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from raylake.errors import ConfigError, did_you_mean
from raylake.labeling.linear import LogisticRegression

__all__ = ["STRATEGIES", "Candidates", "Selection", "committee_probs", "density_margin",
           "entropy", "fit_model", "get_strategy", "kcenter_greedy", "knn_density",
           "least_confidence", "margin", "qbc", "random_sampling", "select", "simulate_curve"]


@dataclass
class Candidates:
    """What a strategy may look at: the model's probabilities over the unlabeled
    candidates, and where a strategy needs them their features, the labelled rows'
    features, a committee's probabilities (members x rows x classes) and the candidates'
    density (:func:`knn_density`) with its exponent ``beta``."""

    probs: np.ndarray
    X: Any = None
    X_labeled: Any = None
    committee: np.ndarray | None = None
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    pool_factor: int = 5
    density: np.ndarray | None = None
    beta: float = 1.0


@dataclass
class Selection:
    """Positions (into the candidates) chosen, most useful first, and their scores."""

    index: np.ndarray
    score: np.ndarray


Strategy = Callable[[Candidates, int], Selection]


def _top(scores: np.ndarray, n: int, rng: np.random.Generator) -> Selection:
    """The ``n`` highest scores; ties broken at random (not by row order)."""
    n = min(n, scores.shape[0])
    jitter = rng.random(scores.shape[0])
    order = np.lexsort(np.vstack([jitter, -scores]))[:n]
    return Selection(order, scores[order])


def least_confidence_scores(probs: np.ndarray) -> np.ndarray:
    """``1 - max_k p_k`` per row."""
    return np.asarray(1.0 - probs.max(axis=1))


def margin_scores(probs: np.ndarray) -> np.ndarray:
    """``1 - (p_top1 - p_top2)`` per row: 1 where the two best classes tie."""
    part = np.sort(probs, axis=1)
    return np.asarray(1.0 - (part[:, -1] - part[:, -2]))


def entropy_scores(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row."""
    p = np.clip(probs, 1e-12, 1.0)
    return np.asarray(-(p * np.log(p)).sum(axis=1))


def least_confidence(c: Candidates, n: int) -> Selection:
    """The rows whose most probable class is least probable."""
    return _top(least_confidence_scores(c.probs), n, c.rng)


def margin(c: Candidates, n: int) -> Selection:
    """The rows with the smallest gap between the two most probable classes."""
    return _top(margin_scores(c.probs), n, c.rng)


def entropy(c: Candidates, n: int) -> Selection:
    """The rows of highest predictive entropy."""
    return _top(entropy_scores(c.probs), n, c.rng)


def qbc(c: Candidates, n: int) -> Selection:
    """Query by committee: the rows the committee's votes disagree on most (vote
    entropy); the consensus probabilities' entropy breaks ties."""
    if c.committee is None or len(c.committee) < 2:
        raise ConfigError("the qbc strategy needs a committee of at least 2 models "
                          "(active_labeling.committee >= 2)")
    members, rows, k = c.committee.shape
    votes = c.committee.argmax(axis=2)
    shares = np.stack([(votes == j).mean(axis=0) for j in range(k)], axis=1)
    score = entropy_scores(shares) + 1e-3 * entropy_scores(c.committee.mean(axis=0))
    return _top(score, n, c.rng)


def density_margin(c: Candidates, n: int) -> Selection:
    """Information density: ``margin_score * density ** beta``, the uncertain rows in the
    dense parts of the pool first (an outlier the model is unsure of teaches it little)."""
    if c.density is None:
        raise ConfigError("the density strategy needs the candidates' density (knn_density)")
    dens = np.clip(np.asarray(c.density, dtype=np.float64), 0.0, None)
    return _top(margin_scores(c.probs) * dens ** float(c.beta), n, c.rng)


def random_sampling(c: Candidates, n: int) -> Selection:
    """``n`` rows uniformly at random (the baseline every strategy is measured against)."""
    rows = c.probs.shape[0]
    idx = c.rng.permutation(rows)[: min(n, rows)]
    return Selection(idx, np.zeros(idx.shape[0]))


def _unit_rows(X: Any) -> np.ndarray:
    D = np.asarray(X.toarray() if sp.issparse(X) else X, dtype=np.float64)
    norms = np.linalg.norm(D, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.asarray(D / norms)


def knn_density(X: Any, k: int = 20, *, chunk: int = 1024) -> np.ndarray:
    """Each row's mean cosine similarity to its ``k`` nearest other rows of ``X`` (Zhu et
    al., 2008): high in the dense parts of the pool, low for outliers. Computed ``chunk``
    rows at a time (memory ``chunk x rows``)."""
    rows = X.shape[0]
    k = min(int(k), rows - 1)
    if k < 1:
        return np.ones(rows)
    if sp.issparse(X):
        U: Any = sp.csr_matrix(X, dtype=np.float64)
        norms = np.sqrt(np.asarray(U.multiply(U).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        U = sp.csr_matrix(sp.diags(1.0 / norms) @ U)
    else:
        U = _unit_rows(X)
    UT = U.T.tocsr() if sp.issparse(U) else U.T
    out = np.empty(rows)
    for start in range(0, rows, chunk):
        block = U[start:start + chunk] @ UT
        sims = np.asarray(block.toarray() if sp.issparse(block) else block, dtype=np.float64)
        sims[np.arange(sims.shape[0]), np.arange(start, start + sims.shape[0])] = -np.inf
        top = np.partition(sims, rows - k, axis=1)[:, rows - k:]
        out[start:start + sims.shape[0]] = top.mean(axis=1)
    return out


def kcenter_greedy(X: Any, n: int, X_labeled: Any = None,
                   rng: np.random.Generator | None = None) -> np.ndarray:
    """k-center greedy (Sener and Savarese, 2018) in cosine distance: ``n`` rows of
    ``X``, each the farthest from ``X_labeled`` and the rows picked before it."""
    rng = rng or np.random.default_rng(0)
    U = _unit_rows(X)
    rows = U.shape[0]
    n = min(n, rows)
    if X_labeled is not None and X_labeled.shape[0]:
        L = _unit_rows(X_labeled)
        dist = 1.0 - (U @ L.T).max(axis=1)
    else:
        dist = np.full(rows, np.inf)
    picked: list[int] = []
    for _ in range(n):
        if np.isinf(dist).all():
            i = int(rng.integers(rows))
        else:
            i = int(np.argmax(dist))
        picked.append(i)
        dist = np.minimum(dist, 1.0 - U @ U[i])
        dist[picked] = -np.inf
    return np.asarray(picked, dtype=np.int64)


def kcenter(c: Candidates, n: int) -> Selection:
    """Uncertain and diverse: the ``pool_factor * n`` rows of smallest margin, of which
    ``n`` are chosen by k-center greedy against the labelled rows."""
    if c.X is None:
        raise ConfigError("the kcenter strategy needs the candidates' features")
    scores = margin_scores(c.probs)
    shortlist = _top(scores, max(n, c.pool_factor * n), c.rng).index
    chosen = kcenter_greedy(c.X[shortlist], n, c.X_labeled, c.rng)
    idx = shortlist[chosen]
    return Selection(idx, scores[idx])


STRATEGIES: dict[str, Strategy] = {
    "least_confidence": least_confidence,
    "margin": margin,
    "entropy": entropy,
    "qbc": qbc,
    "density": density_margin,
    "kcenter": kcenter,
    "random": random_sampling,
}


def get_strategy(name: str) -> Strategy:
    """The query strategy called ``name``; ConfigError with the nearest name otherwise."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ConfigError(f"Unknown query strategy {name!r}.{did_you_mean(name, STRATEGIES)} "
                          f"Strategies: {', '.join(STRATEGIES)}.") from None


def fit_model(X: Any, y: np.ndarray, n_classes: int, *, alpha: float = 0.1,
              sample_weight: np.ndarray | None = None) -> LogisticRegression:
    """The loop's model: L2 logistic regression on the labelled rows."""
    return LogisticRegression(alpha=alpha).fit(X, y, n_classes=n_classes,
                                               sample_weight=sample_weight)


def committee_probs(X_labeled: Any, y_labeled: np.ndarray, X_pool: Any, n_classes: int, *,
                    members: int, alpha: float, rng: np.random.Generator) -> np.ndarray:
    """Probabilities over ``X_pool`` of ``members`` models, each fitted on a bootstrap
    resample of the labelled rows (members x rows x classes)."""
    out = []
    rows = y_labeled.shape[0]
    for _ in range(members):
        take = rng.integers(rows, size=rows)
        model = fit_model(X_labeled[take], y_labeled[take], n_classes, alpha=alpha)
        out.append(model.predict_proba(X_pool))
    return np.stack(out)


def select(strategy: str, X: Any, labeled: np.ndarray, y: np.ndarray, n: int, n_classes: int,
           *, rng: np.random.Generator, alpha: float = 0.1, committee: int = 5,
           pool_factor: int = 5, fit_mask: np.ndarray | None = None,
           density: np.ndarray | None = None, density_neighbors: int = 20,
           density_beta: float = 1.0,
           ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """One query: rows of ``X`` (row numbers) to label next, the model's guess for each
    (None before two classes are labelled: the seed batch is random) and its score.

    ``labeled`` is a boolean mask over the rows of ``X``; ``y`` holds the labels of the
    labelled rows (any value elsewhere). ``fit_mask``: the rows the model is fitted on,
    when not all of ``labeled`` (rows queued but not labelled yet are not candidates).
    ``density``: :func:`knn_density` of ``X`` for the density strategy (computed here with
    ``density_neighbors`` when not passed; pass it to compute it once per pool).
    """
    pool = np.flatnonzero(~labeled)
    lab = np.flatnonzero(labeled if fit_mask is None else fit_mask)
    if pool.size == 0:
        return pool, None, np.zeros(0)
    if np.unique(y[lab]).size < 2:
        idx = rng.permutation(pool)[:n]
        return idx, None, np.zeros(idx.shape[0])
    model = fit_model(X[lab], y[lab], n_classes, alpha=alpha)
    probs = model.predict_proba(X[pool])
    cand = Candidates(probs, X=X[pool], X_labeled=X[lab], rng=rng, pool_factor=pool_factor,
                      beta=density_beta)
    if strategy == "density":
        cand.density = (knn_density(X, density_neighbors) if density is None else density)[pool]
    if strategy == "qbc":
        cand.committee = committee_probs(X[lab], y[lab], X[pool], n_classes,
                                         members=committee, alpha=alpha, rng=rng)
    chosen = get_strategy(strategy)(cand, n)
    return pool[chosen.index], probs[chosen.index].argmax(axis=1), chosen.score


def simulate_curve(X: Any, y: np.ndarray, X_test: Any, y_test: np.ndarray, strategy: str, *,
                   seed_size: int, batch_size: int, max_labels: int, seed: int = 0,
                   alpha: float = 0.1, committee: int = 5, pool_factor: int = 5,
                   density_neighbors: int = 20, density_beta: float = 1.0,
                   n_classes: int | None = None) -> list[tuple[int, float]]:
    """The learning curve of one strategy, answering its queries from ``y``: the test
    accuracy after each batch, as ``(labels, accuracy)`` pairs (the first after the
    random seed batch)."""
    k = int(n_classes if n_classes is not None else max(y.max(), y_test.max()) + 1)
    rng = np.random.default_rng(seed)
    labeled = np.zeros(y.shape[0], dtype=bool)
    labeled[rng.permutation(y.shape[0])[:seed_size]] = True
    density = knn_density(X, density_neighbors) if strategy == "density" else None
    curve = []
    while True:
        lab = np.flatnonzero(labeled)
        if np.unique(y[lab]).size >= 2:
            model = fit_model(X[lab], y[lab], k, alpha=alpha)
            acc = float((model.predict(X_test) == y_test).mean())
        else:
            acc = float((y_test == np.bincount(y[lab], minlength=k).argmax()).mean())
        curve.append((int(lab.size), acc))
        if lab.size >= min(max_labels, y.shape[0]):
            return curve
        n = min(batch_size, max_labels - lab.size)
        idx, _, _ = select(strategy, X, labeled, y, n, k, rng=rng, alpha=alpha,
                           committee=committee, pool_factor=pool_factor, density=density,
                           density_beta=density_beta)
        labeled[idx] = True
