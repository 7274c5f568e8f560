"""Atomic, idempotent commits of files written by Ray workers.

Workers write Parquet files under a table's folder; nothing is visible until
the driver commits their ``AddAction``s in one Delta transaction. A commit
carries an application transaction id (``app_id``, Delta's ``txn`` action),
so a re-run over the same input finds its id already in the log and commits
nothing twice. Concurrent blind appends are retried by delta-rs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Schema, Transaction
from deltalake.exceptions import DeltaError
from deltalake.transaction import AddAction, create_table_with_add_actions

from raylake.errors import LakeError
from raylake.lake.tables import Lake

COMMIT_RETRIES = 20


def commit_properties(app_id: str | None, run_id: str | None, job: str | None,
                      rows: int | None = None) -> CommitProperties:
    """Delta commit properties: ``raylake.run_id``, ``raylake.job`` and ``raylake.rows`` as
    commit metadata where given, delta-rs's retries of conflicting appends, and ``app_id``
    as the application transaction that makes the commit idempotent."""
    meta: dict[str, object] = {
        k: v for k, v in {"raylake.run_id": run_id, "raylake.job": job}.items() if v
    }
    if rows is not None:
        meta["raylake.rows"] = rows
    txns = [Transaction(app_id, 1)] if app_id else None
    return CommitProperties(
        custom_metadata=meta or None, max_commit_retries=COMMIT_RETRIES, app_transactions=txns
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


def already_committed(lake: Lake, name: str, app_id: str, *, system: bool = False) -> bool:
    """True when a commit with ``app_id`` is in the table's log."""
    if not lake.exists(name, system=system):
        return False
    return lake.table(name, system=system).transaction_version(app_id) is not None


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
    """Commit written files as one new table version; return that version."""
    uri = lake.uri(name, system=system)
    rows = sum(json.loads(a.stats).get("numRecords", 0) for a in actions if a.stats)
    props = commit_properties(app_id, run_id, job, rows)
    opts = lake.storage.delta_options()
    parts = list(partition_by) or None
    for _ in range(2):  # a concurrent writer may create the table between check and commit
        if not lake.exists(name, system=system):
            try:
                create_table_with_add_actions(
                    uri,
                    Schema.from_arrow(schema),
                    list(actions),
                    mode="error",
                    partition_by=parts,
                    name=name.replace("/", "_"),
                    description=description or None,
                    storage_options=opts,
                    commit_properties=props,
                )
                return lake.version(name, system=system)
            except DeltaError as exc:
                if not lake.exists(name, system=system):
                    raise LakeError(f"Cannot create table {name!r} at {uri}: {exc}") from exc
                continue
        dtab = lake.table(name, system=system)
        if mode == "append":
            check_schema(name, dtab.schema().to_arrow(), schema)
        try:
            dtab.create_write_transaction(
                list(actions),
                mode=mode,
                schema=schema,
                partition_by=parts,
                commit_properties=props,
            )
        except (DeltaError, OSError) as exc:
            raise LakeError(f"Commit to {name!r} failed: {exc}. Nothing was committed.") from exc
        dtab.update_incremental()
        return dtab.version()
    raise LakeError(f"Cannot create or open table {name!r} at {uri}.")


def merge_rows(
    lake: Lake,
    name: str,
    source: Any,
    keys: Sequence[str],
    *,
    app_id: str | None = None,
    run_id: str | None = None,
    job: str | None = None,
) -> tuple[int, dict[str, Any]]:
    """Upsert ``source`` (Arrow table or stream) on ``keys``; return version and metrics."""
    dtab = lake.table(name)
    predicate = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
    try:
        metrics = (
            dtab.merge(
                source,
                predicate=predicate,
                source_alias="s",
                target_alias="t",
                commit_properties=commit_properties(app_id, run_id, job),
            )
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute()
        )
    except (DeltaError, OSError, pa.ArrowException) as exc:
        raise LakeError(f"Merge into {name!r} on {list(keys)} failed: {exc}. Nothing was committed.") from exc
    dtab.update_incremental()
    return dtab.version(), dict(metrics)


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
) -> int:
    """Write a small Arrow table from this process (system tables, tests)."""
    from deltalake import write_deltalake

    uri = lake.uri(name, system=system)
    try:
        write_deltalake(  # type: ignore[call-overload]  # mode: a str, checked by deltalake
            uri,
            data,
            mode=mode,
            partition_by=list(partition_by) or None,
            storage_options=lake.storage.delta_options(),
            commit_properties=commit_properties(app_id, run_id, job),
        )
    except (DeltaError, OSError, pa.ArrowException) as exc:
        raise LakeError(f"Cannot write table {name!r}: {exc}") from exc
    return DeltaTable(uri, storage_options=lake.storage.delta_options()).version()
