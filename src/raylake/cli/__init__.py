"""The ``raylake`` command: Hydra jobs and lake administration.

``raylake <job> [overrides]`` runs a job under ``@hydra.main`` (so ``-m``
multirun, ``--cfg job`` and ``--help`` work). ``raylake lake ...`` and
``raylake runs ...`` are admin commands: their flags come first or anywhere,
and any ``key=value`` argument is a config override (``lake.root=/tmp/lake``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from typing import Any

from raylake.errors import RaylakeError, did_you_mean
from raylake.runner.registry import declared, get_job

ADMIN = {
    "lake": "list tables, history, tags, diff, restore, optimize, vacuum, doctor",
    "runs": "list and show run records (lineage)",
    "models": "list, show and promote registered model versions",
    "lineage": "upstream/downstream of TABLE[@V], model:NAME[:V] or request:ID; "
               "export: OpenLineage events",
    "branch": "create, list, delete and merge zero-copy branches of the lake",
    "pipelines": "run or watch data-driven pipelines (conf/pipelines/): stale stages only",
    "repro": "re-run a pipeline stage and its upstream where inputs, config or code changed",
    "exp": "compare runs of a job: params that differ, metrics, input versions",
    "governance": "erase a data subject (--key COLUMN=VALUE); retention: delete what is older",
    "ui": "a read-only web UI over the lake (--port 8080): tables, runs, lineage, models",
}

_OVERRIDE = re.compile(r"^[+~]{0,2}[A-Za-z_][\w.\-/@]*=")

# Short names for keys whose values are row selections ("month in [1]"): the
# shell has already removed the user's quotes, so they are quoted again for
# Hydra, which would otherwise read the brackets as a list.
_SELECTIONS = {
    "reference": "drift.reference",
    "current": "drift.current",
    "drift.reference": "drift.reference",
    "drift.current": "drift.current",
    # `raylake synth sample model=... rows=1000000 conditions="carrier=UA"`.
    "conditions": "synth.conditions",
    "synth.conditions": "synth.conditions",
    "rows": "synth.rows",
}


# Flags of jobs that stand for a config key (`raylake train --from-run RUN_ID`).
_FLAGS = {"--from-run": "train.from_run"}


def _flags_to_overrides(args: Sequence[str]) -> list[str]:
    out, it = [], iter(args)
    for arg in it:
        flag, eq, value = arg.partition("=")
        if flag in _FLAGS:
            if not eq:
                value = next(it, "")
            out.append(f"{_FLAGS[flag]}={value}")
        else:
            out.append(arg)
    return out


def _path_arg(args: Sequence[str], key: str) -> list[str]:
    """A leading positional argument (``raylake outcomes add FILE``) as ``key='FILE'``,
    quoted so that Hydra reads any path (commas, brackets, spaces) as one string."""
    if not args or _OVERRIDE.match(args[0]) or args[0].startswith("-"):
        return list(args)
    escaped = args[0].replace("\\", "\\\\").replace("'", "\\'")
    return [f"{key}='{escaped}'", *args[1:]]


def _quote_selections(args: Sequence[str]) -> list[str]:
    out = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and key in _SELECTIONS and not value.startswith(("'", '"')):
            escaped = value.replace("\\", "\\\\").replace("'", "\\'")
            arg = f"{_SELECTIONS[key]}='{escaped}'"
        out.append(arg)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``raylake`` with ``argv`` (``sys.argv[1:]`` when None) and return the exit
    status; a RaylakeError or an unknown command is printed to stderr and gives 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if args[0] == "--version":
        from raylake import __version__

        print(f"raylake {__version__}")
        return 0
    command, rest = args[0], args[1:]
    if command == "quality" and rest[:1] == ["report"]:
        command, rest = "quality-report", rest[1:]
    if command == "ab" and rest[:1] == ["report"]:
        command, rest = "ab-report", rest[1:]
    if command == "monitor" and rest[:1] == ["report"]:
        command, rest = "monitor-report", rest[1:]
    if command == "outcomes" and rest[:1] == ["add"]:
        command, rest = "outcomes-add", _path_arg(rest[1:], "outcomes.path")
    if command == "features" and rest[:1] == ["apply"]:
        command, rest = "features-apply", rest[1:]
    if command in ("label", "synth") and rest and f"{command}-{rest[0]}" in declared():
        command, rest = f"{command}-{rest[0]}", rest[1:]  # `raylake label analyze` and the like
    try:
        if command in declared():
            return run_job(command, rest)
        if command == "lake":
            return _lake(rest)
        if command == "runs":
            return _runs(rest)
        if command == "models":
            return _models(rest)
        if command == "lineage" and rest[:1] == ["export"]:
            from raylake.cli.lineage_export import export_command

            return export_command(rest[1:])
        if command == "lineage":
            return _lineage(rest)
        if command == "branch":
            from raylake.cli.branch import branch_command

            return branch_command(rest)
        if command == "governance":
            from raylake.cli.governance import governance_command

            return governance_command(rest)
        if command == "ui":
            from raylake.cli.ui import ui_command

            return ui_command(rest)
        if command in ("pipelines", "repro", "exp"):
            from raylake.cli.pipelines import pipelines_command

            return pipelines_command(command, rest)
    except RaylakeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"error: unknown command {command!r}.{did_you_mean(command, [*declared(), *ADMIN])}\n\n{_usage()}",
        file=sys.stderr,
    )
    return 2


def _usage() -> str:
    lines = ["usage: raylake <command> [options] [key=value overrides]", "", "jobs (Hydra):"]
    width = max(map(len, [*declared(), *ADMIN]))
    lines += [f"  {name:<{width}}  {job.help}" for name, job in declared().items()]
    lines += ["", "admin:"]
    lines += [f"  {name:<{width}}  {text}" for name, text in ADMIN.items()]
    lines += [
        "",
        "examples:",
        "  raylake ingest dataset=nycflights13 lake.root=/tmp/lake",
        "  raylake ingest -m dataset=nycflights13_weather,nycflights13_planes",
        "  raylake validate table=flights",
        '  raylake drift table=weather reference="month in [1]" current="month in [7]"',
        "  raylake quality report table=weather",
        "  raylake lake history flights lake.root=/tmp/lake",
        "  raylake runs list lake.root=/tmp/lake",
        "  raylake models promote flight-delay 3 lake.root=/tmp/lake",
        "  raylake lineage model:delay_model:champion lake.root=/tmp/lake",
        "",
        "`raylake <job> --help` shows the job's config groups; `raylake <job> --cfg job` its config.",
    ]
    return "\n".join(lines)


def run_job(job: str, args: Sequence[str]) -> int:
    """Run ``job`` under Hydra with command-line ``args`` (also used by jobs/*.py)."""
    import hydra

    from raylake.config.loader import CONF_DIR, CONFIG_NAME, check_overrides
    from raylake.config.schema import register_configs

    args = _quote_selections(_flags_to_overrides(args))
    try:
        check_overrides([a for a in args if _OVERRIDE.match(a)])
    except RaylakeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    register_configs()
    spec = get_job(job)
    failed: list[BaseException] = []

    @hydra.main(config_path=str(CONF_DIR), config_name=CONFIG_NAME, version_base="1.3")
    def _task(cfg: Any) -> Any:
        try:
            _console(cfg, job)
            return spec(cfg)
        except RaylakeError as exc:
            # A user-facing error: its message says what to do; no traceback.
            print(f"error: {exc}", file=sys.stderr)
            failed.append(exc)
            return None
        except KeyboardInterrupt as exc:  # Ctrl-C: one line, no traceback
            print(f"raylake {job}: interrupted", file=sys.stderr)
            failed.append(exc)
            return None

    saved = sys.argv
    sys.argv = [f"raylake {job}", *args, f"job={job}"]
    try:
        _task()
    finally:
        sys.argv = saved
        from raylake.runtime import close_console

        close_console()
    return 1 if failed else 0


def _console(cfg: Any, job: str) -> None:
    """The terminal of a command: Ray's own lines to a log file (shown from
    ``log_level`` up), Ray Data's progress bars on an interactive terminal
    (``progress``); see ``raylake.runtime.configure_console``."""
    from raylake.runtime import configure_console, log_path, wants_progress

    level = cfg.get("log_level")
    configure_console(progress=wants_progress(cfg.get("progress")),
                      level=str(getattr(level, "value", level) or "ERROR"),
                      log_file=log_path(cfg.get("log_dir"), str(cfg.lake.root), job))


# -- admin commands -------------------------------------------------------------


def _split(args: Sequence[str]) -> tuple[list[str], list[str]]:
    overrides = [a for a in args if _OVERRIDE.match(a)]
    return [a for a in args if a not in overrides], overrides


def _open_lake(overrides: Sequence[str]):
    from raylake.config.loader import compose_config, to_config
    from raylake.lake import Lake

    lake = Lake.from_config(to_config(compose_config(overrides, job="admin")).lake)
    # Admin commands read an existing lake: a mistyped root is an error, not "no tables".
    lake.require_root()
    return lake


def _lake(args: Sequence[str]) -> int:
    from raylake.lake import TagStore, diff_versions

    rest, overrides = _split(args)
    p = argparse.ArgumentParser(prog="raylake lake", description=ADMIN["lake"])
    sub = p.add_subparsers(dest="op", required=True)
    ls = sub.add_parser("list", help="tables with version, files and rows")
    ls.add_argument("--all", action="store_true", help="include raylake's system tables")
    h = sub.add_parser("history", help="versions of a table, newest first")
    h.add_argument("table")
    h.add_argument("--limit", type=int)
    r = sub.add_parser("read", help="print rows of a table at a version, tag or timestamp")
    r.add_argument("table")
    r.add_argument("--version", "--as-of", dest="version", help="version, tag or ISO timestamp")
    r.add_argument("--limit", type=int, default=20)
    r.add_argument("--count", action="store_true", help="print only the row count")
    t = sub.add_parser("tag", help="name a version of a table")
    t.add_argument("table")
    t.add_argument("name")
    t.add_argument("--version", type=int, help="version to tag (default: latest)")
    t.add_argument("--force", action="store_true", help="move an existing tag")
    ts = sub.add_parser("tags", help="list tags")
    ts.add_argument("table", nargs="?")
    d = sub.add_parser("diff", help="rows added and removed, schema changes (TABLE V1 V2, or "
                                    "across branches: TABLE@BRANCH[:V] TABLE@BRANCH[:V])")
    d.add_argument("table")
    d.add_argument("v1")
    d.add_argument("v2", nargs="?")
    d.add_argument("--sample", type=int, default=5)
    sub.add_parser("du", help="bytes per table and branch, files shared by branches once")
    sw = sub.add_parser("show", help="a table: version, rows, schema with each column's "
                                     "class, entities and policy, table properties")
    sw.add_argument("table")
    sw.add_argument("--version")
    rs = sub.add_parser("restore", help="make an older version (or tag, timestamp) the latest")
    rs.add_argument("table")
    rs.add_argument("version")
    o = sub.add_parser("optimize", help="compact small files")
    o.add_argument("table")
    v = sub.add_parser("vacuum", help="delete files no retained version needs")
    v.add_argument("table", nargs="?", help="the table (with --orphans: default the whole lake)")
    v.add_argument("--retention-hours", type=int)
    v.add_argument("--dry-run", action="store_true")
    v.add_argument("--force", action="store_true",
                   help="allow a retention under 168 hours (an orphan age under 1 hour)")
    v.add_argument("--orphans", action="store_true",
                   help="delete files no Delta log mentions, folders with no log and "
                        "staging left by failed runs instead")
    v.add_argument("--min-age-hours", type=float, help="orphans: only files older than this "
                                                       "(default 168; less needs --force)")
    dr = sub.add_parser("doctor", help="list orphans left by failed or killed runs (no change)")
    dr.add_argument("table", nargs="?")
    dr.add_argument("--min-age-hours", type=float)
    ns = p.parse_args(rest)
    lake = _open_lake(overrides)

    if ns.op == "list":
        _print_rows(lake.list_tables(include_system=ns.all), empty=f"no tables in {lake.root}")
    elif ns.op == "history":
        rows = [
            {"version": e["version"], "timestamp": e["timestamp"], "operation": e["operation"],
             "run_id": e["run_id"] or "", "rows_added": e["rows_added"]}
            for e in lake.history(ns.table, ns.limit)
        ]
        _print_rows(rows)
    elif ns.op == "read":
        if ns.count:
            print(lake.count(ns.table, ns.version))
        else:
            table = lake.read(ns.table, ns.version)
            print(table.slice(0, ns.limit).to_pandas().to_string())
            print(f"({table.num_rows:,} rows)")
    elif ns.op == "tag":
        version = TagStore(lake).set(ns.table, ns.name, ns.version, force=ns.force)
        print(f"tagged {ns.table}@{version} as {ns.name!r}")
    elif ns.op == "tags":
        _print_rows(TagStore(lake).list(ns.table), empty="no tags")
    elif ns.op == "diff" and ns.v2 is None:  # TABLE@BRANCH[:V] TABLE@BRANCH[:V]
        from raylake.lake.diff import diff_tables

        (l1, t1, v1), (l2, t2, v2) = _branch_ref(lake, ns.table), _branch_ref(lake, ns.v1)
        print(json.dumps(diff_tables(l1, t1, v1, l2, t2, v2, ns.sample).to_dict(), indent=2,
                         default=str))
    elif ns.op == "diff":
        print(json.dumps(diff_versions(lake, ns.table, ns.v1, ns.v2, ns.sample).to_dict(),
                         indent=2, default=str))
    elif ns.op == "show":
        _show_table(lake, ns.table, ns.version)
    elif ns.op == "du":
        from raylake.lake.usage import disk_usage

        usage = disk_usage(lake)
        _print_rows(usage.rows, empty=f"no files in {lake.root}")
        print(f"total: {usage.unique_bytes:,} bytes stored ({usage.apparent_bytes:,} bytes if "
              "every branch were a full copy)")
    elif ns.op == "restore":
        metrics = lake.restore(ns.table, ns.version)
        print(f"restored {ns.table} to {ns.version} as version {lake.version(ns.table)}: {metrics}")
    elif ns.op == "optimize":
        print(json.dumps(lake.optimize(ns.table), indent=2, default=str))
    elif ns.op in ("doctor", "vacuum") and (ns.op == "doctor" or ns.orphans):
        _orphans(lake, ns.table, ns.min_age_hours, dry_run=ns.op == "doctor" or ns.dry_run,
                 force=getattr(ns, "force", False))
    elif ns.op == "vacuum":
        if ns.table is None:
            p.error("vacuum needs a table (or --orphans for the whole lake)")
        files = lake.vacuum(ns.table, ns.retention_hours, dry_run=ns.dry_run, force=ns.force)
        verb = "would delete" if ns.dry_run else "deleted"
        print(f"{verb} {len(files)} files")
        for f in files:
            print(f"  {f}")
    return 0


def _show_table(lake: Any, table: str, version: str | None) -> None:
    """``raylake lake show``: what a person asks of one table first."""
    from raylake.lake.classification import classification

    dtab = lake.table(table, version)
    classes = classification(lake, table).get(table, {})
    print(f"{table} @ version {dtab.version()}: {lake.count(table, dtab.version()):,} rows")
    meta = dtab.metadata()
    if meta.description:
        print(f"  {meta.description}")
    rows = []
    for f in dtab.schema().to_arrow():
        c = classes.get(f.name, {})
        rows.append({"column": f.name, "type": str(f.type), "class": c.get("class", ""),
                     "entities": ", ".join(f"{e} {share:.0%}" for e, share
                                           in sorted((c.get("entities") or {}).items())),
                     "policy": c.get("policy", ""), "source": c.get("source", "")})
    _print_rows(rows)
    for f in dtab.schema().fields:  # what any Delta reader sees (ingest/govern.py)
        mark = (f.metadata or {}).get("raylake.classification")
        if mark:
            print(f"  column metadata {f.name}: raylake.classification = {mark}")
    if not classes:
        print("  (no classification: ingested before governance, or not by `raylake ingest`)")


def _branch_ref(lake: Any, ref: str) -> tuple[Any, str, str | None]:
    """``TABLE@BRANCH[:VERSION]`` (or ``TABLE@VERSION`` on the lake given, or ``TABLE``)
    as (the branch's lake, table, version or None for the latest)."""
    from raylake.lake.branches import branch_names

    table, _, at = ref.partition("@")
    if not at:
        return lake, table, None
    name, _, version = at.partition(":")
    if name == "main" or name in branch_names(lake):
        return lake.on_branch(name), table, version or None
    return lake, table, at  # a version, tag or timestamp


def _orphans(lake: Any, table: str | None, min_age_hours: float | None, *, dry_run: bool,
             force: bool) -> None:
    """List (dry run) or delete the orphans under the lake or one table's folder."""
    from raylake.lake.orphans import (
        DEFAULT_MIN_AGE_HOURS,
        check_min_age,
        find_orphans,
        remove_orphans,
    )

    hours = check_min_age(DEFAULT_MIN_AGE_HOURS if min_age_hours is None else min_age_hours,
                          force=force)
    found = find_orphans(lake, table, min_age_hours=hours)
    where = f"{lake.root}/{table}" if table else lake.root
    if not found:
        print(f"no orphans older than {hours} hours in {where}")
        return
    _print_rows([o.to_dict() for o in found])
    size = sum(o.size for o in found)
    if dry_run:
        print(f"would delete {len(found)} orphans ({size:,} bytes) older than {hours} hours; "
              f"delete them with `raylake lake vacuum --orphans{' ' + table if table else ''}`")
    else:
        remove_orphans(lake, found)
        print(f"deleted {len(found)} orphans ({size:,} bytes) older than {hours} hours")


def _runs(args: Sequence[str]) -> int:
    from raylake.lake import get_run, list_runs

    rest, overrides = _split(args)
    p = argparse.ArgumentParser(prog="raylake runs", description=ADMIN["runs"])
    sub = p.add_subparsers(dest="op", required=True)
    ls = sub.add_parser("list")
    ls.add_argument("--job")
    ls.add_argument("--limit", type=int, default=20)
    sh = sub.add_parser("show", help="a run: inputs, outputs, key metrics (--full: the "
                                     "config and every metric; --json: the record)")
    sh.add_argument("run_id")
    _full_flags(sh)
    ns = p.parse_args(rest)
    lake = _open_lake(overrides)
    if ns.op == "list":
        from raylake.cli.summaries import outputs_text

        rows = [
            {"run_id": r["run_id"], "job": r["job"], "status": r["status"],
             "started_at": r["started_at"], "duration_s": r["duration_s"],
             # Tables, model versions (train, tune), an online store (materialize), reports.
             "outputs": outputs_text(r["outputs"])}
            for r in list_runs(lake, ns.job, ns.limit)
        ]
        _print_rows(rows, empty="no runs")
    else:
        from raylake.cli.summaries import run_summary

        _show(get_run(lake, ns.run_id), run_summary, ns)
    return 0


def _full_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--full", action="store_true",
                       help="the summary, every metric and the whole record (YAML)")
    group.add_argument("--json", action="store_true", help="the whole record as JSON")


def _show(record: dict[str, Any], summarize: Any, ns: argparse.Namespace) -> None:
    """A record as its summary, ``--full`` or ``--json``."""
    from raylake.cli.summaries import full_text

    if ns.json:
        print(json.dumps(record, indent=2, default=str))
    elif ns.full:
        print("\n".join(full_text(record, summarize(record))))
    else:
        print("\n".join(summarize(record)))


def _lineage(args: Sequence[str]) -> int:
    from raylake.config.loader import compose_config, to_config
    from raylake.lake import Lake
    from raylake.lineage import REQUEST_LOG, Lineage, parse_ref, render

    rest, overrides = _split(args)
    p = argparse.ArgumentParser(
        prog="raylake lineage", description=ADMIN["lineage"],
        epilog="e.g. raylake lineage training/flights_delay@2; raylake lineage "
               "model:delay_model:champion --downstream; raylake lineage request:3f2a...")
    p.add_argument("ref", help="TABLE[@VERSION], model:NAME[:VERSION|champion] or request:ID")
    p.add_argument("--downstream", action="store_true", help="what was made from it")
    p.add_argument("--depth", type=int, default=20)
    p.add_argument("--json", action="store_true")
    ns = p.parse_args(rest)
    conf = to_config(compose_config(overrides, job="admin"))
    lake = Lake.from_config(conf.lake)
    graph = Lineage(lake, conf.model_server.request_log_table or REQUEST_LOG)
    node = parse_ref(lake, ns.ref)
    tree = graph.downstream(node, ns.depth) if ns.downstream else graph.upstream(node, ns.depth)
    if ns.json:
        print(json.dumps(tree.to_dict(), indent=2, default=str))
    else:
        print("\n".join(render(tree, downstream=ns.downstream)))
    return 0


def _models(args: Sequence[str]) -> int:
    from raylake.models import ModelRegistry

    rest, overrides = _split(args)
    p = argparse.ArgumentParser(prog="raylake models", description=ADMIN["models"])
    sub = p.add_subparsers(dest="op", required=True)
    ls = sub.add_parser("list", help="versions with stage, flavor, run and metrics")
    ls.add_argument("name", nargs="?")
    sh = sub.add_parser("show", help="one version: stage, training set, key metrics, stage "
                                     "history (--full, --json: the whole record)")
    sh.add_argument("ref", metavar="NAME[:VERSION|champion|latest]")
    _full_flags(sh)
    pr = sub.add_parser("promote", help="make a version the champion (or archive it)")
    pr.add_argument("name")
    pr.add_argument("version")
    # Not argparse choices: a bad stage gets raylake's error with the fix.
    pr.add_argument("--stage", default="champion", help="champion (default) or archived")
    pr.add_argument("--reason", default="", help="recorded in the stage history")
    ns = p.parse_args(rest)
    registry = ModelRegistry(_open_lake(overrides))
    if ns.op == "list":
        from raylake.cli.summaries import metrics_inline

        rows = [
            {"name": v.name, "version": v.version, "stage": v.stage, "flavor": v.flavor,
             "created_at": v.created_at, "run_id": v.run_id or "",
             "metrics": metrics_inline(v.metrics)}
            for v in registry.list(ns.name)
        ]
        _print_rows(rows, empty=f"no models in {registry.lake.root}")
    elif ns.op == "show":
        from raylake.cli.summaries import model_summary

        _show(registry.get(ns.ref).to_dict(), model_summary, ns)
    else:
        before = {v.version: v.stage for v in registry.list(ns.name)}
        mv = registry.promote(ns.name, ns.version, ns.stage, reason=ns.reason)
        changed = [v for v in registry.list(ns.name) if before.get(v.version) != v.stage]
        if not changed:
            print(f"{mv.ref} is already {mv.stage}")
        for v in changed:
            print(f"{v.ref}: {before.get(v.version)} -> {v.stage}")
    return 0


def _print_rows(rows: list[dict[str, Any]], empty: str = "(none)") -> None:
    if not rows:
        print(empty)
        return
    cols = list(rows[0])
    text = [[_fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in text)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip())
    for t in text:
        print("  ".join(v.ljust(w) for v, w in zip(t, widths)).rstrip())


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.2f}"
    if hasattr(value, "isoformat"):
        return value.isoformat(timespec="seconds")
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
