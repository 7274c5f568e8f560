"""Run records: the lineage of every job run, kept in the lake's ``_runs`` table.

A run appends one row when it starts (status ``running``) and one when it ends
(``succeeded``, ``failed`` or ``skipped``); the newest row of a run id is its
record. Inputs and outputs name tables with the versions read and written, so
any output can be traced to what produced it and any run repeated exactly.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from raylake.config.redact import redact
from raylake.errors import RunNotFoundError, did_you_mean
from raylake.lake.commit import write_table
from raylake.lake.tables import Lake

RUNS_TABLE = "_runs"

RUNS_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("job", pa.string()),
        ("status", pa.string()),
        ("started_at", pa.timestamp("us", tz="UTC")),
        ("ended_at", pa.timestamp("us", tz="UTC")),
        ("duration_s", pa.float64()),
        ("code_version", pa.string()),
        ("config", pa.string()),
        ("inputs", pa.string()),
        ("outputs", pa.string()),
        ("metrics", pa.string()),
        ("error", pa.string()),
        ("host", pa.string()),
    ]
)
_JSON_FIELDS = ("config", "inputs", "outputs", "metrics")


def new_run_id(job: str) -> str:
    """A new unique run id: ``<job>-<UTC time as YYYYmmddTHHMMSS>-<8 hex digits>``."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{job}-{stamp}-{uuid.uuid4().hex[:8]}"


def code_version() -> str:
    """raylake's version plus the git commit of the source tree when there is one."""
    from raylake import __version__

    override = os.environ.get("RAYLAKE_CODE_VERSION")
    if override:
        return override
    src = Path(__file__).resolve().parents[3]
    try:
        sha = subprocess.run(
            ["git", "-C", str(src), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{sha}{'.dirty' if dirty else ''}"


@dataclass
class RunRecord:
    """What one job run read, wrote and measured."""

    job: str
    config: dict[str, Any]
    run_id: str = ""
    status: str = "running"
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    code_version: str = ""
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))
    ended_at: dt.datetime | None = None

    def __post_init__(self) -> None:
        self.run_id = self.run_id or new_run_id(self.job)
        self.code_version = self.code_version or code_version()

    def add_input(self, **entry: Any) -> None:
        """Record one thing the run read (e.g. ``table=..., version=...``)."""
        self.inputs.append(entry)

    def add_output(self, **entry: Any) -> None:
        """Record one thing the run wrote (e.g. ``table=..., version=..., rows=...``)."""
        self.outputs.append(entry)

    def to_row(self) -> dict[str, Any]:
        """The record as a row of ``_runs``: config, inputs, outputs and metrics as JSON,
        the duration in seconds (None until it ended) and this host's name."""
        ended = self.ended_at
        return {
            "run_id": self.run_id,
            "job": self.job,
            "status": self.status,
            "started_at": self.started_at,
            "ended_at": ended,
            "duration_s": (ended - self.started_at).total_seconds() if ended else None,
            "code_version": self.code_version,
            "config": json.dumps(self.config, default=str, sort_keys=True),
            "inputs": json.dumps(self.inputs, default=str),
            "outputs": json.dumps(self.outputs, default=str),
            "metrics": json.dumps(self.metrics, default=str),
            "error": self.error,
            "host": socket.gethostname(),
        }


class RunRecorder:
    """Context manager that records a run in ``_runs`` at start and end.

    >>> with RunRecorder(lake, "ingest", config) as run:
    ...     run.add_output(table="flights", version=3, rows=336776)
    """

    def __init__(self, lake: Lake, job: str, config: dict[str, Any], run_id: str | None = None):
        self.lake = lake
        # The runner hands a config already redacted with its environment values; this
        # catches credential-like keys of a config from any other caller.
        self.record = RunRecord(job=job, config=redact(config), run_id=run_id or "")
        self._t0 = 0.0

    def __enter__(self) -> RunRecord:
        self._t0 = time.perf_counter()
        self._append()
        return self.record

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        rec = self.record
        rec.ended_at = dt.datetime.now(dt.timezone.utc)
        rec.metrics.setdefault("wall_s", round(time.perf_counter() - self._t0, 3))
        if exc is not None:
            rec.status = "failed"
            rec.error = "".join(traceback.format_exception_only(exc)).strip()
        elif rec.status == "running":
            rec.status = "succeeded"
        self._append()

    def _append(self) -> None:
        table = pa.Table.from_pylist([self.record.to_row()], schema=RUNS_SCHEMA)
        write_table(self.lake, RUNS_TABLE, table, mode="append", system=True)


def list_runs(lake: Lake, job: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """The latest record of each run, newest first."""
    if not lake.exists(RUNS_TABLE, system=True):
        return []
    table = lake.read(RUNS_TABLE, system=True)
    if job:
        table = table.filter(pc.equal(table["job"], job))
    latest: dict[str, dict[str, Any]] = {}
    for row in table.sort_by([("started_at", "ascending")]).to_pylist():
        prev = latest.get(row["run_id"])
        if prev is None or _rank(row) >= _rank(prev):
            latest[row["run_id"]] = row
    rows = sorted(latest.values(), key=lambda r: r["started_at"], reverse=True)
    rows = rows[:limit] if limit else rows
    return [_decode(r) for r in rows]


def get_run(lake: Lake, run_id: str) -> dict[str, Any]:
    """The latest record of run ``run_id`` (JSON fields decoded); RunNotFoundError when the
    lake has no such run."""
    runs = {r["run_id"]: r for r in list_runs(lake)}
    if run_id not in runs:
        raise RunNotFoundError(
            f"No run {run_id!r} in {lake.root}.{did_you_mean(run_id, runs)} "
            "List runs with `raylake runs list`."
        )
    return runs[run_id]


def _rank(row: dict[str, Any]) -> tuple[int, Any]:
    # A finished row outranks the "running" row written at start.
    return (0 if row["status"] == "running" else 1, row["ended_at"] or row["started_at"])


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for key in _JSON_FIELDS:
        out[key] = json.loads(row[key]) if row[key] else None
    return out
