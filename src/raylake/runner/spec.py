"""``@job``: declare a job; :func:`run_spec`: run one.

Every job runs the same way, so no job repeats it:

1. the composed config becomes the typed :class:`RaylakeConfig` (bad values fail here,
   before anything starts);
2. the job's own ``check`` runs (refuse early, with the fix, before Ray starts);
3. the lake is opened; ``prepare`` may replace the config (``train --from-run``);
4. Ray is started or joined (``ray=False`` jobs skip it);
5. a run record is opened with the resolved config, secrets redacted
   (``record=False`` jobs keep none), and marked succeeded or failed when the job
   returns or raises; then its reads of columns classified pii or restricted are
   audited (``runner/audit.py``: one ``_audit`` row per table, never failing the run);
6. the job's ``summary`` line(s) are printed after the record is written, and the
   result carries ``run_id`` and ``status``;
7. an exception that is not a :class:`RaylakeError` is wrapped in :class:`JobError`
   naming the job and its run, so the CLI prints one line instead of a traceback
   (``RAYLAKE_DEBUG=1`` re-raises the original).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from omegaconf import DictConfig, OmegaConf

from raylake.config.loader import to_config
from raylake.config.redact import env_paths, redacted_container
from raylake.config.schema import RaylakeConfig
from raylake.errors import JobError, RaylakeError
from raylake.lake.runs import RunRecorder
from raylake.lake.tables import Lake
from raylake.runner.audit import audit_reads
from raylake.runner.context import JobContext
from raylake.runner.registry import register
from raylake.runtime import ensure_ray

Check = Callable[[RaylakeConfig], None]
Prepare = Callable[[Lake, RaylakeConfig, "DictConfig | None"],
                   "tuple[RaylakeConfig, DictConfig | None]"]


class JobFunction(Protocol):
    """A job as callers see it: ``fn(cfg, echo=print, **options) -> dict``."""

    spec: JobSpec

    def __call__(self, cfg: DictConfig | RaylakeConfig, *, echo: Callable[[str], Any] = print,
                 **options: Any) -> dict[str, Any]:
        """Run the job on ``cfg`` (composed or typed), printing with ``echo``; returns the
        job's result."""
        ...


@dataclass(frozen=True)
class JobSpec:
    """A registered job: its name on the command line and what the runner does for it."""

    name: str
    help: str
    fn: Callable[..., dict[str, Any]]
    ray: bool = True
    record: bool = True
    check: Check | None = None
    prepare: Prepare | None = None

    def __call__(self, cfg: DictConfig | RaylakeConfig, *, echo: Callable[[str], Any] = print,
                 **options: Any) -> dict[str, Any]:
        """Run this job on ``cfg`` (composed or typed) through :func:`run_spec`; returns the
        job's result."""
        return run_spec(self, cfg, echo=echo, **options)


def job(name: str, *, help: str, ray: bool = True, record: bool = True,
        check: Check | None = None, prepare: Prepare | None = None,
        ) -> Callable[[Callable[..., dict[str, Any]]], JobFunction]:
    """Register ``fn(ctx: JobContext, **options) -> dict`` as the job ``name``.

    The decorated function is called as every job is: ``fn(cfg, echo=print, **options)``.
    A returned ``summary`` (a string or a list of lines) is printed once the run
    record is written.
    """

    def decorate(fn: Callable[..., dict[str, Any]]) -> JobFunction:
        """Register ``fn`` as the job and return its entry point; ValueError when another
        module already declared a job of that name."""
        spec = JobSpec(name, help, fn, ray=ray, record=record, check=check, prepare=prepare)
        register(spec)

        @functools.wraps(fn)
        def entry(cfg: DictConfig | RaylakeConfig, *, echo: Callable[[str], Any] = print,
                  **options: Any) -> dict[str, Any]:
            """Run the job on ``cfg`` (composed or typed) through :func:`run_spec`; returns
            the job's result."""
            return run_spec(spec, cfg, echo=echo, **options)

        entry.spec = spec  # type: ignore[attr-defined]
        return entry  # type: ignore[return-value]

    return decorate


def run_spec(spec: JobSpec, cfg: DictConfig | RaylakeConfig, *,
             echo: Callable[[str], Any] = print, **options: Any) -> dict[str, Any]:
    """Run one job on ``cfg`` (composed or typed); see the module docstring for the steps."""
    conf = to_config(cfg)
    raw = cfg if isinstance(cfg, DictConfig) else None
    if spec.check is not None:
        spec.check(conf)
    lake = Lake.from_config(conf.lake)
    if spec.prepare is not None:
        conf, raw = spec.prepare(lake, conf, raw)
    ray_info = ensure_ray(conf.ray) if spec.ray else {}
    ctx = JobContext(name=spec.name, conf=conf, lake=lake, echo=echo, cfg=raw, ray=ray_info)
    if not spec.record:
        result = _call(spec, ctx, options, run_id=None)
    else:
        origin = cfg if isinstance(cfg, DictConfig) else None
        recorder = RunRecorder(lake, spec.name, resolved_config(raw, conf, origin))
        try:
            with recorder as run:
                ctx.run = run
                result = _call(spec, ctx, options, run_id=run.run_id)
        finally:  # a failed run read its inputs too
            audit_reads(lake, recorder.record, conf.governance.purpose)
        result.setdefault("run_id", run.run_id)
        result.setdefault("status", run.status)
    summary = result.pop("summary", None)
    for line in [summary] if isinstance(summary, str) else summary or []:
        echo(line)
    return result


def resolved_config(raw: DictConfig | None, conf: RaylakeConfig,
                    origin: DictConfig | None = None) -> dict[str, Any]:
    """The config a run record keeps: interpolations resolved, Enums as their names,
    credentials and values read from the environment redacted (``config/redact.py``).

    ``origin`` is the config as composed, when ``prepare`` replaced it: a value it read
    from the environment stays redacted though the replacement holds it resolved."""
    node = raw if raw is not None else OmegaConf.structured(conf)
    return redacted_container(node, env_paths(origin))


def _call(spec: JobSpec, ctx: JobContext, options: dict[str, Any],
          run_id: str | None) -> dict[str, Any]:
    try:
        result = spec.fn(ctx, **options)
    except RaylakeError:
        raise
    except Exception as exc:
        if os.environ.get("RAYLAKE_DEBUG"):
            raise
        raise JobError(_failure(spec.name, exc, run_id, ctx.lake.root)) from exc
    return dict(result or {})


def _failure(name: str, exc: BaseException, run_id: str | None, root: str) -> str:
    # Ray wraps a task's exception; the user needs the root cause, not the retry hint.
    cause, seen = exc, {id(exc)}
    while True:
        nxt = getattr(cause, "cause", None) or cause.__cause__
        if not isinstance(nxt, BaseException) or id(nxt) in seen:  # a cycle ends the walk
            break
        cause = nxt
        seen.add(id(nxt))
    text = (str(cause).strip().splitlines() or [""])[0][:500]
    where = (f" The run is recorded as failed: `raylake runs show {run_id} lake.root={root}`."
             if run_id else "")
    return (f"job {name} failed: {type(cause).__name__}: {text}.{where} "
            "Set RAYLAKE_DEBUG=1 to see the traceback.")
