"""Synthetic-data jobs: ``raylake synth fit|sample|augment|report``.

- ``synth fit table=flights synth=tvae``: fit a synthesizer on a table version (TVAE and
  CTGAN on Ray Train, the copula on the driver) and register it as a model version of the
  ``synthesizer`` flavor, the table and version in its lineage.
- ``synth sample model=flights_tvae:1 rows=1000000 [conditions="carrier=UA"]``: Ray tasks
  with distinct seeds sample their share; one table version is written; the run record
  holds the seed and the task split, so the same run gives the same rows.
- ``synth augment``: add synthetic rows of a training set's minority class to its train
  split, up to a target share, as a new training-set table version.
- ``synth report``: fidelity, utility and privacy of a synthetic table against its real
  one, as JSON and a self-contained HTML page.
"""

from __future__ import annotations

import time
from typing import Any

import pyarrow as pa

from raylake.config.schema import RaylakeConfig
from raylake.errors import ConfigError
from raylake.lake.names import validate_table_name
from raylake.runner import JobContext, job
from raylake.synth import data as sdata


def _check_fit(conf: RaylakeConfig) -> None:
    if not conf.table:
        raise ConfigError("synth fit needs the table to learn from: raylake synth fit "
                          "table=flights synth=tvae (synth=copula|tvae|ctgan).")
    validate_table_name(conf.table)


def model_name(conf: RaylakeConfig) -> str:
    """The registered name of a fit: synth.model_name, else ``<table>_<kind>``."""
    s = conf.synth
    return s.model_name or f"{str(conf.table).replace('/', '_')}_{s.kind}"


@job("synth-fit", help="fit a synthesizer (synth=copula|tvae|ctgan) on a table version and "
                       "register it (flavor synthesizer)", check=_check_fit)
def synth_fit(ctx: JobContext, *, kill_at: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read the table version (Ray Data), fit, register; the model's lineage is the table.
    ``kill_at``: fault injection for tests (see :func:`raylake.synth.fit.fit`)."""
    from raylake.models.registry import ModelRegistry
    from raylake.synth import fit as sfit
    from raylake.synth.flavor import NAME as FLAVOR

    conf, lake, run = ctx.conf, ctx.lake, ctx.record
    s = conf.synth
    real = sdata.read_real(lake, str(conf.table), conf.version, list(s.columns), s.max_rows, s.seed,
                           s.report.holdout)
    run.add_input(table=conf.table, version=real.version, rows=real.rows, role="training")
    started = time.perf_counter()
    synth, stats = sfit.fit(lake, conf, real, run.run_id, kill_at=kill_at)
    seconds = time.perf_counter() - started
    name = model_name(conf)
    metrics = {**stats, "fit_s": round(seconds, 3), "rows": real.rows,
               "holdout_rows": len(real.holdout)}
    metrics.pop("warnings", None)
    from raylake.synth.base import memorisation_warning

    warning = memorisation_warning(real.rows, len(real.features))
    if warning:
        metrics["warning"] = warning
        ctx.echo(f"warning: {warning}")
    mv = ModelRegistry(lake).register(
        name, synth, flavor=FLAVOR, features=real.features,
        training={"table": conf.table, "version": real.version,
                  "rows": real.rows, "sampled_from": real.table_rows,
                  "holdout_rows": len(real.holdout),
                  "arrow_schema": sdata.schema_text(real.schema) if real.schema else None},
        config={"synth": sdata.plain(s)}, metrics=metrics, run_id=run.run_id,
        description=f"{s.kind} synthesizer of {conf.table}@{real.version}")
    run.metrics.update(metrics)
    run.metrics["model"] = mv.ref
    lines = [f"synth fit {s.kind} on {conf.table}@{real.version}: {real.rows:,} rows x "
             f"{len(real.features)} columns, {seconds:.1f} s"
             + (f", {stats.get('epochs')} epochs" if stats.get("epochs") else ""),
             f"registered {mv.ref} (flavor {FLAVOR}); sample it with `raylake synth sample "
             f"model={mv.ref} rows=1000`"]
    if warning:
        lines.append(f"warning: {warning}")
    return {"model": mv.ref, "version": mv.version, "metrics": metrics, "summary": lines}


def _check_sample(conf: RaylakeConfig) -> None:
    if not conf.model:
        raise ConfigError("synth sample needs the synthesizer: raylake synth sample "
                          "model=flights_tvae:1 rows=1000 (see `raylake models list`).")


@job("synth-sample", help="sample rows from a registered synthesizer (model=NAME[:V] rows=N "
                          "conditions=\"col=value\") into a lake table", check=_check_sample)
def synth_sample(ctx: JobContext) -> dict[str, Any]:
    """Ray tasks with seeds derived from synth.seed sample their share of the rows; one
    table version holds them all."""
    from raylake.synth import sample as ssample

    conf, lake, run = ctx.conf, ctx.lake, ctx.record
    s = conf.synth
    loaded = ssample.load(lake, str(conf.model))
    conditions = ssample.parse_conditions(s.conditions, loaded.version)
    out = validate_table_name(s.output_table or f"synthetic/{loaded.version.name}")
    plan = ssample.plan(s.rows, s.rows_per_task, s.seed)
    started = time.perf_counter()
    result = ssample.sample_to_table(lake, loaded, plan, conditions, out, run_id=run.run_id)
    seconds = time.perf_counter() - started
    run.add_input(model=loaded.version.ref, role="synthesizer",
                  table=loaded.version.training["table"],
                  version=loaded.version.training["version"])
    run.add_output(table=out, version=result.version, rows=result.rows,
                   seed=s.seed, tasks=len(plan), conditions=conditions or None,
                   model=loaded.version.ref, sample_key=result.key)
    run.metrics.update({"rows": result.rows, "seconds": round(seconds, 3), "seed": s.seed,
                        "tasks": [list(t) for t in plan], "rows_per_s": round(
                            result.rows / max(seconds, 1e-9)), "written": result.written})
    cond = f" where {', '.join(f'{k}={v!r}' for k, v in conditions.items())}" if conditions else ""
    verb = "wrote" if result.written else "already held (same model, seed, rows: nothing added)"
    return {"table": out, "version": result.version, "rows": result.rows,
            "summary": [f"synth sample {loaded.version.ref}: {result.rows:,} rows{cond} in "
                        f"{len(plan)} tasks (seed {s.seed}), {seconds:.1f} s; {verb} "
                        f"{out}@{result.version}"]}


@job("synth-augment", help="add synthetic minority-class rows to a training set's train "
                           "split, up to synth.augment.target_share; a new table version")
def synth_augment(ctx: JobContext) -> dict[str, Any]:
    """Fit the configured synthesizer on the train split's minority rows and add samples."""
    from raylake.synth import augment as saug

    result = saug.augment(ctx.lake, ctx.conf, ctx.record)
    return {**result, "summary": saug.summary(result)}


@job("synth-report", help="fidelity, utility and privacy of synthetic rows against the real "
                          "table (JSON and HTML)")
def synth_report(ctx: JobContext) -> dict[str, Any]:
    """``raylake synth report model=NAME:V`` (its training table against its latest sample)
    or ``table=REAL synth.report.synthetic_table=SYNTH``."""
    from raylake.synth import report_job

    return report_job.run(ctx)


def as_arrow(frame: Any) -> pa.Table:
    """A pandas frame as Arrow without its index."""
    return pa.Table.from_pandas(frame, preserve_index=False)
