"""Training the two-tower retrieval model on Ray Train (``raylake recsys-train``).

The driver reads the clicked impressions before the holdout from the lake, codes their
user and item ids with a :class:`FeatureSpec` (``1..n`` for ids that have clicks, ``0``
for any other), shuffles them once and hands them to Ray Train as a Ray Dataset: each
worker streams its equal shard (``get_dataset_shard``) in batches whose other items are
the negatives (:func:`raylake.models.two_tower.in_batch_loss`, logQ-corrected by each
item's share of the clicks). The loss is computed inside a module's ``forward`` so that
DDP (gloo on CPU) sees the call and averages the gradients of both towers. Rank 0
reports a checkpoint (a state dict, read back with ``weights_only=True``) every epoch; a
lost worker restarts the group from the last one.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import nn

from raylake.errors import ModelError
from raylake.lake.tables import Lake
from raylake.models.spec import FeatureSpec
from raylake.models.two_tower import TwoTower, in_batch_loss

CHECKPOINT_FILE = "two_tower.pt"


class Clicks:
    """The coded training clicks and what the towers need to know about them."""

    def __init__(self, table: str, version: int, users: np.ndarray, items: np.ndarray,
                 spec: FeatureSpec) -> None:
        self.table, self.version = table, version
        self.users, self.items, self.spec = users, items, spec

    @property
    def num_users(self) -> int:
        """Users with a code (1..num_users)."""
        return len(self.spec.vocab["user_id"])

    @property
    def num_items(self) -> int:
        """Items with a code (1..num_items)."""
        return len(self.spec.vocab["item_id"])

    def log_q(self) -> np.ndarray:
        """log of each item code's share of the clicks (add-one smoothed; code 0 too)."""
        share = np.bincount(self.items, minlength=self.num_items + 1).astype(np.float64) + 1.0
        return np.log(share / share.sum()).astype(np.float32)


def training_clicks(lake: Lake, conf: Any, before: Any) -> Clicks:
    """Clicked impressions with ``ts < before`` from ``recsys.impressions_table`` (latest
    version), coded."""
    r = conf.recsys
    version = lake.version(r.impressions_table)
    t = lake.read(r.impressions_table, version, columns=["ts", "user_id", "item_id", "clicked"])
    t = t.filter(pc.and_(pc.equal(t["clicked"], True),
                         pc.less(t["ts"], pa.scalar(before, t.schema.field("ts").type))))
    if t.num_rows < 2 * int(r.towers.num_workers) * 2:
        raise ModelError(f"{t.num_rows} clicks before {before:%Y-%m-%d} in "
                         f"{r.impressions_table}@{version} are too few to train the two-tower "
                         "model: ingest more events or move recsys.holdout_start later.")
    vocab = {c: [str(v) for v in np.unique(t[c].to_numpy())] for c in ("user_id", "item_id")}
    # Codes follow the sorted ids as strings (FeatureSpec.encode looks them up that way).
    vocab = {c: sorted(v) for c, v in vocab.items()}
    spec = FeatureSpec(numeric=[], categorical=["user_id", "item_id"], vocab=vocab,
                       label="clicked")
    _, codes = spec.encode(pa.table({c: pc.cast(t[c], pa.string())
                                     for c in ("user_id", "item_id")}))
    return Clicks(r.impressions_table, version, codes[:, 0], codes[:, 1], spec)


def encode_ids(spec: Any, col: str, ids: np.ndarray) -> np.ndarray:
    """Codes of ``ids`` in ``spec.vocab[col]`` (1..n; 0 for an id not seen in training),
    as FeatureSpec.encode computes them."""
    values = pc.cast(pa.array(ids), pa.string())
    idx = pc.index_in(values, value_set=pa.array(spec.vocab[col], pa.string()))
    return np.asarray(pc.fill_null(pc.add(idx, 1), 0).to_numpy(zero_copy_only=False), np.int64)


def fit(lake: Lake, conf: Any, clicks: Clicks, run_id: str, *,
        kill_at: dict[str, Any] | None = None) -> tuple[TwoTower, dict[str, Any]]:
    """The trained towers and their statistics (loss per epoch, seconds, workers).
    ``kill_at`` ({"epoch", "marker"}, tests only): rank 0 dies once after that epoch's
    checkpoint, as a lost node would."""
    import ray
    import ray.data
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from raylake.train import placement
    from raylake.train.resources import scaling_config, worker_env, worker_threads

    s = conf.recsys.towers
    arch: dict[str, Any] = {"num_users": clicks.num_users, "num_items": clicks.num_items, "dim": int(s.dim),
            "hidden": [int(h) for h in s.hidden], "temperature": float(s.temperature)}
    TwoTower(**arch)  # bad sizes fail here, before any worker starts
    order = np.random.default_rng(0).permutation(len(clicks.users))
    ds = ray.data.from_arrow(pa.table({"user": clicks.users[order], "item": clicks.items[order]}))
    config = {"arch": arch, "epochs": int(s.epochs), "batch_size": int(s.batch_size),
              "lr": float(s.lr), "log_q": clicks.log_q().tolist(), "threads": worker_threads(s),
              "kill_at": kill_at}
    run_config = ray.train.RunConfig(  # type: ignore[call-arg]
        name=f"two-tower-{run_id}", storage_path=lake.storage.uri("_train"),
        failure_config=ray.train.FailureConfig(max_failures=int(s.max_failures)),
        checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
        worker_runtime_env=worker_env(s))
    trainer = TorchTrainer(
        _worker, train_loop_config=config, datasets={"train": ds},
        torch_config=TorchConfig(backend="nccl" if s.use_gpu else "gloo"),
        scaling_config=scaling_config(s), run_config=run_config)
    start = time.perf_counter()
    with placement.released_after(f"two-tower run {run_config.name}"):
        result = trainer.fit()
    model = TwoTower(**arch)
    model.load_state_dict(load_state(result.checkpoint)["model"])
    reported = dict(result.metrics or {})
    stats = {"epochs": int(s.epochs), "workers": int(s.num_workers),
             "clicks": len(clicks.users), "users": clicks.num_users, "items": clicks.num_items,
             "fit_s": round(time.perf_counter() - start, 2),
             "loss": [float(x) for x in reported.get("losses", [])],
             "resumed_from": int(reported.get("resumed_from", 0))}
    return model.eval(), stats


def load_state(checkpoint: Any) -> dict[str, Any]:
    """The state rank 0 reported (tensors and numbers; no code is unpickled)."""
    with checkpoint.as_directory() as d:
        state: dict[str, Any] = torch.load(Path(d) / CHECKPOINT_FILE, map_location="cpu",
                                           weights_only=True)
    return state


class _Loss(nn.Module):
    """The in-batch loss as a forward pass, so DDP's wrapper sees the call that uses the
    parameters (calling the towers' methods past the wrapper would skip the gradient
    all-reduce)."""

    def __init__(self, towers: TwoTower) -> None:
        super().__init__()
        self.towers = towers

    def forward(self, users: torch.Tensor, items: torch.Tensor,
                log_q: torch.Tensor) -> torch.Tensor:
        return in_batch_loss(self.towers, users, items, log_q)


def _worker(config: dict[str, Any]) -> None:
    import os

    import ray.train
    import ray.train.torch
    from ray.train import Checkpoint

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(int(config["threads"]))
    torch.manual_seed(0)  # every rank starts from the same weights
    towers = TwoTower(**config["arch"])
    start, losses = 0, []
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:  # a restart after a lost worker: go on from the last epoch
        state = load_state(checkpoint)
        towers.load_state_dict(state["model"])
        start, losses = int(state["epoch"]), [float(x) for x in state["losses"]]
    loss_fn: nn.Module = _Loss(towers)
    if world > 1:
        loss_fn = ray.train.torch.prepare_model(loss_fn)
    opt = torch.optim.Adam(towers.parameters(), lr=float(config["lr"]))
    log_q = torch.tensor(config["log_q"])
    shard = ray.train.get_dataset_shard("train")
    batch = int(config["batch_size"])
    for epoch in range(start + 1, int(config["epochs"]) + 1):
        total, steps = 0.0, 0
        for b in shard.iter_torch_batches(batch_size=batch, drop_last=True,
                                          local_shuffle_buffer_size=4 * batch,
                                          local_shuffle_seed=epoch * 100 + rank,
                                          dtypes=torch.int64):
            users, items = b["user"], b["item"]
            loss = loss_fn(users, items, log_q[items])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, steps = total + float(loss.item()), steps + 1
        losses.append(total / max(steps, 1))
        metrics = {"epoch": epoch, "loss": losses[-1], "losses": list(losses),
                   "resumed_from": start, "steps": steps}
        if rank == 0:
            with tempfile.TemporaryDirectory() as d:
                torch.save({"model": towers.state_dict(), "epoch": epoch, "losses": losses},
                           Path(d) / CHECKPOINT_FILE)
                ray.train.report(metrics, checkpoint=Checkpoint.from_directory(d))
        else:
            ray.train.report(metrics, checkpoint=None)
        kill = config.get("kill_at")
        if kill and epoch == kill["epoch"] and rank == 0 and not os.path.exists(kill["marker"]):
            Path(kill["marker"]).write_text(str(epoch))
            time.sleep(float(os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "2")) + 1.5)
            os._exit(1)
