"""Merge a branch back: a three-way merge per table, replayed as one commit per table.

For each table the branch has, the base is the version both sides last agreed on:
the branch point (``_branch.json``), or after a merge the target's merge commit and
the branch version it merged (read back from the target's commit metadata). The
branch's changes are the files it added and removed since its base; the target's, the
same since its base. Files keep their relative paths on both sides (a branch's files
are links), so a path names the same rows everywhere. A table conflicts when

- both sides removed the same files (two rewrites of one file cannot both be kept),
  or the branch removed a file the target no longer has; or
- the table has a primary key and both sides touched the same keys (rows added or
  removed, compared as a multiset so a rewritten file touches only the rows that
  changed).

A conflict commits nothing, anywhere, unless a strategy resolves it per table (as
lakeFS's ``source-wins`` / ``dest-wins``, with the table as the unit): ``ours`` keeps
the target's table as it is, ``theirs`` makes it equal to the branch's. Otherwise the
target gets one commit per table that adds the branch's new files (linked into its
folder) and removes the ones the branch removed: atomic per table, carrying the app
transaction ``raylake.merge/<branch>`` at the branch's version (a re-run merges nothing
twice) and the merge's run id. Each commit is made on the snapshot the table was
planned on with no automatic retry: when the target moved on in between, the table is
planned again on the new snapshot (and merged, or refused as a conflict), never
committed half-checked.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Schema, Transaction
from deltalake.exceptions import CommitFailedError, DeltaError
from deltalake.transaction import AddAction, RemoveAction, create_table_with_add_actions

from raylake.errors import ConcurrentWriteError, LakeError
from raylake.lake.branches import LOG, BranchError, get_branch
from raylake.lake.diff import files_of, multiset_difference, read_files
from raylake.lake.runs import RunRecorder
from raylake.lake.tables import Lake

JOB = "branch-merge"
REPLANS = 3  # the target moved on under a merge this many times: refuse
STRATEGIES = ("ours", "theirs")
# A table's primary key declared on the table itself (comma-separated columns), for
# tables no dataset config describes.
KEY_PROPERTY = "raylake.primaryKey"


class MergeConflictError(BranchError):
    """Both sides changed a table in overlapping ways; nothing was committed."""


@dataclass
class TablePlan:
    """What merging one table would do, and whether it conflicts."""

    table: str
    branch_version: int
    branch_base: int
    target_base: int | None  # None: the table is new on the branch
    target_version: int | None
    add: list[str] = field(default_factory=list)  # branch files to add to the target
    remove: list[str] = field(default_factory=list)  # target files to remove
    rows_added: int = 0
    rows_removed: int = 0
    conflict: str | None = None
    status: str = "merge"  # merge | up-to-date | conflict
    resolvable: bool = True  # False: --strategy theirs cannot take the branch's side

    def to_dict(self) -> dict[str, Any]:
        """The plan as a plain dict (file lists as counts)."""
        d = asdict(self)
        d["add"], d["remove"] = len(self.add), len(self.remove)
        return d


@dataclass
class MergeResult:
    """A merge's outcome: one entry per table (``status``: merged, up-to-date, ours
    (target kept), theirs (branch's table taken), or conflict in a dry run), the target
    versions written and the run id that recorded it."""

    branch: str
    into: str
    tables: list[dict[str, Any]] = field(default_factory=list)
    run_id: str | None = None

    @property
    def merged(self) -> list[str]:
        """The tables that got a merge commit."""
        return [t["table"] for t in self.tables if t["status"] in ("merged", "theirs")]


def merge_branch(lake: Lake, branch: str, *, into: str | None = None,
                 strategy: str | None = None, keys: Mapping[str, Sequence[str]] | None = None,
                 tables: Sequence[str] | None = None, dry_run: bool = False,
                 before_commit: Callable[[str], None] | None = None) -> MergeResult:
    """Merge branch ``branch`` into ``into`` (its parent when None); see the module doc.
    ``keys``: primary keys per table (else the table's ``raylake.primaryKey`` property).
    ``before_commit(table)`` runs between planning and committing each table (tests use
    it to move the target on). MergeConflictError lists every conflict when there is one
    and no ``strategy``; nothing is committed then."""
    if strategy is not None and strategy not in STRATEGIES:
        raise BranchError(f"Merge strategy {strategy!r} is not one of {', '.join(STRATEGIES)}: "
                          "ours keeps the target's side of a conflicting table, theirs takes "
                          "the branch's.")
    info = get_branch(lake, branch)
    into = into or info.parent
    if into != info.parent:
        raise BranchError(f"Branch {branch!r} was made from {info.parent!r}; merge it into "
                          f"{info.parent!r} (--into {info.parent}), not {into!r}.")
    src, dst = lake.on_branch(branch), lake.on_branch(into)
    names = _tables(src, tables)
    plans = [plan_table(src, dst, t, info.tables.get(t), _keys(src, t, keys)) for t in names]
    result = MergeResult(branch, into)
    conflicts = [p for p in plans if p.status == "conflict"]
    if dry_run:
        result.tables = [p.to_dict() for p in plans]
        return result
    if conflicts and strategy is None:
        raise MergeConflictError(_conflict_message(branch, into, conflicts))
    stuck = [p for p in conflicts if not p.resolvable and strategy == "theirs"]
    if stuck:
        raise MergeConflictError(_conflict_message(branch, into, stuck).replace(
            "or --strategy theirs", "(--strategy theirs cannot resolve these)"))
    todo = [p for p in plans if p.status != "up-to-date"]
    if not todo:
        result.tables = [{**p.to_dict(), "status": "up-to-date"} for p in plans]
        return result
    config = {"branch": branch, "into": into, "strategy": strategy, "tables": names}
    with RunRecorder(dst, JOB, config) as run:
        result.run_id = run.run_id
        for plan in plans:
            entry = _merge_table(src, dst, plan, info.tables.get(plan.table),
                                 _keys(src, plan.table, keys), strategy, run.run_id,
                                 before_commit, done=result.merged)
            result.tables.append(entry)
            if entry.get("version") is not None and entry["status"] != "up-to-date":
                run.add_input(table=plan.table, branch=branch, version=entry["branch_version"])
                run.add_output(table=plan.table, version=entry["version"],
                               files_added=entry["add"], files_removed=entry["remove"])
        run.metrics.update(merged=len(result.merged), tables=len(plans))
    return result


def plan_table(src: Lake, dst: Lake, table: str, branch_point: int | None,
               keys: Sequence[str]) -> TablePlan:
    """The three-way plan for ``table`` from branch lake ``src`` into ``dst``."""
    sb = src.table(table, system=True)
    if not dst.exists(table, system=True):
        if branch_point is not None:
            return TablePlan(table, sb.version(), branch_point, None, None, status="conflict",
                             conflict=f"the target no longer has table {table!r}",
                             resolvable=False)
        return TablePlan(table, sb.version(), -1, None, None, add=sorted(files_of(sb)))
    tb = dst.table(table, system=True)
    if branch_point is None and _merge_base(tb, src.branch_name) is None:
        return TablePlan(table, sb.version(), -1, None, tb.version(), status="conflict",
                         conflict=f"table {table!r} was created on both sides",
                         resolvable=False)
    base = _merge_base(tb, src.branch_name) or (branch_point or 0, branch_point or 0)
    target_base, branch_base = base
    plan = TablePlan(table, sb.version(), branch_base, target_base, tb.version())
    merged = tb.transaction_version(_app_id(src.branch_name))
    if (merged is not None and merged >= sb.version()) or sb.version() == branch_base:
        plan.status = "up-to-date"
        return plan
    b_old, b_new = files_of(src.table(table, branch_base, system=True)), files_of(sb)
    t_old, t_new = files_of(dst.table(table, target_base, system=True)), files_of(tb)
    b_base = src.table(table, branch_base, system=True)
    plan.add = sorted(b_new - b_old - t_new)
    plan.remove = sorted((b_old - b_new) & t_new)
    plan.rows_added = _rows_in(sb, plan.add)
    plan.rows_removed = _rows_in(b_base, plan.remove)
    both_removed = sorted((b_old - b_new) - t_new)
    if _schema(sb) != _schema(tb):
        plan.status, plan.resolvable, plan.conflict = "conflict", False, (
            f"the schemas differ ({_schema_change(tb, sb)}); schema changes are not merged: "
            "apply the change on the target too, or keep the target's with --strategy ours")
        return plan
    if both_removed:
        plan.status = "conflict"
        plan.conflict = (f"both sides removed or rewrote {len(both_removed)} of the same files "
                         f"(e.g. {both_removed[0]})")
        return plan
    if keys:
        ours = _touched(dst, table, tb, t_new - t_old, dst.table(table, target_base, system=True),
                        t_old - t_new, keys)
        theirs = _touched(src, table, sb, b_new - b_old, b_base, b_old - b_new, keys)
        common = theirs.merge(ours, on=list(keys)).drop_duplicates()
        if len(common):
            sample = common.head(3).to_dict("records")
            plan.status = "conflict"
            plan.conflict = (f"both sides changed {len(common)} rows with the same primary key "
                             f"({', '.join(keys)}), e.g. {sample}")
    return plan


def _merge_table(src: Lake, dst: Lake, plan: TablePlan, branch_point: int | None,
                 keys: Sequence[str], strategy: str | None, run_id: str,
                 before_commit: Callable[[str], None] | None,
                 done: list[str]) -> dict[str, Any]:
    """Commit one table's plan, planning it again when the target moved on."""
    for _ in range(REPLANS + 1):
        if plan.status == "up-to-date":
            return {**plan.to_dict(), "version": plan.target_version}
        if plan.status == "conflict":
            if strategy is None:
                raise MergeConflictError(
                    _conflict_message(src.branch_name, dst.branch_name, [plan]) +
                    f" The target changed while the merge ran; merged before this table: "
                    f"{', '.join(done) or 'none'}. Nothing of {plan.table!r} was committed.")
            if strategy == "ours":
                return {**plan.to_dict(), "status": "ours", "version": plan.target_version}
            if not plan.resolvable:
                raise MergeConflictError(
                    f"{plan.table}: {plan.conflict}. --strategy theirs cannot resolve this; "
                    f"merged before this table: {', '.join(done) or 'none'}.")
            _take_theirs(src, dst, plan)
        if before_commit is not None:
            before_commit(plan.table)
        try:
            version = _commit(src, dst, plan, run_id)
        except CommitFailedError:  # the target moved on since this plan: plan again
            plan = plan_table(src, dst, plan.table, branch_point, keys)
            continue
        status = "theirs" if plan.status == "conflict" else "merged"
        return {**plan.to_dict(), "status": status, "version": version}
    raise ConcurrentWriteError(
        f"Table {plan.table!r} on {dst.branch_name} changed {REPLANS + 1} times while branch "
        f"{src.branch_name!r} was being merged into it; nothing of it was committed (merged "
        f"before it: {', '.join(done) or 'none'}). Run the merge again: what was merged is "
        "not merged twice.")


def _take_theirs(src: Lake, dst: Lake, plan: TablePlan) -> None:
    """Turn a conflicting plan into one that makes the target's table the branch's."""
    b_files = files_of(src.table(plan.table, plan.branch_version, system=True))
    t_files = files_of(dst.table(plan.table, plan.target_version, system=True))
    plan.add, plan.remove = sorted(b_files - t_files), sorted(t_files - b_files)


def _commit(src: Lake, dst: Lake, plan: TablePlan, run_id: str) -> int:
    """Link the branch's new files into the target and commit adds and removes as one
    version on the planned snapshot (no automatic retry: CommitFailedError when the
    target moved on). Returns the target's new version."""
    sb = src.table(plan.table, plan.branch_version, system=True)
    linked = _link_files(src, dst, plan.table, plan.add)
    adds = _add_actions(src, plan.table, sb, plan.add, plan.branch_base)
    props = CommitProperties(
        custom_metadata={"raylake.run_id": run_id, "raylake.job": JOB,
                         "raylake.merge.branch": src.branch_name,
                         "raylake.merge.branch_version": plan.branch_version,
                         "raylake.merge.files_added": len(plan.add),
                         "raylake.merge.files_removed": len(plan.remove)},
        max_commit_retries=0,
        app_transactions=[Transaction(_app_id(src.branch_name), plan.branch_version)])
    try:
        if plan.target_version is None:  # a table new on the branch
            meta = sb.metadata()
            create_table_with_add_actions(
                dst.uri(plan.table, system=True), Schema.from_arrow(_schema(sb)), adds,
                mode="error", partition_by=list(meta.partition_columns) or None,
                name=meta.name, description=meta.description,
                configuration=dict(meta.configuration) or None,
                storage_options=dst.storage.delta_options(), commit_properties=props)
            return dst.version(plan.table, system=True)
        tb = dst.table(plan.table, plan.target_version, system=True)
        now = int(time.time() * 1000)
        removes = [RemoveAction(path=p, data_change=True, deletion_timestamp=now)
                   for p in plan.remove]
        tb.create_write_transaction(
            [*adds, *removes], mode="append", schema=_schema(tb),
            partition_by=list(tb.metadata().partition_columns) or None, commit_properties=props)
    except CommitFailedError:
        _unlink(dst, linked)
        raise
    except (DeltaError, OSError) as exc:
        _unlink(dst, linked)
        if plan.target_version is None and dst.exists(plan.table, system=True):
            raise CommitFailedError(str(exc)) from exc  # created meanwhile: plan again
        raise LakeError(f"Merging {plan.table!r} into {dst.branch_name} failed: {exc}. Nothing "
                        "of it was committed.") from exc
    tb.update_incremental()
    return tb.version()


def _link_files(src: Lake, dst: Lake, table: str, paths: Sequence[str]) -> list[str]:
    """Make each branch file of ``paths`` a file of the target's table (a link on a local
    lake, a server-side copy on an object store); return the names created."""
    fs, _ = dst.storage.filesystem()
    s_dir, d_dir = _dir(src, table), _dir(dst, table)
    created = []
    for rel in paths:
        s, d = f"{s_dir}/{rel}", f"{d_dir}/{rel}"
        if dst.storage.local:
            if os.path.exists(d):
                if os.path.samefile(s, d):
                    continue  # linked by an earlier try of this merge
                raise LakeError(f"{d} exists and is not the branch's file {s}; nothing of "
                                f"{table!r} was committed. Remove the stray file and merge again.")
            os.makedirs(os.path.dirname(d), exist_ok=True)
            os.link(s, d)
        else:
            fs.copy_file(s, d)
        created.append(d)
    return created


def _unlink(lake: Lake, paths: Sequence[str]) -> None:
    """Remove the names ``_link_files`` created. On an object store they are paths in
    ``lake``'s filesystem (``bucket/key``, no scheme), so they are deleted through it:
    ``os.remove`` would take them for paths relative to the working directory."""
    fs, _ = lake.storage.filesystem()
    for p in paths:
        try:
            os.remove(p) if lake.storage.local else fs.delete_file(p)
        except OSError:
            pass  # an orphan `raylake lake vacuum --orphans` removes


def _dir(lake: Lake, table: str) -> str:
    _, root = lake.storage.filesystem()
    return f"{root.rstrip('/')}/{table}"


def _add_actions(src: Lake, table: str, sb: DeltaTable, paths: Sequence[str],
                 since: int) -> list[AddAction]:
    """Add actions for branch files ``paths``: their own entries from the branch's log
    commits after ``since`` (exact statistics), else built from the snapshot (row
    counts only: no min/max means a reader never skips the file, which is safe)."""
    wanted = set(paths)
    raw = _log_adds(src, table, since + 1, sb.version(), wanted)
    out = []
    actions = (pa.table(sb.get_add_actions(flatten=True)).to_pydict()
               if wanted - raw.keys() else {})
    index = {p: i for i, p in enumerate(actions.get("path", []))}
    for path in paths:
        a = raw.get(path)
        if a is not None:
            out.append(AddAction(path, int(a["size"]), a.get("partitionValues") or {},
                                 int(a.get("modificationTime") or 0), True,
                                 a.get("stats") or "{}"))
            continue
        i = index[path]
        parts = {k[len("partition."):]: (None if actions[k][i] is None else str(actions[k][i]))
                 for k in actions if k.startswith("partition.")}
        stats = {"numRecords": actions["num_records"][i]} if actions.get("num_records") else {}
        out.append(AddAction(path, int(actions["size_bytes"][i]), parts,
                             int(actions["modification_time"][i]), True, json.dumps(stats)))
    return out


def _log_adds(lake: Lake, table: str, first: int, last: int,
              wanted: set[str]) -> dict[str, dict[str, Any]]:
    """The ``add`` entries for ``wanted`` paths in JSON commits ``first``..``last``."""
    fs, _ = lake.storage.filesystem()
    found: dict[str, dict[str, Any]] = {}
    for v in range(max(first, 0), last + 1):
        try:
            with fs.open_input_stream(f"{_dir(lake, table)}/{LOG}/{v:020d}.json") as f:
                lines = f.read().decode().splitlines()
        except (FileNotFoundError, OSError):
            continue  # cleaned up after a checkpoint: built from the snapshot instead
        for line in lines:
            add = json.loads(line).get("add") if line.strip() else None
            if add and add.get("path") in wanted:
                found[add["path"]] = add
    return found


def _touched(lake: Lake, table: str, new: DeltaTable, added: set[str], old: DeltaTable,
             removed: set[str], keys: Sequence[str]) -> pd.DataFrame:
    """The distinct keys of the rows one side added or removed (a multiset difference, so
    rows a rewrite kept are not touched)."""
    fs = lake.arrow_filesystem(table, system=True)
    cols = list(_schema(new).names)
    try:
        plus = read_files(new, added, cols, fs)
        minus = read_files(old, removed, cols, fs)
    except (OSError, pa.ArrowException) as exc:
        raise LakeError(f"Cannot read the changed files of {table!r} on "
                        f"{lake.branch_name} to compare keys: {exc}") from exc
    plus, minus = multiset_difference(plus, minus)
    return pd.concat([plus[list(keys)], minus[list(keys)]]).drop_duplicates()


def _rows_in(dtab: DeltaTable, paths: Sequence[str]) -> int:
    """Rows in files ``paths`` of snapshot ``dtab``, from the log's statistics."""
    if not paths:
        return 0
    actions = pa.table(dtab.get_add_actions(flatten=True)).to_pydict()
    wanted = set(paths)
    return int(sum(n or 0 for p, n in zip(actions["path"], actions["num_records"]) if p in wanted))


def _merge_base(tb: DeltaTable, branch: str) -> tuple[int, int] | None:
    """(target version, branch version) of the target's latest merge commit from
    ``branch``, or None when it was never merged."""
    if tb.transaction_version(_app_id(branch)) is None:
        return None
    for entry in tb.history():
        if entry.get("raylake.merge.branch") == branch:
            return int(entry["version"]), int(entry["raylake.merge.branch_version"])
    return None


def _app_id(branch: str) -> str:
    return f"raylake.merge/{branch}"


def _schema(dtab: DeltaTable) -> pa.Schema:
    return pa.schema(dtab.schema().to_arrow())


def _schema_change(old: DeltaTable, new: DeltaTable) -> str:
    a, b = {f.name: str(f.type) for f in _schema(old)}, {f.name: str(f.type) for f in _schema(new)}
    parts = [f"+{c}" for c in b if c not in a] + [f"-{c}" for c in a if c not in b]
    parts += [f"{c}: {a[c]} -> {b[c]}" for c in a if c in b and a[c] != b[c]]
    return ", ".join(parts) or "column order or nullability"


def _keys(src: Lake, table: str, keys: Mapping[str, Sequence[str]] | None) -> list[str]:
    if keys and keys.get(table):
        return list(keys[table])
    conf = src.table(table, system=True).metadata().configuration or {}
    return [c.strip() for c in (conf.get(KEY_PROPERTY) or "").split(",") if c.strip()]


def _tables(src: Lake, tables: Sequence[str] | None) -> list[str]:
    """The branch's tables to merge: its own (not raylake's run records, tags and
    registry, which stay per branch), or ``tables``."""
    every = src.names()
    if not tables:
        return every
    missing = [t for t in tables if t not in every]
    if missing:
        raise BranchError(f"Branch {src.branch_name!r} has no table {missing[0]!r}; its "
                          f"tables: {', '.join(every) or 'none'}.")
    return list(tables)


def _conflict_message(branch: str, into: str, plans: Sequence[TablePlan]) -> str:
    lines = "; ".join(f"{p.table}: {p.conflict}" for p in plans)
    return (f"Merging {branch!r} into {into!r} conflicts in {len(plans)} table(s): {lines}. "
            "Nothing was committed. Resolve it on one side, or merge with --strategy ours "
            f"(keep {into}'s tables) or --strategy theirs (take {branch}'s).")
