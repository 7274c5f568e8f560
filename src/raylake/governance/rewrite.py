"""Delete rows from a table in one Delta commit: each file that holds a row to delete is
rewritten without it (a file left empty is only removed), files are added and removed
in one transaction.

Erasure and retention decide which rows go with their own matchers (a subject's forms,
an age) over Arrow; the rewrite applies exactly that decision, so the rows counted are
the rows deleted (a SQL predicate would be a second, subtly different matcher). The
commit carries an application transaction id at ``txn_version``: a retry of the same
deletion on a table that already holds it commits nothing. It is made with no automatic
rebase: when another writer commits first, the files are matched again on the new
snapshot (a file already judged is not read again: files never change) and the
deletion is committed there.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import CommitProperties, Transaction
from deltalake.exceptions import CommitFailedError, DeltaError
from deltalake.transaction import AddAction, RemoveAction

from raylake.errors import ConcurrentWriteError, LakeError
from raylake.governance.versions import data_path
from raylake.lake.commit import CONFLICT_RETRIES, holds
from raylake.lake.files import write_files
from raylake.lake.tables import Lake

# (rows of a file, with its partition columns added) -> rows to delete
Matcher = Callable[[pa.Table], np.ndarray]


@dataclass
class Deleted:
    """What a deletion committed: the new version (None: nothing committed), the rows
    deleted and the files rewritten or removed."""

    table: str
    version: int | None
    rows: int
    files: list[str]


def read_file(lake: Lake, table: str, path: str, partition_values: dict[str, str | None],
              columns: Sequence[str] | None, schema: pa.Schema) -> pa.Table | None:
    """Rows of data file ``path`` (only ``columns`` when given), partition columns added
    as strings; None when the file is gone (vacuumed)."""
    full = data_path(lake, table, path)
    if not full:
        return None
    fs, _ = lake.storage.filesystem()
    try:
        present = pq.read_schema(full, filesystem=fs).names
        wanted = [c for c in columns if c in present] if columns is not None else None
        rows = pq.read_table(full, columns=wanted, filesystem=fs)
    except (OSError, pa.ArrowException) as exc:
        raise LakeError(f"Cannot read {full} of table {table!r}: {exc}") from exc
    for col, value in partition_values.items():
        if (columns is None or col in columns) and col not in rows.column_names:
            rows = rows.append_column(col, pa.array([value] * rows.num_rows, pa.string()))
    # Columns added to the table after this file was written: all null here.
    for col in columns or ():
        if col not in rows.column_names and col in schema.names:
            rows = rows.append_column(col, pa.nulls(rows.num_rows, schema.field(col).type))
    return rows


def delete_rows(lake: Lake, table: str, matcher: Matcher, columns: Sequence[str], *,
                app_id: str, run_id: str | None, job: str, known: dict[str, int] | None = None,
                metadata: dict[str, object] | None = None, system: bool = False) -> Deleted:
    """Delete the rows ``matcher`` picks from the latest version of ``table`` (reading
    only ``columns`` to judge) in one commit with ``app_id``; ``known``: rows to delete
    per file path already counted (0: none), filled in as files are read."""
    seen = {} if known is None else known
    last: Exception | None = None
    for attempt in range(CONFLICT_RETRIES):
        dtab = lake.table(table, system=system)
        txn = dtab.version() + 1
        if holds(dtab, app_id, txn):
            return Deleted(table, None, 0, [])
        schema = pa.schema(dtab.schema().to_arrow())
        parts = list(dtab.metadata().partition_columns)
        live = pa.table(dtab.get_add_actions(flatten=True)).to_pydict()
        pcols = [k for k in live if k.startswith("partition.")]
        hits = []
        for i, path in enumerate(live.get("path", [])):
            pv = {k[len("partition."):]: None if live[k][i] is None else str(live[k][i])
                  for k in pcols}
            if seen.get(path) == 0:
                continue
            rows = read_file(lake, table, path, pv, columns, schema)
            if rows is None:
                raise LakeError(f"File {path} of {table!r}@{dtab.version()} is missing; the "
                                "table is damaged (`raylake lake doctor`).")
            mask = np.asarray(matcher(rows), bool)
            seen[path] = int(mask.sum())
            if mask.any():
                hits.append((path, pv, mask, int(live["size_bytes"][i])))
        if not hits:
            return Deleted(table, None, 0, [])
        actions, written = _rewrite(lake, table, hits, schema)
        n = sum(int(m.sum()) for _, _, m, _ in hits)
        props = CommitProperties(
            custom_metadata={"raylake.run_id": run_id or "", "raylake.job": job,
                             "raylake.rows_deleted": n, **(metadata or {})},
            max_commit_retries=0, app_transactions=[Transaction(app_id, txn)])
        try:
            dtab.create_write_transaction(actions, mode="append", schema=schema,
                                          partition_by=parts or None, commit_properties=props)
        except CommitFailedError as exc:  # another writer first: judge its snapshot again
            _discard(lake, table, written)
            for path, *_ in hits:
                seen.pop(path, None)
            last = exc
            time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
            continue
        except (DeltaError, OSError) as exc:
            _discard(lake, table, written)
            raise LakeError(f"Deleting rows of {table!r} failed: {exc}. Nothing was "
                            "committed.") from exc
        dtab.update_incremental()
        return Deleted(table, dtab.version(), n, [p for p, *_ in hits])
    raise ConcurrentWriteError(
        f"Table {table!r} was changed by other writers {CONFLICT_RETRIES} times while rows "
        f"were being deleted ({last}); nothing was committed. Run it again.")


def _rewrite(lake: Lake, table: str, hits: list[tuple[str, dict[str, str | None], np.ndarray, int]],
             schema: pa.Schema) -> tuple[list[AddAction | RemoveAction], list[str]]:
    """Each hit file rewritten without its rows: the add and remove actions, and the new
    files' paths (to delete should the commit fail)."""
    now = int(time.time() * 1000)
    actions: list[AddAction | RemoveAction] = []
    written: list[str] = []
    for path, pv, mask, size in hits:
        actions.append(RemoveAction(path=path, data_change=True, deletion_timestamp=now,
                                    size=size, partition_values=pv))
        if mask.all():
            continue
        full = data_path(lake, table, path)
        fs, _ = lake.storage.filesystem()
        rows = pq.read_table(full, filesystem=fs).filter(pa.array(~mask))
        folder, _, _ = path.rpartition("/")
        disk_folder = full[: -len(path.rpartition("/")[2]) - 1]
        for f in write_files(rows, lake.storage, _rel(lake, disk_folder), ()):
            rel = f"{folder}/{f.path}" if folder else f.path
            written.append(rel)
            actions.append(AddAction(rel, f.size, pv, now, True, json.dumps(f.stats)))
    return actions, written


def _rel(lake: Lake, full: str) -> str:
    _, root = lake.storage.filesystem()
    return full[len(root.rstrip("/")) + 1:]


def _discard(lake: Lake, table: str, paths: Sequence[str]) -> None:
    fs, _ = lake.storage.filesystem()
    for p in paths:
        full = data_path(lake, table, p)
        if full:
            try:
                fs.delete_file(full)
            except OSError:
                pass  # an orphan `raylake lake vacuum --orphans` removes
