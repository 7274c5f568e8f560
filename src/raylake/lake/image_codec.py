"""Image bytes <-> pixel arrays: the encodings the lake stores images in (PNG, JPEG),
shared by ingestion checks, the training pipeline and scoring, so a model sees the same
pixels wherever it runs.

Pillow decodes (PNG, JPEG); nothing here imports torch. Images are decoded into
``uint8`` arrays of shape (channels, height, width); normalisation maps them to
``float32`` with the training set's mean and standard deviation per channel.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from raylake.errors import ImageError

# Pillow mode -> channels. Other modes (CMYK, P, I;16, ...) are refused, not converted:
# a silent conversion would change what the model sees without the data saying so.
CHANNELS = {"L": 1, "RGB": 3}
ENCODINGS = ("png", "jpeg")


@dataclass(frozen=True)
class Decoded:
    """One decoded image: pixels (channels, height, width) uint8, and what the file said."""

    pixels: np.ndarray
    format: str  # "png" or "jpeg"
    mode: str
    width: int
    height: int


def decode(data: bytes) -> Decoded:
    """``data`` decoded; ImageError naming what is wrong if it is not a whole PNG or JPEG
    in mode L or RGB."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = (im.format or "").lower()
            if fmt not in ENCODINGS:
                raise ImageError(f"not a PNG or JPEG file (Pillow reads it as {fmt or 'unknown'})")
            im.load()  # a truncated file fails here, not at Image.open
            mode = im.mode
            if mode not in CHANNELS:
                raise ImageError(f"mode {mode!r} is not one of {sorted(CHANNELS)}")
            arr = np.asarray(im, dtype=np.uint8)
    except UnidentifiedImageError:
        raise ImageError("undecodable image: not a PNG or JPEG file (Pillow cannot identify "
                         "it)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"undecodable image: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    pixels = arr[None, :, :] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return Decoded(np.ascontiguousarray(pixels), fmt, mode, int(arr.shape[1]), int(arr.shape[0]))


def encode(pixels: np.ndarray, encoding: str = "png") -> bytes:
    """``pixels`` (height, width) or (channels, height, width) uint8 as PNG or JPEG bytes."""
    from PIL import Image

    if encoding not in ENCODINGS:
        raise ImageError(f"encoding {encoding!r} is not one of {ENCODINGS}")
    arr = np.asarray(pixels, dtype=np.uint8)
    if arr.ndim == 3:
        arr = arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)
    buf = io.BytesIO()
    # compress_level=1: PNG is lossless at every level; 1 writes several times faster.
    Image.fromarray(arr).save(buf, format=encoding.upper(),
                              **({"compress_level": 1} if encoding == "png" else {"quality": 95}))
    return buf.getvalue()


def decode_batch(images: Sequence[bytes], channels: int, height: int, width: int) -> np.ndarray:
    """Every image of ``images`` as one uint8 array (n, channels, height, width); ImageError
    naming the first that does not decode to that shape."""
    out = np.empty((len(images), channels, height, width), np.uint8)
    for i, data in enumerate(images):
        px = decode(bytes(data)).pixels
        if px.shape != out.shape[1:]:
            raise ImageError(f"image {i} of the batch is {tuple(px.shape)} (channels, height, "
                             f"width), the model reads {out.shape[1:]}")
        out[i] = px
    return out


def normalize(pixels: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 (n, c, h, w) -> float32 ((x / 255) - mean) / std per channel."""
    m = np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
    s = np.asarray(std, np.float32).reshape(1, -1, 1, 1)
    return (pixels.astype(np.float32) * np.float32(1 / 255) - m) / s
