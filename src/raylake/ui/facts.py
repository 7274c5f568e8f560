"""The lake's records as the pages need them: runs, lineage, the registry, tags and
quarantine reasons, each read once per version of the table that holds it."""

from __future__ import annotations

import datetime as dt
import json
from bisect import bisect_left, bisect_right
from collections import Counter
from dataclasses import dataclass
from typing import Any

from raylake.errors import RunNotFoundError, did_you_mean
from raylake.lake.names import quarantine_table
from raylake.lake.runs import RUNS_TABLE
from raylake.lake.tags import TAGS_TABLE, TagStore
from raylake.lineage import REQUEST_LOG, Lineage, Node
from raylake.lineage import _key as _key  # one reading of a run's entry
from raylake.models.registry import ModelRegistry, ModelVersion
from raylake.ui.reads import TableReader

# A run's list entry leaves out its config (often tens of kilobytes): the run page reads it.
RUN_COLUMNS = ["run_id", "job", "status", "started_at", "ended_at", "duration_s", "inputs",
               "outputs", "metrics", "error"]
MODELS_TABLE = "_models"


@dataclass
class RunFilter:
    """What the runs list shows: a job, a status, a time window (UTC)."""

    job: str = ""
    status: str = ""
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    def keep(self, run: dict[str, Any]) -> bool:
        """Whether ``run`` passes the filter."""
        at = run["started_at"]
        return ((not self.job or run["job"] == self.job)
                and (not self.status or run["status"] == self.status)
                and (self.since is None or (at is not None and at >= self.since))
                and (self.until is None or (at is not None and at < self.until)))


class Facts:
    """Run records, lineage, the registry, tags and quarantines of one lake."""

    def __init__(self, reader: TableReader, request_log: str = REQUEST_LOG) -> None:
        self.reader, self.lake, self.request_log = reader, reader.lake, request_log

    def _version(self, table: str) -> int | None:
        return self.reader.latest(table) if self.reader.exists(table) else None

    # -- runs ----------------------------------------------------------------------

    def runs(self) -> list[dict[str, Any]]:
        """The latest record of every run (no config), newest first."""
        v = self._version(RUNS_TABLE)
        if v is None:
            return []
        return self.reader.values.get(("runs", v), lambda: self._read_runs(v))

    def _read_runs(self, version: int) -> list[dict[str, Any]]:
        table = self.reader.read_columns(RUNS_TABLE, version, RUN_COLUMNS)
        latest: dict[str, dict[str, Any]] = {}
        for row in table.sort_by([("started_at", "ascending")]).to_pylist():
            prev = latest.get(row["run_id"])
            if prev is None or _rank(row) >= _rank(prev):
                latest[row["run_id"]] = row
        out = sorted(latest.values(), key=lambda r: r["started_at"], reverse=True)
        for r in out:
            for key in ("inputs", "outputs", "metrics"):
                r[key] = json.loads(r[key]) if r[key] else None
        return out

    def run_ids(self) -> dict[str, dict[str, Any]]:
        """Run id -> its latest record (no config)."""
        v = self._version(RUNS_TABLE)
        return self.reader.values.get(("run_ids", v), lambda: {r["run_id"]: r
                                                               for r in self.runs()})

    def run(self, run_id: str) -> dict[str, Any]:
        """Run ``run_id``'s latest record with its config; RunNotFoundError naming runs."""
        known = self.run_ids()
        if run_id not in known:
            raise RunNotFoundError(f"No run {run_id!r} in {self.lake.root}."
                                   f"{did_you_mean(run_id, known)}")
        v = self._version(RUNS_TABLE)

        def config() -> Any:
            assert v is not None
            rows = self.reader.lookup(RUNS_TABLE, v, "run_id", run_id, columns=[
                "config", "status", "ended_at", "started_at"]).to_pylist()
            best = max(rows, key=_rank)
            return json.loads(best["config"]) if best["config"] else None
        return {**known[run_id], "config": self.reader.values.get(("config", run_id, v), config)}

    def jobs(self) -> list[str]:
        """The job names that have runs, sorted."""
        return sorted({r["job"] for r in self.runs()})

    # -- lineage -------------------------------------------------------------------

    def lineage(self) -> Lineage:
        """The lineage graph over the succeeded runs (built once per ``_runs`` version)."""
        v = self._version(RUNS_TABLE)
        return self.reader.values.get(("lineage", v), lambda: _Lineage(self.lake,
                                                                        self.request_log,
                                                                        self.runs()))

    # -- registry, tags, quarantine ------------------------------------------------

    def models(self) -> list[ModelVersion]:
        """Every registered model version (by name, then version)."""
        v = self._version(MODELS_TABLE)
        if v is None:
            return []
        return self.reader.values.get(("models", v), lambda: ModelRegistry(self.lake).list())

    def tags(self, table: str | None = None) -> list[dict[str, Any]]:
        """Tags (of ``table``), the latest definition of each."""
        v = self._version(TAGS_TABLE)
        if v is None:
            return []
        every = self.reader.values.get(("tags", v), lambda: TagStore(self.lake).list())
        return [t for t in every if table is None or t["table"] == table]

    def quarantine(self, table: str) -> tuple[str, int, list[tuple[str, str, int]]] | None:
        """Table ``table``'s quarantine: (its name, rows, [(reason, column, rows)] most
        rows first), counted batch by batch over two columns; None without one."""
        try:
            qname = quarantine_table(table)
        except ValueError:
            return None
        v = self._version(qname)
        if v is None:
            return None

        def count() -> tuple[str, int, list[tuple[str, str, int]]]:
            counter: Counter[tuple[str, str]] = Counter()
            scanner = self.lake.dataset(qname, v).scanner(columns=["reason", "column"])
            for batch in scanner.to_batches():
                for reason, column in zip(batch.column(0).to_pylist(),
                                          batch.column(1).to_pylist()):
                    counter[(reason or "", column or "")] += 1
            rows = [(r, c, n) for (r, c), n in counter.most_common()]
            return qname, sum(counter.values()), rows
        return self.reader.values.get(("quarantine", qname, v), count)

    def writer_of(self, table: str, version: int) -> dict[str, Any] | None:
        """The run that wrote ``table``@``version`` (from its commit, else the run records)."""
        commit = self.reader.commit(table, version)
        runs = self.run_ids()
        if commit.run_id and commit.run_id in runs:
            return runs[commit.run_id]
        for r in self.runs():
            for o in r["outputs"] or []:
                if o.get("table") == table and o.get("version") == version:
                    return r
        return None


class _Lineage(Lineage):
    """:class:`raylake.lineage.Lineage` over run records already read (the UI reads them
    once per ``_runs`` version, without their configs)."""

    def __init__(self, lake: Any, request_log: str, runs: list[dict[str, Any]]) -> None:
        self.lake, self.request_log = lake, request_log
        self.runs = [r for r in reversed(runs) if r["status"] == "succeeded"]
        self._writers = {}
        for run in self.runs:
            for out in run["outputs"] or []:
                key = _key(out)
                if key and out.get("version") is not None:
                    self._writers.setdefault(key, []).append((int(out["version"]), run))
        # Writers by version (stable: runs in time order within a version), for a
        # producer found by bisection rather than a scan of every write of the table.
        self._sorted = {k: sorted(ws, key=lambda vr: vr[0]) for k, ws in self._writers.items()}
        self._versions = {k: [v for v, _ in ws] for k, ws in self._sorted.items()}

    def producer(self, node: Node) -> dict[str, Any] | None:
        """As :meth:`Lineage.producer`: for a table version the first run that wrote the
        nearest version at or below it."""
        if node.kind != "table":
            return super().producer(node)
        key = ("table", node.name)
        versions = self._versions.get(key, [])
        i = bisect_right(versions, node.version or 0) - 1
        if i < 0:
            return None
        return self._sorted[key][bisect_left(versions, versions[i])][1]


def _rank(row: dict[str, Any]) -> tuple[int, Any]:
    return (0 if row["status"] == "running" else 1, row["ended_at"] or row["started_at"])
