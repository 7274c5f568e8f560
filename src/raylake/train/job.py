"""``raylake train``: a training set at a pinned version -> Ray Train -> metrics -> registry.

The run record names the training-set table and version (and, through its own
run record, the feature tables behind it), the resolved config, the split
bounds, every metric and the registered model version, so ``raylake train
--from-run RUN_ID`` repeats a run exactly.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import asdict
from typing import Any

from omegaconf import DictConfig, OmegaConf

from raylake.config.loader import to_config
from raylake.errors import ConfigError, did_you_mean
from raylake.lake.runs import RunRecorder, get_run
from raylake.lake.tables import Lake
from raylake.runtime import ensure_ray
from raylake.train import evaluate, metrics
from raylake.train.data import load_splits
from raylake.train.resources import scaling_config, worker_env

TRAINERS = {"xgboost": "raylake.train.xgb", "torch": "raylake.train.torch_ddp"}
FLAVORS = {"xgboost": "xgboost", "torch": "torch"}


def trainer_module(name: str) -> Any:
    if name not in TRAINERS:
        raise ConfigError(f"train.trainer={name!r} is not a trainer.{did_you_mean(name, TRAINERS)} "
                          f"Trainers: {', '.join(TRAINERS)}.")
    return importlib.import_module(TRAINERS[name])


def train(cfg: DictConfig, *, echo: Any = print, kill_at: dict | None = None) -> dict[str, Any]:
    conf = to_config(cfg)
    lake = Lake.from_config(conf.lake)
    from_run = conf.train.from_run
    if from_run:
        conf, cfg = _config_of_run(lake, from_run, conf)
    tcfg = conf.train
    module = trainer_module(tcfg.trainer)
    ensure_ray(conf.ray)
    resolved = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) \
        else asdict(conf)
    with RunRecorder(lake, "train", resolved) as run:
        clock = time.perf_counter()
        splits = load_splits(lake, tcfg)
        timings = {"plan_s": time.perf_counter() - clock}
        # Pin the version read, so the record (and --from-run) name it even if it was "latest".
        run.config.setdefault("train", {})["table_version"] = str(splits.version)
        run.add_input(table=splits.table, version=splits.version, role="training-set",
                      run_id=splits.source.get("run_id"))
        for i in splits.source.get("inputs", []):
            run.add_input(**{**i, "via": splits.table})
        model, result = module.fit(splits, tcfg, _run_config(lake, tcfg, run.run_id),
                                   scaling_config(tcfg.scaling), kill_at=kill_at)
        timings["fit_s"] = time.perf_counter() - clock - timings["plan_s"]
        m = {**evaluate_model(module, model, splits, tcfg), "reported": _history(result)}
        timings["score_s"] = time.perf_counter() - clock - timings["plan_s"] - timings["fit_s"]
        m["timings"] = {k: round(v, 2) for k, v in timings.items()}
        if from_run:
            m["from_run"] = from_run
        run.metrics.update(m)
        registered = None
        if tcfg.register:
            registered = _register(lake, tcfg, module, model, splits, m, resolved, run.run_id)
            run.add_output(model=tcfg.model_name, version=registered.version,
                           stage=registered.stage)
    t = m["test"]
    echo(f"train {tcfg.trainer}: {splits.table}@{splits.version}, test AUC {t['auc']:.4f}, "
         f"log loss {t['log_loss']:.4f}, cost/{tcfg.cost.per} {t[f'cost_per_{tcfg.cost.per}']:.0f} "
         f"(do nothing: {t[f'cost_per_{tcfg.cost.per}_do_nothing']:.0f})"
         + (f"; registered {tcfg.model_name} v{registered.version} ({registered.stage})"
            if registered else "") + f"; run {run.run_id}")
    return {"run_id": run.run_id, "metrics": m, "model": model,
            "version": registered.version if registered else None}


def evaluate_model(module: Any, model: Any, splits: Any, tcfg: Any) -> dict[str, Any]:
    """Validation and test metrics, the cost threshold chosen on validation."""
    scored = evaluate.scores({"valid": splits.valid, "test": splits.test}, module.__name__,
                             model, splits.spec)
    (yv, pv), (yt, pt) = scored["valid"], scored["test"]
    threshold = metrics.best_threshold(yv, pv, tcfg.cost)
    return {"valid": metrics.evaluate(yv, pv, threshold, tcfg.cost),
            "test": metrics.evaluate(yt, pt, threshold, tcfg.cost),
            "split": splits.bounds, "features": splits.spec.names, "trainer": tcfg.trainer}


def _register(lake: Lake, tcfg: Any, module: Any, model: Any, splits: Any, m: dict,
              config: dict, run_id: str) -> Any:
    from raylake.models.registry import ModelRegistry

    features = [{"name": n, "type": splits.feature_types[n],
                 "encoding": "categorical" if n in splits.spec.categorical else "numeric"}
                for n in splits.spec.names]
    training = {"table": splits.table, "version": splits.version, **splits.source}
    extra = module.registry_kwargs(model, splits.spec, tcfg)
    return ModelRegistry(lake).register(
        tcfg.model_name, extra.pop("model"), flavor=FLAVORS[tcfg.trainer], features=features,
        training=training, config=config, metrics={"valid": m["valid"], "test": m["test"]},
        run_id=run_id, preprocessing=splits.spec.to_dict(), **extra)


def _run_config(lake: Lake, tcfg: Any, run_id: str, callbacks: list | None = None) -> Any:
    import ray.train

    return ray.train.RunConfig(
        name=run_id, storage_path=train_storage(lake, tcfg),
        failure_config=ray.train.FailureConfig(max_failures=tcfg.max_failures),
        checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
        callbacks=callbacks, worker_runtime_env=worker_env(tcfg.scaling),
    )


def train_storage(lake: Lake, tcfg: Any) -> str:
    return tcfg.storage_path or lake.storage.uri("_train")


def _history(result: Any) -> dict[str, Any]:
    last = dict(result.metrics or {})
    return {k: v for k, v in last.items()
            if isinstance(v, (int, float, str)) and not k.startswith("_")}


def _config_of_run(lake: Lake, run_id: str, current: Any) -> tuple[Any, DictConfig]:
    """The config a train run recorded, with its training-set version pinned."""
    from raylake.config.schema import RaylakeConfig

    record = get_run(lake, run_id)
    if record.get("job") != "train":
        raise ConfigError(f"Run {run_id!r} is a {record.get('job')!r} run; --from-run takes a "
                          "train run (see `raylake runs list`).")
    recorded = dict(record["config"])
    recorded.pop("hydra", None)
    cfg = OmegaConf.merge(OmegaConf.structured(RaylakeConfig), recorded)
    cfg.lake = OmegaConf.structured(current.lake)  # the lake as reached from here
    cfg.ray = OmegaConf.structured(current.ray)
    cfg.train.from_run = None
    return to_config(cfg), cfg
