"""``raylake train`` and ``raylake tune``.

train: a training set at a pinned version -> Ray Train -> metrics -> registry. The run
record names the training-set table and version (and, through its own run record, the
feature tables behind it), the resolved config, the split bounds, every metric and the
registered model version, so ``raylake train --from-run RUN_ID`` repeats a run exactly.

tune: a Ray Tune sweep over a trainer (see :mod:`raylake.train.tune`) -> trials table ->
the best trial's model evaluated and registered.
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from typing import Any

import pyarrow as pa
from omegaconf import DictConfig

from raylake.config.schema import RaylakeConfig
from raylake.errors import ConfigError, TuneError
from raylake.lake.commit import write_table
from raylake.lake.names import validate_table_name
from raylake.lake.runs import RunRecord
from raylake.lake.tables import Lake
from raylake.runner import JobContext, job
from raylake.train import tune as sweeps
from raylake.train.data import Splits, load_splits
from raylake.train.resources import scaling_config
from raylake.train.steps import (
    config_of_run,
    evaluate_model,
    register_model,
    reported,
    run_config,
    trainer_module,
)


def _from_run(lake: Lake, conf: RaylakeConfig,
              cfg: DictConfig | None) -> tuple[RaylakeConfig, DictConfig | None]:
    """``--from-run RUN_ID``: the recorded run's config, its training-set version pinned."""
    if not conf.train.from_run:
        return conf, cfg
    return config_of_run(lake, conf.train.from_run, conf)


@job("train", help="train on Ray Train (train=xgboost|torch), evaluate, register "
                   "(`--from-run RUN_ID`)", prepare=_from_run)
def train(ctx: JobContext, *, kill_at: dict | None = None) -> dict[str, Any]:
    """Fit the configured trainer on the training set, score valid and test, register."""
    conf, lake, run = ctx.conf, ctx.lake, ctx.record
    tcfg = conf.train
    module = trainer_module(tcfg.trainer)
    clock = time.perf_counter()
    splits = _read_splits(lake, tcfg, run)
    timings = {"plan_s": time.perf_counter() - clock}
    model, result = module.fit(splits, tcfg, run_config(lake, tcfg, run.run_id),
                               scaling_config(tcfg.scaling), kill_at=kill_at)
    timings["fit_s"] = time.perf_counter() - clock - timings["plan_s"]
    m = {**evaluate_model(module, model, splits, tcfg), "reported": reported(result)}
    timings["score_s"] = time.perf_counter() - clock - timings["plan_s"] - timings["fit_s"]
    m["timings"] = {k: round(v, 2) for k, v in timings.items()}
    if tcfg.from_run:  # set by _from_run: the run this one repeats
        m["from_run"] = tcfg.from_run
    run.metrics.update(m)
    registered = None
    if tcfg.register:
        registered = register_model(lake, tcfg, module, model, splits, m, run.config, run.run_id)
        run.add_output(model=tcfg.model_name, version=registered.version, stage=registered.stage)
    t = m["test"]
    return {"metrics": m, "model": model,
            "version": registered.version if registered else None,
            "summary": f"train {tcfg.trainer}: {splits.table}@{splits.version}, test AUC "
                       f"{t['auc']:.4f}, log loss {t['log_loss']:.4f}, cost/{tcfg.cost.per} "
                       f"{t[f'cost_per_{tcfg.cost.per}']:.0f} (do nothing: "
                       f"{t[f'cost_per_{tcfg.cost.per}_do_nothing']:.0f})"
                       + (f"; registered {tcfg.model_name} v{registered.version} "
                          f"({registered.stage})" if registered else "")
                       + f"; run {run.run_id}"}


def _read_splits(lake: Lake, tcfg: Any, run: RunRecord) -> Splits:
    """Plan the splits and pin the version read in the run record, so the record (and
    ``--from-run``) name it even if the config said "latest"."""
    splits = load_splits(lake, tcfg)
    run.config.setdefault("train", {})["table_version"] = str(splits.version)
    run.add_input(table=splits.table, version=splits.version, role="training-set",
                  run_id=splits.source.get("run_id"))
    for i in splits.source.get("inputs", []):
        run.add_input(**{**i, "via": splits.table})
    return splits


def _check_tune(conf: RaylakeConfig) -> None:
    tcfg, ucfg = conf.train, conf.tune
    if ucfg.trainer and ucfg.trainer != tcfg.trainer:
        raise ConfigError(f"tune={ucfg.name} searches a {ucfg.trainer} space but "
                          f"train.trainer={tcfg.trainer!r}; pick a matching pair "
                          f"(train={tcfg.trainer} tune={tcfg.trainer}) or set tune.trainer=null.")
    trainer_module(tcfg.trainer)
    max_t = ucfg.scheduler.max_t or sweeps.budget(tcfg)
    if ucfg.scheduler.type == "asha" and ucfg.scheduler.grace_period > max_t:
        raise ConfigError(f"tune.scheduler.grace_period={ucfg.scheduler.grace_period} is past "
                          f"the trials' end ({max_t} {ucfg.time_attr}s); lower it.")
    sweeps.search_space(ucfg.space)
    sweeps.check_space(tcfg, ucfg.space)
    validate_table_name(ucfg.trials_table or f"tune/{tcfg.model_name}_trials")


@job("tune", help="Ray Tune sweep over a trainer (tune=xgboost, ASHA); trials to the lake, "
                  "best registered", check=_check_tune)
def tune(ctx: JobContext) -> dict[str, Any]:
    """Sweep, write every trial to the trials table, evaluate and register the best."""
    conf, lake, run = ctx.conf, ctx.lake, ctx.record
    tcfg, ucfg = conf.train, conf.tune
    module = trainer_module(tcfg.trainer)
    table = validate_table_name(ucfg.trials_table or f"tune/{tcfg.model_name}_trials")
    splits = _read_splits(lake, tcfg, run)
    # Inside trials the trainer reports as often as the scheduler needs to decide.
    base = replace(tcfg, checkpoint_every=ucfg.report_every, table_version=str(splits.version))
    max_t = ucfg.scheduler.max_t or sweeps.budget(tcfg)
    trials = sweeps.sweep(lake, splits, base, ucfg, sweeps.search_space(ucfg.space), max_t,
                          run.run_id, echo=ctx.echo)
    best = sweeps.best_trial(trials, ucfg)
    rows = [sweeps.trial_row(t, run.run_id, tcfg.trainer, ucfg, t is best) for t in trials]
    version = write_table(lake, table, pa.Table.from_pylist(rows, schema=sweeps.TRIALS_SCHEMA),
                          mode="append", app_id=f"raylake.tune/{run.run_id}",
                          run_id=run.run_id, job="tune")
    run.add_output(table=table, version=version, rows=len(rows))
    counts = {s: sum(r["status"] == s for r in rows) for s in ("completed", "stopped", "failed")}
    run.metrics.update({"metric": ucfg.metric, "mode": ucfg.mode, "trials": len(rows), **counts})
    if best is None:
        first = next((t["error"] for t in trials if t["error"]),
                     f"no trial reported {ucfg.metric!r}")
        raise TuneError(f"No trial of the sweep finished with {ucfg.metric!r} "
                        f"({counts['failed']} of {len(rows)} failed); first error: {first}. "
                        f"The trials are in {table!r} v{version}.")
    best_cfg = sweeps.trial_config(base, best["params"])
    model = sweeps.best_model(module, best, lake, best_cfg, splits, run.run_id)
    m = evaluate_model(module, model, splits, best_cfg)
    m["tuned"] = {"run_id": run.run_id, "trial_id": best["trial_id"], "params": best["params"],
                  ucfg.metric: best["value"], ucfg.time_attr: best["iterations"]}
    run.metrics["best"] = m["tuned"]
    run.metrics.update({"valid": m["valid"], "test": m["test"]})
    registered = None
    if ucfg.register:
        config = {**run.config, "train": asdict(best_cfg)}
        registered = register_model(lake, best_cfg, module, model, splits, m, config, run.run_id)
        run.add_output(model=best_cfg.model_name, version=registered.version,
                       stage=registered.stage)
    params = ", ".join(f"{k}={sweeps.fmt(v)}" for k, v in best["params"].items())
    return {"trials": rows, "best": best, "metrics": m, "model": model, "trials_table": table,
            "trials_version": version, "version": registered.version if registered else None,
            "summary": f"tune {tcfg.trainer}: {len(rows)} trials ({counts['completed']} completed, "
                       f"{counts['stopped']} stopped early, {counts['failed']} failed) -> {table} "
                       f"v{version}; best {best['trial_id']} ({params}) {ucfg.metric} "
                       f"{best['value']:.4f} after {best['iterations']} {ucfg.time_attr}s, test "
                       f"AUC {m['test']['auc']:.4f}"
                       + (f"; registered {best_cfg.model_name} v{registered.version} "
                          f"({registered.stage})" if registered else "") + f"; run {run.run_id}"}
