"""Orphans: files in the lake that no Delta table will ever read.

Workers write Parquet files before the driver commits them, so a run that
dies (or loses a race, or fails a check) between the two leaves files behind:

- ``file``: a Parquet file in a table's folder that no entry of its Delta log
  (any commit's ``add`` or ``remove``, any checkpoint) mentions. Files a log
  mentions, live or removed, are left to ``lake vacuum`` and its retention.
- ``no_table``: a Parquet file in a folder with no ``_delta_log`` above it: the
  files of a table whose first commit never happened.
- ``staging``: a ``_staging/<run>`` folder a merge wrote and never cleaned up.
- ``commit_temp``: ``_delta_log/_commit_*.json.tmp``, a commit delta-rs wrote
  but never renamed into place.
- ``empty_log``: a ``_delta_log`` folder with no commit in it (a creation that
  never committed), which would otherwise look like a table.

Only files older than ``min_age_hours`` (a staging folder: its newest file) are
orphans: a running job's files are uncommitted until its commit, and must be
left alone. Only Parquet files and raylake's staging and commit-temp files are
considered; anything else under the root (model artifacts, say) is not touched.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import unquote

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from raylake.errors import LakeError, UnsafeOperationError
from raylake.lake.names import validate_table_name
from raylake.lake.tables import Lake

# Delta's own vacuum retention: a job may run for hours before its commit, and its
# files are uncommitted until then; younger files are judged only with force.
DEFAULT_MIN_AGE_HOURS = 168.0
STAGING = "_staging"
LOG = "_delta_log"


@dataclass(frozen=True)
class Orphan:
    """One orphan: its path under the lake root, its kind (see the module doc), the
    table it sits in (None when none), its bytes and its age in hours."""

    path: str
    kind: str
    table: str | None
    size: int
    age_hours: float

    def to_dict(self) -> dict[str, object]:
        """The orphan as a plain dict (for printing)."""
        return asdict(self)


def check_min_age(min_age_hours: float, *, force: bool) -> float:
    """``min_age_hours`` when it is safe; under the default only with ``force`` (the
    files of a job still running could be taken for orphans)."""
    if min_age_hours < 0:
        raise UnsafeOperationError(
            f"Orphan minimum age {min_age_hours} hours is negative; give hours >= 0."
        )
    if min_age_hours < DEFAULT_MIN_AGE_HOURS and not force:
        raise UnsafeOperationError(
            f"An orphan minimum age of {min_age_hours} hours is under the safe default of "
            f"{DEFAULT_MIN_AGE_HOURS} hours: the uncommitted files of a job running now would "
            "be deleted. Pass --force (force=True) when no job writes to this lake."
        )
    return min_age_hours


def find_orphans(lake: Lake, table: str | None = None, *,
                 min_age_hours: float = DEFAULT_MIN_AGE_HOURS,
                 now: float | None = None) -> list[Orphan]:
    """The orphans in the lake (or in table ``table``'s folder), older than
    ``min_age_hours``, sorted by path."""
    fs, root = lake.storage.filesystem()
    root = root.rstrip("/")
    base = f"{root}/{validate_table_name(table, system=True)}" if table else root
    try:
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    except OSError as exc:
        raise LakeError(f"Cannot list the lake at {lake.root}: {exc}") from exc
    files = {_rel(i.path, root): i for i in infos if i.type == pafs.FileType.File}
    tables = _table_folders(files)
    clock = time.time() if now is None else now
    referenced = {t: _referenced(fs, root, t, files) for t in tables}
    found: list[Orphan] = []
    staging: dict[str, list[pafs.FileInfo]] = {}
    for rel, info in files.items():
        parts = rel.split("/")
        if parts[0] == STAGING and len(parts) > 2:
            staging.setdefault("/".join(parts[:2]), []).append(info)
            continue
        owner = _owner(rel, tables)
        if LOG in parts:
            if parts[-1].startswith("_commit_") and parts[-1].endswith(".json.tmp"):
                found.append(_orphan(rel, "commit_temp", owner, info, clock))
            continue
        if not rel.endswith(".parquet"):
            continue
        if owner is None:
            found.append(_orphan(rel, "no_table", None, info, clock))
        elif rel[len(owner) + 1:] not in referenced[owner]:
            found.append(_orphan(rel, "file", owner, info, clock))
    for folder, members in staging.items():
        newest = max(_mtime(m) for m in members)
        found.append(Orphan(folder, "staging", None, sum(m.size or 0 for m in members),
                            round((clock - newest) / 3600, 3)))
    for info in infos:  # a _delta_log with no commit: a creation that never committed
        rel = _rel(info.path, root)
        if (info.type == pafs.FileType.Directory and rel.rsplit("/", 1)[-1] == LOG
                and (rel.rsplit("/", 1)[0] if "/" in rel else "") not in tables
                and not any(f.startswith(f"{rel}/") and not f.endswith(".json.tmp")
                            for f in files)):
            found.append(_orphan(rel, "empty_log", None, info, clock))
    return sorted((o for o in found if o.age_hours >= min_age_hours), key=lambda o: o.path)


def remove_orphans(lake: Lake, orphans: Iterable[Orphan]) -> list[str]:
    """Delete ``orphans`` (files; staging folders whole), then the folders they leave
    empty; return the paths deleted."""
    fs, root = lake.storage.filesystem()
    root = root.rstrip("/")
    done: list[str] = []
    parents: set[str] = set()
    for o in orphans:
        full = f"{root}/{o.path}"
        try:
            if o.kind in ("staging", "empty_log"):
                fs.delete_dir(full)
            else:
                fs.delete_file(full)
        except FileNotFoundError:
            pass  # gone already (a second cleanup, or the job finished after all)
        except OSError as exc:
            raise LakeError(f"Cannot delete the orphan {full}: {exc}") from exc
        done.append(o.path)
        parents.add(o.path.rsplit("/", 1)[0] if "/" in o.path else "")
    _remove_empty_dirs(fs, root, parents)
    return done


def _table_folders(files: Iterable[str]) -> list[str]:
    """Folders whose ``_delta_log`` holds a commit or a checkpoint, deepest first."""
    tables = set()
    for rel in files:
        head, sep, name = rel.rpartition(f"{LOG}/")
        if sep and "/" not in name and _is_log_file(name) and (not head or head.endswith("/")):
            tables.add(head.rstrip("/"))
    return sorted(tables, key=lambda t: -t.count("/") - (1 if t else 0))


def _is_log_file(name: str) -> bool:
    return (name.endswith(".json") and name[:1].isdigit()) or ".checkpoint" in name


def _owner(rel: str, tables: Sequence[str]) -> str | None:
    """The deepest table folder ``rel`` is in."""
    for t in tables:
        if rel.startswith(f"{t}/") or t == "":
            return t
    return None


def _referenced(fs: pafs.FileSystem, root: str, table: str,
                files: dict[str, pafs.FileInfo]) -> set[str]:
    """Every data file path (relative to the table folder) that any commit or checkpoint
    of ``table``'s log names in an ``add`` or ``remove``."""
    prefix = f"{table}/{LOG}/" if table else f"{LOG}/"
    seen: set[str] = set()
    table_uri = f"{root}/{table}".rstrip("/")
    for rel in files:
        if not rel.startswith(prefix) or "/" in rel[len(prefix):]:
            continue
        name = rel[len(prefix):]
        full = f"{root}/{rel}"
        try:
            if name.endswith(".json") and name[:1].isdigit():
                with fs.open_input_stream(full) as src:
                    for line in src.read().decode("utf-8").splitlines():
                        _note(json.loads(line) if line.strip() else {}, seen, table_uri)
            elif ".checkpoint" in name and name.endswith(".parquet"):
                cols = [c for c in ("add", "remove")
                        if c in pq.read_schema(full, filesystem=fs).names]
                for row in pq.read_table(full, columns=cols, filesystem=fs).to_pylist():
                    _note(row, seen, table_uri)
        except (OSError, ValueError) as exc:
            # A log that cannot be read: its table's files cannot be judged, so none are
            # called orphans (better an orphan kept than a live file deleted).
            raise LakeError(
                f"Cannot read the Delta log file {full}: {exc}. Orphans of {table!r} were not "
                "searched; fix or remove that file first."
            ) from exc
    return seen


def _note(action: dict[str, Any], seen: set[str], table_uri: str) -> None:
    for kind in ("add", "remove"):
        entry = action.get(kind)
        if entry and entry.get("path"):
            # Both the path as written and decoded: a writer may or may not have
            # percent-encoded it, and the file on disk may carry either form (a partition
            # value with a space or a colon). A file matching either is referenced.
            for path in {entry["path"], unquote(entry["path"])}:
                if "://" in path or path.startswith("/"):  # an absolute path (a shallow clone)
                    path = path.split("://", 1)[-1]
                    path = path[len(table_uri.split("://", 1)[-1]) + 1:] \
                        if path.startswith(table_uri.split("://", 1)[-1]) else path
                seen.add(path)


def _orphan(rel: str, kind: str, table: str | None, info: pafs.FileInfo, now: float) -> Orphan:
    return Orphan(rel, kind, table, info.size or 0, round((now - _mtime(info)) / 3600, 3))


def _mtime(info: pafs.FileInfo) -> float:
    return info.mtime.timestamp() if info.mtime is not None else 0.0


def _rel(path: str, root: str) -> str:
    return path[len(root):].lstrip("/")


def _remove_empty_dirs(fs: pafs.FileSystem, root: str, folders: set[str]) -> None:
    """Remove each of ``folders`` and its parents while they are empty (never the root,
    never a table folder: it holds ``_delta_log``)."""
    for folder in sorted(folders, key=lambda f: -f.count("/")):
        while folder:
            full = f"{root}/{folder}"
            try:
                left = fs.get_file_info(pafs.FileSelector(full, allow_not_found=True))
                if left:
                    break
                fs.delete_dir(full)
            except OSError:
                break
            folder = folder.rsplit("/", 1)[0] if "/" in folder else ""
