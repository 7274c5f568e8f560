"""What changed in a table between two versions: schema, rows added, rows removed.

Files present in both versions hold the same rows, so only the files one
version has and the other lacks are read. Rows are compared as a multiset
over the columns both versions share (a row counted twice stays twice).
The two versions may be on different branches of the lake (``flights@exp1``
against ``flights@main``): a branch's files are links to the same files at the
same relative paths, so a path names the same rows on both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pds
from deltalake import DeltaTable

from raylake.lake.tables import Lake, VersionRef


@dataclass
class TableDiff:
    table: str
    from_version: int
    to_version: int
    added_columns: list[str] = field(default_factory=list)
    removed_columns: list[str] = field(default_factory=list)
    changed_types: dict[str, tuple[str, str]] = field(default_factory=dict)
    rows_added: int = 0
    rows_removed: int = 0
    added_sample: list[dict[str, Any]] = field(default_factory=list)
    removed_sample: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The diff's fields as a dict (a shallow copy)."""
        return self.__dict__.copy()


def diff_versions(lake: Lake, name: str, v1: VersionRef, v2: VersionRef, sample: int = 5) -> TableDiff:
    """What changed in table ``name`` from version ``v1`` to ``v2`` (numbers, tags or
    timestamps): columns added, removed or retyped, and rows added and removed over the
    shared columns, with up to ``sample`` of each. Only the files one version has and the
    other lacks are read."""
    return diff_tables(lake, name, v1, lake, name, v2, sample)


def diff_tables(old_lake: Lake, name: str, v1: VersionRef, new_lake: Lake, new_name: str,
                v2: VersionRef, sample: int = 5) -> TableDiff:
    """What changed from table ``name`` at ``v1`` in ``old_lake`` to ``new_name`` at ``v2``
    in ``new_lake`` (two branches of one lake, or the same lake): as :func:`diff_versions`.
    The diff's table reads ``name@branch`` when the branches differ."""
    old = old_lake.table(name, v1)
    new = new_lake.table(new_name, v2)
    label = name if old_lake.root == new_lake.root and name == new_name else (
        f"{name}@{old_lake.branch_name} -> {new_name}@{new_lake.branch_name}")
    result = TableDiff(label, old.version(), new.version())
    old_schema: pa.Schema = old.schema().to_arrow()
    new_schema: pa.Schema = new.schema().to_arrow()
    old_types = {f.name: f.type for f in old_schema}
    new_types = {f.name: f.type for f in new_schema}
    result.added_columns = [c for c in new_types if c not in old_types]
    result.removed_columns = [c for c in old_types if c not in new_types]
    result.changed_types = {
        c: (str(old_types[c]), str(new_types[c]))
        for c in old_types
        if c in new_types and old_types[c] != new_types[c]
    }
    common = [c for c in new_types if c in old_types and c not in result.changed_types]

    old_files, new_files = files_of(old), files_of(new)
    removed_rows = read_files(old, old_files - new_files, common, old_lake.arrow_filesystem(name))
    added_rows = read_files(new, new_files - old_files, common,
                            new_lake.arrow_filesystem(new_name))
    added, removed = multiset_difference(added_rows, removed_rows)
    result.rows_added, result.rows_removed = len(added), len(removed)
    result.added_sample = added.head(sample).to_dict("records")
    result.removed_sample = removed.head(sample).to_dict("records")
    return result


def files_of(dtab: DeltaTable) -> set[str]:
    """The relative paths of the files of snapshot ``dtab``."""
    actions = dtab.get_add_actions(flatten=True)
    return set(actions.column("path").to_pylist()) if actions.num_rows else set()


def read_files(dtab: DeltaTable, paths: set[str], columns: list[str], fs: Any) -> pd.DataFrame:
    """The rows of ``columns`` in files ``paths`` of snapshot ``dtab`` (read through
    ``fs``, rooted at the table), as pandas."""
    if not paths:
        return pd.DataFrame({c: [] for c in columns})
    dataset = dtab.to_pyarrow_dataset(filesystem=fs)
    wanted = [
        frag
        for frag in dataset.get_fragments()
        if any(frag.path.endswith(p) for p in paths)
    ]
    subset = pds.FileSystemDataset(wanted, dataset.schema, dataset.format, dataset.filesystem)
    return subset.to_table(columns=columns).to_pandas()


def multiset_difference(new: pd.DataFrame, old: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows of ``new`` not matched one-for-one in ``old``, and the other way round."""
    if new.empty or old.empty:
        return new, old
    h_new = pd.util.hash_pandas_object(new, index=False).to_numpy()
    h_old = pd.util.hash_pandas_object(old, index=False).to_numpy()
    return new[_unmatched(h_new, h_old)], old[_unmatched(h_old, h_new)]


def _unmatched(mine: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    # The k-th occurrence of a row is matched when the other side has >= k copies.
    occurrence: np.ndarray = pd.Series(mine).groupby(mine).cumcount().to_numpy()
    keys, counts = np.unique(theirs, return_counts=True)
    idx = np.searchsorted(keys, mine)
    idx_clipped = np.minimum(idx, len(keys) - 1)
    found = (idx < len(keys)) & (keys[idx_clipped] == mine)
    available = np.where(found, counts[idx_clipped], 0)
    return occurrence >= available
