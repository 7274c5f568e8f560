"""What the pages read, and no more: a table's latest version, one page of its Delta log,
one page of its rows, its summary at a version; each cached by what makes it immutable.

A version of a Delta table never changes: a commit file, the files of a snapshot and
its row and byte counts are cached by (table location, version) for good. Only the
latest version is asked again, at most every ``fresh_s`` seconds per table, with an
incremental update of a snapshot kept open (Delta lists the log after the version it
has). History pages read the commit files of the versions shown (``_delta_log/<v>.json``,
their ``commitInfo`` line) rather than the whole log; row pages read only the files
that hold the rows of the page, in the snapshot's file order.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.dataset as pds
import pyarrow.fs as pafs
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError

from raylake.errors import LakeError, TableNotFoundError, VersionNotFoundError
from raylake.lake.names import validate_table_name
from raylake.lake.tables import Lake
from raylake.ui.cache import Lru

LOG = "_delta_log"


@dataclass
class Commit:
    """One version of a table as its commit says: when, what, and the raylake run."""

    version: int
    timestamp: dt.datetime | None = None
    operation: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    rows_added: int | None = None
    run_id: str | None = None
    job: str | None = None
    found: bool = True  # False: the log entry was cleaned up (log retention)


@dataclass
class Summary:
    """A table at one version: files, rows and bytes from the log's file statistics."""

    name: str
    version: int
    files: int
    rows: int
    bytes: int
    partition_by: list[str]
    schema: list[tuple[str, str, bool]]  # (column, type, nullable)
    description: str


class TableReader:
    """Reads of one lake (a branch's lake too) for the pages, cached."""

    def __init__(self, lake: Lake, *, fresh_s: float = 0.5) -> None:
        self.lake = lake
        self.fresh_s = fresh_s
        self.fs, self.fs_root = lake.storage.filesystem()
        self._open: dict[str, tuple[DeltaTable, threading.Lock, list[float]]] = {}
        self._open_lock = threading.Lock()
        self._absent: dict[str, float] = {}
        self.commits = Lru(20_000)  # (table, version) -> Commit
        self.summaries = Lru(512)  # (table, version) -> Summary
        self.snapshots = Lru(16)  # (table, version) -> DeltaTable at that version
        self.values = Lru(256)  # anything else keyed by the versions it was read from
        self.pool = ThreadPoolExecutor(8 if not lake.storage.local else 2,
                                        thread_name_prefix="raylake-ui-log")

    # -- the latest version ------------------------------------------------------

    def _latest_table(self, name: str) -> tuple[DeltaTable, threading.Lock]:
        system = name.startswith("_")
        with self._open_lock:
            entry = self._open.get(name)
        if entry is None:
            if not self._has_log(name):  # cheap; Lake.table's error lists the whole lake
                raise TableNotFoundError(f"No table {name!r} in the lake at {self.lake.root}.")
            dtab = self.lake.table(name, system=system)
            entry = (dtab, threading.Lock(), [time.monotonic()])
            with self._open_lock:
                entry = self._open.setdefault(name, entry)
            return entry[0], entry[1]
        dtab, lock, checked = entry
        if time.monotonic() - checked[0] > self.fresh_s:
            with lock:
                try:
                    dtab.update_incremental()
                except (DeltaError, OSError) as exc:
                    raise LakeError(f"Cannot read the log of table {name!r}: {exc}") from exc
                checked[0] = time.monotonic()
        return dtab, lock

    def _has_log(self, name: str) -> bool:
        """Whether ``name`` has a Delta log folder (a missing one is asked again only
        after ``fresh_s``)."""
        # Every read of a table by name starts here: a name from a URL that could leave
        # the lake ("..", absolute) is refused before it becomes a path.
        validate_table_name(name, system=True)
        now = time.monotonic()
        seen = self._absent.get(name)
        if seen is not None and now - seen < max(self.fresh_s, 1.0):
            return False
        try:
            info = self.fs.get_file_info(f"{self.fs_root.rstrip('/')}/{name}/{LOG}")
        except OSError as exc:
            raise LakeError(f"Cannot reach table {name!r} in {self.lake.root}: {exc}") from exc
        if info.type == pafs.FileType.NotFound:
            self._absent[name] = now
            return False
        self._absent.pop(name, None)
        return True

    def latest(self, name: str) -> int:
        """The latest version of table ``name`` (checked at most every ``fresh_s``)."""
        dtab, lock = self._latest_table(name)
        with lock:
            return int(dtab.version())

    def exists(self, name: str) -> bool:
        """Whether table ``name`` exists (system tables included)."""
        try:
            self.latest(name)
        except (TableNotFoundError, LakeError, ValueError):
            return False
        return True

    def check_version(self, name: str, version: int | None) -> int:
        """``version`` (the latest when None) if table ``name`` has it, else
        VersionNotFoundError naming the versions it has."""
        latest = self.latest(name)
        if version is None:
            return latest
        if not 0 <= version <= latest:
            raise VersionNotFoundError(f"Table {name!r} has no version {version}: its versions "
                                       f"are 0..{latest}.")
        return version

    # -- snapshots and summaries -------------------------------------------------

    def snapshot(self, name: str, version: int) -> DeltaTable:
        """Table ``name`` at ``version`` (cached: a version never changes)."""
        def load() -> DeltaTable:
            # Straight at the version (from the checkpoint at or below it): Lake.table
            # would load the latest snapshot first.
            uri = self.lake.uri(name, system=name.startswith("_"))
            try:
                return DeltaTable(uri, version=version,
                                  storage_options=self.lake.storage.delta_options())
            except (DeltaError, OSError, ValueError) as exc:
                raise VersionNotFoundError(f"Cannot load version {version} of {name!r}: "
                                           f"{exc}") from exc
        return self.snapshots.get((name, version), load)

    def summary(self, name: str, version: int | None = None) -> Summary:
        """Files, rows, bytes, schema and partitioning of ``name`` at ``version``."""
        v = self.check_version(name, version)

        def make() -> Summary:
            if v == self.latest(name):
                dtab, lock = self._latest_table(name)
                with lock:
                    return _summary(name, dtab) if dtab.version() == v else _summary(
                        name, self.snapshot(name, v))
            return _summary(name, self.snapshot(name, v))
        return self.summaries.get((name, v), make)

    # -- history -------------------------------------------------------------------

    def commit(self, name: str, version: int) -> Commit:
        """Version ``version``'s commit of table ``name`` (its ``commitInfo``)."""
        return self.commits.get((name, version), lambda: self._read_commit(name, version))

    def history(self, name: str, start: int, count: int) -> list[Commit]:
        """The commits of versions ``start``, ``start - 1``, ... (``count`` of them, newest
        first), each read from its own log file."""
        versions = [v for v in range(start, start - count, -1) if v >= 0]
        missing = [v for v in versions if (name, v) not in self.commits]
        if len(missing) > 1:
            read = self.pool.map(lambda v: self._read_commit(name, v), missing)
            for v, commit in zip(missing, read):
                self.commits.put((name, v), commit)
        return [self.commit(name, v) for v in versions]

    def _read_commit(self, name: str, version: int) -> Commit:
        path = f"{self.fs_root.rstrip('/')}/{name}/{LOG}/{version:020d}.json"
        try:
            with self.fs.open_input_stream(path) as f:
                data = f.read()
        except FileNotFoundError:
            return Commit(version, found=False)
        except OSError as exc:
            if "not found" in str(exc).lower() or "no such file" in str(exc).lower():
                return Commit(version, found=False)
            raise LakeError(f"Cannot read version {version} of {name!r} ({path}): {exc}") from exc
        for line in data.splitlines():
            if b'"commitInfo"' in line:
                info = json.loads(line).get("commitInfo") or {}
                return _commit(version, info)
        return Commit(version)

    # -- rows ----------------------------------------------------------------------

    def files(self, name: str, version: int) -> pa.Table:
        """The add actions of ``name`` at ``version`` (flattened: path, num_records,
        ``min.*``/``max.*`` statistics, ``partition.*`` values), oldest file first."""
        def read() -> pa.Table:
            actions = pa.table(self.snapshot(name, version).get_add_actions(flatten=True))
            if not actions.num_rows:
                return actions
            return actions.sort_by([("modification_time", "ascending"), ("path", "ascending")])
        return self.values.get(("actions", name, version), read)

    def schema(self, name: str, version: int) -> tuple[pa.Schema, list[str]]:
        """The Arrow schema of ``name`` at ``version`` and its partition columns."""
        def read() -> tuple[pa.Schema, list[str]]:
            dtab = self.snapshot(name, version)
            return pa.schema(dtab.schema().to_arrow()), list(dtab.metadata().partition_columns)
        return self.values.get(("schema", name, version), read)

    def read_file(self, name: str, version: int, row: int, *, head: int | None = None,
                  filter: Any = None, columns: list[str] | None = None) -> pa.Table:
        """The rows of the ``row``-th file of :meth:`files` (its first ``head``, those
        passing ``filter``), with its partition values as columns, in the table's schema."""
        actions = self.files(name, version)
        schema, parts = self.schema(name, version)
        path = unquote(str(actions.column("path")[row].as_py()))
        file_schema = pa.schema([f for f in schema if f.name not in parts])
        full = f"{self.fs_root.rstrip('/')}/{name}/{path}"
        try:
            data = pds.dataset(full, schema=file_schema, format="parquet", filesystem=self.fs)
            got = data.head(head, filter=filter) if head is not None else data.to_table(
                filter=filter)
        except (OSError, pa.ArrowException) as exc:
            raise LakeError(f"Cannot read {full} of table {name!r} version {version}: "
                            f"{exc}") from exc
        for col in parts:
            value = actions.column(f"partition.{col}")[row].as_py() \
                if f"partition.{col}" in actions.column_names else None
            field_ = schema.field(col)
            got = got.append_column(field_, pa.array([value] * got.num_rows).cast(field_.type))
        got = got.select(schema.names)
        return got.select(columns) if columns else got

    def read_columns(self, name: str, version: int, columns: list[str]) -> pa.Table:
        """``columns`` of every row of ``name`` at ``version`` (for raylake's small record
        tables): its files as one Arrow dataset, rather than deltalake's, which builds an
        expression per file (seconds for the 2,000 files of 1,000 runs' records)."""
        schema, parts = self.schema(name, version)
        if parts:
            return self.lake.read(name, version, columns=columns, system=name.startswith("_"))
        actions = self.files(name, version)
        if not actions.num_rows:
            return schema.empty_table().select(columns)
        base = f"{self.fs_root.rstrip('/')}/{name}"
        paths = [f"{base}/{unquote(p)}" for p in actions.column("path").to_pylist()]
        try:
            return pds.dataset(paths, schema=schema, format="parquet",
                               filesystem=self.fs).to_table(columns=columns)
        except (OSError, pa.ArrowException) as exc:
            raise LakeError(f"Cannot read table {name!r} version {version}: {exc}") from exc

    def rows(self, name: str, version: int, offset: int, limit: int) -> tuple[pa.Table, int]:
        """Rows ``offset .. offset + limit`` of ``name`` at ``version``, files oldest first,
        read from the files that hold them only; and the total row count."""
        actions = self.files(name, version)
        counts = [int(n or 0) for n in actions.column("num_records").to_pylist()] \
            if actions.num_rows else []
        total = sum(counts)
        parts: list[pa.Table] = []
        seen, need = 0, limit
        for i, n in enumerate(counts):
            if need <= 0:
                break
            if seen + n > offset:
                skip = max(0, offset - seen)
                got = self.read_file(name, version, i, head=skip + need).slice(skip)
                parts.append(got)
                need -= got.num_rows
            seen += n
        schema, _ = self.schema(name, version)
        return (pa.concat_tables(parts) if parts else schema.empty_table()), total

    def lookup(self, name: str, version: int, column: str, value: str,
               columns: list[str] | None = None) -> pa.Table:
        """The rows of ``name`` at ``version`` whose string ``column`` equals ``value``,
        read from the files whose statistics may hold it (Delta truncates long string
        statistics to a prefix, so prefixes are compared)."""
        actions = self.files(name, version)
        lows = actions.column(f"min.{column}").to_pylist() \
            if f"min.{column}" in actions.column_names else [None] * actions.num_rows
        highs = actions.column(f"max.{column}").to_pylist() \
            if f"max.{column}" in actions.column_names else [None] * actions.num_rows
        found = []
        for i, (lo, hi) in enumerate(zip(lows, highs)):
            if (lo is None or value[:len(lo)] >= lo) and (hi is None or value[:len(hi)] <= hi):
                found.append(self.read_file(name, version, i, filter=pds.field(column) == value,
                                            columns=columns))
        schema, _ = self.schema(name, version)
        empty = schema.empty_table()
        return pa.concat_tables(found) if found else (empty.select(columns) if columns else
                                                      empty)

    def close(self) -> None:
        """Stop the log readers' threads."""
        self.pool.shutdown(wait=False)


def _summary(name: str, dtab: DeltaTable) -> Summary:
    actions = dtab.get_add_actions(flatten=True)
    rows = sum(int(n or 0) for n in actions.column("num_records").to_pylist()) \
        if actions.num_rows else 0
    size = sum(int(n or 0) for n in actions.column("size_bytes").to_pylist()) \
        if actions.num_rows else 0
    meta = dtab.metadata()
    schema = [(f.name, str(f.type), f.nullable) for f in pa.schema(dtab.schema().to_arrow())]
    return Summary(name, int(dtab.version()), actions.num_rows, rows, size,
                   list(meta.partition_columns), schema, meta.description or "")


def _commit(version: int, info: dict[str, Any]) -> Commit:
    ts = info.get("timestamp")
    metrics = info.get("operationMetrics") or {}
    rows = info.get("raylake.rows", metrics.get("num_added_rows"))
    return Commit(
        version=version,
        timestamp=dt.datetime.fromtimestamp(ts / 1000, dt.timezone.utc) if ts else None,
        operation=str(info.get("operation") or ""),
        parameters=dict(info.get("operationParameters") or {}),
        rows_added=int(rows) if isinstance(rows, (int, float, str)) and str(rows).isdigit()
        else None,
        run_id=info.get("raylake.run_id"),
        job=info.get("raylake.job"),
    )
