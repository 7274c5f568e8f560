"""A model's input contract: which columns it reads and how an Arrow batch becomes its
inputs. Training builds it from the training split (:mod:`raylake.train.data`); the
registry stores it as the model's ``preprocessing``, and every scorer (evaluation, batch
inference, the model server) rebuilds it with :meth:`FeatureSpec.from_dict`, so rows are
encoded alike everywhere."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


@dataclass
class FeatureSpec:
    """Model inputs: numeric columns as float32, categorical ones as vocabulary codes
    (0 = unknown or null, so a value unseen in training is still a valid input)."""

    numeric: list[str]
    categorical: list[str]
    vocab: dict[str, list[str]] = field(default_factory=dict)
    label: str = "label"
    # Standardisation for networks (see `standardized`), from the training split; trees
    # leave them empty. `missing`: numeric columns that get a 0/1 "was missing" input.
    means: dict[str, float] = field(default_factory=dict)
    stds: dict[str, float] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        """The input columns in model order: the numeric ones, then the categorical ones."""
        return [*self.numeric, *self.categorical]

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain values (what the registry stores as ``preprocessing``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSpec:
        """The spec that :meth:`to_dict` returned."""
        return cls(**d)

    def encode(self, table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        """(numeric float32 [n, len(numeric)], categorical int64 codes [n, len(categorical)])."""
        n = table.num_rows
        num = np.empty((n, len(self.numeric)), dtype=np.float32)
        for j, c in enumerate(self.numeric):
            col = table.column(c)
            if pa.types.is_boolean(col.type):
                col = pc.cast(col, pa.int8())
            num[:, j] = pc.cast(col, pa.float32()).to_numpy(zero_copy_only=False)
        cat = np.zeros((n, len(self.categorical)), dtype=np.int64)
        for j, c in enumerate(self.categorical):
            values = pc.cast(table.column(c), pa.string())
            idx = pc.index_in(values, value_set=pa.array(self.vocab[c], pa.string()))
            cat[:, j] = pc.fill_null(pc.add(idx, 1), 0).to_numpy(zero_copy_only=False)
        return num, cat

    def standardized(self, table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        """Like `encode`, numeric columns as (x - mean) / std, then one 0/1 column per
        `missing` column; a missing value becomes 0 (the training mean)."""
        num, cat = self.encode(table)
        absent = ~np.isfinite(num)
        mean = np.array([self.means.get(c, 0.0) for c in self.numeric], np.float32)
        std = np.array([self.stds.get(c, 1.0) for c in self.numeric], np.float32)
        num = (num - mean) / std
        num[absent] = 0.0
        pos = [self.numeric.index(c) for c in self.missing]
        return np.hstack([num, absent[:, pos].astype(np.float32)]), cat

    def matrix(self, table: pa.Table) -> np.ndarray:
        """One float32 matrix: numeric columns, then codes (NaN for unknown: XGBoost's missing)."""
        num, cat = self.encode(table)
        codes = cat.astype(np.float32)
        codes[cat == 0] = np.nan
        return np.hstack([num, codes - 1]) if len(self.categorical) else num

    def labels(self, table: pa.Table) -> np.ndarray:
        """The label column as float32 (booleans as 0/1, nulls as NaN)."""
        col = table.column(self.label)
        if pa.types.is_boolean(col.type):
            col = pc.cast(col, pa.int8())
        return pc.cast(col, pa.float32()).to_numpy(zero_copy_only=False)

    def feature_types(self) -> list[str]:
        """XGBoost's feature types in :attr:`names` order: ``q`` for a numeric column, ``c``
        for a categorical one."""
        return ["q"] * len(self.numeric) + ["c"] * len(self.categorical)
