"""Synthetic tabular data: the ``synth`` group (which synthesizer, how it is fitted on a
lake table, how rows are sampled, augmentation of a training set, the evaluation report).

``raylake synth fit table=flights synth=tvae``; ``raylake synth sample
model=flights_tvae:1 rows=1000000 conditions="carrier=UA"``; ``raylake synth augment``;
``raylake synth report``. See docs/synth.md."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from raylake.config.values import Choice, at_least, fraction
from raylake.errors import ConfigValueError


class SynthKind(Choice):
    copula = "copula"  # Gaussian copula over the transformer's columns: seconds, the baseline
    tvae = "tvae"  # variational autoencoder (CTGAN paper, NeurIPS 2019)
    ctgan = "ctgan"  # conditional GAN: training-by-sampling, PacGAN discriminator


@dataclass
class SynthScalingConfig:
    # Ray Train workers (DDP); one per GPU on a cluster (the *_gpu options).
    num_workers: int = 1
    use_gpu: bool = False
    # CPUs each worker asks for; under one so a 2-CPU machine runs Ray Data beside it.
    cpus_per_worker: float = 1.0
    # Torch threads per worker; None: its whole CPUs (at least one).
    threads_per_worker: Optional[int] = None
    # Restarts of the fit after a worker dies; each goes on from the last checkpoint.
    max_failures: int = 2

    def __post_init__(self) -> None:
        at_least("synth.scaling.num_workers", self.num_workers, 1, "2")
        if not 0 < self.cpus_per_worker:
            raise ConfigValueError(f"synth.scaling.cpus_per_worker={self.cpus_per_worker!r} "
                                   "must be above 0, e.g. 0.5.")


@dataclass
class AugmentConfig:
    # The training set to rebalance and its label column; None: training_set.output_table
    # and training_set.label_name.
    table: Optional[str] = None
    label: Optional[str] = None
    # The class to add rows of; None: the rarest class.
    minority: Optional[str] = None
    # The minority class's share of the train split after augmentation.
    target_share: float = 0.5
    # Only rows before this time are fitted on and added (the train split: synthetic rows
    # never reach the validation or test periods); None: train.split.valid_start.
    before: Optional[str] = None
    time_column: Optional[str] = None  # None: train.split.time_column
    # Where the augmented training set goes; None: a new version of the training set itself
    # (the synthetic rows appended; the version before stays readable by time travel).
    output_table: Optional[str] = None

    def __post_init__(self) -> None:
        if not 0 < self.target_share < 1:
            raise ConfigValueError(f"synth.augment.target_share={self.target_share!r} must be "
                                   "between 0 and 1 (exclusive), e.g. 0.5.")


@dataclass
class SynthReportConfig:
    # The synthetic table to judge; None: the latest `synth sample` output of `model`.
    synthetic_table: Optional[str] = None
    # A column to predict for utility (train on synthetic, test on real); None: no utility.
    target: Optional[str] = None
    # Share of the real rows held out (the privacy baseline and the utility test set).
    holdout: float = 0.2
    # Rows of each side compared (seeded sample): the pair trends and distances are O(n^2)
    # in columns and O(n log n) in rows.
    max_rows: int = 20_000


@dataclass
class SynthConfig:
    name: str = "tvae"
    kind: SynthKind = SynthKind.tvae
    # -- fit ------------------------------------------------------------------------
    # The columns synthesized; empty: every column of the table.
    columns: list[str] = field(default_factory=list)
    # Columns treated as categories; None: strings, booleans and dictionary columns.
    discrete: Optional[list[str]] = None
    # Rows fitted on (a seeded sample of the table version); None: all.
    max_rows: Optional[int] = None
    epochs: int = 300
    batch_size: int = 500
    learning_rate: float = 1e-3
    embedding_dim: int = 128
    # Hidden layer sizes: TVAE's encoder and decoder, CTGAN's generator and discriminator.
    hidden: list[int] = field(default_factory=lambda: [128, 128])
    # CTGAN: rows the discriminator judges together (PacGAN).
    pac: int = 10
    seed: int = 0
    # The registered model's name; None: "<table>_<kind>" ('/' becomes '_').
    model_name: Optional[str] = None
    # A checkpoint every this many epochs (Ray Train keeps the last; a restarted fit
    # resumes from it).
    checkpoint_every: int = 10
    scaling: SynthScalingConfig = field(default_factory=SynthScalingConfig)
    # -- sample ---------------------------------------------------------------------
    # `raylake synth sample model=NAME[:V] rows=N conditions="carrier=UA"`.
    rows: int = 1000
    # "column=value[,column=value]": only rows with these values (discrete columns).
    conditions: Optional[str] = None
    # Rows per sampling task (tasks get distinct seeds derived from `seed`).
    rows_per_task: int = 100_000
    # Where sampled rows go; None: "synthetic/<model name>".
    output_table: Optional[str] = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    report: SynthReportConfig = field(default_factory=SynthReportConfig)

    def __post_init__(self) -> None:
        at_least("synth.epochs", self.epochs, 1, "300")
        at_least("synth.batch_size", self.batch_size, 2, "500")
        at_least("synth.rows", self.rows, 1, "1000")
        at_least("synth.rows_per_task", self.rows_per_task, 1, "100000")
        at_least("synth.checkpoint_every", self.checkpoint_every, 1, "10")
        at_least("synth.pac", self.pac, 1, "10")
        if self.max_rows is not None:
            at_least("synth.max_rows", self.max_rows, 2, "50000")
        fraction("synth.report.holdout", self.report.holdout, open_high=True)
        at_least("synth.report.max_rows", self.report.max_rows, 10, "20000")
        at_least("synth.seed", self.seed, 0, "0")
        if str(self.kind) == SynthKind.ctgan.value and self.batch_size % self.pac:
            raise ConfigValueError(f"synth.batch_size={self.batch_size} must be a multiple of "
                                   f"synth.pac={self.pac} (PacGAN judges rows in packs), "
                                   f"e.g. synth.batch_size={self.batch_size // self.pac * self.pac or self.pac}.")
