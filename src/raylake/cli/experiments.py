"""``raylake exp show`` and ``raylake exp diff``: runs of a job compared (DVC's ``exp``).

``exp show`` prints one row per run: the params that differ across the runs shown,
the numeric metrics and the versions of the tables read; ``exp diff A B`` prints what
differs between two runs, metrics with their change. Both read the lake's run records
only (``_runs``, see :mod:`raylake.lake.experiments`); ``--json`` prints the same as
data. Any ``key=value`` argument is a config override (``lake.root=/tmp/lake``,
``lake.branch=exp1``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from raylake.cli import _open_lake, _print_rows, _split
from raylake.lake.experiments import (
    STATUSES,
    Experiment,
    compare,
    diff_runs,
    resolve_run,
    select_runs,
)

DESCRIPTION = "compare runs of a job: params that differ, metrics, input versions"


def exp_command(args: Sequence[str]) -> int:
    """Run ``raylake exp <show|diff> ...`` and return the exit status (a RaylakeError
    propagates to the caller, which prints it)."""
    rest, overrides = _split(args)
    ns = _parser().parse_args(rest)
    lake = _open_lake(overrides)
    if ns.op == "show":
        return _show(lake, ns)
    return _diff(lake, ns)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="raylake exp", description=DESCRIPTION,
        epilog="e.g. raylake exp show --job train --sort-by test.auc --sort-order desc; "
               "raylake exp diff RUN_A RUN_B")
    sub = p.add_subparsers(dest="op", required=True)
    sh = sub.add_parser(
        "show", help="runs side by side: differing params, metrics, input versions",
        description="One row per run, newest first (or sorted by --sort-by).")
    sh.add_argument("--job", help="the job whose runs to show (default: the newest run's job)")
    sh.add_argument("--status", default="succeeded",
                    help=f"comma-separated statuses ({', '.join(STATUSES)}) or 'all' "
                         "(default: succeeded)")
    sh.add_argument("--limit", type=int, default=20,
                    help="at most this many runs, newest first (0: all; default 20)")
    sh.add_argument("--sort-by", metavar="NAME",
                    help="a metric (or param): full dotted name or a unique last part "
                         "(auc for test.auc)")
    sh.add_argument("--sort-order", choices=("asc", "desc"), default="asc")
    sh.add_argument("--all-params", action="store_true",
                    help="every param, not only those that differ across the runs")
    sh.add_argument("--metrics", action="append", default=[], metavar="GLOB",
                    help="only metrics matching GLOB (repeatable; e.g. 'test.*')")
    sh.add_argument("--keep", action="append", default=[], metavar="GLOB",
                    help="always show params matching GLOB (repeatable)")
    sh.add_argument("--drop", action="append", default=[], metavar="GLOB",
                    help="hide params, metrics and inputs matching GLOB (repeatable)")
    sh.add_argument("--json", action="store_true", help="print the comparison as JSON")
    df = sub.add_parser(
        "diff", help="what differs between two runs: params, metrics (with change), "
                     "input and output versions",
        description="RUN_A and RUN_B are run ids, unique prefixes or their last hex digits.")
    df.add_argument("run_a")
    df.add_argument("run_b")
    df.add_argument("--all", action="store_true",
                    help="list unchanged params, metrics, inputs and outputs too")
    df.add_argument("--json", action="store_true", help="print the diff as JSON")
    return p


def _statuses(text: str) -> tuple[str, ...] | None:
    if text.strip() == "all":
        return None
    return tuple(s.strip() for s in text.split(",") if s.strip())


def _show(lake: Any, ns: argparse.Namespace) -> int:
    statuses = _statuses(ns.status)
    job = ns.job
    if job is None:
        newest = select_runs(lake, None, statuses, limit=1)
        job = newest[0].job if newest else None
    runs = select_runs(lake, job, statuses, limit=ns.limit or None)
    table = compare(runs, all_params=ns.all_params, keep=ns.keep, drop=ns.drop,
                    metrics=ns.metrics, sort_by=ns.sort_by,
                    descending=ns.sort_order == "desc")
    if ns.json:
        print(json.dumps({"job": job, **table.to_dict()}, indent=2, default=str))
        return 0
    status = "runs" if statuses is None else f"{'/'.join(statuses)} runs"
    if not runs:
        print(f"no {status}" + (f" of job {job!r}" if job else "") + f" in {lake.root}")
        return 0
    print(f"job {job}: {len(runs)} {status}" + (f", by {table.sort_by} {ns.sort_order}"
                                                 if table.sort_by else ", newest first")
          + ("" if ns.job else " (--job picks another job)"))
    _print_rows([{k: _cell(v) for k, v in row.items()} for row in table.rows()])
    return 0


def _diff(lake: Any, ns: argparse.Namespace) -> int:
    runs = select_runs(lake, None, None)
    where = str(lake.root)
    a = resolve_run(ns.run_a, runs, where)
    b = resolve_run(ns.run_b, runs, where)
    d = diff_runs(a, b, all_keys=ns.all)
    if ns.json:
        print(json.dumps(d.to_dict(), indent=2, default=str))
        return 0
    for label, e in (("a", a), ("b", b)):
        print(f"{label}: {_describe(e)}")
    if a.job != b.job:
        print(f"note: the runs are of different jobs ({a.job}, {b.job})")
    sections: list[tuple[str, list[tuple[Any, ...]], tuple[str, ...]]] = [
        ("params", d.params, ("param", "a", "b")),
        ("metrics", d.metrics, ("metric", "a", "b", "change")),
        ("inputs", d.inputs, ("input", "a", "b")),
        ("outputs", d.outputs, ("output", "a", "b")),
    ]
    for name, items, cols in sections:
        print()
        if not items:
            print(f"{name}: no differences")
            continue
        print(f"{name}:")
        _print_rows([dict(zip(cols, _cells(item, change=name == "metrics")))
                     for item in items])
    return 0


def _describe(e: Experiment) -> str:
    started = e.started_at.isoformat(timespec="seconds") if hasattr(e.started_at, "isoformat") \
        else str(e.started_at)
    return f"{e.run_id} ({e.job}, {e.status}, started {started}, code {e.code_version})"


def _cells(item: tuple[Any, ...], *, change: bool) -> list[str]:
    out = [str(item[0]), *(_cell(v) for v in item[1:3])]
    if change:
        delta = item[3]
        out.append("" if delta is None else _signed(delta))
    return out


def _signed(value: Any) -> str:
    text = _cell(value)
    return text if text.startswith("-") else f"+{text}"


def _cell(value: Any) -> str:
    """A value as a table cell: ``-`` for none, floats to 4 significant digits, lists and
    mappings as compact JSON."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    if hasattr(value, "isoformat"):
        return str(value.isoformat(timespec="seconds"))
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"), default=str)
    return str(value)
