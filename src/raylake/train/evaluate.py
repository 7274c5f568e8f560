"""Scoring splits with Ray Data (one task per block) and the metrics of the scores."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import ray

from raylake.models.flavors import get_flavor
from raylake.models.spec import FeatureSpec


def scores(splits: dict[str, ray.data.Dataset], flavor: str, model: Any,
           spec: FeatureSpec) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(labels, probabilities) of every row of each named split, ``model`` scored by its
    registry flavor; only these two columns reach the driver. One Ray Data execution
    scores all the splits: their blocks run side by side instead of one split after the
    other."""
    get_flavor(flavor)  # an unknown flavor fails here, not in every block's task
    model_ref = ray.put(model)  # our own object inside our own cluster, never a user's bytes
    names = list(splits)
    # map_batches' stubs do not allow a function taking fn_args after the batch.
    scored = [ds.map_batches(_score,  # type: ignore[arg-type]
                             fn_args=(flavor, model_ref, spec.to_dict(), i),
                             batch_format="pyarrow", batch_size=None, num_cpus=0.5)
              for i, ds in enumerate(splits.values())]
    union = scored[0].union(*scored[1:]) if len(scored) > 1 else scored[0]
    parts: list[list[pa.Table]] = [[] for _ in names]
    for t in ray.get(union.to_arrow_refs()):
        if t.num_rows:
            parts[t.column("split")[0].as_py()].append(t)
    out = {}
    for name, tables in zip(names, parts):
        t = pa.concat_tables(tables) if tables else None
        out[name] = (t.column("y").to_numpy(), t.column("p").to_numpy()) if t else \
            (np.empty(0), np.empty(0))
    return out


def _score(block: pa.Table, flavor: str, model: Any, spec: dict, split: int) -> pa.Table:
    s = FeatureSpec.from_dict(spec)
    if isinstance(model, ray.ObjectRef):  # Ray Data passes fn_args through unresolved
        model = ray.get(model)
    if block.num_rows == 0:
        return pa.table({"y": pa.array([], pa.float64()), "p": pa.array([], pa.float64()),
                         "split": pa.array([], pa.int8())})
    p = get_flavor(flavor).predict(model, s, block)
    return pa.table({"y": s.labels(block).astype(np.float64), "p": np.asarray(p, np.float64),
                     "split": np.full(block.num_rows, split, np.int8)})
