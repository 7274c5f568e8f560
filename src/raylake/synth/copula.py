"""A Gaussian copula: the fast baseline (seconds on 50,000 rows).

Each column is mapped to a standard normal score through its own distribution: a
continuous column through its empirical distribution (ties at their mid-rank, nulls the
lowest ``null_share`` of the mass), a discrete column through the cumulative frequencies
of its categories (a value spread uniformly over its category's interval). The scores'
correlation matrix, estimated from rank correlations, is the copula. Sampling draws
correlated normal scores and maps each back: continuous columns through their quantile
function (1,001 quantiles, linear in between), discrete columns to the category whose
interval holds it. A condition on a discrete column is met exactly: that column's score
is drawn from its category's interval and the others from the Gaussian conditional on it
(more conditions: rejection).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

from raylake.synth.base import Synthesizer, chunks, derived_seed

if TYPE_CHECKING:
    import torch

QUANTILES = 1001
EDGE = 1e-6  # uniforms kept inside (EDGE, 1 - EDGE): finite normal scores


class GaussianCopula(Synthesizer):
    """Empirical marginals joined by a Gaussian copula; training parameters are accepted
    and unused."""

    kind = "copula"

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.quantiles = np.zeros((0, QUANTILES))
        self.corr = np.zeros((0, 0))

    def _cum(self, j: int) -> np.ndarray:
        """Cumulative category shares of discrete column ``j``: [0, ..., 1]."""
        assert self.transformer is not None
        counts = np.asarray(self.transformer.columns[j].counts, dtype=np.float64)
        cum = np.concatenate([[0.0], np.cumsum(counts)]) / counts.sum()
        cum[-1] = 1.0
        return cum

    def fit(self, df: pd.DataFrame, *, discrete: Any = None, seed: int = 0) -> dict[str, float]:
        """Fit the marginals and the correlation of normal scores (see the module)."""
        return super().fit(df, discrete=discrete, seed=seed)

    def _fit_transformer(self, df: pd.DataFrame, discrete: Any, seed: int,
                         max_modes: int | None = None) -> Any:
        return super()._fit_transformer(df, discrete, seed, max_modes=1)  # no mixture needed

    def _fit(self, df: pd.DataFrame, seed: int) -> dict[str, float]:
        tr = self._fitted()
        raw = tr.raw(df)
        n, d = raw.shape
        rng = np.random.default_rng(seed)
        u = np.empty_like(raw)
        grid = np.linspace(0.0, 1.0, QUANTILES)
        quantiles = []
        for j, c in enumerate(tr.columns):
            v = raw[:, j]
            if c.kind == "discrete":
                cum = self._cum(j)
                code = v.astype(np.int64)
                u[:, j] = cum[code] + rng.random(n) * (cum[code + 1] - cum[code])
                continue
            null = np.isnan(v)
            x = np.sort(v[~null])
            quantiles.append(np.quantile(x, grid))
            left = np.searchsorted(x, v[~null], "left")
            right = np.searchsorted(x, v[~null], "right")
            f = (left + right) / 2 / len(x)  # mid-ranks: ties add no noise to the scores
            p0 = c.null_share
            u[~null, j] = p0 + (1 - p0) * f
            u[null, j] = rng.random(int(null.sum())) * p0
        # The normal scores' correlation from the uniforms' (Spearman's) rank correlation,
        # rho = 2 sin(pi rho_s / 6): the copula then gives back the table's rank
        # correlations, where the Pearson correlation of the scores falls short of them
        # whenever the dependence is not Gaussian (clusters, ties).
        spearman = np.corrcoef(u, rowvar=False) if n > 1 else np.eye(d)
        spearman = np.atleast_2d(np.nan_to_num(spearman, nan=0.0))
        corr = 2 * np.sin(np.pi * spearman / 6)
        np.fill_diagonal(corr, 1.0)
        self.corr = _nearest_pd(corr)
        self.quantiles = np.asarray(quantiles).reshape(-1, QUANTILES)
        return {"epochs": 0.0}

    def _sample_raw(self, n: int, seed: int, conds: list[tuple[int, int]]) -> np.ndarray:
        tr = self._fitted()
        d = len(tr.columns)
        rng = np.random.default_rng(derived_seed(seed, 0))
        out = []
        chol = np.linalg.cholesky(self.corr)
        given = conds[0] if conds else None
        if given is not None:
            j, code = given
            rest = [i for i in range(d) if i != j]
            s_rj = self.corr[rest, j]
            cov = self.corr[np.ix_(rest, rest)] - np.outer(s_rj, s_rj)
            chol_c = (np.linalg.cholesky(_nearest_pd(cov, unit_diagonal=False)) if rest
                      else np.zeros((0, 0)))
            cum = self._cum(j)
        for m in chunks(n):
            if given is None:
                z = rng.standard_normal((m, d)) @ chol.T
            else:
                uj = cum[code] + rng.random(m) * (cum[code + 1] - cum[code])
                zj = ndtri(np.clip(uj, EDGE, 1 - EDGE))
                z = np.empty((m, d))
                z[:, j] = zj
                z[:, rest] = zj[:, None] * s_rj[None, :] + rng.standard_normal(
                    (m, d - 1)) @ chol_c.T
            out.append(self._from_normal(z))
        return np.concatenate(out)

    def _from_normal(self, z: np.ndarray) -> np.ndarray:
        tr = self._fitted()
        u = ndtr(z)
        raw = np.empty_like(u)
        grid = np.linspace(0.0, 1.0, QUANTILES)
        q = 0
        for j, c in enumerate(tr.columns):
            if c.kind == "discrete":
                cum = self._cum(j)
                raw[:, j] = np.clip(np.searchsorted(cum, u[:, j], "right") - 1, 0,
                                    len(cum) - 2)
                continue
            p0 = c.null_share
            v = np.clip((u[:, j] - p0) / max(1 - p0, EDGE), 0.0, 1.0)
            x = np.interp(v, grid, self.quantiles[q])
            x[u[:, j] < p0] = np.nan
            raw[:, j] = x
            q += 1
        return raw

    def _tensors(self) -> dict[str, torch.Tensor]:
        import torch

        return {"quantiles": torch.from_numpy(np.ascontiguousarray(self.quantiles)),
                "corr": torch.from_numpy(np.ascontiguousarray(self.corr))}

    def _load(self, tensors: dict[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
        self.quantiles = tensors["quantiles"].double().numpy()
        self.corr = tensors["corr"].double().numpy()


def _nearest_pd(m: np.ndarray, *, unit_diagonal: bool = True) -> np.ndarray:
    """``m`` made symmetric positive definite (eigenvalues floored), with a unit diagonal
    when it is a correlation matrix."""
    if m.size == 0:
        return m
    m = (m + m.T) / 2
    w, v = np.linalg.eigh(m)
    m = (v * np.maximum(w, 1e-6)) @ v.T
    if unit_diagonal:
        s = np.sqrt(np.diag(m))
        m = m / np.outer(s, s)
    return (m + m.T) / 2 + np.eye(len(m)) * 1e-9
