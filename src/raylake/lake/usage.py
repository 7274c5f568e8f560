"""``raylake lake du``: bytes per table and branch, a shared file counted once.

A branch's files are hard links to main's (``raylake.lake.branches``), so the bytes
under a branch's folder are mostly not new on disk. Each file is keyed by its device
and inode; main is counted first, then the branches by name, and a file's bytes are
``new`` only where its inode is first seen. On an object store there are no links:
every file is its own object and counted where it lies.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import pyarrow.fs as pafs

from raylake.errors import LakeError
from raylake.lake.branches import branch_names
from raylake.lake.storage import BRANCHES_DIR
from raylake.lake.tables import Lake

OTHER = "(other)"  # files in no table's folder: model artifacts, the online store, reports


@dataclass
class DiskUsage:
    """One row per (branch, table): files, bytes under its folder, and the bytes first
    counted there (``new_bytes``); the totals over the whole lake."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    apparent_bytes: int = 0  # as if every branch were a full copy
    unique_bytes: int = 0  # each file once: what the lake holds


def disk_usage(lake: Lake) -> DiskUsage:
    """The disk usage of ``lake``'s home lake and all its branches."""
    home = lake.on_branch(None)
    seen: set[tuple[int, int] | str] = set()
    out = DiskUsage()
    for name in [None, *branch_names(home)]:
        on = home.on_branch(name)
        tables = on.names(include_system=True)
        per: dict[str, dict[str, Any]] = {}
        for rel, size, ident in _files(on):
            owner = _owner(rel, tables)
            row = per.setdefault(owner, {"branch": on.branch_name, "table": owner, "files": 0,
                                         "bytes": 0, "new_bytes": 0})
            row["files"] += 1
            row["bytes"] += size
            out.apparent_bytes += size
            if ident not in seen:
                seen.add(ident)
                row["new_bytes"] += size
                out.unique_bytes += size
        out.rows += [per[k] for k in sorted(per, key=lambda t: (t == OTHER, t))]
    return out


def _files(lake: Lake) -> list[tuple[str, int, tuple[int, int] | str]]:
    """(path under the root, size, identity) of every file of ``lake``, leaving out the
    home lake's ``_branches`` folder (each branch is counted as its own lake)."""
    fs, root = lake.storage.filesystem()
    out: list[tuple[str, int, tuple[int, int] | str]] = []
    if lake.storage.local:
        for dirpath, dirs, files in os.walk(root):
            if dirpath == root and lake.branch is None and BRANCHES_DIR in dirs:
                dirs.remove(BRANCHES_DIR)
            for f in files:
                full = os.path.join(dirpath, f)
                st = os.lstat(full)
                rel = os.path.relpath(full, root).replace(os.sep, "/")
                out.append((rel, st.st_size, (st.st_dev, st.st_ino)))
        return out
    try:
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    except OSError as exc:
        raise LakeError(f"Cannot list the lake at {lake.root}: {exc}") from exc
    for info in infos:
        rel = info.path[len(root.rstrip("/")) + 1:]
        if info.type == pafs.FileType.File and not (
                lake.branch is None and rel.startswith(f"{BRANCHES_DIR}/")):
            out.append((rel, info.size or 0, info.path))
    return out


def _owner(rel: str, tables: list[str]) -> str:
    best = ""
    for t in tables:
        if (rel.startswith(f"{t}/")) and len(t) > len(best):
            best = t
    return best or OTHER
