"""The torch trainer on one GPU: does DDP with nccl run, how long is an epoch, does it learn.

    python benchmarks/gpu_check.py [--rows 500000] [--epochs 3] [--batch-size 16384]

Needs a machine with an NVIDIA GPU and a CUDA build of torch; CI has neither and
never runs it. It exits with status 2 and says why when torch sees no GPU, before
starting anything else.

Builds a training table with a planted signal (a skewed numeric column with missing
values, a categorical one, plus noise columns) in a temporary lake, then runs the
`train` job with `train=torch_gpu` on one worker (num_workers=1, use_gpu, nccl):
Ray Data shards -> Ray Train TorchTrainer -> a checkpoint after the last epoch ->
test split scored with Ray Data. Registering is off. It prints the device the
worker trained on, the seconds of the last epoch (training only; the first epoch
includes CUDA start-up) and the test AUC. Exit status 1 when the worker did not
train on a GPU or the model did not learn (test AUC <= 0.6). The last line is:
    gpu_check: device <d>, epoch_s <s>, rows_per_s <r>, test_auc <a>

With ``--cnn`` it checks the vision pipeline instead (docs/vision.md):

    python benchmarks/gpu_check.py --cnn [--steps 300] [--batch-size 512]

- mixed precision: a matmul under autocast on the GPU computes in bf16 (fp16 where the
  GPU has no bf16), and one fp16 step with a gradient scaler changes the weights;
- the DDP path: one process group over nccl (world size 1) wraps the CNN in
  DistributedDataParallel and takes a step with an all-reduce;
- the pipeline: MNIST 5k ingested into a temporary lake (`vision-ingest
  dataset=mnist_5k`), then `vision-train train=cnn_gpu` on one GPU worker for a fixed
  number of steps (epochs of the 4,000 train images), Ray Data decoding and augmenting
  on the CPUs; GPU utilisation is sampled with nvidia-smi meanwhile. Exit status 1 when
  a check fails or the test accuracy is under 0.9. The last line is:
    gpu_check cnn: device <d>, precision <p>, img_per_s <r>, gpu_util_pct <u>, test_accuracy <a>
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

T0 = dt.datetime(2013, 1, 1, tzinfo=dt.timezone.utc)


def training_table(n: int, seed: int = 0) -> pa.Table:
    """Delay odds rise with `wind` and for carrier 'BB'; `origin` and `noise` carry none."""
    rng = np.random.default_rng(seed)
    wind = rng.gamma(2.0, 50.0, n)
    carrier = rng.choice(np.array(["AA", "BB", "CC", "DD", "EE"]), n)
    logit = -2.0 + 0.015 * wind + np.where(carrier == "BB", 1.5, 0.0)
    label = rng.random(n) < 1 / (1 + np.exp(-logit))
    wind[rng.random(n) < 0.05] = np.nan
    hours = np.sort(rng.integers(0, 300 * 24, n)).astype("timedelta64[h]")
    times = np.datetime64(T0.replace(tzinfo=None), "us") + hours
    return pa.table({
        "time_hour": pa.array(times, pa.timestamp("us", tz="UTC")),
        "carrier": pa.array(carrier),
        "origin": pa.array(rng.choice(np.array(["EWR", "JFK", "LGA"]), n)),
        "wind": pa.array(wind, from_pandas=True),
        "noise": rng.normal(size=n),
        "noise2": rng.normal(size=n).astype(np.float32),
        "delayed": label,
    })


def gpu_or_exit() -> str:
    import torch

    if not torch.cuda.is_available() or torch.cuda.device_count() < 1:
        build = torch.version.cuda or "none (a CPU-only build)"
        print(f"gpu_check: no GPU is visible to torch {torch.__version__} (CUDA build: {build}). "
              "Run this on a machine with an NVIDIA GPU, its driver, and a CUDA build of torch; "
              "check `nvidia-smi` and CUDA_VISIBLE_DEVICES.", file=sys.stderr)
        sys.exit(2)
    return torch.cuda.get_device_name(0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=500_000, help="rows of the generated table")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=16384)
    ap.add_argument("--cpus-per-worker", type=float, default=4,
                    help="CPUs the GPU worker reserves (Ray Data feeds it from the rest)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary lake")
    ap.add_argument("--cnn", action="store_true",
                    help="check the vision pipeline (CNN, mixed precision, DDP) instead")
    ap.add_argument("--steps", type=int, default=300, help="--cnn: optimizer steps at least")
    args = ap.parse_args(argv)

    name = gpu_or_exit()
    print(f"gpu_check: torch sees {name}")
    from gpu_check_cnn import cnn_check

    # This folder's profile.py shadows the standard library's (torch imports it via
    # cProfile); Ray gives its workers the script's folder while it is on sys.path.
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    if args.cnn:
        return cnn_check(args)

    from raylake.config.loader import compose_config
    from raylake.lake import Lake, Storage
    from raylake.lake.commit import write_table
    from raylake.train.jobs import train

    root = Path(tempfile.mkdtemp(prefix="raylake-gpu-check-"))
    try:
        lake = Lake(Storage.from_config(str(root / "lake")))
        write_table(lake, "train_set", training_table(args.rows))
        cfg = compose_config([
            f"lake.root={lake.root}", "train=torch_gpu", "train.table=train_set",
            "train.label=delayed", "train.categorical=[carrier,origin]",
            "train.split.valid_start=2013-08-01", "train.split.test_start=2013-09-15",
            "train.scaling.num_workers=1", "train.scaling.use_gpu=true",
            "train.scaling.backend=nccl", f"train.scaling.cpus_per_worker={args.cpus_per_worker}",
            f"train.torch.epochs={args.epochs}", f"train.torch.batch_size={args.batch_size}",
            f"train.checkpoint_every={args.epochs}", "train.max_failures=0",
            "train.register=false",
        ], job="train")
        started = time.perf_counter()
        out = train(cfg, echo=print)
        wall = time.perf_counter() - started
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    m = out["metrics"]
    rep = m["reported"]
    device, epoch_s, auc = rep.get("device", "?"), float(rep["epoch_seconds"]), m["test"]["auc"]
    train_rows = args.rows - m["valid"]["rows"] - m["test"]["rows"]
    print(f"gpu_check: job wall {wall:.1f}s for {args.epochs} epochs of {train_rows} training "
          f"rows; valid AUC {m['valid']['auc']:.4f}" + (f" (kept {root})" if args.keep else ""))
    print(f"gpu_check: device {device}, epoch_s {epoch_s:.3f}, rows_per_s "
          f"{train_rows / epoch_s:.0f}, test_auc {auc:.4f}")
    if not device.startswith("cuda"):
        print(f"gpu_check: FAILED: the worker trained on {device}, not a GPU.", file=sys.stderr)
        return 1
    if not auc > 0.6:
        print(f"gpu_check: FAILED: test AUC {auc:.4f} <= 0.6 on a planted signal.",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
