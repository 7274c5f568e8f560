"""A tabular MLP on Ray Train: Torch DDP workers (gloo on CPU, nccl on GPUs), each
streaming its Ray Data shard once per epoch.

- Batches stay Arrow until :meth:`FeatureSpec.standardized` turns them into two
  arrays (standardised numbers with missing indicators, categorical codes); no pandas.
- The means and standard deviations come from the training split (one Ray Data
  aggregation on the driver) and are stored in the spec, which the registry keeps
  as the model's preprocessing: evaluation and serving standardise the same way.
- Shards keep the table's row order, which is by time within each file: a seeded
  local shuffle buffer of four batches mixes them without a global shuffle (an
  all-to-all exchange every epoch), and the same inputs give the same batches.
- Checkpoints (weights, optimizer state, epoch, architecture) every
  ``checkpoint_every`` epochs; a retry after a failure goes on from the last one,
  and each report says which epoch its attempt resumed from (``resumed_from``).
- Validation metrics are exact over the whole validation split: every worker scores
  its shard and the (label, probability) pairs are all-gathered, so every rank
  reports the same numbers (two floats per validation row cross the wire).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from raylake.errors import ConfigError
from raylake.models.nets import TabularMLP
from raylake.models.spec import FeatureSpec
from raylake.train import metrics, placement
from raylake.train.data import fit_standardisation, my_shard, worker_shards
from raylake.train.resources import worker_threads
from raylake.train.steps import print_round

# The registry flavor of the models this trainer fits (raylake.models.flavors), which
# scores them everywhere (evaluation, batch inference, the model server).
FLAVOR = "torch"
CHECKPOINT_FILE = "checkpoint.pt"
BACKENDS = ("gloo", "nccl")
# Ray Train collects a worker's reports when it polls it (every 2 s by default); an
# injected failure waits that long so it comes after the last checkpoint is
# registered, as a crash in a real, longer epoch would.
_COLLECT_WAIT_S = float(os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "2")) + 1.5


def train_loop(config: dict[str, Any]) -> None:
    """One Ray Train worker: trains the DDP network on its shard for the configured epochs,
    going on from the last checkpoint after a failure, and reports validation metrics every
    ``checkpoint_every`` epochs and after the last (rank 0 with a checkpoint)."""
    import ray.train
    import ray.train.torch
    from torch.nn.parallel import DistributedDataParallel

    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    spec = FeatureSpec.from_dict(config["spec"])
    torch.set_num_threads(config["threads"])
    seed, epochs, every = config["seed"], config["epochs"], max(1, config["checkpoint_every"])
    torch.manual_seed(seed)  # the same initial weights on every rank
    net = TabularMLP(**config["architecture"])
    optimizer_state, done = None, 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:  # a retry after a failure: go on from the last checkpoint
        with checkpoint.as_directory() as d:
            state = torch.load(Path(d) / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
        net.load_state_dict(state["model"])
        optimizer_state, done = state["optimizer"], int(state["epoch"])
    # The only buffer (the largest valid code per column) never changes: no per-step broadcast.
    model = ray.train.torch.prepare_model(net, parallel_strategy_kwargs={"broadcast_buffers": False})
    device = ray.train.torch.get_device()
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"],
                                 weight_decay=config["weight_decay"])
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    loss_fn = nn.BCEWithLogitsLoss()
    train_shard = my_shard(config, "train")
    valid_shard = my_shard(config, "valid")
    batch_size = config["batch_size"]
    run_started = time.perf_counter()
    for epoch in range(done + 1, epochs + 1):
        # Seeded per epoch and rank: a resumed run draws the same dropout masks and
        # batch order as one that never failed (given the same shards).
        epoch_seed = seed + 1000 * epoch + rank
        torch.manual_seed(epoch_seed)
        model.train()
        started = time.perf_counter()
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        rows = 0
        # Shards are split to equal row counts, but a DDP step is a collective: join()
        # keeps a worker that runs out of batches early from hanging the others.
        joined = model.join() if isinstance(model, DistributedDataParallel) \
            else contextlib.nullcontext()
        with joined:
            # batch_format="pyarrow": every batch is an Arrow table.
            for batch in cast(Iterable[pa.Table], train_shard.iter_batches(
                    batch_size=batch_size, batch_format="pyarrow",
                    local_shuffle_buffer_size=4 * batch_size, local_shuffle_seed=epoch_seed)):
                if batch.num_rows == 0:
                    continue
                num, cat, y = _tensors(spec, batch, device)
                loss = loss_fn(model(num, cat), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.detach().double() * len(y)
                rows += len(y)
        seconds = time.perf_counter() - started
        _maybe_die(config.get("kill_at"), epoch, rank)
        if epoch % every == 0 or epoch == epochs:
            m = {"epoch": epoch, "resumed_from": done, "epoch_seconds": seconds,
                 "device": str(device), "train_loss": _global_mean(loss_sum, rows, device),
                 **_validate(net, valid_shard, spec, device, batch_size)}
            _report(m, net, config["architecture"], optimizer, epoch, rank, epochs,
                    time.perf_counter() - run_started)


def _tensors(spec: FeatureSpec, batch: pa.Table, device: Any) -> tuple[torch.Tensor, ...]:
    num, cat = spec.standardized(batch)
    y = spec.labels(batch)
    return (torch.from_numpy(num).to(device, non_blocking=True),
            torch.from_numpy(cat).to(device, non_blocking=True),
            torch.from_numpy(y).to(device, non_blocking=True))


def _global_mean(total: torch.Tensor, rows: int, device: Any) -> float:
    import torch.distributed as dist

    t = torch.stack([total, torch.tensor(float(rows), dtype=torch.float64, device=device)])
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return float(t[0] / t[1]) if t[1] > 0 else float("nan")


def _validate(net: nn.Module, shard: Any, spec: FeatureSpec, device: Any,
              batch_size: int) -> dict[str, float]:
    """Validation log loss and AUC over every worker's shard (all-gathered, exact)."""
    import torch.distributed as dist

    # The unwrapped network: a forward through DDP would take part in its collectives.
    net.eval()
    ys, ps = [np.empty(0, np.float32)], [np.empty(0, np.float32)]
    with torch.inference_mode():
        for batch in shard.iter_batches(batch_size=batch_size, batch_format="pyarrow"):
            if batch.num_rows == 0:
                continue
            num, cat, labels = _tensors(spec, batch, device)
            ps.append(torch.sigmoid(net(num, cat)).float().cpu().numpy())
            ys.append(labels.cpu().numpy())
    pair = (np.concatenate(ys), np.concatenate(ps))
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, pair)
        pair = (np.concatenate([g[0] for g in gathered]), np.concatenate([g[1] for g in gathered]))
    y, p = (a.astype(np.float64) for a in pair)
    if not len(y):
        return {"valid_rows": 0}
    return {"valid_rows": int(len(y)), "valid_logloss": metrics.log_loss(y, p),
            "valid_auc": metrics.auc(y, p)}


def _maybe_die(kill_at: dict | None, epoch: int, rank: int) -> None:
    # Fault injection for tests: the worker process dies as if killed, once.
    k = kill_at
    if k and epoch == k["round"] and rank == k["rank"] and not os.path.exists(k["marker"]):
        Path(k["marker"]).write_text(str(epoch))
        time.sleep(_COLLECT_WAIT_S)
        os._exit(1)


def _report(m: dict[str, Any], net: nn.Module, arch: dict[str, Any], optimizer: Any,
            epoch: int, rank: int, total: int = 0, seconds: float = 0.0) -> None:
    import ray.train
    from ray.train import Checkpoint

    if rank == 0:
        print_round("epoch", epoch, total, m, seconds)
        m = {**m, placement.KEY: placement.current()}
        with tempfile.TemporaryDirectory() as d:
            # Tensors and plain values only: loadable with torch.load(weights_only=True).
            torch.save({"model": net.state_dict(), "optimizer": optimizer.state_dict(),
                        "epoch": epoch, "architecture": arch}, Path(d) / CHECKPOINT_FILE)
            ray.train.report(m, checkpoint=Checkpoint.from_directory(d))
    else:
        ray.train.report(m, checkpoint=None)


def architecture(spec: FeatureSpec, settings: Any) -> dict[str, Any]:
    """TabularMLP's arguments for ``spec``: one input per standardised column and
    missing indicator; codes 1..len(vocab) per categorical column (0, unknown, is
    the network's extra row)."""
    return {"num_numeric": len(spec.numeric) + len(spec.missing),
            "cardinalities": [max(1, len(spec.vocab.get(c, []))) for c in spec.categorical],
            "embedding_dim": int(settings.embedding_dim),
            "hidden": [int(h) for h in settings.hidden],
            "dropout": float(settings.dropout)}


def _check(tcfg: Any) -> str:
    t, s = tcfg.torch, tcfg.scaling
    if t.epochs < 1 or t.batch_size < 1:
        raise ConfigError(f"train.torch.epochs={t.epochs} and train.torch.batch_size="
                          f"{t.batch_size} must both be at least 1.")
    backend = s.backend or ("nccl" if s.use_gpu else "gloo")
    if backend not in BACKENDS:
        raise ConfigError(f"train.scaling.backend={backend!r} is not a DDP backend raylake "
                          f"runs; use gloo (CPU) or nccl (GPUs), or leave it unset.")
    if backend == "nccl" and not s.use_gpu:
        raise ConfigError("train.scaling.backend=nccl needs GPUs: set train.scaling.use_gpu=true, "
                          "or use backend=gloo (or leave it unset) on CPU.")
    return backend


def fit(splits: Any, tcfg: Any, run_config: Any, scaling: Any, *,
        kill_at: dict | None = None) -> tuple[Any, Any]:
    """Runs the trainer; returns (TabularMLP on CPU in eval mode, ray.train.Result).

    The network is trained on ``splits.spec``'s standardisation (``load_splits`` sets
    it for ``trainer: torch``; it is computed here if missing), which evaluation and
    the registry then read from the same spec.
    """
    from ray.train.torch import TorchConfig, TorchTrainer

    backend = _check(tcfg)
    if splits.spec.numeric and not splits.spec.stds:  # load_splits does it for torch runs
        fit_standardisation(splits.train, splits.spec)
    arch = architecture(splits.spec, tcfg.torch)
    t = tcfg.torch
    threads = worker_threads(tcfg.scaling)
    config = {"spec": splits.spec.to_dict(), "architecture": arch, "threads": threads,
              "seed": tcfg.seed, "epochs": t.epochs, "batch_size": t.batch_size, "lr": t.lr,
              "weight_decay": t.weight_decay, "checkpoint_every": tcfg.checkpoint_every,
              "kill_at": kill_at,
              "shards": worker_shards(splits, tcfg.scaling.num_workers)}
    trainer = TorchTrainer(
        train_loop, train_loop_config=config, torch_config=TorchConfig(backend=backend),
        scaling_config=scaling, run_config=run_config,
    )
    with placement.released_after(f"torch run {run_config.name}"):
        result = trainer.fit()
    return load_checkpoint(result.checkpoint), result


def load_checkpoint(checkpoint: Any) -> nn.Module:
    """The network in a checkpoint this trainer reported, on CPU in eval mode
    (``raylake tune`` loads its best)."""
    with checkpoint.as_directory() as d:
        state = torch.load(Path(d) / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
    net = TabularMLP(**state["architecture"])
    net.load_state_dict(state["model"])
    return net.eval()


def registry_kwargs(model: Any, spec: FeatureSpec, tcfg: Any) -> dict[str, Any]:
    """What ``ModelRegistry.register`` takes for ``model``: just the network."""
    # The torch flavor reads the architecture from the module (nets.architecture_of).
    return {"model": model}
