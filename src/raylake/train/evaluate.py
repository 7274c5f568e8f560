"""Scoring a split with Ray Data (one task per block) and the metrics of the scores."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import pyarrow as pa
import ray

from raylake.train.data import FeatureSpec


def scores(ds: ray.data.Dataset, trainer_module: str, model: Any,
           spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities) of every row of ``ds``; only these two columns reach the driver."""
    model_ref = ray.put(model)  # our own object inside our own cluster, never a user's bytes
    out = ds.map_batches(_score, fn_args=(trainer_module, model_ref, spec.to_dict()),
                         batch_format="pyarrow", batch_size=None, num_cpus=0.5)
    tables = [t for t in ray.get(out.to_arrow_refs()) if t.num_rows]
    if not tables:
        return np.empty(0), np.empty(0)
    t = pa.concat_tables(tables)
    return t.column("y").to_numpy(), t.column("p").to_numpy()


def _score(block: pa.Table, trainer_module: str, model: Any, spec: dict) -> pa.Table:
    s = FeatureSpec.from_dict(spec)
    if isinstance(model, ray.ObjectRef):  # Ray Data passes fn_args through unresolved
        model = ray.get(model)
    if block.num_rows == 0:
        return pa.table({"y": pa.array([], pa.float64()), "p": pa.array([], pa.float64())})
    p = importlib.import_module(trainer_module).predict(model, s, block)
    return pa.table({"y": s.labels(block).astype(np.float64), "p": np.asarray(p, np.float64)})
