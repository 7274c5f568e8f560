"""Run a pipeline's stale stages in dependency order; watch for new data; ``repro``.

Each stage runs its job in this process, exactly as ``raylake <job>`` and ``raylake
chain`` do: the config composed from the pipeline's overrides, the command line's and the
stage's own, then the job's function called (``get_job(name)(cfg)``), so every run keeps
its record in ``_runs``. An ingest stage with a source folder runs its job once per new
file (a datum): a file is read once, and old files are never read again. A job that fails
is tried again with backoff (``retry``), each failed try recorded in ``_pipelines``; a
stage that fails on every try blocks the stages that depend on it, not the others.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from raylake.config.loader import check_overrides, compose_config, to_config
from raylake.errors import ConfigError, RaylakeError, did_you_mean
from raylake.lake.runs import code_version, list_runs
from raylake.lake.tables import Lake
from raylake.pipelines.config import PipelineConfig, PipelineError, StageConfig
from raylake.pipelines.graph import dependencies, order, upstream
from raylake.pipelines.stale import Staleness, check
from raylake.pipelines.state import RunIndex, StageRecord, append, records

Echo = Callable[[str], Any]
# (stage, overrides, echo) -> the job's result (with run_id); raises when the job fails.
CallJob = Callable[[StageConfig, list[str], Echo], dict[str, Any]]


def call_job(stage: StageConfig, overrides: list[str], echo: Echo) -> dict[str, Any]:
    """Run ``stage``'s job in this process on the config ``overrides`` compose."""
    from raylake.runner.registry import get_job

    spec = get_job(stage.job)
    return spec(compose_config(overrides, job=stage.job), echo=echo)


@dataclass
class StageResult:
    """What one stage did in one pass: ``succeeded``, ``failed``, ``blocked`` (an upstream
    stage failed), ``waiting`` (watch: it failed on this same input already) or
    ``up to date``."""

    stage: str
    status: str
    reasons: list[str] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    datums: list[str] = field(default_factory=list)
    attempts: int = 0
    error: str | None = None
    seconds: float = 0.0
    fingerprint: str = ""

    @property
    def ran(self) -> bool:
        """True when the stage's job was called (whatever came of it)."""
        return self.status in ("succeeded", "failed")


@dataclass
class PipelineResult:
    """One pass over a pipeline: each stage's result, in run order."""

    pipeline: str
    pipeline_run: str
    stages: dict[str, StageResult] = field(default_factory=dict)

    def having(self, *status: str) -> list[str]:
        """The stages whose status is one of ``status``."""
        return [s for s, r in self.stages.items() if r.status in status]

    @property
    def ran(self) -> list[str]:
        """The stages whose jobs were called."""
        return [s for s, r in self.stages.items() if r.ran]

    @property
    def ok(self) -> bool:
        """True when no stage failed or was blocked."""
        return not self.having("failed", "blocked", "waiting")

    def summary(self) -> str:
        """One line: what ran, what failed, what was blocked, what was up to date."""
        if not self.ran and self.ok:
            return (f"pipeline {self.pipeline}: nothing to do; all {len(self.stages)} stages "
                    "are up to date")
        parts = [f"{len(self.having('succeeded'))} succeeded"]
        for status in ("failed", "blocked", "waiting"):
            if self.having(status):
                parts.append(f"{len(self.having(status))} {status} "
                             f"({', '.join(self.having(status))})")
        return (f"pipeline {self.pipeline}: ran {len(self.ran)} stage(s): {', '.join(parts)}; "
                f"{len(self.having('up to date'))} up to date (run {self.pipeline_run})")


def merge_overrides(*groups: Iterable[str]) -> list[str]:
    """Overrides in order, a later one replacing an earlier one of the same key."""
    out: dict[str, str] = {}
    for group in groups:
        for ov in group:
            key = ov.split("=", 1)[0].lstrip("+~")
            out.pop(key, None)
            out[key] = ov
    return list(out.values())


def quoted(value: str) -> str:
    """``value`` quoted for a Hydra override (any path: commas, brackets, spaces)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class PipelineRunner:
    """Runs one pipeline on the lake the overrides name (``lake.root=...``, a branch).

    ``overrides`` are the command line's: every stage's job gets them, after the
    pipeline's own and before the stage's. ``call`` runs a stage's job (tests replace it);
    ``sleep`` waits between tries.
    """

    def __init__(self, pipe: PipelineConfig, overrides: Sequence[str] = (), *,
                 echo: Echo = print, call: CallJob = call_job,
                 sleep: Callable[[float], Any] = time.sleep, lake: Lake | None = None) -> None:
        self.pipe = pipe
        self.overrides = list(overrides)
        self.echo = echo
        self.call = call
        self.sleep = sleep
        self.deps = dependencies(pipe)
        self.order = order(pipe)
        self._hashes: dict[tuple[str, ...], str] = {}
        from raylake.runner.registry import declared

        jobs = declared()
        for stage in pipe.stages.values():  # a misspelled job or params key: refused here
            if stage.job not in jobs:
                raise PipelineError(f"Pipeline {pipe.name}: stages.{stage.name}.job={stage.job!r} "
                                    f"is not a job.{did_you_mean(stage.job, jobs)} Jobs: "
                                    f"{', '.join(jobs)}.")
            try:
                check_overrides([f"{key}=0" for key in stage.params])
            except ConfigError as exc:
                raise PipelineError(f"Pipeline {pipe.name}: stages.{stage.name}.params: "
                                    f"{exc}") from exc
        if lake is None:
            conf = to_config(compose_config(merge_overrides(pipe.overrides, self.overrides),
                                            job="admin"))
            lake = Lake.from_config(conf.lake)
        self.lake = lake

    # -- config ------------------------------------------------------------------------

    def stage_overrides(self, stage: StageConfig, datum: str | None = None) -> list[str]:
        """The overrides of ``stage``'s job (for one source file when ``datum``)."""
        extra = []
        if datum is not None and stage.source is not None:
            key = stage.source.table
            extra = [f"dataset.tables.{key}.source.path={quoted(datum)}", f"ingest.tables=[{key}]"]
        return merge_overrides(self.pipe.overrides, self.overrides, stage.overrides, extra)

    def config_hash(self, stage: StageConfig) -> str:
        """The hash of the stage's resolved config as its job would get it now (composed
        here): see :meth:`hash_of`."""
        from raylake.runner.spec import resolved_config

        key = (stage.name, stage.job, *self.stage_overrides(stage))
        if key not in self._hashes:  # composing takes a second or more: once per runner
            cfg = compose_config(self.stage_overrides(stage), job=stage.job)
            self._hashes[key] = self.hash_of(stage, resolved_config(cfg, to_config(cfg)))
        return self._hashes[key]

    def hash_of(self, stage: StageConfig, resolved: dict[str, Any]) -> str:
        """The hash of a resolved, redacted config (as run records keep it) for ``stage``:
        its ``params`` keys (without them the whole config but ``lake`` and ``ray``), with
        its job and own overrides. A source stage's file (the datum) is left out."""
        resolved = copy.deepcopy(resolved)
        if stage.source is not None:
            table = (resolved.get("dataset") or {}).get("tables", {}).get(stage.source.table)
            if isinstance(table, dict) and isinstance(table.get("source"), dict):
                table["source"]["path"] = None
            if isinstance(resolved.get("ingest"), dict):
                resolved["ingest"]["tables"] = None
        if stage.params:
            picked = {k: _pick(resolved, k, stage) for k in stage.params}
        else:
            picked = {k: v for k, v in resolved.items() if k not in ("lake", "ray", "job")}
        text = json.dumps({"job": stage.job, "overrides": stage.overrides, "params": picked},
                          sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    # -- one pass ----------------------------------------------------------------------

    def run(self, targets: Sequence[str] | None = None, *, trigger: str = "run",
            repro: bool = False, skip: Callable[[Staleness], bool] | None = None,
            quiet: bool = False) -> PipelineResult:
        """Run every stale stage (of ``targets`` and their upstream; all when None) in
        dependency order. ``repro``: a changed config or code version makes a stage stale
        too. ``skip``: stale stages not to run now (``waiting``). ``quiet``: print nothing
        when nothing is stale."""
        names = upstream(self.pipe, targets) if targets else list(self.order)
        result = PipelineResult(self.pipe.name, f"{self.pipe.name}-{_stamp()}-{uuid.uuid4().hex[:6]}")
        code = code_version() if repro else None
        rows = records(self.lake, self.pipe.name)
        runs = RunIndex(self.lake)
        bad: set[str] = set()
        said = False

        def say(line: str) -> None:
            nonlocal said
            if not said and quiet:
                self.echo(f"pipeline {self.pipe.name} on {self.lake.root} ({trigger})")
            said = True
            self.echo(line)

        if not quiet:
            say(f"pipeline {self.pipe.name} on {self.lake.root}: {len(names)} stage(s) "
                f"({trigger})")
        for name in names:
            stage = self.pipe.stages[name]
            blockers = [d for d in self.deps[name] if d in bad]
            if blockers:
                res = StageResult(name, "blocked", error=f"blocked by failed stage(s) "
                                                         f"{', '.join(blockers)}")
                self._record(result, stage, res, trigger, "", code)
                say(f"  {name}: blocked ({', '.join(blockers)} failed)")
                result.stages[name] = res
                bad.add(name)
                continue
            digest = self.config_hash(stage) if repro else None
            st = check(self.lake, self.pipe.name, stage, rows, runs, config_hash=digest,
                       code=code)
            if not st.stale:
                result.stages[name] = StageResult(name, "up to date")
                if not quiet:
                    say(f"  {name}: up to date")
                continue
            if skip is not None and skip(st):
                result.stages[name] = StageResult(name, "waiting", st.reasons,
                                                  fingerprint=st.fingerprint(),
                                                  error="failed on this input already")
                bad.add(name)
                continue
            say(f"  {name}: stale ({'; '.join(st.reasons)}): running {stage.job}")
            res = self._run_stage(stage, st, result.pipeline_run, trigger, digest, code)
            result.stages[name] = res
            if res.status == "failed":
                bad.add(name)
                say(f"  {name}: FAILED after {res.attempts} tries: {res.error}")
            else:
                runs_text = f"{len(res.run_ids)} run(s)" if res.run_ids else "no runs"
                say(f"  {name}: succeeded in {res.seconds:.1f}s ({runs_text}"
                    + (f", {len(res.datums)} file(s)" if stage.source else "") + ")")
            rows = records(self.lake, self.pipe.name)
            runs = RunIndex(self.lake)
        if said or not quiet:
            self.echo(result.summary())
        return result

    def _run_stage(self, stage: StageConfig, st: Staleness, pipeline_run: str, trigger: str,
                   digest: str | None, code: str | None) -> StageResult:
        """Run ``stage`` (each new file of a source stage), trying each job again as its
        retry settings say; one ``_pipelines`` record per failed try and one for the stage.
        ``digest`` and ``code`` (known in ``repro``) are recorded; otherwise the config is
        hashed as composed (once per runner) and the code version read from the first run's
        record."""
        retry = self.pipe.retry_of(stage)
        started = time.perf_counter()
        res = StageResult(stage.name, "succeeded", list(st.reasons),
                          fingerprint=st.fingerprint())
        datums: list[str | None] = list(st.new_files) if stage.source is not None else [None]
        if stage.source is not None and not datums:
            self.echo(f"    no new files in {stage.source.path}: nothing to ingest")
        for datum in datums:
            overrides = self.stage_overrides(stage, datum)
            for attempt in range(1, retry.attempts + 1):
                res.attempts += 1
                t0 = dt.datetime.now(dt.timezone.utc)
                try:
                    out = self.call(stage, overrides, lambda line: self.echo(f"    {line}"))
                except Exception as exc:  # a job's failure: recorded, tried again
                    error = str(exc).strip() or type(exc).__name__
                    failed_run = self._failed_run(stage.job, t0)
                    last = attempt == retry.attempts or isinstance(exc, ConfigError)
                    append(self.lake, StageRecord(
                        pipeline_run, self.pipe.name, stage.name, stage.job, "attempt",
                        "failed", trigger, attempt, datum,
                        [failed_run] if failed_run else [], list(st.reasons),
                        dict(st.versions), [], digest or "", code or "", error, t0))
                    if last:
                        res.status = "failed"
                        res.error = (f"stage {stage.name} (job {stage.job}"
                                     + (f", file {datum}" if datum else "")
                                     + f") failed on try {attempt} of {retry.attempts}: {error}")
                        break
                    wait = retry.wait(attempt)
                    self.echo(f"    try {attempt}/{retry.attempts} failed: {error}; trying again "
                              f"in {wait:.1f}s")
                    self.sleep(wait)
                    continue
                if out.get("run_id"):
                    res.run_ids.append(str(out["run_id"]))
                if datum is not None:
                    res.datums.append(datum)
                break
        res.seconds = time.perf_counter() - started
        if res.status == "succeeded" and (digest is None or code is None):
            digest, code = self._identity(stage, res.run_ids, digest, code)
        record = StageRecord(pipeline_run, self.pipe.name, stage.name, stage.job, "stage",
                             res.status, trigger, res.attempts, None, res.run_ids,
                             res.reasons, dict(st.versions), res.datums, digest or "",
                             code or "", res.error)
        record.started_at = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=res.seconds)
        append(self.lake, record)
        return res

    def _identity(self, stage: StageConfig, run_ids: list[str], digest: str | None,
                  code: str | None) -> tuple[str, str]:
        """The config hash of the stage as composed (a job may add to the config it records:
        ``train`` pins the table version it read) and the code version its first run
        recorded."""
        first = RunIndex(self.lake).by_id.get(run_ids[0]) if run_ids and code is None else None
        code = code or str((first or {}).get("code_version") or "") or code_version()
        return digest or self.config_hash(stage), code

    def _record(self, result: PipelineResult, stage: StageConfig, res: StageResult,
                trigger: str, digest: str, code: str | None) -> None:
        append(self.lake, StageRecord(result.pipeline_run, self.pipe.name, stage.name,
                                      stage.job, "stage", res.status, trigger, 0, None, [],
                                      res.reasons, {}, [], digest, code or "", res.error))

    def _failed_run(self, job: str, since: dt.datetime) -> str | None:
        """The run record the failed try left (the newest run of ``job`` since ``since``)."""
        try:
            found = [r for r in list_runs(self.lake, job)
                     if r["started_at"] >= since - dt.timedelta(seconds=1)]
        except RaylakeError:
            return None
        return found[0]["run_id"] if found else None

    # -- what would run ------------------------------------------------------------------

    def status(self, targets: Sequence[str] | None = None, *,
               repro: bool = False) -> list[tuple[str, Staleness, list[str]]]:
        """Each stage (of ``targets`` and their upstream) with why it is stale now and the
        stale stages it waits on (which may make it stale when they run). Runs nothing."""
        names = upstream(self.pipe, targets) if targets else list(self.order)
        rows = records(self.lake, self.pipe.name)
        runs = RunIndex(self.lake)
        code = code_version() if repro else None
        out, stale = [], set()
        for name in names:
            stage = self.pipe.stages[name]
            st = check(self.lake, self.pipe.name, stage, rows, runs,
                       config_hash=self.config_hash(stage) if repro else None, code=code)
            waits = [d for d in self.deps[name] if d in stale]
            if st.stale or waits:
                stale.add(name)
            out.append((name, st, waits))
        return out

    # -- watch ---------------------------------------------------------------------------

    def watch(self, targets: Sequence[str] | None = None, *, interval_s: float | None = None,
              max_iterations: int | None = None, duration_s: float | None = None,
              stop: threading.Event | None = None,
              on_pass: Callable[[PipelineResult], Any] | None = None) -> list[PipelineResult]:
        """Poll table versions and source folders every ``interval_s`` seconds and run what
        is stale, until ``max_iterations`` polls, ``duration_s`` seconds or ``stop`` is set.
        A stage that failed is not tried again until its input changes. Returns the passes
        that ran something."""
        interval = interval_s if interval_s is not None else self.pipe.watch.interval_s
        if interval <= 0:
            raise PipelineError(f"The watch interval must be > 0 seconds, not {interval}.")
        stop = stop or threading.Event()
        ends = time.monotonic() + duration_s if duration_s is not None else None
        failed_on: dict[str, str] = {}
        passes: list[PipelineResult] = []
        self.echo(f"watching pipeline {self.pipe.name} on {self.lake.root} every {interval:g}s"
                  + (f" for {duration_s:g}s" if duration_s is not None else "")
                  + (f", {max_iterations} poll(s)" if max_iterations is not None else ""))
        polls = 0
        last_error = ""
        while not stop.is_set():
            polls += 1
            try:
                result = self.run(targets, trigger="watch", quiet=True,
                                  skip=lambda st: failed_on.get(st.stage) == st.fingerprint())
            except (RaylakeError, OSError) as exc:
                # A folder not there yet, storage out of reach: say it (once), poll again.
                if str(exc) != last_error:
                    self.echo(f"poll {polls} failed: {exc}; polling again every {interval:g}s")
                last_error = str(exc)
                result = PipelineResult(self.pipe.name, "")
            else:
                last_error = ""
            for name, res in result.stages.items():
                if res.status == "failed":
                    failed_on[name] = res.fingerprint
                elif res.status == "succeeded":
                    failed_on.pop(name, None)
            if result.ran:
                passes.append(result)
            if on_pass is not None:
                on_pass(result)
            if max_iterations is not None and polls >= max_iterations:
                break
            if ends is not None and time.monotonic() + interval > ends:
                break
            stop.wait(interval)
        self.echo(f"watch of pipeline {self.pipe.name} stopped after {polls} poll(s); "
                  f"{len(passes)} ran stages")
        return passes


def _pick(resolved: dict[str, Any], key: str, stage: StageConfig) -> Any:
    node: Any = resolved
    seen: list[str] = []
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            keys = list(node) if isinstance(node, dict) else []
            raise PipelineError(
                f"stages.{stage.name}.params names {key!r}, but {'.'.join(seen) or 'the config'} "
                f"has no key {part!r}.{did_you_mean(part, keys)}")
        node = node[part]
        seen.append(part)
    return node


def _stamp() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")


def find_stage(pipes: Iterable[PipelineConfig], stage: str) -> PipelineConfig:
    """The one pipeline among ``pipes`` with a stage called ``stage``."""
    pipes = list(pipes)
    found = [p for p in pipes if stage in p.stages]
    if not found:
        names = [s for p in pipes for s in p.stages]
        raise PipelineError(f"No pipeline has a stage {stage!r}.{did_you_mean(stage, names)} "
                            f"Stages: {', '.join(names) or '(none)'}.")
    if len(found) > 1:
        raise PipelineError(f"Stage {stage!r} is in pipelines {', '.join(p.name for p in found)}: "
                            "name one with --pipeline.")
    return found[0]


__all__ = ["CallJob", "PipelineResult", "PipelineRunner", "StageResult", "call_job",
           "find_stage", "merge_overrides"]
