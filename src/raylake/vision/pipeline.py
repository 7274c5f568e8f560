"""The streaming input pipeline: a pinned image-table version -> Ray Data tasks that
decode and augment -> each Ray Train worker's shard, as torch batches.

Nothing decoded is materialised: ``read_delta`` reads the encoded bytes (a few hundred
bytes a digit), ``map_batches`` tasks (``decode_cpus`` CPUs each) keep the rows of the
split, decode, crop and normalise them, and Ray Train's streaming split hands every
worker an equal share, which it reads with ``iter_torch_batches`` while the next batches
are prepared (``prefetch_batches``). The decoded set exists only a few batches at a time.

The epoch of the augmentation comes from an :class:`EpochClock` actor that the workers
move before each epoch (a map task cannot know which pass over the data it is in).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from raylake.lake.image_codec import decode_batch, normalize
from raylake.lake.tables import Lake
from raylake.vision.transforms import random_crop

COLUMNS = ["image", "label_index", "content_hash"]


@dataclass(frozen=True)
class Contract:
    """What the network reads: classes, channels, size and normalisation."""

    classes: list[str]
    channels: int
    height: int
    width: int
    mean: list[float]
    std: list[float]


class EpochClock:
    """A tiny actor holding the current epoch of a run (named per run)."""

    def __init__(self) -> None:
        self.epoch = 0

    def set(self, epoch: int) -> None:
        """Move to ``epoch`` (every worker calls it with the same value)."""
        self.epoch = int(epoch)

    def get(self) -> int:
        """The current epoch."""
        return self.epoch


def start_clock(name: str) -> Any:
    """The run's EpochClock actor (no CPU: it only answers a number)."""
    import ray

    # Not detached: it ends with the driver's job even if the driver dies before killing it.
    return ray.remote(num_cpus=0)(EpochClock).options(name=name, get_if_exists=True).remote()


def in_test(hashes: list[str], test_fraction: float) -> np.ndarray:
    """Whether each image is in the test split: decided by its content hash, so the same
    image is always on the same side, whatever table version or order it comes in."""
    cut = int(test_fraction * 2**32)
    return np.array([int(h[:8], 16) < cut for h in hashes], bool)


def keep_split(batch: pa.Table, *, split: str, test_fraction: float) -> pa.Table:
    """The rows of ``batch`` in ``split`` (train, test, or all), still encoded. A separate
    step from decoding: a batch left empty stays an Arrow table here, and the decode step
    is never called on it (an empty tensor column would not convert to Arrow)."""
    if split == "all":
        return batch
    test = in_test(batch.column("content_hash").to_pylist(), test_fraction)
    return batch.filter(pa.array(test if split == "test" else ~test))


def decode_augment(batch: pa.Table, *, train: bool, contract: Contract, seed: int, pad: int,
                   flip: bool, clock: str | None) -> dict[str, np.ndarray]:
    """One Ray Data task's work: decode, augment (train only), normalise; returns
    {"x": float32 (n, c, h, w), "y": int64 (n,)}."""
    px = decode_batch(batch.column("image").to_pylist(), contract.channels, contract.height,
                      contract.width)
    if train and (pad or flip):
        import ray

        got: Any = ray.get(ray.get_actor(clock).get.remote()) if clock else 0
        epoch = int(got)
        px = random_crop(px, pad, batch.column("content_hash").to_pylist(), seed, epoch, flip)
    y = batch.column("label_index").to_numpy(zero_copy_only=False).astype(np.int64)
    return {"x": normalize(px, contract.mean, contract.std), "y": y}


def dataset(lake: Lake, table: str, version: int, *, split: str, settings: Any,
            contract: Contract, seed: int, clock: str | None) -> Any:
    """The Ray Dataset of ``split`` (train, test or all) of ``table@version``, decoded and
    (train) augmented lazily; nothing runs until it is iterated."""
    import ray.data

    ds = ray.data.read_delta(lake.uri(table), version=version, columns=COLUMNS,
                             storage_options=lake.storage.delta_options(),
                             num_cpus=float(settings.decode_cpus))
    cpus = float(settings.decode_cpus)
    ds = ds.map_batches(keep_split, batch_format="pyarrow", batch_size=None, num_cpus=cpus,
                        zero_copy_batch=True, fn_kwargs={
                            "split": split, "test_fraction": float(settings.test_fraction)})
    return ds.map_batches(
        decode_augment, batch_format="pyarrow", batch_size=int(settings.decode_batch),
        num_cpus=cpus, zero_copy_batch=True,
        fn_kwargs={"train": split == "train", "contract": contract, "seed": seed,
                   "pad": int(settings.pad), "flip": bool(settings.flip), "clock": clock})


def stats(lake: Lake, table: str, version: int, test_fraction: float, classes: list[str],
          sample: int = 2000, seed: int = 0) -> tuple[Contract, int, int]:
    """The contract (mean and std per channel from a seeded sample of the train split,
    the size and channels of its images) and the train and test image counts."""
    t = lake.read(table, version, columns=["content_hash", "width", "height", "mode"])
    hashes = t.column("content_hash").to_pylist()
    test = in_test(hashes, test_fraction)
    sizes = set(zip(t.column("height").to_pylist(), t.column("width").to_pylist(),
                    t.column("mode").to_pylist()))
    from raylake.errors import VisionError

    if len(sizes) != 1:
        raise VisionError(f"Table {table}@{version} mixes image sizes/modes {sorted(sizes)[:4]}; "
                          "the CNN takes one size: ingest with dataset.images.<table>.width, "
                          "height and mode declared.")
    height, width, mode = sizes.pop()
    channels = 1 if mode == "L" else 3
    train_idx = np.flatnonzero(~test)
    if not len(train_idx) or not test.any():
        raise VisionError(f"Table {table}@{version} has {len(train_idx)} train and "
                          f"{int(test.sum())} test images at train.cnn.test_fraction="
                          f"{test_fraction}; it needs both (more images, or another fraction).")
    pick = np.random.default_rng(seed).choice(train_idx, min(sample, len(train_idx)),
                                              replace=False)
    images = lake.read(table, version, columns=["image"]).column("image").take(
        pa.array(np.sort(pick))).to_pylist()
    px = decode_batch(images, channels, height, width).astype(np.float32) / 255
    mean = [float(px[:, c].mean()) for c in range(channels)]
    std = [max(float(px[:, c].std()), 1e-3) for c in range(channels)]
    return (Contract(list(classes), channels, int(height), int(width), mean, std),
            int(len(train_idx)), int(test.sum()))
