"""The diff page's diff: :func:`raylake.lake.diff.diff_versions`'s answer, read through
the UI's cached snapshots (each loaded straight at its version) and only the files one
version has and the other lacks."""

from __future__ import annotations

import pyarrow as pa

from raylake.lake.diff import TableDiff, multiset_difference
from raylake.ui.reads import TableReader


def diff(reader: TableReader, name: str, a: int, b: int, sample: int = 20) -> TableDiff:
    """What changed in ``name`` from version ``a`` to ``b``: columns added, removed or
    retyped, and rows added and removed over the shared columns (as a multiset)."""
    # The two snapshots load side by side (delta-rs replays each log off the GIL).
    for _ in reader.pool.map(lambda v: reader.files(name, v), (a, b)):
        pass
    old_schema, _ = reader.schema(name, a)
    new_schema, _ = reader.schema(name, b)
    old = {f.name: f.type for f in old_schema}
    new = {f.name: f.type for f in new_schema}
    result = TableDiff(name, a, b)
    result.added_columns = [c for c in new if c not in old]
    result.removed_columns = [c for c in old if c not in new]
    result.changed_types = {c: (str(old[c]), str(new[c])) for c in old
                            if c in new and old[c] != new[c]}
    common = [c for c in new if c in old and c not in result.changed_types]
    old_paths = reader.files(name, a).column("path").to_pylist() \
        if reader.files(name, a).num_rows else []
    new_paths = reader.files(name, b).column("path").to_pylist() \
        if reader.files(name, b).num_rows else []
    only_old, only_new = set(old_paths) - set(new_paths), set(new_paths) - set(old_paths)

    def rows(version: int, paths: list[str], keep: set[str], schema: pa.Schema) -> pa.Table:
        parts = [reader.read_file(name, version, i, columns=common)
                 for i, p in enumerate(paths) if p in keep]
        return pa.concat_tables(parts) if parts else schema.empty_table().select(common)

    added, removed = multiset_difference(rows(b, new_paths, only_new, new_schema).to_pandas(),
                                         rows(a, old_paths, only_old, old_schema).to_pandas())
    result.rows_added, result.rows_removed = len(added), len(removed)
    result.added_sample = added.head(sample).to_dict("records")
    result.removed_sample = removed.head(sample).to_dict("records")
    return result
