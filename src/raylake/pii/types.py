"""What detection produces: matches in a column of strings, and a column's class."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Matches:
    """Where one entity type matched in an array of strings: one entry per match, with
    the row (index into the array) and the span [start, end) in Python characters.
    Sorted by row, then start; spans of one entity do not overlap."""

    rows: np.ndarray  # int64
    starts: np.ndarray  # int64
    ends: np.ndarray  # int64

    @staticmethod
    def empty() -> Matches:
        """No match."""
        z = np.zeros(0, np.int64)
        return Matches(z, z, z)

    def __len__(self) -> int:
        return int(self.rows.size)


@dataclass
class ColumnClass:
    """A column's classification, as stored in ``_classification``."""

    column: str
    data_class: str  # public | internal | pii | restricted
    entities: dict[str, float] = field(default_factory=dict)  # entity -> share of sampled
    sampled: int = 0  # non-null values scanned
    source: str = "scan"  # scan | config
    policy: str = "keep"  # the action applied at ingestion
    # Whole-value entity column (e.g. `email`) or free text carrying matches.
    whole: bool = False
