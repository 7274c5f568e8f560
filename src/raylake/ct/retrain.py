"""The steps of a ``ct`` run that touch data: rebuild the training set on the window,
train the challenger, and score champion and challenger on the same holdout rows.

Building and training are the ``training-set`` and ``train`` jobs themselves, called
as ``raylake chain`` calls them (the composed config with a few keys set), so each
records its own run and a ct run's record points at them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
from omegaconf import DictConfig

from raylake.ct.decide import Window
from raylake.errors import MonitorError
from raylake.lake.tables import Lake
from raylake.models.flavors import get_flavor
from raylake.models.registry import ModelVersion
from raylake.models.spec import FeatureSpec
from raylake.monitor.performance import threshold_of  # the one monitoring judges at
from raylake.runner import job_config
from raylake.train import metrics

BATCH_ROWS = 65_536  # holdout rows scored at a time: the driver holds scores, not rows


def build_training_set(cfg: DictConfig, win: Window, entity_version: int,
                       echo: Callable[[str], Any]) -> dict[str, Any]:
    """The ``training-set`` job on [win.start, win.end) of the entity table at
    ``entity_version``; its result (``version``, ``rows``, ``run_id``). Built already from
    the same versions and window: nothing is rebuilt, the version that holds it is given."""
    from raylake.features.jobs import training_set

    bounds = win.iso()
    return training_set(job_config(cfg, "training-set", **{
        "training_set.start": bounds["start"], "training_set.end": bounds["end"],
        "training_set.entity_version": str(entity_version)}), echo=echo)


def train_challenger(cfg: DictConfig, name: str, table: str, version: int, win: Window,
                     echo: Callable[[str], Any]) -> dict[str, Any]:
    """The ``train`` job on ``table@version`` split at the window's bounds (its test split
    is the holdout), registering a candidate of ``name``; its result."""
    from raylake.train.jobs import train

    bounds = win.iso()
    return train(job_config(cfg, "train", **{
        "train.table": table, "train.table_version": str(version), "train.model_name": name,
        "train.register": True, "train.from_run": None,
        "train.split.valid_start": bounds["valid_start"],
        "train.split.test_start": bounds["test_start"]}), echo=echo)


def holdout_scores(lake: Lake, table: str, version: int, time_column: str, label: str,
                   win: Window, models: dict[str, tuple[ModelVersion, Any]]
                   ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Labels of the holdout rows of ``table@version`` (``time_column`` in [test_start,
    end), label set) and each model's probabilities for the same rows, scored in batches
    by its registry flavor with its own feature spec."""
    dataset = lake.dataset(table, version)
    names = dataset.schema.names
    specs = {k: FeatureSpec.from_dict(mv.preprocessing) for k, (mv, _) in models.items()}
    when = _holdout_filter(dataset, table, version, time_column, label, win)
    for k, (mv, _) in models.items():
        missing = [c for c in specs[k].names if c not in names]
        if missing:
            raise MonitorError(
                f"The {k} {mv.ref} reads {missing}, which the new training set {table}@"
                f"{version} lacks: the two cannot be judged on the same rows. Build the "
                "training set with the feature service the model was trained on "
                "(training_set.feature_service), or judge another version (ct.challenger).")
    columns = list(dict.fromkeys([c for s in specs.values() for c in s.names]
                                 + [label, time_column]))
    threads = max(1, min(4, os.cpu_count() or 1))
    score = {k: get_flavor(mv.flavor).predictor(model, specs[k], threads)
             for k, (mv, model) in models.items()}
    ys: list[np.ndarray] = []
    ps: dict[str, list[np.ndarray]] = {k: [] for k in models}
    for batch in dataset.to_batches(columns=columns, filter=when, batch_size=BATCH_ROWS):
        if not batch.num_rows:
            continue
        block = pa.Table.from_batches([batch])
        y = block.column(label)
        if pa.types.is_boolean(y.type):
            y = pc.cast(y, pa.int8())
        ys.append(pc.cast(y, pa.float64()).to_numpy(zero_copy_only=False))
        for k in models:
            ps[k].append(np.asarray(score[k](block), dtype=np.float64))
    if not ys:
        raise MonitorError(
            f"The holdout [{win.test_start.isoformat()}, {win.end.isoformat()}) of {table}@"
            f"{version} has no labelled rows: no outcomes reached the lake for that period "
            "yet. Wait for the labels, or move ct.now (the replayed clock) or ct.holdout "
            "to a period that has them.")
    return np.concatenate(ys), {k: np.concatenate(v) for k, v in ps.items()}


def holdout_rows(lake: Lake, table: str, version: int, time_column: str, label: str,
                 win: Window) -> int:
    """How many labelled rows of ``table@version`` lie in the holdout [test_start, end)."""
    dataset = lake.dataset(table, version)
    return int(dataset.count_rows(
        filter=_holdout_filter(dataset, table, version, time_column, label, win)))


def _holdout_filter(dataset: pads.Dataset, table: str, version: int, time_column: str,
                    label: str, win: Window) -> pads.Expression:
    """The holdout's labelled rows: ``time_column`` in [test_start, end), label set."""
    names = dataset.schema.names
    for col, what in ((time_column, "train.split.time_column"), (label, "train.label")):
        if col not in names:
            raise MonitorError(f"{what}={col!r} is not a column of the training set "
                               f"{table}@{version}; columns: {', '.join(names)}.")
    t = dataset.schema.field(time_column).type
    return ((pads.field(time_column) >= pa.scalar(win.test_start, t))
            & (pads.field(time_column) < pa.scalar(win.end, t))
            & pads.field(label).is_valid())


def evaluate(y: np.ndarray, p: np.ndarray, mv: ModelVersion, cost: Any) -> dict[str, Any]:
    """A model's score on the holdout: every training metric at its own threshold, plus
    ``cost`` (per ``cost.per`` rows, lower is better) and ``auc`` by name."""
    threshold, source = threshold_of(mv, cost)
    m = metrics.evaluate(y, p, threshold, cost)
    return {"model": mv.ref, "auc": m["auc"], "cost": m[f"cost_per_{cost.per}"],
            "threshold_source": source, **m}
