"""The lake: named Delta tables under one root, their versions and upkeep."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError
from deltalake.exceptions import TableNotFoundError as DeltaTableNotFound

from raylake.config.lake import MAIN, validate_branch_name
from raylake.errors import (
    LakeError,
    TableNotFoundError,
    UnsafeOperationError,
    VersionNotFoundError,
    did_you_mean,
)
from raylake.lake.names import validate_table_name
from raylake.lake.storage import BRANCHES_DIR, Storage

# Delta's own default (delta.deletedFileRetentionDuration): files younger than
# this may still be read by a running job or a time-travel query.
SAFE_VACUUM_RETENTION_HOURS = 168

VersionRef = int | str | dt.datetime | None
# A branch's metadata file, in its root: what it was made from and the base versions.
BRANCH_META = "_branch.json"


def parse_version_ref(text: str) -> int | dt.datetime | None:
    """An integer version or an ISO 8601 timestamp (UTC if naive); None for a tag name."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)



def checked_retention(hours: float | None, *, force: bool, what: str = "A vacuum") -> float:
    """A vacuum's retention in hours (None: Delta's safe default, 168). UnsafeOperationError
    for a negative one, and for one under the default without ``force``: versions older
    than the retention become unreadable, and a running job reading one may fail."""
    hours = SAFE_VACUUM_RETENTION_HOURS if hours is None else hours
    if hours < 0:
        raise UnsafeOperationError(f"{what}: retention {hours} hours is negative; give hours "
                                   ">= 0.")
    if hours < SAFE_VACUUM_RETENTION_HOURS and not force:
        raise UnsafeOperationError(
            f"{what} with a retention of {hours} hours is under the safe default of "
            f"{SAFE_VACUUM_RETENTION_HOURS} hours: running jobs and time travel to older "
            "versions may break. Pass --force (force=True) if you are sure.")
    return hours

class Lake:
    """Delta tables under ``storage.root``; every method takes a table name.

    A branch's lake (``branch`` set) is rooted at ``<home root>/_branches/<branch>``: every
    job works on it unchanged, and ``home`` is the main lake's storage."""

    def __init__(self, storage: Storage, *, branch: str | None = None,
                 home: Storage | None = None) -> None:
        self.storage = storage
        self.branch = branch
        self.home = home if home is not None else storage

    @classmethod
    def from_config(cls, lake_cfg: Any) -> Lake:
        """The lake that config ``lake`` (``root``, ``storage_options`` and ``branch``)
        describes: the branch's lake when ``branch`` is set."""
        lake = cls(Storage.from_config(lake_cfg.root, dict(lake_cfg.storage_options or {})))
        branch = getattr(lake_cfg, "branch", None)
        return lake.on_branch(branch) if branch else lake

    @property
    def branch_name(self) -> str:
        """``main`` or the branch's name."""
        return self.branch or MAIN

    def on_branch(self, name: str | None) -> Lake:
        """The lake of branch ``name`` of the same home lake (``main`` or None: the home
        lake itself); LakeError naming the fix when there is no such branch."""
        if name is None or validate_branch_name(name) == MAIN:
            return Lake(self.home)
        lake = Lake(self.home.for_branch(name), branch=name, home=self.home)
        fs, root = lake.storage.filesystem()
        try:
            found = fs.get_file_info(f"{root}/{BRANCH_META}").type == pafs.FileType.File
        except OSError as exc:
            raise LakeError(f"Cannot reach branch {name!r} at {lake.root}: {exc}") from exc
        if not found:
            raise LakeError(
                f"No branch {name!r} in the lake at {self.home.root}. Create it with `raylake "
                f"branch create {name} lake.root={self.home.root}`; list branches with "
                "`raylake branch list`."
            )
        return lake

    @property
    def root(self) -> str:
        """The lake's root folder or URI."""
        return self.storage.root

    def uri(self, name: str, *, system: bool = False) -> str:
        """Where table ``name`` lives; TableNameError for an unsafe name (``system=True``
        admits raylake's own ``_`` tables)."""
        return self.storage.uri(validate_table_name(name, system=system))

    def exists(self, name: str, *, system: bool = False) -> bool:
        """True when a Delta table exists at ``name``'s location."""
        return DeltaTable.is_deltatable(self.uri(name, system=system), self.storage.delta_options())

    # -- reading -----------------------------------------------------------

    def table(self, name: str, version: VersionRef = None, *, system: bool = False) -> DeltaTable:
        """The Delta table ``name`` at a version, a timestamp or a tag (latest if None)."""
        uri = self.uri(name, system=system)
        try:
            dtab = DeltaTable(uri, storage_options=self.storage.delta_options())
        except DeltaTableNotFound as exc:
            raise TableNotFoundError(
                f"No table {name!r} in the lake at {self.root}.{did_you_mean(name, self.names())} "
                "List tables with `raylake lake list`."
            ) from exc
        except (DeltaError, OSError) as exc:
            raise LakeError(f"Cannot open table {name!r} at {uri}: {exc}") from exc
        if version is not None:
            self._load_version(dtab, name, version)
        return dtab

    def _load_version(self, dtab: DeltaTable, name: str, ref: VersionRef) -> None:
        if isinstance(ref, dt.datetime):
            target: int | dt.datetime = self._check_time(name, ref, dtab)
        else:
            target = self.resolve_version(name, ref)
        if isinstance(target, int) and target < 0:
            raise VersionNotFoundError(
                f"Table {name!r} has no version {ref!r}: versions count up from 0 (latest is "
                f"{dtab.version()}). See `raylake lake history {name}`."
            )
        try:
            dtab.load_as_version(target)
        except (DeltaError, OSError, ValueError, OverflowError) as exc:
            raise VersionNotFoundError(
                f"Table {name!r} has no version {ref!r} (latest is {dtab.version()}). "
                f"See `raylake lake history {name}`."
            ) from exc

    def resolve_version(self, name: str, ref: VersionRef) -> int | dt.datetime:
        """An int version, a tag name, or an ISO timestamp -> what Delta loads."""
        if ref is None or isinstance(ref, (int, dt.datetime)):
            return ref if ref is not None else self.table(name).version()
        parsed = parse_version_ref(str(ref))
        if isinstance(parsed, dt.datetime):
            return self._check_time(name, parsed)
        if parsed is not None:
            return parsed
        from raylake.lake.tags import TagStore

        return TagStore(self).get(name, str(ref).strip())

    def _check_time(self, name: str, when: dt.datetime, dtab: DeltaTable | None = None
                    ) -> dt.datetime:
        """``when`` (UTC if naive), or VersionNotFoundError when it is before the table's
        first commit: Delta would quietly answer with version 0."""
        when = when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)
        dtab = dtab if dtab is not None else self.table(name)
        try:
            oldest = min(dtab.history(), key=lambda e: e.get("version", 0))
        except (DeltaError, OSError, ValueError) as exc:
            raise LakeError(f"Cannot read the history of {name!r}: {exc}") from exc
        ts = oldest.get("timestamp")
        if ts is not None:
            first = dt.datetime.fromtimestamp(ts / 1000, dt.timezone.utc)
            if when < first:
                raise VersionNotFoundError(
                    f"Table {name!r} did not exist at {when.isoformat()}: its first commit "
                    f"(version {oldest.get('version')}) is at {first.isoformat()}. Give a "
                    f"time at or after it, or a version (`raylake lake history {name}`)."
                )
        return when

    def require_root(self) -> None:
        """LakeError unless the lake's root exists: a command that reads the lake would
        otherwise answer "no tables" for a mistyped root. (Writing needs no root: the
        first ingest creates it.)"""
        fs, root = self.storage.filesystem()
        try:
            info = fs.get_file_info(root)
        except OSError as exc:
            raise LakeError(f"Cannot reach the lake at {self.root}: {exc}. Check lake.root "
                            "and lake.storage_options.") from exc
        if info.type == pafs.FileType.NotFound:
            raise LakeError(
                f"The lake root {self.root} does not exist. Check lake.root (e.g. "
                f"lake.root=/path/to/lake), or ingest first: `raylake ingest "
                f"lake.root={self.root}` creates it."
            )
        if info.type == pafs.FileType.File:
            raise LakeError(f"The lake root {self.root} is a file, not a folder; "
                            "check lake.root.")

    def read(
        self,
        name: str,
        version: VersionRef = None,
        *,
        columns: Sequence[str] | None = None,
        filters: Any = None,
        system: bool = False,
    ) -> pa.Table:
        """Read a table (or a version of it) into Arrow on this process."""
        dtab = self.table(name, version, system=system)
        try:
            return dtab.to_pyarrow_table(
                columns=list(columns) if columns else None,
                filters=filters,
                filesystem=self.arrow_filesystem(name, system=system),
            )
        except (DeltaError, OSError, pa.ArrowException) as exc:
            raise LakeError(f"Cannot read table {name!r}: {exc}") from exc

    def arrow_filesystem(self, name: str, *, system: bool = False) -> pafs.FileSystem:
        """A native pyarrow filesystem rooted at the table.

        deltalake's default reader wraps its Rust object store in a Python
        filesystem that pyarrow's I/O threads call back into; at interpreter
        exit that can abort the process. A native filesystem is also faster.
        """
        fs, root = self.storage.filesystem()
        return pafs.SubTreeFileSystem(f"{root}/{validate_table_name(name, system=system)}", fs)

    def dataset(self, name: str, version: VersionRef = None, *, system: bool = False) -> Any:
        """A pyarrow dataset over a table version (lazy; nothing read yet)."""
        dtab = self.table(name, version, system=system)
        return dtab.to_pyarrow_dataset(filesystem=self.arrow_filesystem(name, system=system))

    def version(self, name: str, *, system: bool = False) -> int:
        """The latest version of table ``name``; TableNotFoundError when there is no such
        table."""
        return self.table(name, system=system).version()

    def count(self, name: str, version: VersionRef = None) -> int:
        """Rows of table ``name`` at ``version`` (latest if None), summed from the Delta
        log's file statistics; counted by ``DeltaTable.count()`` instead when a file has no
        row count."""
        dtab = self.table(name, version)
        actions = dtab.get_add_actions(flatten=True)
        records: list[Any] = (list(actions.column("num_records").to_pylist())
                              if actions.num_rows else [])
        if all(r is not None for r in records):
            return int(sum(records))
        return dtab.count()

    # -- listing and history -------------------------------------------------

    def names(self, *, include_system: bool = False) -> list[str]:
        """Names of the tables in the lake (namespaces included), sorted."""
        fs, root = self.storage.filesystem()
        try:
            infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
        except OSError as exc:
            raise LakeError(f"Cannot list the lake at {self.root}: {exc}") from exc
        found = set()
        prefix = root.rstrip("/") + "/"
        for info in infos:
            if info.type == pafs.FileType.Directory and info.base_name == "_delta_log":
                rel = info.path[len(prefix) :].rsplit("/_delta_log", 1)[0]
                top = rel.split("/")[0]
                if top == BRANCHES_DIR:
                    continue  # branches are lakes of their own (`raylake branch list`)
                if rel and (include_system or not top.startswith("_")):
                    found.add(rel)
        return sorted(found)

    def list_tables(self, *, include_system: bool = False) -> list[dict[str, Any]]:
        """One dict per table (raylake's own too with ``include_system``): its name, latest
        version, files, rows (from file statistics; a file without them counts 0) and
        partition columns."""
        rows = []
        for name in self.names(include_system=include_system):
            dtab = self.table(name, system=True)
            actions = dtab.get_add_actions(flatten=True)
            rows.append(
                {
                    "table": name,
                    "version": dtab.version(),
                    "files": actions.num_rows,
                    "rows": int(sum(r or 0 for r in actions.column("num_records").to_pylist()))
                    if actions.num_rows
                    else 0,
                    "partition_by": dtab.metadata().partition_columns,
                }
            )
        return rows

    def history(self, name: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Commits of a table, newest first, with raylake's run id where it wrote them."""
        try:
            raw = self.table(name).history(limit)
        except (DeltaError, OSError) as exc:
            raise LakeError(f"Cannot read the history of {name!r}: {exc}") from exc
        out = []
        for entry in raw:
            ts = entry.get("timestamp")
            out.append(
                {
                    "version": entry.get("version"),
                    "timestamp": dt.datetime.fromtimestamp(ts / 1000, dt.timezone.utc)
                    if ts
                    else None,
                    "operation": entry.get("operation"),
                    "parameters": entry.get("operationParameters", {}),
                    "metrics": entry.get("operationMetrics", {}),
                    "rows_added": entry.get("raylake.rows",
                                            entry.get("operationMetrics", {}).get("num_added_rows")),
                    "run_id": entry.get("raylake.run_id"),
                    "job": entry.get("raylake.job"),
                }
            )
        return out

    # -- upkeep ----------------------------------------------------------------

    def restore(self, name: str, target: VersionRef) -> dict[str, Any]:
        """Make ``target`` (a version, tag or timestamp) the latest version again."""
        dtab = self.table(name)
        resolved = self.resolve_version(name, target)
        try:
            return dict(dtab.restore(resolved))
        except (DeltaError, OSError, ValueError) as exc:
            raise LakeError(f"Cannot restore {name!r} to {target!r}: {exc}") from exc

    def optimize(self, name: str, target_size: int | None = None) -> dict[str, Any]:
        """Compact small files into larger ones (a new version, same rows)."""
        try:
            return dict(self.table(name).optimize.compact(target_size=target_size))
        except (DeltaError, OSError) as exc:
            raise LakeError(f"Cannot optimize {name!r}: {exc}") from exc

    def vacuum(
        self,
        name: str,
        retention_hours: int | None = None,
        *,
        dry_run: bool = False,
        force: bool = False,
    ) -> list[str]:
        """Delete files no version within the retention window needs.

        A retention under the safe default can break running readers and
        time travel, so it is refused unless ``force`` is given.
        """
        hours = int(checked_retention(retention_hours, force=force, what=f"Vacuum of {name!r}"))
        try:
            return list(
                self.table(name).vacuum(
                    retention_hours=hours, dry_run=dry_run, enforce_retention_duration=False
                )
            )
        except (DeltaError, OSError) as exc:
            raise LakeError(f"Cannot vacuum {name!r}: {exc}") from exc
