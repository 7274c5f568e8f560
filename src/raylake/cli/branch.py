"""``raylake branch create|list|delete|merge``: zero-copy branches of the lake.

Like the other admin commands, flags come anywhere and any ``key=value`` argument is a
config override (``lake.root=/tmp/lake``). ``merge`` takes each table's primary key
from the composed dataset config (``dataset.tables.<t>.primary_key``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

ACTIONS = "create, list, delete and merge zero-copy branches of the lake"


def branch_command(args: Sequence[str]) -> int:
    """Run ``raylake branch ...`` with ``args``; returns the exit status (errors raise
    RaylakeError, which the caller prints)."""
    from raylake.cli import _print_rows, _split
    from raylake.config.loader import compose_config, to_config
    from raylake.lake import Lake
    from raylake.lake.branches import create_branch, delete_branch, list_branches
    from raylake.lake.merge import STRATEGIES, merge_branch

    rest, overrides = _split(args)
    p = argparse.ArgumentParser(prog="raylake branch", description=ACTIONS)
    sub = p.add_subparsers(dest="op", required=True)
    c = sub.add_parser("create", help="a branch of every table, linked (no data copied)")
    c.add_argument("name")
    c.add_argument("--from", dest="source", default="main", help="branch to start from")
    c.add_argument("--tables", nargs="+", help="only these tables (raylake's own come along)")
    sub.add_parser("list", help="branches, what they were made from and when")
    d = sub.add_parser("delete", help="remove a branch (main keeps its files)")
    d.add_argument("name")
    d.add_argument("--force", action="store_true", help="even when other branches were "
                                                        "made from it")
    m = sub.add_parser("merge", help="three-way merge into the branch it was made from")
    m.add_argument("name")
    m.add_argument("--into", help="the target (default: the branch it was made from)")
    # Not argparse choices: a bad strategy gets raylake's error with the fix.
    m.add_argument("--strategy", help=f"resolve conflicting tables: {' or '.join(STRATEGIES)} "
                                      "(ours keeps the target's table, theirs the branch's)")
    m.add_argument("--tables", nargs="+", help="only these tables")
    m.add_argument("--dry-run", action="store_true", help="print the plan, commit nothing")
    m.add_argument("--json", action="store_true")
    ns = p.parse_args(rest)
    conf = to_config(compose_config([o for o in overrides if not o.startswith("lake.branch=")],
                                    job="admin"))
    lake = Lake.from_config(conf.lake)
    lake.require_root()
    if ns.op == "create":
        made = create_branch(lake, ns.name, source=ns.source, tables=ns.tables)
        how = (f"{made.files_linked} files linked, {made.bytes_copied:,} bytes copied"
               if made.info.storage == "links" else
               f"{made.files_copied} files copied server-side ({made.bytes_copied:,} bytes)")
        print(f"created branch {ns.name} from {made.info.parent}: {len(made.info.tables)} "
              f"tables, {how}, {made.bytes_written:,} bytes written, {made.seconds:.2f}s")
        if made.not_carried:
            print(f"  not carried (scratch or mutable, rebuilt on the branch): "
                  f"{', '.join(made.not_carried)}")
        print(f"  use it: raylake <job> lake.branch={ns.name} lake.root={lake.root}")
    elif ns.op == "list":
        _print_rows([{"branch": b.name, "from": b.parent, "created_at": b.created_at,
                      "tables": len(b.tables), "storage": b.storage}
                     for b in list_branches(lake)], empty=f"no branches in {lake.root}")
    elif ns.op == "delete":
        info = delete_branch(lake, ns.name, force=ns.force)
        print(f"deleted branch {info.name} (made from {info.parent})")
    else:
        result = merge_branch(lake, ns.name, into=ns.into, strategy=ns.strategy,
                              keys=_primary_keys(conf), tables=ns.tables, dry_run=ns.dry_run)
        if ns.json:
            print(json.dumps(result.__dict__, indent=2, default=str))
            return 0
        verb = "would merge" if ns.dry_run else "merged"
        print(f"{verb} {ns.name} into {result.into}"
              + (f" (run {result.run_id})" if result.run_id else ""))
        _print_rows([_row(t) for t in result.tables], empty="no tables")
    return 0


def _row(t: dict[str, Any]) -> dict[str, Any]:
    return {"table": t["table"], "status": t["status"], "files_added": t["add"],
            "files_removed": t["remove"], "rows_added": t["rows_added"],
            "rows_removed": t["rows_removed"], "version": t.get("version"),
            "conflict": t.get("conflict") or ""}


def _primary_keys(conf: Any) -> dict[str, list[str]]:
    """Each dataset table's primary key, by the lake table it writes."""
    out = {}
    for key, table in (conf.dataset.tables or {}).items():
        if table.primary_key:
            out[table.table or key] = list(table.primary_key)
    return out
