"""Zero-copy branches of the lake: every table's files and log, hard-linked.

A branch is a lake of its own at ``<root>/_branches/<name>/`` (``lake.branch=<name>``
makes every job use it). Creating one links, for every table of the source (raylake's
own ``_runs``, ``_tags``, ``_models`` included), the Delta log files up to the version
read and every data file into the branch's folder. Delta never rewrites a file in
place, so the two names of one file can never disagree: a write on either side adds
new files and new log entries under its own folder only, and a vacuum on one side
removes only that side's name. Linking the log (rather than writing a new one) keeps
the branch's version numbers equal to the source's, so tags, run records, lineage and
model versions copied with it stay true; it keeps the app transactions that make
re-runs idempotent, the files' exact statistics, and time travel to older versions.
The version each table had is recorded as the branch's base (``_branch.json``) for a
three-way merge (``raylake.lake.merge``). Model artifacts (written once, never
changed) are linked as well; other folders (the online store's SQLite file, reports,
Ray Train's checkpoints) are mutable or scratch, and a branch starts without them.

Object stores have no links: there every file is copied server-side (S3 CopyObject:
no bytes pass through this process, but the store holds and bills a second copy, and
the time grows with the bytes). ``BranchCreated`` says which was done and how much.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow.fs as pafs

from raylake.config.lake import MAIN, validate_branch_name
from raylake.errors import LakeError, TableNotFoundError, did_you_mean
from raylake.lake.storage import BRANCHES_DIR
from raylake.lake.tables import BRANCH_META, Lake

LOG = "_delta_log"
# Folders under a lake root that are not tables and are carried to a branch: written
# once and never changed, so two names of one file are safe.
CARRIED_DIRS = ("_model_artifacts",)
# Log files named by version: commits, checkpoints (single or multi-part), checksums and
# compacted ranges. Each is immutable once written; the version is the (last) number.
_LOG_FILE = re.compile(r"^(?:\d{20}\.)?(\d{20})\.(?:json|crc|compacted\.json|checkpoint\.parquet|"
                       r"checkpoint\.\d+\.\d+\.parquet)$")


class BranchError(LakeError):
    """A branch cannot be created, found, deleted or merged as asked."""


@dataclass
class BranchInfo:
    """A branch: its name, the branch it was made from, when, and the version of each
    table it was made at (the merge base until its first merge)."""

    name: str
    parent: str
    created_at: str
    tables: dict[str, int] = field(default_factory=dict)
    storage: str = "links"  # "links" (local) or "copies" (object store)

    def to_dict(self) -> dict[str, Any]:
        """The branch as a plain dict (what ``_branch.json`` holds)."""
        return asdict(self)


@dataclass
class BranchCreated:
    """What creating a branch did: files linked (no bytes copied) or copied, and the
    bytes written (copies and the branch's own metadata)."""

    info: BranchInfo
    files_linked: int = 0
    bytes_linked: int = 0
    files_copied: int = 0
    bytes_copied: int = 0
    bytes_written: int = 0
    seconds: float = 0.0
    not_carried: list[str] = field(default_factory=list)


def branch_names(lake: Lake) -> list[str]:
    """The names of the lake's branches, sorted."""
    return [b.name for b in list_branches(lake)]


def list_branches(lake: Lake) -> list[BranchInfo]:
    """Every branch of ``lake``'s home lake, sorted by name."""
    fs, root = lake.home.filesystem()
    base = f"{root.rstrip('/')}/{BRANCHES_DIR}"
    try:
        infos = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
    except OSError as exc:
        raise BranchError(f"Cannot list the branches at {base}: {exc}") from exc
    out = []
    for info in infos:
        if info.type == pafs.FileType.Directory and _is_name(info.base_name):
            meta = _read_meta(fs, f"{info.path}/{BRANCH_META}")
            if meta is not None:
                out.append(meta)
    return sorted(out, key=lambda b: b.name)


def get_branch(lake: Lake, name: str) -> BranchInfo:
    """Branch ``name``'s metadata; BranchError naming the branches there are."""
    validate_branch_name(name)
    fs, _ = lake.home.filesystem()
    meta = _read_meta(fs, _fs_path(lake.home.for_branch(name).root, fs))
    if meta is None:
        known = branch_names(lake)
        raise BranchError(f"No branch {name!r} in the lake at {lake.home.root}."
                          f"{did_you_mean(name, known)} Branches: {', '.join(known) or 'none'} "
                          f"(`raylake branch create {name}` makes it).")
    return meta


def create_branch(lake: Lake, name: str, *, source: str | None = None,
                  tables: Sequence[str] | None = None) -> BranchCreated:
    """Branch ``name`` of ``source`` (main when None): every table (or only ``tables``,
    plus raylake's own ``_`` tables) linked at its latest version. BranchError when the
    name is taken or invalid; nothing is left behind when creation fails."""
    started = time.perf_counter()
    if validate_branch_name(name) == MAIN:
        raise BranchError("'main' is the lake itself and cannot be created; give another "
                          "branch name, e.g. exp1.")
    home = lake.on_branch(None)
    if name in branch_names(home):
        raise BranchError(f"Branch {name!r} already exists in {home.root}. Delete it first "
                          f"(`raylake branch delete {name}`) or pick another name.")
    src = home.on_branch(source)
    chosen = _chosen_tables(src, tables)
    target = home.on_branch(None).storage.for_branch(name)
    copier = _Copier.for_storage(home.storage.local)
    fs, root = home.storage.filesystem()
    dest_root = _fs_path(target.root, fs, meta=False)
    src_root = _fs_path(src.root, fs, meta=False)
    _remove_tree(fs, dest_root)  # the leftover of a creation that failed half way
    versions: dict[str, int] = {}
    try:
        for table in chosen:
            versions[table] = _link_table(src, table, fs, src_root, dest_root, copier, chosen)
        for folder in CARRIED_DIRS:
            copier.tree(fs, f"{src_root}/{folder}", f"{dest_root}/{folder}")
        info = BranchInfo(name=name, parent=src.branch_name,
                          created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                          tables=versions, storage="links" if copier.local else "copies")
        # Written last: a branch exists once its metadata does.
        data = json.dumps(info.to_dict(), indent=1, sort_keys=True).encode()
        with fs.open_output_stream(f"{dest_root}/{BRANCH_META}") as out:
            out.write(data)
        copier.written += len(data)
    except BaseException:
        _remove_tree(fs, dest_root)
        raise
    skipped = _not_carried(fs, src_root, chosen)
    return BranchCreated(info, copier.linked, copier.bytes_linked, copier.copied,
                         copier.bytes_copied, copier.written, time.perf_counter() - started,
                         skipped)


def delete_branch(lake: Lake, name: str, *, force: bool = False) -> BranchInfo:
    """Remove branch ``name`` (its names of shared files only: main keeps its own).
    A branch that others were made from needs ``force``."""
    if validate_branch_name(name) == MAIN:
        raise BranchError("'main' is the lake itself and cannot be deleted as a branch.")
    info = get_branch(lake, name)
    children = [b.name for b in list_branches(lake) if b.parent == name]
    if children and not force:
        raise BranchError(f"Branches {', '.join(children)} were made from {name!r}; deleting "
                          "it leaves them without a branch to merge into. Merge or delete them "
                          "first, or pass --force.")
    fs, _ = lake.home.filesystem()
    _remove_tree(fs, _fs_path(lake.home.for_branch(name).root, fs, meta=False))
    return info


# -- linking ---------------------------------------------------------------------------


class _Copier:
    """Hard links on a local lake; server-side copies (``copy_file``) on an object store.
    Counts what it did."""

    def __init__(self, local: bool) -> None:
        self.local = local
        self.linked = self.bytes_linked = self.copied = self.bytes_copied = self.written = 0

    @classmethod
    def for_storage(cls, local: bool) -> _Copier:
        return cls(local)

    def link(self, fs: pafs.FileSystem, src: str, dst: str, size: int) -> None:
        """``dst`` becomes a second name of ``src`` (local) or a copy of it."""
        if self.local:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            try:
                os.link(src, dst)
                self.linked += 1
                self.bytes_linked += size
                return
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                    raise LakeError(f"Cannot link {src} to {dst}: {exc}") from exc
                # Another filesystem mounted inside the lake, or no links there: copy.
            shutil.copyfile(src, dst)
        else:
            fs.copy_file(src, dst)
        self.copied += 1
        self.bytes_copied += size
        self.written += size

    def copy_small(self, fs: pafs.FileSystem, src: str, dst: str) -> None:
        """A real copy of a small mutable file (``_last_checkpoint``)."""
        with fs.open_input_stream(src) as f:
            data = f.read()
        if self.local:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
        with fs.open_output_stream(dst) as out:
            out.write(data)
        self.written += len(data)

    def tree(self, fs: pafs.FileSystem, src: str, dst: str,
             skip: Sequence[str] = ()) -> None:
        """Every file under ``src`` linked (or copied) to the same place under ``dst``,
        leaving out the subfolders ``skip`` (paths relative to ``src``)."""
        for rel, size in _files_under(fs, src, self.local):
            if not any(rel == s or rel.startswith(f"{s}/") for s in skip):
                self.link(fs, f"{src}/{rel}", f"{dst}/{rel}", size)


def _link_table(src: Lake, table: str, fs: pafs.FileSystem, src_root: str, dest_root: str,
                copier: _Copier, all_tables: Sequence[str]) -> int:
    """Link table ``table``'s log (up to the version read now) and data files; return
    that version."""
    version = src.table(table, system=True).version()
    src_dir, dst_dir = f"{src_root}/{table}", f"{dest_root}/{table}"
    last_checkpoint = None
    for rel, size in _files_under(fs, f"{src_dir}/{LOG}", copier.local):
        m = _LOG_FILE.match(rel)
        if m and int(m.group(1)) <= version:
            copier.link(fs, f"{src_dir}/{LOG}/{rel}", f"{dst_dir}/{LOG}/{rel}", size)
        elif rel == "_last_checkpoint":
            last_checkpoint = f"{src_dir}/{LOG}/{rel}"
    if last_checkpoint is not None and _checkpoint_version(fs, last_checkpoint) <= version:
        # A hint only (readers list the log anyway); mutable, so a copy of its own.
        copier.copy_small(fs, last_checkpoint, f"{dst_dir}/{LOG}/_last_checkpoint")
    nested = [t[len(table) + 1:] for t in all_tables if t.startswith(f"{table}/")]
    copier.tree(fs, src_dir, dst_dir, skip=[LOG, *nested])
    return version


def _checkpoint_version(fs: pafs.FileSystem, path: str) -> int:
    try:
        with fs.open_input_stream(path) as f:
            return int(json.loads(f.read()).get("version", 1 << 62))
    except (OSError, ValueError):
        return 1 << 62  # unreadable: leave it out (delta-rs finds the checkpoints itself)


def _files_under(fs: pafs.FileSystem, base: str, local: bool) -> list[tuple[str, int]]:
    """(path relative to ``base``, size) of every file under ``base``; none when missing."""
    if local:
        out = []
        for dirpath, _dirs, files in os.walk(base):
            for f in files:
                full = os.path.join(dirpath, f)
                out.append((os.path.relpath(full, base).replace(os.sep, "/"),
                            os.lstat(full).st_size))
        return out
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    return [(i.path[len(base) + 1:], i.size or 0) for i in infos if i.type == pafs.FileType.File]


def _chosen_tables(src: Lake, tables: Sequence[str] | None) -> list[str]:
    every = src.names(include_system=True)
    if not tables:
        return every
    missing = [t for t in tables if t not in every]
    if missing:
        raise TableNotFoundError(
            f"No table {missing[0]!r} in {src.branch_name} ({src.root})."
            f"{did_you_mean(missing[0], every)} List tables with `raylake lake list`.")
    # raylake's own tables (run records, tags, registry) always come along.
    return sorted({*tables, *(t for t in every if t.startswith("_"))})


def _not_carried(fs: pafs.FileSystem, src_root: str, tables: Sequence[str]) -> list[str]:
    """Top-level folders of the source that are neither tables nor carried (reported)."""
    tops = {t.split("/")[0] for t in tables}
    try:
        infos = fs.get_file_info(pafs.FileSelector(src_root, allow_not_found=True))
    except OSError:
        return []
    return sorted(i.base_name for i in infos
                  if i.type == pafs.FileType.Directory and i.base_name not in tops
                  and i.base_name not in (*CARRIED_DIRS, BRANCHES_DIR)
                  and i.base_name.startswith("_"))


def _is_name(text: str) -> bool:
    try:
        validate_branch_name(text)
    except ValueError:
        return False
    return True


def _fs_path(root: str, fs: pafs.FileSystem, *, meta: bool = True) -> str:
    """A branch root (an OS path or a URI) as ``fs`` names it; with ``meta`` the path of
    its ``_branch.json``."""
    path = root.split("://", 1)[1] if "://" in root else root
    return f"{path}/{BRANCH_META}" if meta else path


def _read_meta(fs: pafs.FileSystem, path: str) -> BranchInfo | None:
    try:
        with fs.open_input_stream(path) as f:
            data = json.loads(f.read())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise BranchError(f"Cannot read the branch metadata {path}: {exc}") from exc
    return BranchInfo(**{k: data[k] for k in BranchInfo.__dataclass_fields__ if k in data})


def _remove_tree(fs: pafs.FileSystem, path: str) -> None:
    try:
        if fs.get_file_info(path).type != pafs.FileType.NotFound:
            fs.delete_dir(path)
    except OSError as exc:
        raise BranchError(f"Cannot remove {path}: {exc}") from exc
