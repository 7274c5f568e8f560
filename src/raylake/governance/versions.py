"""Which versions of a table read which data files, from its Delta log; and the vacuum
that erasure and retention run, which says first which versions it makes unreadable.

Erasure must say which versions held a subject's rows (the versions that read a file
holding them) and which versions a vacuum breaks (the versions that read a file it
deletes). Both come from one replay of the log: each data file's lifetime as spans of
versions ``[added, removed)``. A table has hundreds or thousands of versions (the
request log commits every few seconds), so lifetimes are kept per file, never as a file
list per version.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.fs as pafs
from deltalake.exceptions import DeltaError

from raylake.errors import LakeError, RaylakeError
from raylake.lake.commit import commit_properties
from raylake.lake.names import validate_table_name
from raylake.lake.tables import Lake, checked_retention

LOG = "_delta_log"


@dataclass
class DataFile:
    """One data file of a table: its path as the log names it (relative to the table),
    its partition values, and the spans of versions ``[first, end)`` that read it."""

    path: str
    partition_values: dict[str, str | None] = field(default_factory=dict)
    size: int | None = None
    spans: list[list[int]] = field(default_factory=list)

    def live_at(self, version: int) -> bool:
        """True when version ``version`` reads this file."""
        return any(a <= version < b for a, b in self.spans)


@dataclass
class FileHistory:
    """The data files of ``table`` over its readable versions ``first``..``latest``."""

    table: str
    first: int
    latest: int
    files: dict[str, DataFile]  # by the path with percent-escapes decoded

    def live(self) -> list[DataFile]:
        """The files of the latest version."""
        return [f for f in self.files.values() if f.live_at(self.latest)]

    def is_live(self, path: str) -> bool:
        """True when the latest version reads file ``path``."""
        f = self.files.get(unquote(path))
        return f is not None and f.live_at(self.latest)

    def versions_reading(self, paths: Iterable[str]) -> list[int]:
        """The versions (ascending) that read any of ``paths``."""
        out: set[int] = set()
        for p in paths:
            f = self.files.get(unquote(p))
            for a, b in f.spans if f is not None else ():
                out.update(range(max(a, self.first), min(b, self.latest + 1)))
        return sorted(out)

    def versions(self) -> list[int]:
        """Every readable version."""
        return list(range(self.first, self.latest + 1))


def file_history(lake: Lake, table: str, *, system: bool = False) -> FileHistory:
    """Replay ``table``'s log: the lifetime of every data file any readable version reads.

    Versions whose commit files were cleaned up after a checkpoint cannot be read by time
    travel anyway; the replay starts at the oldest version that loads."""
    fs, root = lake.storage.filesystem()
    log = f"{root.rstrip('/')}/{table}/{LOG}"
    try:
        infos = fs.get_file_info(pafs.FileSelector(log, allow_not_found=True))
    except OSError as exc:
        raise LakeError(f"Cannot list the Delta log of {table!r}: {exc}") from exc
    commits = sorted(int(i.base_name[:-5]) for i in infos
                     if i.base_name.endswith(".json") and i.base_name[:-5].isdigit())
    if not commits:
        raise LakeError(f"Table {table!r} has no commit files in {log}.")
    files: dict[str, DataFile] = {}
    first = start = commits[0]
    if first > 0:  # older commits are gone: start from the oldest version that loads
        first = _load_base(lake, table, commits, files, system)
        start = first + 1
    for version in (v for v in commits if v >= start):
        with fs.open_input_stream(f"{log}/{version:020d}.json") as src:
            lines = src.read().decode("utf-8").splitlines()
        for line in lines:
            action = json.loads(line) if line.strip() else {}
            if (add := action.get("add")) is not None:
                f = files.setdefault(unquote(add["path"]), DataFile(add["path"]))
                f.partition_values = dict(add.get("partitionValues") or {})
                f.size = add.get("size")
                if not f.spans or f.spans[-1][1] <= version:
                    f.spans.append([version, _OPEN])
            elif (rem := action.get("remove")) is not None:
                gone = files.get(unquote(rem["path"]))
                if gone is not None and gone.spans and gone.spans[-1][1] == _OPEN:
                    gone.spans[-1][1] = version
    latest = commits[-1]
    for f in files.values():
        f.spans = [[a, latest + 1 if b == _OPEN else b] for a, b in f.spans]
    return FileHistory(table, first, latest, files)


_OPEN = 1 << 62  # a span still open: the file is live at the end of the replay


def _load_base(lake: Lake, table: str, commits: Sequence[int], files: dict[str, DataFile],
               system: bool) -> int:
    """Fill ``files`` with the files of the oldest version that loads (from a checkpoint);
    return that version."""
    for version in commits:
        try:
            dtab = lake.table(table, version, system=system)
        except RaylakeError:
            continue
        actions = pa.table(dtab.get_add_actions(flatten=True)).to_pydict()
        parts = [k for k in actions if k.startswith("partition.")]
        for i, path in enumerate(actions.get("path", [])):
            pv = {k[len("partition."):]: None if actions[k][i] is None else str(actions[k][i])
                  for k in parts}
            files[unquote(path)] = DataFile(path, pv, actions["size_bytes"][i],
                                            [[version, _OPEN]])
        return version
    raise LakeError(f"No version of table {table!r} loads: its log is damaged.")


def data_path(lake: Lake, table: str, path: str) -> str:
    """The file ``path`` (as the log names it) on the lake's filesystem: the path as
    written, or with its percent-escapes decoded (writers differ)."""
    fs, root = lake.storage.filesystem()
    base = f"{root.rstrip('/')}/{table}"
    for candidate in dict.fromkeys([path, unquote(path)]):
        full = f"{base}/{candidate}"
        if fs.get_file_info(full).type == pafs.FileType.File:
            return full
    return ""


# -- the log's own copies of values ----------------------------------------------------

def scrub_log(lake: Lake, table: str, history: FileHistory, gone: Iterable[str],
              quotes: Callable[[list[str]], list[bool]], *, system: bool = False) -> list[int]:
    """Drop the min/max statistics from the log's add and remove entries of files that
    are ``gone`` (vacuumed: no version that names them can be read) where ``quotes`` says
    they quote a value (a string column's min or max is a value: an erased address stays
    in the log after its file is deleted). Each commit file so changed is replaced whole
    (written aside, then moved over it); its other lines are kept byte for byte. Returns
    the versions whose commit files were changed."""
    wanted = {unquote(p) for p in gone}
    if not wanted:
        return []
    fs, root = lake.storage.filesystem()
    log = f"{root.rstrip('/')}/{validate_table_name(table, system=system)}/{LOG}"
    changed = []
    for version in range(history.first, history.latest + 1):
        path = f"{log}/{version:020d}.json"
        try:
            with fs.open_input_stream(path) as src:
                lines = src.read().decode("utf-8").splitlines()
        except (FileNotFoundError, OSError):
            continue  # before the oldest kept commit
        candidates = [i for i, line in enumerate(lines) if line.strip()
                      and _entry_path(line) in wanted]
        flags = quotes([lines[i] for i in candidates]) if candidates else []
        hits = [i for i, hit in zip(candidates, flags) if hit]
        if not hits:
            continue
        for i in hits:
            lines[i] = _without_bounds(lines[i])
        _replace(fs, path, ("\n".join(lines) + "\n").encode("utf-8"), lake.storage.local)
        changed.append(version)
    return changed


def log_quoting(lake: Lake, table: str, history: FileHistory,
                quotes: Callable[[list[str]], list[bool]], *, system: bool = False) -> list[int]:
    """The versions whose commit file quotes a value (``quotes`` judges each line)."""
    fs, root = lake.storage.filesystem()
    log = f"{root.rstrip('/')}/{validate_table_name(table, system=system)}/{LOG}"
    out = []
    for version in range(history.first, lake.version(table, system=system) + 1):
        try:
            with fs.open_input_stream(f"{log}/{version:020d}.json") as src:
                lines = src.read().decode("utf-8").splitlines()
        except (FileNotFoundError, OSError):
            continue
        if any(quotes(lines)):
            out.append(version)
    return out


def _entry_path(line: str) -> str | None:
    action = json.loads(line)
    entry = action.get("add") or action.get("remove")
    return unquote(entry["path"]) if isinstance(entry, dict) and entry.get("path") else None


def _without_bounds(line: str) -> str:
    action = json.loads(line)
    kind = "add" if "add" in action else "remove"
    entry = action[kind]
    stats = entry.get("stats")
    if isinstance(stats, str) and stats:
        kept = {k: v for k, v in json.loads(stats).items() if k not in ("minValues", "maxValues")}
        entry["stats"] = json.dumps(kept, separators=(",", ":"))
    entry.pop("stats_parsed", None)
    return json.dumps(action, separators=(",", ":"))


def _replace(fs: pafs.FileSystem, path: str, data: bytes, local: bool) -> None:
    """Write ``data`` over ``path``: beside it then renamed on a local disk (a reader sees
    the old file or the new one), one put on an object store (atomic there)."""
    if not local:
        with fs.open_output_stream(path) as out:
            out.write(data)
        return
    aside = f"{path}.{uuid.uuid4().hex}.scrub"
    with fs.open_output_stream(aside) as out:
        out.write(data)
    fs.move(aside, path)


# -- vacuum ------------------------------------------------------------------------------

def check_retention(hours: float | None, *, force: bool) -> int:
    """The vacuum retention in hours (default: Delta's 168); under 168 only with
    ``force``, as ``raylake lake vacuum`` refuses it. The versions a short one breaks are
    listed before anything is deleted (``--dry-run`` shows them)."""
    return int(checked_retention(hours, force=force, what="A vacuum"))


def vacuum(lake: Lake, table: str, hours: int, *, keep_versions: Sequence[int] = (),
           dry_run: bool, run_id: str | None = None, job: str | None = None,
           system: bool = False) -> list[str]:
    """The files (relative to the table) a vacuum with ``hours`` retention deletes, the
    files of ``keep_versions`` kept readable; deleted unless ``dry_run``."""
    options: dict[str, Any] = {"keep_versions": list(keep_versions)} if keep_versions else {}
    try:
        return list(lake.table(table, system=system).vacuum(
            retention_hours=hours, dry_run=dry_run, enforce_retention_duration=False,
            commit_properties=None if dry_run else commit_properties(None, run_id, job),
            **options))
    except (DeltaError, OSError) as exc:
        raise LakeError(f"Cannot vacuum {table!r}: {exc}") from exc


def spans(versions: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` as ``0-2, 5``."""
    out: list[str] = []
    vs = sorted(versions)
    i = 0
    while i < len(vs):
        j = i
        while j + 1 < len(vs) and vs[j + 1] == vs[j] + 1:
            j += 1
        out.append(str(vs[i]) if i == j else f"{vs[i]}-{vs[j]}")
        i = j + 1
    return ", ".join(out)
