"""The steps ``raylake train`` and ``raylake tune`` share: the trainer registry, Ray
Train's run config, scoring a fitted model on the held-out splits, registering it,
and reading back the config a recorded run trained with (``--from-run``)."""

from __future__ import annotations

import importlib
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from raylake.config.loader import to_config
from raylake.errors import ConfigError, did_you_mean
from raylake.lake.runs import get_run
from raylake.lake.tables import Lake
from raylake.models.flavors import get_flavor
from raylake.train import evaluate, metrics
from raylake.train.resources import worker_env

# train.trainer -> its module. Each declares FLAVOR, the registry flavor of its models
# (raylake.models.flavors), which registers, loads and scores them.
TRAINERS = {"xgboost": "raylake.train.xgb", "torch": "raylake.train.torch_ddp"}


def trainer_module(name: str) -> Any:
    """The module of trainer ``name``: ``FLAVOR``, ``fit``, ``load_checkpoint``,
    ``registry_kwargs``."""
    if name == "cnn":  # the image CNN trains on image tables, through its own job
        raise ConfigError("train.trainer='cnn' trains on an image table: run `raylake "
                          "vision-train train=cnn` (docs/vision.md); `raylake train` takes "
                          f"the tabular trainers ({', '.join(TRAINERS)}).")
    if name not in TRAINERS:
        raise ConfigError(f"train.trainer={name!r} is not a trainer.{did_you_mean(name, TRAINERS)} "
                          f"Trainers: {', '.join(TRAINERS)}.")
    module = importlib.import_module(TRAINERS[name])
    get_flavor(module.FLAVOR)  # a trainer whose models no flavor stores fails before training
    return module


def evaluate_model(module: Any, model: Any, splits: Any, tcfg: Any) -> dict[str, Any]:
    """Validation and test metrics, the cost threshold chosen on validation."""
    scored = evaluate.scores({"valid": splits.valid, "test": splits.test}, module.FLAVOR,
                             model, splits.spec)
    (yv, pv), (yt, pt) = scored["valid"], scored["test"]
    threshold = metrics.best_threshold(yv, pv, tcfg.cost)
    return {"valid": metrics.evaluate(yv, pv, threshold, tcfg.cost),
            "test": metrics.evaluate(yt, pt, threshold, tcfg.cost),
            "split": splits.bounds, "features": splits.spec.names, "trainer": tcfg.trainer}


def register_model(lake: Lake, tcfg: Any, module: Any, model: Any, splits: Any, m: dict,
                   config: dict, run_id: str) -> Any:
    """Register ``model`` as a candidate of ``tcfg.model_name`` with its features,
    training set, config and metrics."""
    from raylake.models.registry import ModelRegistry

    features = [{"name": n, "type": splits.feature_types[n],
                 "encoding": "categorical" if n in splits.spec.categorical else "numeric"}
                for n in splits.spec.names]
    training = {"table": splits.table, "version": splits.version, **splits.source}
    extra = module.registry_kwargs(model, splits.spec, tcfg)
    return ModelRegistry(lake).register(
        tcfg.model_name, extra.pop("model"), flavor=module.FLAVOR, features=features,
        training=training, config=config, metrics={"valid": m["valid"], "test": m["test"]},
        run_id=run_id, preprocessing=splits.spec.to_dict(), **extra)


def run_config(lake: Lake, tcfg: Any, run_id: str, callbacks: list | None = None, *,
               rounds: bool = True) -> Any:
    """Ray Train's RunConfig of one run: storage, retries, checkpoints kept. ``rounds``:
    rank 0 prints one line per report (a Tune trial's runs print none; Tune prints one
    line per trial)."""
    import ray.train

    env = worker_env(tcfg.scaling)
    env["env_vars"][ROUNDS_ENV] = "1" if rounds else "0"
    # mypy sees ray.air's RunConfig; Ray Train's (V2) also takes worker_runtime_env.
    return ray.train.RunConfig(  # type: ignore[call-arg]
        name=run_id, storage_path=train_storage(lake, tcfg),
        failure_config=ray.train.FailureConfig(max_failures=tcfg.max_failures),
        checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
        callbacks=callbacks, worker_runtime_env=env,
    )


ROUNDS_ENV = "RAYLAKE_TRAIN_ROUNDS"
# The keys of a report that a round's line shows, in this order, and their names there.
_SHOWN = (("valid_auc", "valid AUC"), ("valid_logloss", "log loss"), ("train_loss", "train loss"))


def round_line(unit: str, done: int, total: int, metrics: dict[str, Any],
               seconds: float) -> str:
    """One line per report of a Train run, as the driver shows it: ``round 25/100: valid
    AUC 0.7053, log loss 0.3928 (2.6s)``; values to 4 significant digits."""
    shown = ", ".join(f"{name} {metrics[k]:.4g}" for k, name in _SHOWN
                      if isinstance(metrics.get(k), (int, float)))
    return f"   {unit} {done}/{total}: {shown or 'reported'} ({seconds:.1f}s)"


def print_round(unit: str, done: int, total: int, metrics: dict[str, Any],
                seconds: float) -> None:
    """Print :func:`round_line` from a Train worker for the driver's terminal (marked,
    so that the driver shows it without Ray's prefix; raylake.runtime.MARK); nothing in
    a Tune trial's runs."""
    import os
    import sys

    from raylake.runtime import MARK

    # Not print(): Ray Train sends a worker's print() to its logger as well (two copies).
    if os.environ.get(ROUNDS_ENV, "1") != "0":
        sys.stdout.write(MARK + round_line(unit, done, total, metrics, seconds) + "\n")
        sys.stdout.flush()


def train_storage(lake: Lake, tcfg: Any) -> str:
    """Where Ray Train keeps checkpoints: train.storage_path or <lake>/_train."""
    return tcfg.storage_path or lake.storage.uri("_train")


def reported(result: Any) -> dict[str, Any]:
    """The plain values of a Ray Train result's last report."""
    last = dict(result.metrics or {})
    return {k: v for k, v in last.items()
            if isinstance(v, (int, float, str)) and not k.startswith("_")}


def config_of_run(lake: Lake, run_id: str, current: Any) -> tuple[Any, DictConfig]:
    """The config a train run recorded, with its training-set version pinned, and
    ``train.from_run`` naming that run (recorded again by the new run)."""
    from raylake.config.redact import without_redacted
    from raylake.config.schema import RaylakeConfig

    record = get_run(lake, run_id)
    if record.get("job") != "train":
        raise ConfigError(f"Run {run_id!r} is a {record.get('job')!r} run; --from-run takes a "
                          "train run (see `raylake runs list`).")
    # A redacted setting (a secret, or a value read from the environment) is left to the
    # default or the current environment, never merged back as the marker.
    recorded = dict(without_redacted(record["config"]))
    recorded.pop("hydra", None)
    # Merged onto a structured dataclass config: a DictConfig, never a ListConfig.
    cfg = cast(DictConfig, OmegaConf.merge(OmegaConf.structured(RaylakeConfig), recorded))
    cfg.lake = OmegaConf.structured(current.lake)  # the lake as reached from here
    cfg.ray = OmegaConf.structured(current.ray)
    cfg.train.from_run = run_id
    return to_config(cfg), cfg
