"""Augmentation of decoded image batches, with numpy only (no torchvision here).

Random crop after zero padding (shifts of up to ``pad`` pixels: digits are not always
centred), an optional horizontal flip, then normalisation. Flips are off for digits: a
mirrored 2, 3, 7 or 9 is not a digit of its class, and a flipped 6 is close to a rotated
9, so flipping teaches the wrong labels. Every image's shift is drawn from a generator
seeded by (seed, epoch, content hash): the same image gets the same crop in the same
epoch whatever batch or worker it lands in, another crop the next epoch, and a run
resumed after a failure draws what an unbroken one would.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def row_rng(seed: int, epoch: int, content_hash: str) -> np.random.Generator:
    """The generator of one image in one epoch."""
    return np.random.default_rng([int(seed), int(epoch), int(content_hash[:15], 16)])


def random_crop(pixels: np.ndarray, pad: int, hashes: Sequence[str], seed: int, epoch: int,
                flip: bool = False) -> np.ndarray:
    """``pixels`` (n, c, h, w) uint8, each shifted by a random crop of the zero-padded
    image (and flipped left-right half the time with ``flip``)."""
    if pad <= 0 and not flip:
        return pixels
    n, _, h, w = pixels.shape
    padded = np.pad(pixels, ((0, 0), (0, 0), (pad, pad), (pad, pad))) if pad else pixels
    out = np.empty_like(pixels)
    for i in range(n):
        rng = row_rng(seed, epoch, hashes[i])
        dy, dx = (rng.integers(0, 2 * pad + 1, 2) if pad else (0, 0))
        img = padded[i, :, dy:dy + h, dx:dx + w]
        out[i] = img[:, :, ::-1] if flip and rng.random() < 0.5 else img
    return out
