"""XGBoost on Ray Train: data-parallel workers, each boosting over its Ray Data shard
with XGBoost's own collective (allreduce of histograms) set up by Ray Train.

Where the time goes in a naive Ray Train XGBoost run, and what is done here
instead (measured by ``benchmarks/train.py``):

- a checkpoint uploaded every round (``RayTrainReportCallback``'s default):
  reports and checkpoints come every ``checkpoint_every`` rounds;
- a shard turned into pandas and then a ``DMatrix``: batches stay Arrow, become one
  float32 matrix per worker and a ``QuantileDMatrix`` (no second copy of the data);
- workers holding whole CPUs while Ray Data waits for one: workers reserve a
  fraction and compute with ``threads_per_worker`` threads;
- OpenMP capped at one thread in a worker (Ray's default OMP_NUM_THREADS for a
  fractional CPU): the workers start with ``threads_per_worker`` instead.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import xgboost

from raylake.models.spec import FeatureSpec
from raylake.train import placement
from raylake.train.data import my_shard, worker_shards
from raylake.train.resources import worker_threads
from raylake.train.steps import print_round

# The registry flavor of the models this trainer fits (raylake.models.flavors), which
# scores them everywhere (evaluation, batch inference, the model server).
FLAVOR = "xgboost"
MODEL_FILE = "model.ubj"


def train_loop(config: dict[str, Any]) -> None:
    """One Ray Train worker: boosts on its shard (validated on its validation shard) with
    XGBoost's collective, going on from the last checkpoint after a failure; reports every
    ``checkpoint_every`` rounds and at the end (rank 0 with the model)."""
    import ray.train

    started = time.perf_counter()
    spec = FeatureSpec.from_dict(config["spec"])
    threads = config["threads"]
    params = {**config["params"], "nthread": threads, "seed": config["seed"]}
    X, y = shard_matrix(my_shard(config, "train"), spec)
    Xv, yv = shard_matrix(my_shard(config, "valid"), spec)
    max_bin = int(params.get("max_bin", 256))
    dtrain = xgboost.QuantileDMatrix(X, label=y, feature_types=spec.feature_types(),
                                     enable_categorical=True, nthread=threads, max_bin=max_bin)
    dvalid = xgboost.QuantileDMatrix(Xv, label=yv, feature_types=spec.feature_types(),
                                     enable_categorical=True, nthread=threads, ref=dtrain)
    del X, Xv
    loaded = time.perf_counter() - started
    booster = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:  # a retry after a failure: go on from the last checkpoint
        with checkpoint.as_directory() as d:
            booster = xgboost.Booster(model_file=str(Path(d) / MODEL_FILE))
    done = booster.num_boosted_rounds() if booster is not None else 0
    total = config["num_boost_round"]
    report = _Report(config["checkpoint_every"], total, done, config.get("kill_at"))
    # The threads OpenMP lets XGBoost use here (see resources.worker_env).
    report.extra = {"load_s": round(loaded, 2),
                    "omp_threads": int(os.environ.get("OMP_NUM_THREADS", "0"))}
    xgboost.train(params, dtrain, num_boost_round=total - done, evals=[(dvalid, "valid")],
                  xgb_model=booster, callbacks=[report], verbose_eval=False,
                  early_stopping_rounds=config.get("early_stopping_rounds"))
    report.final()


def shard_matrix(shard: Any, spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
    """A shard's rows as the model's float32 matrix (:meth:`FeatureSpec.matrix`) and labels;
    empty arrays for an empty shard."""
    tables = list(shard.iter_batches(batch_size=None, batch_format="pyarrow"))
    table = pa.concat_tables(tables) if tables else None
    if table is None or table.num_rows == 0:
        return np.empty((0, len(spec.names)), np.float32), np.empty(0, np.float32)
    return spec.matrix(table), spec.labels(table)


class _Report(xgboost.callback.TrainingCallback):
    """Every N rounds each worker reports its validation metrics; rank 0 adds the model."""

    def __init__(self, every: int, total: int, done: int, kill_at: dict | None) -> None:
        super().__init__()
        self.every, self.total, self.kill_at = max(1, every), total, kill_at
        self.last_reported = done
        self.started = time.perf_counter()
        self.extra: dict[str, Any] = {}
        self.model: xgboost.Booster | None = None  # the booster, once a round has run
        self.log: dict[str, Any] = {}

    def after_iteration(self, model: Any, epoch: int, evals_log: dict[str, Any]) -> bool:
        """XGBoost's per-round hook: reports (and checkpoints) every ``every`` rounds and at
        the last; returns False, so it never stops training."""
        return self._after(model, evals_log)

    def _after(self, model: Any, log: dict[str, Any]) -> bool:
        self.model, self.log = model, log
        rounds = model.num_boosted_rounds()
        self._maybe_die(rounds)
        if rounds % self.every == 0 or rounds == self.total:
            self._report(model, rounds)
        return False

    def _maybe_die(self, rounds: int) -> None:
        # Fault injection for tests: the worker process dies as if killed, once.
        import ray.train

        k = self.kill_at
        if k and rounds == k["round"] and ray.train.get_context().get_world_rank() == k["rank"] \
                and not os.path.exists(k["marker"]):
            Path(k["marker"]).write_text(str(rounds))
            os._exit(1)

    def _report(self, model: xgboost.Booster, rounds: int) -> None:
        import ray.train
        from ray.train import Checkpoint

        metrics = {"round": rounds, **self.extra,
                   "boost_s": round(time.perf_counter() - self.started, 2)}
        for data, ms in self.log.items():
            for name, values in ms.items():
                metrics[f"{data}_{name}"] = float(values[-1])
        if ray.train.get_context().get_world_rank() == 0:
            print_round("round", rounds, self.total, metrics, time.perf_counter() - self.started)
            metrics[placement.KEY] = placement.current()
            with tempfile.TemporaryDirectory() as d:
                model.save_model(str(Path(d) / MODEL_FILE))
                ray.train.report(metrics, checkpoint=Checkpoint.from_directory(d))
        else:
            ray.train.report(metrics, checkpoint=None)
        self.last_reported = rounds

    def final(self) -> None:
        """Report the last model when training (early stopping) ended between report points."""
        # Early stopping ends between report points: the last model is reported too.
        if self.model is not None and self.model.num_boosted_rounds() != self.last_reported:
            self._report(self.model, self.model.num_boosted_rounds())


def fit(splits: Any, tcfg: Any, run_config: Any, scaling: Any, *,
        kill_at: dict | None = None) -> tuple[Any, Any]:
    """Runs the trainer; returns (Booster, ray.train.Result)."""
    from ray.train.xgboost import XGBoostTrainer

    threads = worker_threads(tcfg.scaling)
    params = dict(tcfg.xgboost.params)
    if tcfg.scaling.use_gpu:
        params.setdefault("device", "cuda")
    config = {"spec": splits.spec.to_dict(), "params": params, "threads": threads,
              "seed": tcfg.seed, "num_boost_round": tcfg.xgboost.num_boost_round,
              "early_stopping_rounds": tcfg.xgboost.early_stopping_rounds,
              "checkpoint_every": tcfg.checkpoint_every, "kill_at": kill_at,
              "shards": worker_shards(splits, tcfg.scaling.num_workers)}
    trainer = XGBoostTrainer(
        train_loop, train_loop_config=config, scaling_config=scaling, run_config=run_config,
    )
    with placement.released_after(f"xgboost run {run_config.name}"):
        result = trainer.fit()
    return load_checkpoint(result.checkpoint), result


def load_checkpoint(checkpoint: Any) -> Any:
    """The Booster in a checkpoint this trainer reported (``raylake tune`` loads its best)."""
    with checkpoint.as_directory() as d:
        return xgboost.Booster(model_file=str(Path(d) / MODEL_FILE))


def registry_kwargs(model: Any, spec: FeatureSpec, tcfg: Any) -> dict[str, Any]:
    """What ``ModelRegistry.register`` takes for ``model``: just the Booster."""
    return {"model": model}
