"""The CNN part of ``benchmarks/gpu_check.py --cnn`` (see its docstring): mixed precision,
the DDP path over nccl, and the vision pipeline on one GPU worker for a fixed number of
steps. Needs a GPU; gpu_check.py exits with status 2 before importing this without one."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any


def precision_check() -> tuple[bool, str]:
    """Autocast computes in bf16 (fp16 without bf16) on the GPU; an fp16 step with a
    gradient scaler updates the weights."""
    import torch

    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    a = torch.randn(64, 64, device="cuda")
    with torch.autocast("cuda", dtype=dtype):
        out = a @ a
    if out.dtype != dtype:
        return False, f"autocast gave {out.dtype}, not {dtype}"
    from raylake.models.flavors.image_net import SmallResNet

    net = SmallResNet(10).cuda()
    opt = torch.optim.AdamW(net.parameters(), 1e-3)
    scaler = torch.amp.GradScaler("cuda")
    before = [p.detach().clone() for p in net.parameters()]
    with torch.autocast("cuda", dtype=torch.float16):
        loss = torch.nn.functional.cross_entropy(
            net(torch.randn(32, 1, 28, 28, device="cuda")), torch.randint(0, 10, (32,),
                                                                          device="cuda"))
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    changed = any(not torch.equal(b, p) for b, p in zip(before, net.parameters()))
    return changed, f"autocast {str(dtype).split('.')[-1]}; fp16 + GradScaler step " + \
        ("updated the weights" if changed else "left the weights unchanged")


def ddp_check() -> tuple[bool, str]:
    """One nccl process group (world size 1): the CNN in DistributedDataParallel takes a
    step, its gradients all-reduced."""
    import socket

    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from raylake.models.flavors.image_net import SmallResNet

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=0,
                            world_size=1)
    try:
        model = DistributedDataParallel(SmallResNet(10).cuda(), device_ids=[0])
        x = torch.randn(16, 1, 28, 28, device="cuda")
        model(x).sum().backward()
        t = torch.ones(1, device="cuda")
        dist.all_reduce(t)
        ok = float(t) == 1.0 and all(p.grad is not None for p in model.parameters())
        return ok, f"DDP over {dist.get_backend()}: step and all-reduce " + ("ok" if ok else "FAILED")
    finally:
        dist.destroy_process_group()


class UtilSampler:
    """GPU utilisation (%) from nvidia-smi every half second, in a thread."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu",
                                      "--format=csv,noheader,nounits", "-i", "0"],
                                     capture_output=True, text=True, timeout=5)
                self.samples.append(float(out.stdout.strip().splitlines()[0]))
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                pass
            self._stop.wait(0.5)

    def __enter__(self) -> UtilSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def busy_mean(self) -> float:
        """Mean utilisation over the samples where the GPU was in use at all."""
        busy = [s for s in self.samples if s > 0]
        return sum(busy) / len(busy) if busy else 0.0


def cnn_check(args: Any) -> int:
    """The three checks; the exit status (0: all passed)."""
    import ray

    from raylake.config.loader import compose_config
    from raylake.runner.registry import get_job

    failures = []
    for name, check in (("precision", precision_check), ("ddp", ddp_check)):
        ok, text = check()
        print(f"gpu_check cnn: {name}: {text}")
        if not ok:
            failures.append(name)
    root = Path(tempfile.mkdtemp(prefix="raylake-gpu-cnn-"))
    batch = int(args.batch_size if args.batch_size != 16384 else 512)
    steps_per_epoch = 4000 // batch or 1
    epochs = max(1, -(-args.steps // steps_per_epoch))
    try:
        base = [f"lake.root={root / 'lake'}"]
        get_job("vision-ingest")(compose_config([*base, "dataset=mnist_5k"],
                                                job="vision-ingest"), echo=print)
        cfg = compose_config([
            *base, "train=cnn_gpu", "train.scaling.num_workers=1",
            f"train.scaling.cpus_per_worker={args.cpus_per_worker}",
            f"train.cnn.batch_size={batch}", f"train.cnn.epochs={epochs}",
            "train.max_failures=0", "train.register=false"], job="vision-train")
        started = time.perf_counter()
        with UtilSampler() as util:
            out = get_job("vision-train")(cfg, echo=print)
        wall = time.perf_counter() - started
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    m = out["metrics"]
    # The first epoch includes CUDA and worker start-up: throughput from the others.
    steady = m["history"][1:] or m["history"]
    img_s = sum(h["images"] for h in steady) / max(sum(h["seconds"] for h in steady), 1e-9)
    print(f"gpu_check cnn: {m['steps']} steps in {wall:.1f}s (job wall), epochs "
          f"{[round(h['images_per_s']) for h in m['history']]} img/s")
    acc = float(m["test_accuracy"])
    if m["precision"] not in ("bf16", "fp16"):
        failures.append(f"precision {m['precision']} (expected bf16 or fp16 on a GPU)")
    if acc < 0.9:
        failures.append(f"test accuracy {acc:.4f} < 0.9")
    import torch

    print(f"gpu_check cnn: device {torch.cuda.get_device_name(0)}, precision {m['precision']}, "
          f"img_per_s {img_s:.0f}, gpu_util_pct {util.busy_mean():.0f}, test_accuracy {acc:.4f}")
    if failures:
        print(f"gpu_check cnn: FAILED: {'; '.join(failures)}", file=sys.stderr)
        return 1
    return 0
