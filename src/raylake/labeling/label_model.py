"""Label models: votes of labeling functions -> probabilistic labels, without gold labels.

:class:`LabelModel` is Dawid and Skene's EM (1979) over each LF's confusion matrix
``P(vote | class)`` with the abstain vote one of the outcomes. With
``abstain_informative`` the abstains follow the posterior like the votes (full
Dawid-Skene); by default each LF's abstains are shared equally among the classes, which
keeps a unipolar LF's silence weakly informative without letting many correlated silences
decide rows no LF covers (see ``_m_step``). Then a
Dirichlet pseudo-count on every row of every matrix, and a class balance learned or
given. The LFs are assumed independent given the class. Rows are collapsed to their
distinct vote patterns first, so a million rows cost what a few thousand patterns do.

:class:`MajorityVote` is the baseline: the most common vote, ties broken at random
(seeded), no vote at all -> the class balance.

Shapes follow Snorkel: ``fit(L)``, ``predict_proba(L)``, ``predict(L)``, ``score(L, y)``;
``L`` is an int matrix rows x LFs with -1 for abstain.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from raylake.labeling.errors import LabelingError
from raylake.labeling.lfs import ABSTAIN

__all__ = ["LabelModel", "MajorityVote", "check_matrix"]


def check_matrix(L: np.ndarray, cardinality: int) -> np.ndarray:
    """``L`` as int16 rows x LFs; LabelingError for a vote outside -1..cardinality-1."""
    L = np.asarray(L)
    if L.ndim != 2:
        raise LabelingError(f"A label matrix is 2-D (rows x LFs); this one has shape {L.shape}.")
    if L.size and (L.min() < ABSTAIN or L.max() >= cardinality):
        bad = sorted(set(np.unique(L).tolist()) - set(range(ABSTAIN, cardinality)))
        raise LabelingError(f"The label matrix holds votes {bad[:5]} outside -1 (abstain) and "
                            f"0..{cardinality - 1}; check the LFs or labeling.cardinality.")
    return L.astype(np.int16, copy=False)


def _patterns(L: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct rows, their counts and each row's pattern index."""
    if L.shape[0] == 0:
        return L, np.zeros(0, np.int64), np.zeros(0, np.int64)
    uniq, inverse, counts = np.unique(L, axis=0, return_inverse=True, return_counts=True)
    return uniq, counts.astype(np.float64), inverse.reshape(-1)


class MajorityVote:
    """The most common non-abstain vote per row."""

    def __init__(self, cardinality: int = 2, seed: int = 123,
                 class_balance: Any = None) -> None:
        self.cardinality, self.seed = cardinality, seed
        self.class_balance = (np.full(cardinality, 1.0 / cardinality) if class_balance is None
                              or len(class_balance) == 0 else np.asarray(class_balance, float))

    def fit(self, L: np.ndarray) -> MajorityVote:
        """Nothing to learn; returns self."""
        check_matrix(L, self.cardinality)
        return self

    def counts(self, L: np.ndarray) -> np.ndarray:
        """Votes per class per row."""
        L = check_matrix(L, self.cardinality)
        return np.stack([(L == k).sum(axis=1) for k in range(self.cardinality)], axis=1)

    def predict_proba(self, L: np.ndarray) -> np.ndarray:
        """The share of each class among a row's votes; the class balance for no vote."""
        c = self.counts(L).astype(np.float64)
        total = c.sum(axis=1, keepdims=True)
        return np.where(total > 0, c / np.maximum(total, 1), self.class_balance)

    def predict(self, L: np.ndarray) -> np.ndarray:
        """The most voted class; ties (and rows without votes) broken at random, seeded."""
        p = self.predict_proba(L)
        return _argmax_random_ties(p, self.seed)

    def score(self, L: np.ndarray, y: np.ndarray) -> float:
        """Accuracy of :meth:`predict` against gold labels ``y``."""
        return float(np.mean(self.predict(L) == np.asarray(y)))


def _argmax_random_ties(p: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.random(p.shape) * 1e-9  # only decides between exactly equal values
    best = p.max(axis=1, keepdims=True)
    return np.argmax(np.where(np.isclose(p, best, rtol=0, atol=1e-12), 1.0 + noise, 0.0), axis=1)


class LabelModel:
    """Dawid-Skene EM: per LF a confusion matrix over (class, vote incl. abstain)."""

    def __init__(self, cardinality: int = 2, *, max_iter: int = 500, tol: float = 1e-7,
                 smoothing: float = 1.0, class_balance: Any = None,
                 abstain_informative: bool = False, seed: int = 123) -> None:
        self.cardinality, self.max_iter, self.tol = cardinality, max_iter, tol
        self.smoothing, self.abstain_informative, self.seed = smoothing, abstain_informative, seed
        self.fixed_balance = (None if class_balance is None or len(class_balance) == 0
                              else np.asarray(class_balance, np.float64))
        self.class_balance: np.ndarray | None = None
        # theta[j, y, v]: P(LF j gives outcome v | class y); v = 0 is abstain, v = k + 1 class k.
        self.theta: np.ndarray | None = None
        self.n_iter = 0
        self.log_likelihood = float("nan")

    # -- fitting ------------------------------------------------------------------
    def fit(self, L: np.ndarray) -> LabelModel:
        """Learn the class balance and every LF's confusion matrix from ``L`` alone
        (started from majority vote's soft labels)."""
        L = check_matrix(L, self.cardinality)
        if L.shape[0] == 0:
            raise LabelingError("The label matrix has no rows: there is nothing to fit; check "
                                "labeling.table and its version.")
        uniq, w, _ = _patterns(L)
        k = self.cardinality
        q = MajorityVote(k, class_balance=self.fixed_balance).predict_proba(uniq)
        # Start from majority vote, softened: EM then decides how far to trust each LF.
        q = 0.8 * q + 0.2 / k
        onehot = np.stack([(uniq + 1) == v for v in range(k + 1)], axis=2).astype(np.float64)
        prev = -np.inf
        for it in range(1, self.max_iter + 1):
            self._m_step(q, w, onehot)
            log_post = self._log_joint(onehot)
            ll = float(np.sum(w * _logsumexp(log_post)))
            q = np.exp(log_post - _logsumexp(log_post)[:, None])
            self.n_iter, self.log_likelihood = it, ll
            if abs(ll - prev) <= self.tol * max(1.0, abs(ll)):
                break
            prev = ll
        self._m_step(q, w, onehot)
        return self

    def _m_step(self, q: np.ndarray, w: np.ndarray, onehot: np.ndarray) -> None:
        k, a = self.cardinality, self.smoothing
        qw = q * w[:, None]  # patterns x classes
        # counts[j, y, v] = sum_i q_iy w_i [L_ij = v]
        counts = np.einsum("iy,ijv->jyv", qw, onehot)
        if not self.abstain_informative:
            # An LF's abstains are shared equally among the classes (each gets 1/k of them as
            # pseudo-observations) instead of following the posterior: an LF's silence then
            # only says "not the class this LF votes for" as far as its votes skew to one
            # class. Correlated unipolar LFs' silences no longer add up to a confident class
            # for rows no LF covers; truly class-blind abstains would leave a unipolar LF's
            # votes with no information at all.
            total = counts.sum(axis=1, keepdims=True)
            counts[:, :, 0] = total[:, :, 0] / k
        theta = counts + a
        self.theta = theta / theta.sum(axis=2, keepdims=True)
        if self.fixed_balance is not None:
            self.class_balance = self.fixed_balance
        else:
            pri = qw.sum(axis=0) + a
            self.class_balance = pri / pri.sum()

    def _log_joint(self, onehot: np.ndarray) -> np.ndarray:
        assert self.theta is not None and self.class_balance is not None
        # log P(y) + sum_j log P(L_ij | y) for every pattern i and class y
        return np.log(self.class_balance)[None, :] + np.einsum(
            "ijv,jyv->iy", onehot, np.log(self.theta))

    # -- using ----------------------------------------------------------------------
    def predict_proba(self, L: np.ndarray) -> np.ndarray:
        """P(class | votes) per row (rows x cardinality)."""
        if self.theta is None:
            raise LabelingError("The label model is not fitted: call fit(L) first (or run "
                                "`raylake label model`).")
        L = check_matrix(L, self.cardinality)
        if L.shape[1] != self.theta.shape[0]:
            raise LabelingError(f"The label matrix has {L.shape[1]} LFs; the model was fitted on "
                                f"{self.theta.shape[0]}. Apply the same LF set.")
        uniq, _, inverse = _patterns(L)
        if len(uniq) == 0:
            return np.zeros((0, self.cardinality))
        onehot = np.stack([(uniq + 1) == v for v in range(self.cardinality + 1)],
                          axis=2).astype(np.float64)
        log_post = self._log_joint(onehot)
        p = np.exp(log_post - _logsumexp(log_post)[:, None])
        return p[inverse]

    def predict(self, L: np.ndarray) -> np.ndarray:
        """The most probable class per row (exact ties broken at random, seeded)."""
        return _argmax_random_ties(self.predict_proba(L), self.seed)

    def score(self, L: np.ndarray, y: np.ndarray) -> float:
        """Accuracy of :meth:`predict` against gold labels ``y``."""
        return float(np.mean(self.predict(L) == np.asarray(y)))

    def lf_accuracies(self) -> np.ndarray:
        """Each LF's learned accuracy: P(vote = class | the LF votes)."""
        assert self.theta is not None and self.class_balance is not None
        k = self.cardinality
        pi = self.class_balance
        right = sum(pi[y] * self.theta[:, y, y + 1] for y in range(k))
        votes = sum(pi[y] * (1 - self.theta[:, y, 0]) for y in range(k))
        return np.asarray(right / np.maximum(votes, 1e-12))

    def params(self, names: list[str] | None = None) -> dict[str, Any]:
        """The fitted parameters as plain values (what the run record keeps)."""
        assert self.theta is not None and self.class_balance is not None
        names = names or [f"lf{j}" for j in range(self.theta.shape[0])]
        acc = self.lf_accuracies()
        return {"kind": "dawid_skene", "cardinality": self.cardinality,
                "class_balance": [round(float(x), 6) for x in self.class_balance],
                "abstain_informative": self.abstain_informative, "smoothing": self.smoothing,
                "iterations": self.n_iter, "log_likelihood": round(self.log_likelihood, 4),
                "lf_accuracy": {n: round(float(a), 4) for n, a in zip(names, acc)},
                "confusion": {n: np.round(self.theta[j], 6).tolist()
                              for j, n in enumerate(names)}}


def _logsumexp(a: np.ndarray) -> np.ndarray:
    m = a.max(axis=1)
    return m + np.log(np.exp(a - m[:, None]).sum(axis=1))
