"""What pipelines did, kept in the lake's ``_pipelines`` table (per branch, as every table).

Two kinds of rows. An ``attempt`` row is one failed try of a stage's job (or of one datum
of an ingest stage): the retries a stage needed, with the error and the failed run's id.
A ``stage`` row ends each stage a pipeline ran (``succeeded``, ``failed``) or held back
(``blocked``): the job runs it made, the input versions it saw, its datums, the hash of
its config and the code version. The last ``succeeded`` stage row is what staleness and
``raylake repro`` compare against; the inputs themselves are read from those runs'
records in ``_runs``.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from raylake.lake.commit import write_table
from raylake.lake.runs import list_runs
from raylake.lake.tables import Lake

PIPELINES_TABLE = "_pipelines"

SCHEMA = pa.schema([
    ("pipeline_run", pa.string()),
    ("pipeline", pa.string()),
    ("stage", pa.string()),
    ("job", pa.string()),
    ("kind", pa.string()),
    ("status", pa.string()),
    ("trigger", pa.string()),
    ("attempt", pa.int64()),
    ("datum", pa.string()),
    ("run_ids", pa.string()),
    ("reasons", pa.string()),
    ("inputs", pa.string()),
    ("datums", pa.string()),
    ("config_hash", pa.string()),
    ("code_version", pa.string()),
    ("error", pa.string()),
    ("started_at", pa.timestamp("us", tz="UTC")),
    ("ended_at", pa.timestamp("us", tz="UTC")),
])
_JSON = ("run_ids", "reasons", "inputs", "datums")


@dataclass
class StageRecord:
    """One row of ``_pipelines``."""

    pipeline_run: str
    pipeline: str
    stage: str
    job: str
    kind: str  # attempt | stage
    status: str  # succeeded | failed | blocked
    trigger: str = "run"  # run | watch | repro
    attempt: int = 1
    datum: str | None = None
    run_ids: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    inputs: dict[str, int] = field(default_factory=dict)
    datums: list[str] = field(default_factory=list)
    config_hash: str = ""
    code_version: str = ""
    error: str | None = None
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))
    ended_at: dt.datetime | None = None

    def to_row(self) -> dict[str, Any]:
        """The record as a row of ``_pipelines`` (lists and mappings as JSON)."""
        row = dict(self.__dict__)
        for key in _JSON:
            row[key] = json.dumps(row[key], default=str)
        row["ended_at"] = self.ended_at or dt.datetime.now(dt.timezone.utc)
        return row


def append(lake: Lake, record: StageRecord) -> None:
    """Add one record to ``_pipelines``."""
    table = pa.Table.from_pylist([record.to_row()], schema=SCHEMA)
    write_table(lake, PIPELINES_TABLE, table, mode="append", system=True)


def records(lake: Lake, pipeline: str | None = None) -> list[dict[str, Any]]:
    """Every record (of ``pipeline``), oldest first, JSON fields decoded."""
    if not lake.exists(PIPELINES_TABLE, system=True):
        return []
    table = lake.read(PIPELINES_TABLE, system=True)
    if pipeline:
        table = table.filter(pc.equal(table["pipeline"], pipeline))
    rows = table.sort_by([("ended_at", "ascending")]).to_pylist()
    for row in rows:
        for key in _JSON:
            row[key] = json.loads(row[key]) if row[key] else None
    return rows


def last_success(lake: Lake, pipeline: str, stage: str,
                 rows: list[dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """The newest ``succeeded`` stage record of ``stage``, or None when it never succeeded."""
    rows = records(lake, pipeline) if rows is None else rows
    found = [r for r in rows if r["stage"] == stage and r["kind"] == "stage"
             and r["status"] == "succeeded"]
    return found[-1] if found else None


class RunIndex:
    """The run records of ``_runs`` read once: by id, and ingested files by job."""

    def __init__(self, lake: Lake) -> None:
        self.runs = list_runs(lake)
        self.by_id = {r["run_id"]: r for r in self.runs}

    def input_versions(self, run_ids: list[str]) -> dict[str, int]:
        """Table -> the newest version the runs ``run_ids`` recorded reading."""
        out: dict[str, int] = {}
        for rid in run_ids:
            for entry in (self.by_id.get(rid) or {}).get("inputs") or []:
                table, version = entry.get("table"), entry.get("version")
                if table and isinstance(version, int) and entry.get("kind") != "files":
                    out[table] = max(out.get(table, version), version)
        return out

    def ingested_files(self, job: str) -> set[str]:
        """Every source file a succeeded (or skipped: already committed) run of ``job``
        recorded as read."""
        files: set[str] = set()
        for run in self.runs:
            if run["job"] != job or run["status"] not in ("succeeded", "skipped"):
                continue
            for entry in run.get("inputs") or []:
                if entry.get("kind") == "files":
                    files.update(entry.get("files") or [])
        return files
