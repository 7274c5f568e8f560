"""``raylake pipelines ...`` and ``raylake repro``: data-driven pipelines (docs/pipelines.md).

``key=value`` arguments are config overrides of every stage's job (``lake.root=...``),
except ``pipeline.<key>=value``, which changes the pipeline file's values
(``pipeline.stages.ingest_flights.source.path=/data/flights``), and ``name=<pipeline>``.
``raylake exp ...`` is handed to :mod:`raylake.cli.experiments`.
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Sequence

from raylake.errors import ConfigError

_PIPELINE_PREFIX = "pipeline."


def pipelines_command(command: str, args: Sequence[str]) -> int:
    """Run ``raylake pipelines ...`` (command "pipelines"), ``raylake repro ...`` ("repro")
    or ``raylake exp ...`` ("exp"); the exit status (1 when a stage failed or was blocked)."""
    if command == "exp":
        from raylake.cli.experiments import exp_command

        return int(exp_command(list(args)))
    if command == "repro":
        return _repro(args)
    if command == "pipelines":
        return _pipelines(args)
    raise ConfigError(f"Unknown pipelines command {command!r}: pipelines, repro or exp.")


def _split(args: Sequence[str]) -> tuple[list[str], list[str], list[str], str | None]:
    """(arguments, job overrides, pipeline overrides, name=...)."""
    from raylake.cli import _OVERRIDE

    rest, job, pipe = [], [], []
    name = None
    for arg in args:
        if not _OVERRIDE.match(arg):
            rest.append(arg)
        elif arg.startswith("name="):
            name = arg.split("=", 1)[1]
        elif arg.startswith(_PIPELINE_PREFIX):
            pipe.append(arg[len(_PIPELINE_PREFIX):])
        else:
            job.append(arg)
    return rest, job, pipe, name


def _pick_name(name: str | None) -> str:
    from raylake.pipelines.config import PIPELINES_DIR, PipelineError, pipeline_names

    if name:
        return name
    names = pipeline_names()
    if len(names) == 1:
        return names[0]
    raise PipelineError(f"Name a pipeline: {', '.join(names) or '(none in ' + str(PIPELINES_DIR) + ')'} "
                        "(`raylake pipelines run NAME` or name=NAME), or a YAML file.")


def _pipelines(args: Sequence[str]) -> int:
    from raylake.pipelines.config import load_pipeline, pipeline_names
    from raylake.pipelines.graph import dependencies, order
    from raylake.pipelines.runner import PipelineRunner

    rest, overrides, pipe_overrides, name = _split(args)
    p = argparse.ArgumentParser(
        prog="raylake pipelines",
        description="data-driven pipelines (conf/pipelines/): run the stale stages only",
        epilog="e.g. raylake pipelines run flights lake.root=/tmp/lake "
               "pipeline.stages.ingest_flights.source.path=/data/flights")
    sub = p.add_subparsers(dest="op", required=True)
    sub.add_parser("list", help="the pipelines in conf/pipelines/")
    for op, text in (("show", "stages in run order: job, inputs, outputs"),
                     ("status", "which stages are stale and why (runs nothing)"),
                     ("run", "run the stale stages in dependency order"),
                     ("watch", "keep polling for new data and run what is stale"),
                     ("history", "what the pipeline ran: stages, tries, runs, errors")):
        sp = sub.add_parser(op, help=text)
        sp.add_argument("pipeline", nargs="?", help="a name in conf/pipelines/ or a YAML file")
        if op == "history":
            sp.add_argument("--limit", type=int, default=30)
        elif op != "show":
            sp.add_argument("--stage", action="append", default=[],
                            help="only this stage and its upstream (repeatable)")
        if op == "watch":
            sp.add_argument("--interval", type=float, help="seconds between polls "
                                                           "(default: the pipeline's watch.interval_s)")
            sp.add_argument("--max-iterations", type=int, help="stop after this many polls")
            sp.add_argument("--duration", type=float, help="stop after this many seconds")
            sp.add_argument("--once", action="store_true", help="poll once (= --max-iterations 1)")
    ns = p.parse_args(rest)
    if ns.op == "list":
        for n in pipeline_names():
            pipe = load_pipeline(n)
            print(f"{n}: {len(pipe.stages)} stages ({', '.join(order(pipe))})"
                  + (f" - {pipe.description}" if pipe.description else ""))
        return 0
    pipe = load_pipeline(_pick_name(ns.pipeline or name), pipe_overrides)
    if ns.op == "show":
        deps = dependencies(pipe)
        for s in order(pipe):
            st = pipe.stages[s]
            reads = ", ".join(st.input_tables) or (f"files in {st.source.path}" if st.source
                                                   else "-")
            print(f"{s}: {st.job}" + (f" {' '.join(st.overrides)}" if st.overrides else ""))
            print(f"    reads {reads}; writes {', '.join(st.outputs) or '-'}; after "
                  f"{', '.join(deps[s]) or '-'}")
        return 0
    runner = PipelineRunner(pipe, overrides)
    if ns.op == "history":
        return _print_history(runner, ns.limit)
    if ns.op == "status":
        return _print_status(runner, ns.stage, repro=False)
    if ns.op == "run":
        return 0 if runner.run(ns.stage or None).ok else 1
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        # `ray job stop` sends SIGTERM: finish the stage under way, then stop.
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        passes = runner.watch(ns.stage or None, interval_s=ns.interval,
                              max_iterations=1 if ns.once else ns.max_iterations,
                              duration_s=ns.duration, stop=stop)
    except KeyboardInterrupt:
        print(f"watch of pipeline {pipe.name} interrupted")
        return 130
    return 0 if all(r.ok for r in passes) else 1


def _print_history(runner, limit: int) -> int:
    from raylake.cli import _print_rows
    from raylake.pipelines.state import records

    rows = [{"ended_at": r["ended_at"], "stage": r["stage"], "kind": r["kind"],
             "status": r["status"], "trigger": r["trigger"], "try": r["attempt"],
             "runs": ",".join(r["run_ids"] or []),
             "note": (r["error"] or "; ".join(r["reasons"] or []))[:100]}
            for r in records(runner.lake, runner.pipe.name)[::-1][:limit]]
    _print_rows(rows, empty=f"pipeline {runner.pipe.name} has not run on {runner.lake.root}")
    return 0


def _print_status(runner, stages: list[str], *, repro: bool) -> int:
    rows = runner.status(stages or None, repro=repro)
    for name, st, waits in rows:
        if st.stale:
            print(f"{name}: stale: {'; '.join(st.reasons)}")
        elif waits:
            print(f"{name}: waits on {', '.join(waits)}")
        else:
            print(f"{name}: up to date")
    todo = sum(1 for _, st, waits in rows if st.stale or waits)
    print(f"{todo} of {len(rows)} stages would run" if todo else
          f"nothing to do: all {len(rows)} stages are up to date")
    return 0


def _repro(args: Sequence[str]) -> int:
    from raylake.pipelines.config import load_pipeline, pipeline_names
    from raylake.pipelines.runner import PipelineRunner, find_stage

    rest, overrides, pipe_overrides, name = _split(args)
    p = argparse.ArgumentParser(
        prog="raylake repro",
        description="re-run stages (and their upstream) whose inputs, config (params) or code "
                    "version changed since their last successful run; nothing when nothing "
                    "changed",
        epilog="e.g. raylake repro train lake.root=/tmp/lake train.xgboost.num_boost_round=50")
    p.add_argument("stage", nargs="*", help="stages to reproduce (default: all)")
    p.add_argument("--pipeline", help="the pipeline (default: the one holding the stage)")
    p.add_argument("--dry-run", action="store_true", help="say what would run; run nothing")
    ns = p.parse_args(rest)
    pipeline = ns.pipeline or name
    if not pipeline and ns.stage:
        pipeline = find_stage([load_pipeline(n) for n in pipeline_names()], ns.stage[0]).name
    pipe = load_pipeline(_pick_name(pipeline), pipe_overrides)
    runner = PipelineRunner(pipe, overrides)
    if ns.dry_run:
        return _print_status(runner, ns.stage, repro=True)
    return 0 if runner.run(ns.stage or None, trigger="repro", repro=True).ok else 1
