"""Hashed text features: word unigrams and bigrams, tf-idf weighted, L2-normalised.

``featurize(texts, dim)`` is stateless and deterministic (a keyed BLAKE2 hash, not
Python's salted ``hash()``), so the same text gives the same row in every process and
every run; the idf weights come from the texts passed in, so featurize the pool and the
rows to score together, or pass ``idf`` from :func:`fit_idf` to score new rows alike.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

__all__ = ["featurize", "fit_idf", "hashed_counts", "tokenize"]

_TOKEN = re.compile(r"[a-z0-9']+|https?://\S+|[!?$]")


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens of ``text``; a URL is one token, ``!?$`` are tokens."""
    tokens = _TOKEN.findall((text or "").lower())
    return ["<url>" if tok.startswith("http") else tok for tok in tokens]


def _bucket(term: str, dim: int) -> int:
    digest = hashlib.blake2b(term.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % dim


def hashed_counts(texts: Sequence[str], dim: int = 2**12) -> sp.csr_matrix:
    """Raw hashed counts of unigrams and bigrams (``len(texts)`` x ``dim``, CSR)."""
    if dim < 2:
        raise ValueError(f"dim={dim}: the feature dimension must be at least 2 (e.g. 4096)")
    cache: dict[str, int] = {}
    rows: list[int] = []
    cols: list[int] = []
    for i, text in enumerate(texts):
        tokens = tokenize(str(text) if text is not None else "")
        terms = tokens + [f"{a} {b}" for a, b in zip(tokens, tokens[1:])]
        for term in terms:
            col = cache.get(term)
            if col is None:
                col = cache[term] = _bucket(term, dim)
            rows.append(i)
            cols.append(col)
    data = np.ones(len(rows), dtype=np.float64)
    counts = sp.csr_matrix((data, (rows, cols)), shape=(len(texts), dim), dtype=np.float64)
    counts.sum_duplicates()
    return counts


def fit_idf(counts: sp.csr_matrix) -> np.ndarray:
    """Smoothed idf per column, ``log((1+n)/(1+df)) + 1``, as scikit-learn computes it."""
    n = counts.shape[0]
    df = np.bincount(counts.indices, minlength=counts.shape[1]).astype(np.float64)
    return np.log((1.0 + n) / (1.0 + df)) + 1.0


def featurize(
    texts: Sequence[str], dim: int = 2**12, idf: np.ndarray | None = None
) -> sp.csr_matrix:
    """Tf-idf of hashed word unigrams and bigrams, each row L2-normalised (CSR float64).

    Term frequency is sublinear (``1 + log(count)``); ``idf`` defaults to the texts'
    own (:func:`fit_idf`). An empty text gives an all-zero row.
    """
    counts = hashed_counts(texts, dim)
    if idf is None:
        idf = fit_idf(counts)
    elif idf.shape != (dim,):
        raise ValueError(f"idf has shape {idf.shape}; it must be ({dim},), from fit_idf on the same dim")
    tf = counts.copy()
    tf.data = 1.0 + np.log(tf.data)
    out = sp.csr_matrix(tf.multiply(idf.reshape(1, -1)))
    norms = np.sqrt(np.asarray(out.multiply(out).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    out = sp.csr_matrix(sp.diags(1.0 / norms) @ out)
    out.sort_indices()
    return out
