"""``raylake governance erase|retention``: the right to erasure and retention.

Like the other admin commands, flags come anywhere and any ``key=value`` argument is a
config override (``lake.root=/tmp/lake``), except the value of ``--key``, which is the
subject's identifier: it goes to the job as an option, never into config, so the run
record does not keep it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

ACTIONS = "erase a data subject from the lake; delete what is older than its retention"


def governance_command(args: Sequence[str]) -> int:
    """Run ``raylake governance ...`` with ``args``; returns the exit status (errors raise
    RaylakeError, which the caller prints)."""
    from raylake.cli import _split
    from raylake.config.loader import compose_config
    from raylake.governance.subject import parse_key
    from raylake.runner.registry import get_job

    keys, args = _take_keys(args)
    rest, overrides = _split(args)
    p = argparse.ArgumentParser(prog="raylake governance", description=ACTIONS)
    sub = p.add_subparsers(dest="op", required=True)
    e = sub.add_parser("erase", help="delete a subject's rows from every table that holds "
                                     "them, vacuum the versions that held them, delete their "
                                     "online keys, audit it",
                       epilog="e.g. raylake governance erase --key email=alice@example.com "
                              "--retention-hours 0 --force lake.root=/tmp/lake")
    e.add_argument("--key", metavar="COLUMN=VALUE",
                   help="the subject's identifier (repeat for more: a row holding any goes)")
    r = sub.add_parser("retention", help="per table of governance.retention: delete rows "
                                         "older than its days, vacuum")
    r.add_argument("--now", help="an ISO time standing for now (a replay)")
    for parser in (e, r):
        parser.add_argument("--retention-hours", type=float,
                            help="the vacuum's retention (default 168; under it: --force)")
        parser.add_argument("--force", action="store_true",
                            help="allow a vacuum retention under 168 hours (and, for erase, a "
                                 "key column classified as not personal)")
        parser.add_argument("--dry-run", action="store_true",
                            help="say what would be deleted and vacuumed; change nothing")
        parser.add_argument("--json", action="store_true", help="print the result as JSON")
    ns = p.parse_args(rest)
    options: dict[str, object] = {"retention_hours": ns.retention_hours, "force": ns.force,
                                  "dry_run": ns.dry_run}
    if ns.op == "erase":
        if not keys:
            p.error("erase needs --key COLUMN=VALUE, e.g. --key email=alice@example.com")
        options["key"] = dict(parse_key(k) for k in keys)
    elif keys:
        p.error("--key belongs to erase")
    else:
        options["now"] = ns.now
    name = f"governance-{ns.op}"
    cfg = compose_config(overrides, job=name)
    result = get_job(name)(cfg, echo=(lambda *_: None) if ns.json else print, **options)
    if ns.json:
        print(json.dumps(result, indent=2, default=str))
    return 0


def _take_keys(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """The values of ``--key`` (which look like overrides: ``email=...``) and the rest."""
    keys, rest, it = [], [], iter(args)
    for arg in it:
        if arg == "--key":
            keys.append(next(it, ""))
        elif arg.startswith("--key="):
            keys.append(arg[len("--key="):])
        else:
            rest.append(arg)
    return keys, rest
