"""Atomic, idempotent commits of files written by Ray workers.

Workers write Parquet files under a table's folder; nothing is visible until
the driver commits their ``AddAction``s in one Delta transaction. A commit
carries an application transaction id (``app_id``, Delta's ``txn`` action),
so a re-run over the same input finds its id already in the log and commits
nothing twice.

The id is checked against the snapshot the commit is made on, never against
an earlier read: delta-rs's conflict checker (deltalake 1.x) rejects a commit
whose app id a concurrent winning commit already carries ("Concurrent
transaction failed"), but it does not look at the snapshot itself, so an id
already in the snapshot must be seen here. On a conflict the table is loaded
again and the id checked again: present, the other writer committed this
input and this one commits nothing (its files are deleted); absent, the
commit is tried again. Concurrent blind appends of other ids are rebased and
retried by delta-rs.

Creating a table is the exception: delta-rs lets two racing creators both
"succeed" (the loser is rebased into version 1, app ids unchecked), so a table
is created with no automatic retry; the loser then appends, or finds its id.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Schema, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError
from deltalake.transaction import AddAction, create_table_with_add_actions

from raylake.errors import ConcurrentWriteError, LakeError, RaylakeError
from raylake.lake.names import validate_table_name
from raylake.lake.tables import Lake

COMMIT_RETRIES = 20  # delta-rs's own rebases over concurrent blind appends
CONFLICT_RETRIES = 8  # reload, re-check the app id and commit again


@dataclass(frozen=True)
class Commit:
    """The outcome of an idempotent commit: the table version that holds the app id,
    and whether this call committed it (False: another writer had, nothing added)."""

    version: int
    committed: bool


def commit_properties(app_id: str | None, run_id: str | None, job: str | None,
                      rows: int | None = None, txn_version: int = 1, *,
                      retries: int = COMMIT_RETRIES) -> CommitProperties:
    """Delta commit properties: ``raylake.run_id``, ``raylake.job`` and ``raylake.rows`` as
    commit metadata where given, delta-rs's retries of conflicting appends (``retries``),
    and ``app_id`` as the application transaction that makes the commit idempotent (at
    ``txn_version``: a writer committing a sequence of batches under one app id numbers
    them)."""
    meta: dict[str, object] = {
        k: v for k, v in {"raylake.run_id": run_id, "raylake.job": job}.items() if v
    }
    if rows is not None:
        meta["raylake.rows"] = rows
    txns = [Transaction(app_id, txn_version)] if app_id else None
    return CommitProperties(
        custom_metadata=meta or None, max_commit_retries=retries, app_transactions=txns
    )


def add_actions(files: Sequence[dict[str, Any]]) -> list[AddAction]:
    """Delta add actions for files written by workers: dicts with path, size, stats
    (Delta statistics JSON) and optionally partition_values (JSON or a dict)."""
    now = int(time.time() * 1000)
    out = []
    for f in files:
        pv = f.get("partition_values") or {}
        out.append(AddAction(path=f["path"], size=f["size"],
                             partition_values=json.loads(pv) if isinstance(pv, str) else pv,
                             modification_time=now, data_change=True, stats=f["stats"]))
    return out


def version_holding(lake: Lake, table: str, app_id: str) -> int:
    """The version that committed ``app_id``: the first whose log holds it (every later
    one holds it too). Not simply the latest: a table overwritten by each build may have
    had these rows replaced by a later build (other inputs) since."""
    low, high = 0, lake.version(table)
    latest = high
    while low < high:
        mid = (low + high) // 2
        try:
            holds = lake.table(table, mid).transaction_version(app_id) is not None
        except RaylakeError:  # an old version whose log was cleaned up: not this one
            holds = False
        low, high = (low, mid) if holds else (mid + 1, high)
    return min(low, latest)


def already_committed(lake: Lake, name: str, app_id: str, *, system: bool = False) -> bool:
    """True when a commit with ``app_id`` is in the table's log (a cheap early check;
    the commit itself checks again on the snapshot it commits to)."""
    if not lake.exists(name, system=system):
        return False
    return lake.table(name, system=system).transaction_version(app_id) is not None


def holds(dtab: DeltaTable, app_id: str | None, txn_version: int = 1) -> bool:
    """True when snapshot ``dtab`` already holds ``app_id`` at ``txn_version`` or later."""
    return app_id is not None and (dtab.transaction_version(app_id) or 0) >= txn_version


def check_schema(name: str, existing: pa.Schema, declared: pa.Schema) -> None:
    """Appending needs the declared columns and types to match the table's."""
    have = {f.name: f.type for f in existing}
    want = {f.name: f.type for f in declared}
    problems = []
    for col, typ in want.items():
        if col not in have:
            problems.append(f"column {col!r} ({typ}) is not in the table")
        elif have[col] != typ:
            problems.append(f"column {col!r} is {have[col]} in the table but declared {typ}")
    problems += [f"table column {c!r} is not declared" for c in have if c not in want]
    if problems:
        raise LakeError(
            f"Table {name!r} does not match the declared schema: {'; '.join(problems)}. "
            "Fix the dataset's columns, or write with mode=overwrite to replace the table."
        )


def snapshot(lake: Lake, name: str, *, system: bool = False) -> DeltaTable | None:
    """The latest snapshot of table ``name``, or None when there is no table yet."""
    return lake.table(name, system=system) if lake.exists(name, system=system) else None


def _backoff(attempt: int) -> None:
    # Jittered, so writers that collided do not collide again.
    time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))


def commit_once(
    lake: Lake,
    name: str,
    schema: pa.Schema,
    actions: Sequence[AddAction],
    *,
    mode: str,
    partition_by: Sequence[str] = (),
    app_id: str | None = None,
    run_id: str | None = None,
    job: str | None = None,
    description: str | None = None,
    system: bool = False,
) -> Commit:
    """Commit written files as one new table version unless the snapshot committed to
    already holds ``app_id``; then the files are deleted and nothing is committed."""
    uri = lake.uri(name, system=system)
    rows = sum(json.loads(a.stats).get("numRecords", 0) for a in actions if a.stats)
    parts = list(partition_by) or None
    last: Exception | None = None
    for attempt in range(CONFLICT_RETRIES):
        dtab = snapshot(lake, name, system=system)
        if dtab is None:
            try:
                create_table_with_add_actions(
                    uri, Schema.from_arrow(schema), list(actions), mode="error",
                    partition_by=parts, name=name.replace("/", "_"),
                    description=description or None,
                    storage_options=lake.storage.delta_options(),
                    commit_properties=commit_properties(app_id, run_id, job, rows, retries=0),
                )
                return Commit(0, True)  # the table's first version
            except (DeltaError, OSError) as exc:
                if not lake.exists(name, system=system):
                    raise LakeError(f"Cannot create table {name!r} at {uri}: {exc}") from exc
                last = exc
                continue  # another writer created it: check its app ids, then append
        if holds(dtab, app_id):
            discard(lake, name, actions, dtab, system=system)
            return Commit(dtab.version(), False)
        if mode == "append":
            check_schema(name, dtab.schema().to_arrow(), schema)
        try:
            dtab.create_write_transaction(
                list(actions), mode=mode, schema=schema, partition_by=parts,
                commit_properties=commit_properties(app_id, run_id, job, rows),
            )
        except CommitFailedError as exc:  # a concurrent commit won: reload, check again
            last = exc
            _backoff(attempt)
            continue
        except (DeltaError, OSError) as exc:
            raise LakeError(f"Commit to {name!r} failed: {exc}. Nothing was committed.") from exc
        dtab.update_incremental()
        return Commit(dtab.version(), True)
    raise ConcurrentWriteError(
        f"Table {name!r} was changed by other writers {CONFLICT_RETRIES} times while this "
        f"commit was being made ({last}); nothing was committed. Re-run: an input already "
        "committed is found and skipped."
    )


def commit_files(
    lake: Lake,
    name: str,
    schema: pa.Schema,
    actions: Sequence[AddAction],
    *,
    mode: str,
    partition_by: Sequence[str] = (),
    app_id: str | None = None,
    run_id: str | None = None,
    job: str | None = None,
    description: str | None = None,
    system: bool = False,
) -> int:
    """Commit written files as one new table version; return the version that holds
    ``app_id`` (an earlier one when another writer committed this input first)."""
    return commit_once(lake, name, schema, actions, mode=mode, partition_by=partition_by,
                       app_id=app_id, run_id=run_id, job=job, description=description,
                       system=system).version


def discard(lake: Lake, name: str, actions: Sequence[AddAction], dtab: DeltaTable, *,
            system: bool = False) -> None:
    """Delete the files of ``actions``, which will never be committed; a file that
    snapshot ``dtab`` references is kept (a commit of ours whose answer was lost)."""
    live = set(dtab.get_add_actions(flatten=True).column("path").to_pylist())
    fs, root = lake.storage.filesystem()
    base = f"{root.rstrip('/')}/{validate_table_name(name, system=system)}"
    for a in actions:
        if a.path in live:
            continue
        try:
            fs.delete_file(f"{base}/{a.path}")
        except (FileNotFoundError, OSError):
            pass  # left behind: an orphan that `raylake lake vacuum --orphans` removes


def merge_rows(
    lake: Lake,
    name: str,
    source: Callable[[], Any],
    keys: Sequence[str],
    *,
    app_id: str | None = None,
    run_id: str | None = None,
    job: str | None = None,
) -> tuple[Commit, dict[str, Any]]:
    """Upsert the rows ``source()`` gives (an Arrow table or stream; called again for a
    retry) on ``keys`` unless the table already holds ``app_id``; return the commit and
    the merge metrics."""
    predicate = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
    last: Exception | None = None
    for attempt in range(CONFLICT_RETRIES):
        dtab = lake.table(name)
        if holds(dtab, app_id):
            return Commit(dtab.version(), False), {}
        try:
            metrics = (
                dtab.merge(source(), predicate=predicate, source_alias="s", target_alias="t",
                           commit_properties=commit_properties(app_id, run_id, job))
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute()
            )
        except CommitFailedError as exc:
            last = exc
            _backoff(attempt)
            continue
        except (DeltaError, OSError, pa.ArrowException) as exc:
            raise LakeError(
                f"Merge into {name!r} on {list(keys)} failed: {exc}. Nothing was committed."
            ) from exc
        dtab.update_incremental()
        return Commit(dtab.version(), True), dict(metrics)
    raise ConcurrentWriteError(
        f"Table {name!r} was changed by other writers {CONFLICT_RETRIES} times while this "
        f"merge was being committed ({last}); nothing was committed. Re-run it."
    )


def write_table(
    lake: Lake,
    name: str,
    data: pa.Table,
    *,
    mode: str = "append",
    system: bool = False,
    app_id: str | None = None,
    run_id: str | None = None,
    job: str | None = None,
    partition_by: Sequence[str] = (),
    txn_version: int = 1,
) -> int:
    """Write a small Arrow table from this process (system tables, tests); ``app_id`` and
    ``txn_version``: the application transaction recorded with the commit. Nothing is
    written when the table already holds ``app_id`` at ``txn_version`` or later; the
    version returned is then the latest."""
    for attempt in range(CONFLICT_RETRIES):
        dtab = snapshot(lake, name, system=system)
        if dtab is not None and holds(dtab, app_id, txn_version):
            return dtab.version()
        try:
            return _write(lake, name, dtab, data, mode=mode, system=system,
                          partition_by=partition_by,
                          props=commit_properties(app_id, run_id, job, txn_version=txn_version,
                                                  retries=COMMIT_RETRIES if dtab else 0))
        except CommitFailedError:
            _backoff(attempt)  # a concurrent commit won: reload, check the app id again
        except DeltaError:
            pass  # another writer created the table first: append to it
    raise ConcurrentWriteError(
        f"Table {name!r} was changed by other writers {CONFLICT_RETRIES} times while this "
        "write was being committed; nothing was committed. Try again."
    )


def _write(lake: Lake, name: str, dtab: DeltaTable | None, data: pa.Table, *, mode: str,
           system: bool, partition_by: Sequence[str], props: CommitProperties) -> int:
    """One write_deltalake call onto snapshot ``dtab`` (creating the table when None);
    CommitFailedError on a conflict, DeltaError when a creation lost a race."""
    uri = lake.uri(name, system=system)
    try:
        write_deltalake(  # type: ignore[call-overload]  # mode: a str, checked by deltalake
            dtab if dtab is not None else uri,
            data,
            # Creating: "error", so a table created since the snapshot is not appended to
            # unchecked (write_deltalake would load it and never look at its app ids).
            mode=mode if dtab is not None else "error",
            partition_by=list(partition_by) or None,
            storage_options=None if dtab is not None else lake.storage.delta_options(),
            commit_properties=props,
        )
    except CommitFailedError:
        raise
    except DeltaError as exc:
        if dtab is None and lake.exists(name, system=system):
            raise
        raise LakeError(f"Cannot write table {name!r}: {exc}") from exc
    except (OSError, pa.ArrowException) as exc:
        raise LakeError(f"Cannot write table {name!r}: {exc}") from exc
    return DeltaTable(uri, storage_options=lake.storage.delta_options()).version()


def transact(
    lake: Lake,
    name: str,
    schema: pa.Schema,
    build: Callable[[DeltaTable, int], pa.Table | None],
    *,
    system: bool = False,
    app_id: str,
    run_id: str | None = None,
    job: str | None = None,
) -> pa.Table | None:
    """Read-check-write on table ``name`` that holds against concurrent writers of the
    same ``app_id`` (say, one tag): ``build(snapshot, conflicts)`` reads the snapshot,
    checks and returns the rows to append (None: nothing to write); they are committed
    onto that snapshot with ``app_id`` at one past its version there. A concurrent commit
    of the same ``app_id`` fails this one, and ``build`` runs again on the new snapshot
    with ``conflicts`` > 0 (it raises ConcurrentWriteError when the change it was about
    to make no longer holds). The table is created empty first when missing. Returns the
    rows written, or None."""
    conflicts = 0
    for _ in range(CONFLICT_RETRIES + 2):  # + creating the table, + a lost creation race
        dtab = snapshot(lake, name, system=system)
        if dtab is None:
            _create_empty(lake, name, schema, system=system, run_id=run_id, job=job)
            continue
        rows = build(dtab, conflicts)
        if rows is None:
            return None
        seen = dtab.transaction_version(app_id) or 0
        try:
            write_deltalake(dtab, rows, mode="append",
                            commit_properties=commit_properties(app_id, run_id, job, rows.num_rows,
                                                                txn_version=seen + 1))
            return rows
        except CommitFailedError:
            _backoff(conflicts)
            conflicts += 1
            if conflicts >= CONFLICT_RETRIES:
                break
        except (DeltaError, OSError, pa.ArrowException) as exc:
            raise LakeError(f"Cannot write table {name!r}: {exc}. Nothing was committed.") from exc
    raise ConcurrentWriteError(
        f"Table {name!r} was changed by other writers {conflicts} times while this "
        "change was being committed; nothing was committed. Try again."
    )


def _create_empty(lake: Lake, name: str, schema: pa.Schema, *, system: bool,
                  run_id: str | None, job: str | None) -> None:
    """Create table ``name`` empty, with no automatic retry: of racing creators one
    creates it, the others find it (delta-rs would rebase a loser into version 1)."""
    try:
        DeltaTable.create(lake.uri(name, system=system), Schema.from_arrow(schema),
                          mode="ignore", name=name.replace("/", "_"),
                          storage_options=lake.storage.delta_options(),
                          commit_properties=commit_properties(None, run_id, job, retries=0))
    except (DeltaError, OSError) as exc:
        if not lake.exists(name, system=system):
            raise LakeError(f"Cannot create table {name!r}: {exc}") from exc
