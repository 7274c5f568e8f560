"""Governance jobs: ``governance-erase`` (the right to erasure) and ``governance-retention``
(delete and vacuum what is older than each table's retention).

On the command line: ``raylake governance erase --key email=alice@example.com
[--retention-hours N] [--force] [--dry-run]`` and ``raylake governance retention``
(``cli/governance.py``). The subject's key is a job option, never config: config goes
into the run record, and the record must not hold the value it erased.

Both run on the driver without Ray: they rewrite the few files that hold what goes,
reading only the columns that decide it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from raylake.errors import GovernanceError
from raylake.governance.erase import erase
from raylake.governance.retention import apply_retention, summary
from raylake.governance.subject import parse_key
from raylake.lake.clock import parse_time
from raylake.runner import JobContext, job


@job("governance-erase", help="erase a data subject (raylake governance erase --key "
                              "COLUMN=VALUE) from every table, version and online store",
     ray=False)
def governance_erase(ctx: JobContext, *, key: Mapping[str, str] | Sequence[str] | None = None,
                     retention_hours: float | None = None, dry_run: bool = False,
                     force: bool = False) -> dict[str, Any]:
    """``key``: column -> value, or ``COLUMN=VALUE`` texts; the other options as
    :func:`raylake.governance.erase.erase` takes them."""
    if not key:
        raise GovernanceError("governance-erase needs the subject's key: run `raylake "
                              "governance erase --key email=alice@example.com` (the key is "
                              "an option, never config, so no run record holds it).")
    keys = dict(key) if isinstance(key, Mapping) else dict(parse_key(k) for k in key)
    result = erase(ctx.lake, ctx.conf, keys, retention_hours, dry_run, force, run=ctx.record)
    return {**result.to_dict(), "summary": result.summary()}


@job("governance-retention", help="delete and vacuum rows older than each table's "
                                  "governance.retention", ray=False)
def governance_retention(ctx: JobContext, *, now: str | None = None,
                         retention_hours: float | None = None, force: bool = False,
                         dry_run: bool = False) -> dict[str, Any]:
    """``now``: an ISO time standing for the current time (a replay); ``retention_hours``
    and ``force``: the vacuum's retention, as for erase."""
    from raylake.governance.versions import check_retention

    retention = dict(ctx.conf.governance.retention)
    hours = check_retention(retention_hours, force=force)
    clock = parse_time(now, "--now") if now else None
    results = apply_retention(ctx.lake, retention, now=clock, retention_hours=hours,
                              force=force, dry_run=dry_run, run=ctx.record)
    ctx.record.metrics.update({t.table: {"rows_deleted": t.rows, "cutoff": t.cutoff,
                                         "files_vacuumed": t.files_vacuumed}
                               for t in results if not t.skipped})
    return {"tables": [t.to_dict() for t in results], "dry_run": dry_run,
            "summary": summary(results, dry_run, hours)}
