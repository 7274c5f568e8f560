"""The sweep behind ``raylake tune``: a Ray Tune search over a trainer's config.

Each Tune trial is a function that builds and fits the trainer's Ray Train run
(Ray Train V2's pattern: Tune schedules trials, Train runs each on its own
workers). ``TuneReportCallback`` forwards every report of the workers to the
trial, so the scheduler (ASHA by default) sees the validation metric every
``tune.report_every`` rounds or epochs and can stop a trailing trial there.

The splits are planned once on the driver (bounds, vocabularies) and handed to
the trials as lazy Ray Data datasets: a trial's workers read their shards; no
rows pass through the driver or the trial process.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any, cast

import pyarrow as pa
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from ray.tune import Callback

from raylake.errors import ConfigError, did_you_mean
from raylake.lake.tables import Lake
from raylake.train import placement
from raylake.train.resources import scaling_config
from raylake.train.steps import run_config, train_storage, trainer_module

TRIAL_MEMORY = 2**20
DISTRIBUTIONS = ("choice", "uniform", "loguniform", "randint", "grid")

TRIALS_SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("trial_id", pa.string()),
    ("trainer", pa.string()),
    ("params", pa.string()),  # JSON: dotted train key -> value
    ("metric", pa.string()),
    ("metric_value", pa.float64()),  # the last reported value
    ("iterations", pa.int64()),  # in tune.time_attr units (rounds, epochs)
    ("reports", pa.int64()),
    ("stopped_early", pa.bool_()),
    ("status", pa.string()),  # completed | stopped | failed
    ("error", pa.string()),
    ("metrics", pa.string()),  # JSON: the last report
    ("checkpoint", pa.string()),
    ("wall_s", pa.float64()),
    ("is_best", pa.bool_()),
])


def budget(tcfg: Any) -> int:
    """A trial's whole run in the units the trainer reports (rounds, epochs)."""
    return tcfg.torch.epochs if tcfg.trainer == "torch" else tcfg.xgboost.num_boost_round


# -- the search space -----------------------------------------------------------


def search_space(space: dict[str, Any]) -> dict[str, Any]:
    """Tune's param space from ``tune.space`` (dotted train key -> {distribution: args})."""
    from ray import tune

    if not space:
        raise ConfigError("tune.space is empty: there is nothing to tune. Give train keys with "
                          "a distribution each, e.g. xgboost.params.eta: {loguniform: [0.01, 0.3]}.")
    out = {}
    for key, spec in space.items():
        where = f"tune.space[{key!r}]"
        if not isinstance(spec, dict) or len(spec) != 1:
            raise ConfigError(f"{where} must be one distribution, e.g. {{uniform: [0.5, 1.0]}}; "
                              f"got {spec!r}. Distributions: {', '.join(DISTRIBUTIONS)}.")
        (kind, args), = spec.items()
        if kind not in DISTRIBUTIONS:
            raise ConfigError(f"{where}: {kind!r} is not a distribution."
                              f"{did_you_mean(kind, DISTRIBUTIONS)} "
                              f"Distributions: {', '.join(DISTRIBUTIONS)}.")
        args = list(args) if isinstance(args, (list, tuple)) else [args]
        if kind in ("choice", "grid"):
            if not args:
                raise ConfigError(f"{where}: {kind} needs at least one value.")
            out[key] = tune.choice(args) if kind == "choice" else tune.grid_search(args)
            continue
        if len(args) != 2 or not all(isinstance(a, (int, float)) for a in args) \
                or not args[0] < args[1]:
            raise ConfigError(f"{where}: {kind} takes [low, high] numbers with low < high; "
                              f"got {args!r}.")
        lo, hi = args
        if kind == "loguniform" and lo <= 0:
            raise ConfigError(f"{where}: loguniform needs low > 0; got {lo}.")
        if kind == "randint" and not (float(lo).is_integer() and float(hi).is_integer()):
            raise ConfigError(f"{where}: randint takes whole numbers [low, high) ; got {args!r}.")
        if kind == "randint":
            out[key] = tune.randint(int(lo), int(hi))
        else:
            out[key] = (tune.uniform if kind == "uniform" else tune.loguniform)(lo, hi)
    return out


def trial_config(base: Any, params: dict[str, Any]) -> Any:
    """``base`` (a TrainConfig) with a trial's values set at their dotted keys, type-checked."""
    from raylake.config.schema import TrainConfig

    node = OmegaConf.structured(base)
    OmegaConf.set_struct(node, True)
    for key, value in params.items():
        try:
            OmegaConf.update(node, key, _plain(value), merge=False)
        except OmegaConfBaseException as exc:
            raise ConfigError(f"tune.space key {key!r} with value {value!r} does not fit the "
                              f"train config: {exc}".replace("\n", " ")) from exc
    try:
        obj = OmegaConf.to_object(node)
    except (OmegaConfBaseException, ValueError) as exc:
        raise ConfigError(f"tune.space values {params} make a bad train config: {exc}") from exc
    assert isinstance(obj, TrainConfig)
    return obj


def check_space(tcfg: Any, space: dict[str, Any]) -> None:
    """Each key must name a train setting (checked before any trial starts)."""
    known = OmegaConf.structured(tcfg)
    for key, spec in space.items():
        parts = key.split(".")
        node: Any = known
        for i, part in enumerate(parts):
            if not isinstance(node, DictConfig) or OmegaConf.get_type(node) is dict:
                break  # inside a free-form mapping (xgboost.params): any key goes
            if part not in node:
                where = ".".join(parts[:i]) or "train"
                raise ConfigError(
                    f"tune.space key {key!r}: {part!r} is not a key of {where}."
                    f"{did_you_mean(part, cast(list[str], list(node.keys())))} Keys are train config keys "
                    f"without 'train.', e.g. xgboost.params.eta.")
            node = node._get_node(part)
        (kind, args), = spec.items()
        args = list(args) if isinstance(args, (list, tuple)) else [args]
        trial_config(tcfg, {key: args[0]})


# -- the sweep --------------------------------------------------------------------


def sweep(lake: Lake, splits: Any, base: Any, ucfg: Any, space: dict[str, Any],
           max_t: int, run_id: str, echo: Callable[[str], Any] | None = None
           ) -> list[dict[str, Any]]:
    """Run the Tune sweep of ``space`` over ``base`` (ASHA stopping at ``max_t``, or FIFO)
    and return one dict per trial: params, last metric value, iterations, status (completed,
    stopped or failed), metrics, checkpoint path and wall time."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    s = ucfg.scheduler
    scheduler = ASHAScheduler(time_attr=ucfg.time_attr, max_t=max_t,
                              grace_period=s.grace_period, reduction_factor=s.reduction_factor) \
        if s.type == "asha" else FIFOScheduler()
    watcher = _SweepWatcher(ucfg.metric, ucfg.time_attr, echo)
    trainable = tune.with_resources(
        tune.with_parameters(_trial, splits=splits, base=base, lake=lake, run_id=run_id),
        # Tune cannot place a trial that asks for nothing: a MiB of memory stands in.
        {"cpu": ucfg.trial_cpus, "memory": TRIAL_MEMORY})
    tuner = tune.Tuner(
        trainable, param_space=space,
        tune_config=tune.TuneConfig(
            metric=ucfg.metric, mode=ucfg.mode, num_samples=ucfg.num_samples,
            scheduler=scheduler,
            # Tune ignores max_concurrent_trials when given a variant generator.
            search_alg=BasicVariantGenerator(max_concurrent=ucfg.max_concurrent_trials,
                                             random_state=ucfg.seed)),
        run_config=tune.RunConfig(name=run_id, storage_path=ucfg.storage_path
                                  or lake.storage.uri("_tune"), verbose=0, callbacks=[watcher]),
    )
    # The sweep's driver: groups its trials left reserved (beyond the stopped trials' ones
    # removed above) are removed once it ends; one was seen after a sweep, and the next
    # training waited for its CPU.
    with placement.released_after(f"tune sweep {run_id}"):
        grid = tuner.fit()
    trials = []
    # ResultGrid iterates through __getitem__ and __len__, which mypy does not count.
    for result in grid:  # type: ignore[attr-defined]
        metrics = dict(result.metrics or {})
        trial_id = metrics.get("trial_id") or _trial_id_of(result)
        params = {k: _plain(v) for k, v in (result.config or {}).items()}
        value = metrics.get(ucfg.metric)
        iterations = metrics.get(ucfg.time_attr)
        stopped = trial_id in watcher.stopped and iterations is not None and (
            s.type != "asha" or iterations < max_t)
        error = None if result.error is None else str(result.error).strip().splitlines()[-1]
        trials.append({
            "trial_id": trial_id, "params": params,
            "value": float(value) if isinstance(value, (int, float)) else None,
            "iterations": int(iterations) if iterations is not None else None,
            "reports": metrics.get("training_iteration"),
            "stopped_early": bool(stopped), "error": error,
            "status": "failed" if error else "stopped" if stopped else "completed",
            "metrics": {k: v for k, v in metrics.items()
                        if isinstance(v, (int, float, str)) and k != "config"
                        and not k.startswith("_")},
            "checkpoint": metrics.get("checkpoint_path"),
            "wall_s": metrics.get("time_total_s"),
        })
    return trials


def _trial(config: dict[str, Any], *, splits: Any, base: Any, lake: Lake, run_id: str) -> None:
    """One Tune trial: the trainer's own Ray Train run, its reports forwarded to Tune."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    tcfg = trial_config(base, config)
    module = trainer_module(tcfg.trainer)
    trial_id = tune.get_context().get_trial_id()
    rc = run_config(lake, tcfg, f"{run_id}-{trial_id}", callbacks=[TuneReportCallback()],
                    rounds=False)
    module.fit(splits, tcfg, rc, scaling_config(tcfg.scaling))


class _SweepWatcher(Callback):
    """Trials the scheduler stopped, and their Train runs' placement groups.

    Tune marks the result it stops a trial at ``done``; a trial that ends by itself has
    no such result (only Tune's own end marker, which callbacks do not see). When a
    trial ends, its run's placement group is removed if it is still reserved (see
    ``raylake.train.placement``)."""

    def __init__(self, metric: str = "", time_attr: str = "",
                 echo: Callable[[str], Any] | None = None) -> None:
        self.stopped: set[str] = set()
        self.groups: dict[str, str] = {}
        self.last: dict[str, dict[str, Any]] = {}
        self.metric, self.time_attr, self.echo = metric, time_attr, echo

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        """Note the placement group a trial's report names, and the trial as stopped when
        Tune marks the result ``done``."""
        if result.get(placement.KEY):
            self.groups[trial.trial_id] = result[placement.KEY]
        self.last[trial.trial_id] = result
        if result.get("done"):
            self.stopped.add(trial.trial_id)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Print the trial's line; remove its placement group if it is still reserved."""
        self._say(trial, "stopped early" if trial.trial_id in self.stopped else "completed")
        placement.remove(self.groups.pop(trial.trial_id, None))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Print the trial's line; remove its placement group if it is still reserved."""
        self._say(trial, "failed")
        placement.remove(self.groups.pop(trial.trial_id, None))

    def _say(self, trial: Any, status: str) -> None:
        if self.echo is not None:
            self.echo(trial_line(trial.trial_id, status, self.last.get(trial.trial_id, {}),
                                 getattr(trial, "config", None) or {}, self.metric,
                                 self.time_attr))

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        """Remove the placement groups of trials still running when the sweep ends."""
        # A sweep that ends early (an error, Ctrl-C) leaves its running trials' groups.
        for pg in self.groups.values():
            placement.remove(pg)
        self.groups.clear()


def trial_line(trial_id: str, status: str, result: dict[str, Any], params: dict[str, Any],
               metric: str, time_attr: str) -> str:
    """One line per Tune trial as it ends: ``trial 7f3a_00002 completed: valid_auc 0.7061
    after 100 rounds (xgboost.params.eta=0.1, xgboost.params.max_depth=6)``."""
    value = result.get(metric)
    shown = f"{metric} {fmt(float(value))}" if isinstance(value, (int, float)) \
        else f"no {metric} reported"
    when = result.get(time_attr)
    after = f" after {when} {time_attr}s" if when is not None else ""
    given = ", ".join(f"{k}={fmt(_plain(v))}" for k, v in params.items())
    return f"   trial {trial_id} {status}: {shown}{after}" + (f" ({given})" if given else "")


def _trial_id_of(result: Any) -> str:
    return str(result.path).rstrip("/").rsplit("/", 1)[-1]


def best_trial(trials: list[dict[str, Any]], ucfg: Any) -> dict[str, Any] | None:
    """The best last metric among trials that ran their whole budget; when the
    scheduler stopped them all, among every trial that reported."""
    ok = [t for t in trials if t["value"] is not None and not math.isnan(t["value"])
          and not t["error"]]
    pool = [t for t in ok if not t["stopped_early"]] or ok
    if not pool:
        return None
    pick = min if ucfg.mode == "min" else max
    return pick(pool, key=lambda t: t["value"])


def best_model(module: Any, best: dict[str, Any], lake: Lake, tcfg: Any, splits: Any,
                run_id: str) -> Any:
    """The model of trial ``best``: loaded from its checkpoint where the trainer can, else
    trained once more with its config."""
    load = getattr(module, "load_checkpoint", None)
    if load is not None and best["checkpoint"]:
        import pyarrow.fs as pafs
        from ray.train import Checkpoint

        # Ray Train wrote the checkpoint to the filesystem it inferred from the storage URI.
        fs, _ = pafs.FileSystem.from_uri(train_storage(lake, tcfg))
        return load(Checkpoint(best["checkpoint"], filesystem=fs))
    # A trainer that cannot load its checkpoints trains the best config once more.
    model, _ = module.fit(splits, tcfg, run_config(lake, tcfg, f"{run_id}-best"),
                          scaling_config(tcfg.scaling))
    return model


def trial_row(t: dict[str, Any], run_id: str, trainer: str, ucfg: Any, is_best: bool) -> dict:
    """Trial ``t`` as a row of the trials table (``TRIALS_SCHEMA``), params and metrics as
    JSON."""
    return {"run_id": run_id, "trial_id": t["trial_id"], "trainer": trainer,
            "params": json.dumps(t["params"], sort_keys=True, default=str),
            "metric": ucfg.metric, "metric_value": t["value"], "iterations": t["iterations"],
            "reports": t["reports"], "stopped_early": t["stopped_early"], "status": t["status"],
            "error": t["error"], "metrics": json.dumps(t["metrics"], sort_keys=True, default=str),
            "checkpoint": t["checkpoint"], "wall_s": t["wall_s"], "is_best": is_best}


def _plain(value: Any) -> Any:
    """NumPy scalars (Tune's samples) as Python numbers, for OmegaConf and JSON."""
    return value.item() if hasattr(value, "item") and not isinstance(value, (list, dict)) \
        else value


def fmt(value: Any) -> str:
    """``value`` for a summary line: a float to 4 significant digits, anything else with
    ``str``."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)
