"""Training and tuning: the ``train`` and ``tune`` groups.

``train.trainer`` stays an open string: trainers are a registry in raylake.train,
which checks the name (a new trainer needs no change here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING

from raylake.config.values import (
    Choice,
    at_least,
    choice,
    fraction,
    optional_choice,
    positive,
)
from raylake.config.vision import CnnSettings
from raylake.errors import ConfigValueError


class DdpBackend(Choice):
    gloo = "gloo"  # CPU
    nccl = "nccl"  # GPUs


class SchedulerType(Choice):
    asha = "asha"  # stop trials that trail the others at each rung
    fifo = "fifo"  # run every trial to its end


class TuneMode(Choice):
    min = "min"  # lower is better (logloss)
    max = "max"  # higher is better (auc)


class TimeAttr(Choice):
    round = "round"  # xgboost boosting rounds
    epoch = "epoch"  # torch epochs


@dataclass
class SplitConfig:
    # Time-based splits: train < valid_start <= valid < test_start <= test. Without
    # dates, the time range is cut by fractions (the last test_fraction is test).
    time_column: str = MISSING
    valid_start: Optional[str] = None
    test_start: Optional[str] = None
    valid_fraction: float = 0.15
    test_fraction: float = 0.15

    def __post_init__(self) -> None:
        fraction("train.split.valid_fraction", self.valid_fraction, open_high=True)
        fraction("train.split.test_fraction", self.test_fraction, open_high=True)
        if self.valid_fraction + self.test_fraction >= 1:
            raise ConfigValueError(
                f"train.split.valid_fraction={self.valid_fraction} + test_fraction="
                f"{self.test_fraction} leave nothing to train on; keep their sum under 1, "
                "e.g. 0.15 and 0.15.")


@dataclass
class ScalingSettings:
    # Ray Train's ScalingConfig: workers, GPUs and the resources each worker holds.
    num_workers: int = 2
    use_gpu: bool = False
    cpus_per_worker: float = 0.5
    # Threads a worker computes with (XGBoost nthread, torch threads); None: its CPUs,
    # at least 1. Resources are for scheduling; threads may exceed a fractional share.
    threads_per_worker: Optional[int] = None
    # DDP backend for torch; None picks by use_gpu (nccl on GPUs, else gloo).
    backend: Optional[DdpBackend] = None

    def __post_init__(self) -> None:
        at_least("train.scaling.num_workers", self.num_workers, 1, "2")
        positive("train.scaling.cpus_per_worker", self.cpus_per_worker, "0.5")
        at_least("train.scaling.threads_per_worker", self.threads_per_worker, 1,
                 "1 (or null: the worker's CPUs)")
        self.backend = optional_choice(DdpBackend, self.backend, "train.scaling.backend")


@dataclass
class CostConfig:
    # The business metric: what a missed positive and a false alarm cost, giving the
    # expected cost per `per` rows against doing nothing (predicting no positive).
    missed: float = 100.0
    false_alarm: float = 20.0
    per: int = 1000

    def __post_init__(self) -> None:
        at_least("train.cost.missed", self.missed, 0, "100")
        at_least("train.cost.false_alarm", self.false_alarm, 0, "20")
        at_least("train.cost.per", self.per, 1, "1000")


@dataclass
class XGBoostSettings:
    # Every key a tune space names must be here (a sweep sets keys, it adds none).
    params: dict[str, Any] = field(default_factory=lambda: {
        "objective": "binary:logistic", "eval_metric": ["logloss", "auc"],
        "tree_method": "hist", "max_depth": 8, "eta": 0.1, "subsample": 0.8,
        "colsample_bytree": 0.8, "min_child_weight": 1.0, "max_bin": 256})
    num_boost_round: int = 100
    early_stopping_rounds: Optional[int] = None

    def __post_init__(self) -> None:
        at_least("train.xgboost.num_boost_round", self.num_boost_round, 1, "100")
        at_least("train.xgboost.early_stopping_rounds", self.early_stopping_rounds, 1, "10")


@dataclass
class TorchSettings:
    epochs: int = 5
    batch_size: int = 4096
    lr: float = 0.003
    weight_decay: float = 0.0
    embedding_dim: int = 8
    hidden: list[int] = field(default_factory=lambda: [64, 32])
    dropout: float = 0.1

    def __post_init__(self) -> None:
        at_least("train.torch.epochs", self.epochs, 1, "4")
        at_least("train.torch.batch_size", self.batch_size, 1, "1024")
        positive("train.torch.lr", self.lr, "0.003")
        at_least("train.torch.weight_decay", self.weight_decay, 0, "0.0001")
        at_least("train.torch.embedding_dim", self.embedding_dim, 1, "8")
        for i, width in enumerate(self.hidden):
            at_least(f"train.torch.hidden[{i}]", width, 1, "64")
        fraction("train.torch.dropout", self.dropout, open_high=True)


@dataclass
class TrainConfig:
    name: str = MISSING
    trainer: str = MISSING  # a trainer of raylake.train's registry: xgboost, torch
    # The registered model's name, and whether to register the result as a candidate.
    model_name: str = MISSING
    register: bool = True
    # The training set: a lake table at a version (None: the latest, recorded).
    table: str = MISSING
    table_version: Optional[str] = None
    label: str = MISSING
    # Columns to learn from; empty: every column but the label, the split's time
    # column and `exclude`. Categorical ones are encoded with a vocabulary from train.
    features: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    split: SplitConfig = field(default_factory=SplitConfig)
    scaling: ScalingSettings = field(default_factory=ScalingSettings)
    xgboost: XGBoostSettings = field(default_factory=XGBoostSettings)
    torch: TorchSettings = field(default_factory=TorchSettings)
    # The image CNN of `raylake vision-train` (train=cnn, config/vision.py).
    cnn: CnnSettings = field(default_factory=CnnSettings)
    # Report (and checkpoint) every N boosting rounds or epochs; retries of a failed run.
    checkpoint_every: int = 25
    max_failures: int = 2
    seed: int = 42
    cost: CostConfig = field(default_factory=CostConfig)
    # Ray Train's storage for checkpoints; None: <lake.root>/_train.
    storage_path: Optional[str] = None
    # Re-train from a run record's exact inputs and config (`raylake train --from-run`).
    from_run: Optional[str] = None

    def __post_init__(self) -> None:
        at_least("train.checkpoint_every", self.checkpoint_every, 1, "25")
        at_least("train.max_failures", self.max_failures, -1, "2 (-1: retry forever)")


@dataclass
class TuneSchedulerConfig:
    # asha: stop trials whose metric trails the others' at each rung (grace_period,
    # grace_period * reduction_factor, ... up to max_t, in `time_attr` units); fifo:
    # run every trial to its end.
    type: SchedulerType = SchedulerType.asha
    # None: the trainer's whole budget (xgboost.num_boost_round, torch.epochs).
    max_t: Optional[int] = None
    grace_period: int = 10
    reduction_factor: float = 2.0

    def __post_init__(self) -> None:
        self.type = choice(SchedulerType, self.type, "tune.scheduler.type")
        at_least("tune.scheduler.max_t", self.max_t, 1, "100 (or null: the trainer's budget)")
        if self.grace_period < 1 or (self.max_t is not None and self.grace_period > self.max_t):
            raise ConfigValueError(f"tune.scheduler: grace_period={self.grace_period} must be "
                                   f">= 1 and <= max_t={self.max_t}")
        if self.reduction_factor <= 1:
            raise ConfigValueError(f"tune.scheduler.reduction_factor={self.reduction_factor} "
                                   "must be > 1 (ASHA keeps the best 1/reduction_factor of the "
                                   "trials at each rung), e.g. 2")


@dataclass
class TuneConfig:
    name: str = MISSING
    # The trainer the space's keys are written for; a sweep under another
    # train.trainer is refused. None: any trainer.
    trainer: Optional[str] = None
    # A metric the trainer reports (valid_logloss, valid_auc, ...) and whether lower is better.
    metric: str = "valid_logloss"
    mode: TuneMode = TuneMode.min
    # The reported counter trial time is measured in: round (xgboost), epoch (torch).
    time_attr: TimeAttr = TimeAttr.round
    # Samples drawn from the space; each `grid` entry multiplies them.
    num_samples: int = 4
    # Trials at once. Each trial's Ray Train workers hold train.scaling CPUs: on a
    # small machine one at a time leaves CPUs for Ray Data to feed them.
    max_concurrent_trials: int = 1
    # CPUs of a trial's own process, which only starts and waits for Ray Train (the
    # workers reserve their own). Even 0.01 matters: a Ray Data read task holding one
    # whole CPU then no longer fits next to the workers on a 2-CPU machine.
    trial_cpus: float = 0.0
    # Inside trials the trainer reports every N rounds or epochs (train.checkpoint_every):
    # ASHA can only stop a trial at a report.
    report_every: int = 5
    scheduler: TuneSchedulerConfig = field(default_factory=TuneSchedulerConfig)
    # Dotted train-config key -> one distribution: {choice: [a, b]}, {uniform: [lo, hi]},
    # {loguniform: [lo, hi]}, {randint: [lo, hi]} (hi excluded), {grid: [a, b]} (every value).
    space: dict[str, dict[str, Any]] = field(default_factory=dict)
    seed: int = 42
    # The lake table of the sweep's trials (appended); None: tune/<train.model_name>_trials.
    trials_table: Optional[str] = None
    # Register the best trial's model as a candidate of train.model_name.
    register: bool = True
    # Tune's experiment state; None: <lake.root>/_tune.
    storage_path: Optional[str] = None

    def __post_init__(self) -> None:
        self.mode = choice(TuneMode, self.mode, "tune.mode")
        self.time_attr = choice(TimeAttr, self.time_attr, "tune.time_attr")
        at_least("tune.num_samples", self.num_samples, 1, "4")
        at_least("tune.max_concurrent_trials", self.max_concurrent_trials, 1, "1")
        at_least("tune.report_every", self.report_every, 1, "5")
        at_least("tune.trial_cpus", self.trial_cpus, 0, "0")
