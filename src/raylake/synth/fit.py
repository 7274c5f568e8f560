"""Fitting a synthesizer for ``raylake synth fit`` (and ``synth augment``).

The copula fits in seconds on the driver. TVAE and CTGAN train on Ray Train: the driver
fits the transformer and encodes the rows once (``Trainable.prepare``), the encoded
array goes to the object store, and each of ``synth.scaling.num_workers`` workers trains
on an equal shard of it with its networks wrapped by ``prepare_model`` (DDP: gloo on CPU,
nccl on GPUs). Rank 0 reports a checkpoint (the training state: tensors and numbers,
read back with ``weights_only=True``) every ``synth.checkpoint_every`` epochs and after
the last; a worker that dies makes Ray Train restart the group, which goes on from the
last checkpoint (``synth.scaling.max_failures`` times). The driver adopts the final
state into its synthesizer, which the job registers.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from raylake.errors import SynthError
from raylake.lake.tables import Lake
from raylake.synth.base import Synthesizer, Trainable, make_synthesizer
from raylake.synth.data import RealRows
from raylake.synth.transformer import DataTransformer

CHECKPOINT_FILE = "synth_state.pt"


def params_of(s: Any) -> dict[str, Any]:
    """The synthesizer's parameters from the ``synth`` config."""
    return {"epochs": int(s.epochs), "batch_size": int(s.batch_size),
            "learning_rate": float(s.learning_rate), "embedding_dim": int(s.embedding_dim),
            "hidden": tuple(int(h) for h in s.hidden), "pac": int(s.pac),
            "device": "cuda" if s.scaling.use_gpu else "cpu"}


def fit(lake: Lake, conf: Any, real: RealRows, run_id: str, *,
        kill_at: dict[str, Any] | None = None) -> tuple[Synthesizer, dict[str, Any]]:
    """The fitted synthesizer of ``conf.synth`` on ``real.frame`` and its statistics.
    ``kill_at`` ({"epoch", "marker"}, tests only): rank 0 dies once after that epoch's
    checkpoint, as a lost node would."""
    s = conf.synth
    params = params_of(s)
    synth = make_synthesizer(str(s.kind), **{**params, "device": "cpu"})
    discrete = list(s.discrete) if s.discrete is not None else None
    if not isinstance(synth, Trainable):
        fitted = synth.fit(real.frame, discrete=discrete, seed=int(s.seed))
        return synth, {**fitted, "warnings": list(synth.warnings)}
    workers = int(s.scaling.num_workers)
    if len(real.frame) < 2 * workers:
        raise SynthError(f"{len(real.frame)} rows cannot be split among synth.scaling."
                         f"num_workers={workers} training workers (each needs rows of its "
                         "own): lower synth.scaling.num_workers or fit on more rows.")
    data = synth.prepare(real.frame, discrete=discrete, seed=int(s.seed))
    state, result = _train_on_ray(lake, s, synth, data, params, run_id, kill_at)
    synth.adopt(state)
    reported = dict(result.metrics or {})
    stats: dict[str, Any] = {"epochs": int(s.epochs), "dims": int(data.shape[1]),
             "workers": int(s.scaling.num_workers),
             "resumed_from": int(reported.get("resumed_from", 0)),
             **{k: float(v) for k, v in reported.items() if k.startswith("loss_")},
             "warnings": list(synth.warnings)}
    synth.fit_stats = {k: float(v) for k, v in stats.items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return synth, stats


def _train_on_ray(lake: Lake, s: Any, synth: Trainable, data: np.ndarray,
                  params: dict[str, Any], run_id: str,
                  kill_at: dict[str, Any] | None) -> tuple[dict[str, Any], Any]:
    import ray
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from raylake.train import placement
    from raylake.train.resources import scaling_config, worker_env, worker_threads

    assert synth.transformer is not None
    config = {"kind": str(s.kind), "params": params, "seed": int(s.seed),
              "transformer": synth.transformer.to_json(), "data": ray.put(data),
              "checkpoint_every": int(s.checkpoint_every),
              "threads": worker_threads(s.scaling), "kill_at": kill_at}
    run_config = ray.train.RunConfig(  # type: ignore[call-arg]
        name=f"synth-{run_id}", storage_path=lake.storage.uri("_train"),
        failure_config=ray.train.FailureConfig(max_failures=int(s.scaling.max_failures)),
        checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
        worker_runtime_env=worker_env(s.scaling))
    trainer = TorchTrainer(
        _worker, train_loop_config=config,
        torch_config=TorchConfig(backend="nccl" if s.scaling.use_gpu else "gloo"),
        scaling_config=scaling_config(s.scaling), run_config=run_config)
    with placement.released_after(f"synthesizer run {run_config.name}"):
        result = trainer.fit()
    return load_state(result.checkpoint), result


def load_state(checkpoint: Any) -> dict[str, Any]:
    """The training state in a checkpoint rank 0 reported (no code is unpickled)."""
    with checkpoint.as_directory() as d:
        state: dict[str, Any] = torch.load(Path(d) / CHECKPOINT_FILE, map_location="cpu",
                                           weights_only=True)
    return state


def _worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: its shard of the encoded rows, the synthesizer's loop with
    DDP-wrapped networks, checkpoints from rank 0."""
    import ray
    import ray.train
    import ray.train.torch
    from ray.train import Checkpoint

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(int(config["threads"]))
    device = ray.train.torch.get_device()
    params = {**config["params"], "device": str(device)}
    synth = make_synthesizer(config["kind"], **params)
    assert isinstance(synth, Trainable)
    synth.transformer = DataTransformer.from_json(config["transformer"])
    data = ray.get(config["data"])
    # Equal shards: a DDP step is a collective, so every rank must take as many steps.
    per = len(data) // world if world > 1 else len(data)
    shard = data[rank * per:(rank + 1) * per] if world > 1 else data
    start, resumed = None, 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:  # a restart after a failure: go on from the last checkpoint
        start = load_state(checkpoint)
        resumed = int(start["epoch"])
    epochs, every = int(params["epochs"]), max(1, int(config["checkpoint_every"]))

    def wrap(module: Any) -> Any:
        return ray.train.torch.prepare_model(module) if world > 1 else module.to(device)

    def on_epoch(epoch: int, losses: dict[str, float], state: dict[str, Any]) -> None:
        if epoch % every and epoch != epochs:
            return
        metrics = {"epoch": epoch, "resumed_from": resumed,
                   **{f"loss_{k}": float(v) for k, v in losses.items()}}
        if rank == 0:
            with tempfile.TemporaryDirectory() as d:
                torch.save(_on_cpu(state), Path(d) / CHECKPOINT_FILE)
                ray.train.report(metrics, checkpoint=Checkpoint.from_directory(d))
        else:
            ray.train.report(metrics, checkpoint=None)
        _maybe_die(config.get("kill_at"), epoch, rank)

    # Every rank draws its own batches (the seed differs per rank), the same weights.
    synth.train_loop(shard, seed=int(config["seed"]) + 7919 * rank, wrap=wrap,
                     on_epoch=on_epoch, start=start)


def _maybe_die(kill_at: dict[str, Any] | None, epoch: int, rank: int) -> None:
    # Fault injection for tests: rank 0 dies once, as if its node were lost, after Ray
    # Train has had time to collect the checkpoint just reported.
    if kill_at and epoch == kill_at["epoch"] and rank == 0 \
            and not os.path.exists(kill_at["marker"]):
        Path(kill_at["marker"]).write_text(str(epoch))
        time.sleep(float(os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "2")) + 1.5)
        os._exit(1)


def _on_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _on_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_on_cpu(v) for v in value)
    return value
