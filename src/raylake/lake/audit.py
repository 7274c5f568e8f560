"""The ``_audit`` system table: who read classified columns, and what governance changed.

One row per event: a job's read of a table's `pii` or `restricted` columns (written by
the job runner when the run ends, with the purpose from config), an erasure, a retention
run. Rows hold names and counts, never the values read or erased.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from raylake.lake.commit import write_table
from raylake.lake.tables import Lake

AUDIT_TABLE = "_audit"
AUDIT_SCHEMA = pa.schema(
    [
        ("action", pa.string()),  # read | erase | retention
        ("run_id", pa.string()),
        ("job", pa.string()),
        ("table", pa.string()),
        ("version", pa.int64()),
        ("columns", pa.list_(pa.string())),
        ("purpose", pa.string()),
        ("detail", pa.string()),  # JSON: counts, versions made unreadable, ...
        ("at", pa.timestamp("us", tz="UTC")),
    ]
)


def append_audit(lake: Lake, rows: list[dict[str, Any]], *, app_id: str | None = None) -> None:
    """Append audit rows (``detail`` may be a dict); ``app_id`` makes a retry land once."""
    if not rows:
        return
    now = dt.datetime.now(dt.timezone.utc)
    full = []
    for row in rows:
        detail = row.get("detail")
        full.append({
            "action": row["action"], "run_id": row.get("run_id"), "job": row.get("job"),
            "table": row.get("table"), "version": row.get("version"),
            "columns": list(row.get("columns") or []), "purpose": row.get("purpose") or "",
            "detail": detail if isinstance(detail, str) or detail is None
            else json.dumps(detail, sort_keys=True, default=str),
            "at": row.get("at") or now,
        })
    write_table(lake, AUDIT_TABLE, pa.Table.from_pylist(full, AUDIT_SCHEMA), system=True,
                app_id=app_id, job="audit")


def read_audit(lake: Lake, action: str | None = None) -> list[dict[str, Any]]:
    """Audit rows, oldest first, of one action or all."""
    if not lake.exists(AUDIT_TABLE, system=True):
        return []
    rows = lake.read(AUDIT_TABLE, system=True)
    if action is not None:
        rows = rows.filter(pc.equal(rows["action"], action))
    out: list[dict[str, Any]] = rows.sort_by([("at", "ascending")]).to_pylist()
    return out
