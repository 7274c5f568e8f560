"""Retention: ``raylake governance retention`` deletes, per table of
``governance.retention``, the rows older than ``days`` (by ``time_column``) in one commit,
then vacuums the table.

The vacuum keeps Delta's 168 hours unless told otherwise (``--retention-hours`` with
``--force``): the files the deletion removes stay readable by time travel until a later
run's vacuum, a week on. Rows with no time are kept (their age is unknown). The run
record and the audit row keep counts and the cut-off, never a row's values. The deletion
commit carries the application transaction id ``raylake.retention/<table>``; a re-run
with the same cut-off finds nothing older left and commits nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raylake.config.governance import RetentionConfig
from raylake.errors import GovernanceError, RaylakeError, did_you_mean
from raylake.governance.rewrite import delete_rows
from raylake.governance.versions import check_retention, file_history, spans, vacuum
from raylake.lake.audit import append_audit
from raylake.lake.clock import as_utc
from raylake.lake.runs import RunRecord
from raylake.lake.tables import Lake

JOB = "governance-retention"


@dataclass
class TableRetention:
    table: str
    days: float
    time_column: str
    cutoff: str  # ISO, UTC
    version_before: int | None = None
    rows: int = 0  # rows deleted (dry run: to delete)
    files: int = 0  # files rewritten or removed
    version: int | None = None
    files_vacuumed: int = 0
    unreadable: list[int] = field(default_factory=list)
    skipped: str = ""  # why nothing was done (no such table yet)

    def to_dict(self) -> dict[str, Any]:
        """The table's part as a plain dict."""
        return asdict(self)


def check_tables(lake: Lake, retention: dict[str, RetentionConfig]) -> None:
    """GovernanceError, before anything is deleted, for a time column a table lacks or
    whose type has no time."""
    problems = []
    for table, r in retention.items():
        if not lake.exists(table):
            continue  # not written yet (a request log before the first request): skipped
        schema = pa.schema(lake.table(table).schema().to_arrow())
        key = f"governance.retention.{table}.time_column"
        if r.time_column not in schema.names:
            problems.append(f"{key}={r.time_column!r}: {table!r} has no such column"
                            f"{did_you_mean(r.time_column, schema.names)}; its columns: "
                            f"{', '.join(schema.names)}")
            continue
        t = schema.field(r.time_column).type
        if not (pa.types.is_timestamp(t) or pa.types.is_date(t)):
            problems.append(f"{key}={r.time_column!r} is {t}, not a timestamp or date "
                            "column: a row's age cannot be read from it")
    if problems:
        raise GovernanceError("Retention cannot run: " + "; ".join(problems)
                              + ". Fix governance.retention; nothing was deleted.")


def apply_retention(lake: Lake, retention: dict[str, RetentionConfig], *,
                    now: dt.datetime | None = None, retention_hours: float | None = None,
                    force: bool = False, dry_run: bool = False,
                    run: RunRecord | None = None) -> list[TableRetention]:
    """Delete and vacuum what is older than each table's retention; see the module doc."""
    hours = check_retention(retention_hours, force=force)
    check_tables(lake, retention)
    clock = as_utc(now) if now is not None else dt.datetime.now(dt.timezone.utc)
    out = []
    run_id = run.run_id if run is not None else None
    for table, r in retention.items():
        cutoff = clock - dt.timedelta(days=float(r.days))
        t = TableRetention(table, float(r.days), r.time_column, cutoff.isoformat())
        out.append(t)
        if not lake.exists(table):
            t.skipped = "no such table yet"
            continue
        t.version_before = lake.version(table)
        older = _older_than(r.time_column, cutoff)
        if dry_run:
            t.rows = _count(lake, table, r.time_column, cutoff)
            continue
        deleted = delete_rows(lake, table, older, [r.time_column],
                              app_id=f"raylake.retention/{table}", run_id=run_id, job=JOB,
                              metadata={"raylake.retention.cutoff": cutoff.isoformat()})
        t.rows, t.files, t.version = deleted.rows, len(deleted.files), deleted.version
        history = file_history(lake, table)
        planned = vacuum(lake, table, hours, dry_run=True)
        t.unreadable = history.versions_reading(planned)
        if planned:
            t.files_vacuumed = len(vacuum(lake, table, hours, dry_run=False, run_id=run_id,
                                          job=JOB))
        if run is not None:
            run.add_output(table=table, version=t.version if t.version is not None
                           else lake.version(table), rows_deleted=t.rows,
                           cutoff=cutoff.isoformat(), files_vacuumed=t.files_vacuumed)
    if not dry_run:
        append_audit(lake, [{"action": "retention", "run_id": run_id, "job": JOB,
                             "table": t.table, "version": t.version, "columns": [t.time_column],
                             "detail": {k: v for k, v in t.to_dict().items()
                                        if k not in ("table", "time_column", "version")}}
                            for t in out if not t.skipped],
                     app_id=f"raylake.audit.retention/{run_id}" if run_id else None)
    return out


def _older_than(column: str, cutoff: dt.datetime) -> Any:
    def older(rows: pa.Table) -> np.ndarray:
        col = rows.column(column)
        if pa.types.is_date(col.type):
            bound = pa.scalar(cutoff.date(), col.type)
        else:  # a naive timestamp is UTC, as everywhere in raylake
            bound = pa.scalar(cutoff if col.type.tz else cutoff.replace(tzinfo=None), col.type)
        return pc.less(col, bound).fill_null(False).to_numpy(zero_copy_only=False)
    return older


def _count(lake: Lake, table: str, column: str, cutoff: dt.datetime) -> int:
    try:
        rows = lake.read(table, columns=[column])
    except RaylakeError:
        return 0
    return int(_older_than(column, cutoff)(rows).sum())


def summary(results: list[TableRetention], dry_run: bool, hours: int) -> list[str]:
    """One line per table: what was (would be) deleted and vacuumed."""
    if not results:
        return ["retention: governance.retention names no table; nothing to do "
                "(e.g. governance.retention={serving/requests: {days: 90, time_column: at}})"]
    verb = "would delete" if dry_run else "deleted"
    lines = []
    for t in results:
        if t.skipped:
            lines.append(f"retention {t.table}: skipped ({t.skipped})")
            continue
        line = (f"retention {t.table}: {verb} {t.rows:,} rows older than {t.days:g} days "
                f"({t.time_column} < {t.cutoff[:19]}Z)")
        if t.version is not None:
            line += f" -> version {t.version}"
        if not dry_run:
            line += f"; vacuum ({hours} h) deleted {t.files_vacuumed} files"
            if t.unreadable:
                line += f", versions {spans(t.unreadable)} unreadable"
        lines.append(line)
    return lines
