"""The ``_classification`` system table: each ingested column's class, its evidence and
the policy applied, one row per (table, column) per ingestion run, so the history of a
column's classification is kept. The newest row of a (table, column) is its class.

It lives in the lake layer because every layer reads it: ingestion writes it, the
servers refuse restricted features with it, the job runner audits reads with it, and
erasure finds the tables that hold a subject with it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from raylake.lake.commit import write_table
from raylake.lake.tables import Lake

CLASSIFICATION_TABLE = "_classification"
CLASSIFICATION_SCHEMA = pa.schema(
    [
        ("table", pa.string()),
        ("column", pa.string()),
        ("class", pa.string()),
        ("entities", pa.string()),  # JSON {entity: share of sampled values}
        ("sampled", pa.int64()),
        ("source", pa.string()),  # scan | config
        ("policy", pa.string()),  # keep | mask | hash | tokenize | drop | generalize
        ("whole", pa.bool_()),  # the values are the entity (not free text around it)
        ("table_version", pa.int64()),  # the version ingested with it (null: unknown)
        ("run_id", pa.string()),
        ("at", pa.timestamp("us", tz="UTC")),
    ]
)


def save_classification(lake: Lake, table: str, columns: Iterable[Any], *, run_id: str,
                        table_version: int | None) -> None:
    """Append one row per column (``pii.types.ColumnClass``) for ``table``; committed once
    per (run, table) so a retried ingestion does not add the rows twice."""
    now = dt.datetime.now(dt.timezone.utc)
    rows = [{"table": table, "column": c.column, "class": c.data_class,
             "entities": json.dumps(c.entities, sort_keys=True), "sampled": c.sampled,
             "source": c.source, "policy": c.policy, "whole": c.whole,
             "table_version": table_version, "run_id": run_id, "at": now} for c in columns]
    if not rows:
        return
    write_table(lake, CLASSIFICATION_TABLE, pa.Table.from_pylist(rows, CLASSIFICATION_SCHEMA),
                system=True, app_id=f"raylake.classification/{table}/{run_id}", run_id=run_id,
                job="ingest")


def classification_history(lake: Lake, table: str | None = None) -> list[dict[str, Any]]:
    """Every row (oldest first), of one table or all."""
    if not lake.exists(CLASSIFICATION_TABLE, system=True):
        return []
    rows = lake.read(CLASSIFICATION_TABLE, system=True)
    if table is not None:
        rows = rows.filter(pc.equal(rows["table"], table))
    out: list[dict[str, Any]] = rows.sort_by([("at", "ascending")]).to_pylist()
    for row in out:
        row["entities"] = json.loads(row["entities"] or "{}")
    return out


def classification(lake: Lake, table: str | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """The current class of each column: ``{table: {column: row}}`` (newest row wins)."""
    latest: dict[str, dict[str, dict[str, Any]]] = {}
    for row in classification_history(lake, table):
        latest.setdefault(row["table"], {})[row["column"]] = row
    return latest


def columns_of_class(lake: Lake, table: str, classes: Iterable[str]) -> list[str]:
    """The columns of ``table`` whose current class is one of ``classes``."""
    wanted = set(classes)
    cols = classification(lake, table).get(table, {})
    return sorted(c for c, row in cols.items() if row["class"] in wanted)
