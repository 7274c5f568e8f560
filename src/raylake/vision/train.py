"""The CNN on Ray Train: ``TorchTrainer`` workers (DDP: gloo on CPU, nccl on GPUs), each
reading its streamed shard of decoded, augmented images (:mod:`raylake.vision.pipeline`).

- Steps, not epochs, are the unit of progress: every worker takes ``steps_per_epoch``
  optimizer steps an epoch (its equal share of the train split, whole batches only, so
  every DDP collective has all ranks), each the sum of ``accumulate_steps``
  micro-batches (gradients all-reduced once per step: ``no_sync`` on the others).
- Mixed precision: autocast to bf16 on a CPU with native bf16 (AVX512-BF16 or AMX) and
  on GPUs that have it, fp16 with a gradient scaler on other GPUs (``precision=auto``).
  On a CPU without bf16 instructions autocast only adds casts, so auto keeps fp32 there.
- Rank 0 reports a checkpoint (weights, optimizer, step, metrics so far; tensors and
  numbers, read with ``weights_only=True``) every ``checkpoint_every_steps`` steps and at
  each epoch's end. A worker that dies makes Ray Train restart the group, which goes on
  from the last checkpoint: the interrupted epoch trains its remaining steps.
- The learning rate follows a cosine from ``lr`` to 0 over all steps, computed from the
  step number, so a resumed run uses the rates an unbroken one would.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from raylake.errors import ConfigError
from raylake.models.flavors.image_net import SmallResNet
from raylake.vision.pipeline import Contract

CHECKPOINT_FILE = "cnn_state.pt"
_COLLECT_WAIT_S = float(os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "2")) + 1.5


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, use_gpu: bool) -> str:
    """bf16, fp16 or fp32 for ``train.cnn.precision`` on this kind of device."""
    if precision == "fp16" and not use_gpu:
        raise ConfigError("train.cnn.precision=fp16 needs GPUs (CPU autocast computes bf16); "
                          "use bf16, fp32 or auto on CPU.")
    if precision != "auto":
        return precision
    if use_gpu:
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_bf16() else "fp32"


def worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: see the module docstring."""
    import ray
    import ray.train
    import ray.train.torch
    from ray.train import Checkpoint
    from torch.nn.parallel import DistributedDataParallel

    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    torch.set_num_threads(int(config["threads"]))
    torch.manual_seed(int(config["seed"]))  # the same initial weights on every rank
    net = SmallResNet(**config["architecture"])
    device = ray.train.torch.get_device()
    optimizer = torch.optim.AdamW(net.parameters(), lr=config["lr"],
                                  weight_decay=config["weight_decay"])
    precision = config["precision"]
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    step, history, resumed = 0, [], 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:  # a restart after a failure: go on from the last checkpoint
        state = load_state(checkpoint)
        net.load_state_dict(state["model"])
        step = resumed = int(state["step"])
        history = list(state["history"])
    model = ray.train.torch.prepare_model(net)
    if checkpoint is not None:  # after prepare_model: the optimizer's tensors on the device
        optimizer.load_state_dict(state["optimizer"])
        if "scaler" in state:
            scaler.load_state_dict(state["scaler"])
    ddp = isinstance(model, DistributedDataParallel)
    shard = ray.train.get_dataset_shard("train")
    per_epoch, epochs, accum = config["steps_per_epoch"], config["epochs"], config["accumulate"]
    total, every = per_epoch * epochs, config["checkpoint_every"]
    micro = config["batch_size"] // accum
    clock = ray.get_actor(config["clock"]) if config.get("clock") else None
    loss_fn = nn.CrossEntropyLoss()
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)

    def report(metrics: dict[str, Any], with_checkpoint: bool) -> None:
        metrics = {**metrics, "resumed_from_step": resumed}
        if rank == 0 and with_checkpoint:
            with tempfile.TemporaryDirectory() as d:
                torch.save({"model": net.state_dict(), "optimizer": optimizer.state_dict(),
                            "scaler": scaler.state_dict(), "step": step, "history": history},
                           Path(d) / CHECKPOINT_FILE)
                ray.train.report(metrics, checkpoint=Checkpoint.from_directory(d))
        else:
            ray.train.report(metrics, checkpoint=None)

    while step < total:
        epoch = step // per_epoch + 1
        if clock is not None:
            ray.get(clock.set.remote(epoch))
        goal = epoch * per_epoch  # this epoch's last step
        model.train()
        started, images = time.perf_counter(), 0
        sums = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, images
        m = 0
        for batch in shard.iter_torch_batches(
                batch_size=micro, drop_last=True, prefetch_batches=config["prefetch"],
                # The table is in content-hash order (already mixed); the buffer mixes
                # neighbouring blocks anew each epoch, seeded by epoch and rank.
                local_shuffle_buffer_size=config["shuffle_batches"] * micro or None,
                local_shuffle_seed=int(config["seed"]) + 1000 * epoch + rank,
                dtypes={"x": torch.float32, "y": torch.int64}, device=device):
            x, y = batch["x"], batch["y"]
            last = (m + 1) % accum == 0
            # Gradients are all-reduced on the last micro-batch of a step only.
            no_sync: Any = getattr(model, "no_sync", None)  # DDP's; the module's type hides it
            sync = no_sync() if ddp and not last else _null()
            with sync, torch.autocast(device.type, dtype=autocast_dtype or torch.float32,
                                      enabled=autocast_dtype is not None):
                logits = model(x)
                loss = loss_fn(logits.float(), y)
            scaler.scale(loss / accum).backward()
            sums += torch.tensor([float(loss.detach()) * len(y),
                                  float((logits.argmax(1) == y).sum()), len(y)], dtype=torch.float64)
            images += len(y)
            m += 1
            if not last:
                continue
            for g in optimizer.param_groups:
                g["lr"] = _cosine(config["lr"], step, total)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if step % every == 0 and step < goal:
                report({"step": step, "epoch": epoch}, True)
            _maybe_die(config.get("kill_at"), step, rank)
            if step >= goal:
                break
        step = max(step, goal)  # a shard one batch short still ends the epoch on every rank
        seconds = time.perf_counter() - started
        loss_sum, correct, seen = (float(v) for v in _all_reduce(sums))
        history.append({"epoch": epoch, "train_loss": loss_sum / max(seen, 1),
                        "train_accuracy": correct / max(seen, 1),
                        "images": int(seen), "seconds": round(seconds, 3),
                        "images_per_s": round(seen / max(seconds, 1e-9), 1)})
        report({"step": step, **history[-1]}, True)


def _null() -> Any:
    import contextlib

    return contextlib.nullcontext()


def _cosine(lr: float, step: int, total: int) -> float:
    return 0.5 * lr * (1 + math.cos(math.pi * step / max(total, 1)))


def _all_reduce(t: torch.Tensor) -> torch.Tensor:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        t = t.clone()
        # gloo reduces CPU tensors; with nccl the tensor goes to this rank's GPU and back.
        if dist.get_backend() == "nccl":
            t = t.cuda()
        dist.all_reduce(t)
    return t.cpu()


def _maybe_die(kill_at: dict[str, Any] | None, step: int, rank: int) -> None:
    # Fault injection for tests: a worker dies once, mid-epoch, as a lost node would,
    # after Ray Train has had time to collect the checkpoint just reported.
    k = kill_at
    if k and step == k["step"] and rank == k.get("rank", 0) and not os.path.exists(k["marker"]):
        Path(k["marker"]).write_text(str(step))
        time.sleep(_COLLECT_WAIT_S)
        os._exit(1)


def load_state(checkpoint: Any) -> dict[str, Any]:
    """The training state in a checkpoint rank 0 reported (no code is unpickled)."""
    with checkpoint.as_directory() as d:
        state: dict[str, Any] = torch.load(Path(d) / CHECKPOINT_FILE, map_location="cpu",
                                           weights_only=True)
    return state


def accuracy(net: nn.Module, ds: Any, batch_size: int = 512) -> tuple[float, int]:
    """Accuracy of ``net`` over a decoded dataset (streamed, on this process)."""
    correct = n = 0
    net.eval()
    with torch.inference_mode():
        for batch in ds.iter_batches(batch_size=batch_size, batch_format="numpy"):
            if not len(batch["y"]):
                continue
            pred = net(torch.from_numpy(np.ascontiguousarray(batch["x"]))).argmax(1).numpy()
            correct += int((pred == batch["y"]).sum())
            n += len(pred)
    return (correct / n if n else float("nan")), n


def architecture(contract: Contract, s: Any) -> dict[str, Any]:
    """SmallResNet's arguments for the table's images and ``train.cnn``."""
    return {"num_classes": len(contract.classes), "in_channels": contract.channels,
            "widths": [int(w) for w in s.widths], "blocks": int(s.blocks)}
