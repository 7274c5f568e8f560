"""The audit of reads: when a run ends, one ``_audit`` row per input table with columns
classified ``pii`` or ``restricted`` (lake/audit.py, lake/classification.py).

A row names the run, the job, the table and the version read, the classified columns
and the purpose the config gives (``governance.purpose``); never a value. A lake with no
``_classification`` costs one existence check per run with table inputs; a failure to
read the classification or to append the rows never fails the run: it is logged.
"""

from __future__ import annotations

import logging
from typing import Any

from raylake.lake.audit import append_audit
from raylake.lake.classification import CLASSIFICATION_TABLE, classification
from raylake.lake.runs import RunRecord
from raylake.lake.tables import Lake

log = logging.getLogger("raylake.runner")

AUDITED_CLASSES = ("pii", "restricted")


def table_inputs(record: RunRecord) -> list[dict[str, Any]]:
    """The run's inputs that are lake tables it read (not source files, not models)."""
    return [i for i in record.inputs
            if isinstance(i.get("table"), str) and i.get("kind") != "files" and "model" not in i]


def read_rows(record: RunRecord, classes: dict[str, dict[str, dict[str, Any]]],
              purpose: str) -> list[dict[str, Any]]:
    """The ``_audit`` rows of the run's reads of classified columns (one per table and
    version read; ``classes``: ``classification(lake)``)."""
    rows: dict[tuple[str, Any], dict[str, Any]] = {}
    for entry in table_inputs(record):
        table = entry["table"]
        columns = sorted(c for c, row in classes.get(table, {}).items()
                         if row.get("class") in AUDITED_CLASSES)
        if not columns:
            continue
        version = entry.get("version")
        key = (table, version)
        if key in rows:  # read twice (e.g. reference and current of one version): one row
            continue
        detail = {"classes": {c: classes[table][c]["class"] for c in columns},
                  "status": record.status}
        for k in ("role", "side", "view", "branch", "via"):
            if entry.get(k) is not None:
                detail[k] = entry[k]
        rows[key] = {"action": "read", "run_id": record.run_id, "job": record.job,
                     "table": table, "version": version if isinstance(version, int) else None,
                     "columns": columns, "purpose": purpose, "detail": detail}
    return list(rows.values())


def audit_reads(lake: Lake, record: RunRecord, purpose: str) -> int:
    """Append the run's read rows to ``_audit`` (once per run: a retry adds nothing);
    returns how many. Never raises: a failure is logged as a warning."""
    if not table_inputs(record):
        return 0
    try:
        if not lake.exists(CLASSIFICATION_TABLE, system=True):
            return 0
        rows = read_rows(record, classification(lake), purpose)
        append_audit(lake, rows, app_id=f"raylake.audit.read/{record.run_id}")
        return len(rows)
    except Exception as exc:  # the audit must never fail the run it audits
        log.warning("run %s: could not write the audit of its reads of classified columns "
                    "to _audit (%s: %s)", record.run_id, type(exc).__name__, exc)
        return 0
