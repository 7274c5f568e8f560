"""Distributed sampling from a registered synthesizer.

The rows are split into tasks of ``rows_per_task``; task ``i`` samples with the seed
``SeedSequence([seed, i])`` gives, so the rows depend only on (model version, seed, rows,
rows per task, conditions), all in the run record: the same run gives the same rows on
any cluster, whichever worker runs which task. The artifact goes to the object store
once and every task loads it (bytes read with ``weights_only=True``). All tasks' rows are
written as one table version, with an application id of those inputs, so a re-run of
the same sample adds nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from raylake.errors import SynthError, did_you_mean
from raylake.lake.commit import snapshot, write_table
from raylake.lake.tables import Lake
from raylake.models.registry import ModelVersion

# CPUs a sampling task asks for: under one, so a 2-CPU machine runs two beside the driver.
TASK_CPUS = 0.5


@dataclass
class Loaded:
    """A registered synthesizer: its registry entry and the artifact bytes."""

    version: ModelVersion
    data: bytes


@dataclass
class Written:
    version: int
    rows: int
    written: bool  # False: the table's latest version is this sample (same inputs)
    key: str  # a digest of the inputs that decide the rows (recorded with the output)


def load(lake: Lake, ref: str) -> Loaded:
    """The synthesizer ``NAME[:VERSION|champion|latest]``; SynthError when the model is of
    another flavor."""
    from raylake.models.registry import ModelRegistry, parse_model_ref
    from raylake.synth.flavor import NAME

    registry = ModelRegistry(lake)
    name, version_ref = parse_model_ref(ref)
    mv = registry.get(name, version_ref)
    if mv.flavor != NAME:
        raise SynthError(f"Model {mv.ref} is a {mv.flavor!r} model, not a synthesizer: fit one "
                         f"with `raylake synth fit table=... synth=tvae` and sample that.")
    registry.load(name, mv.version)  # checks the artifact's hash and that it loads
    return Loaded(mv, registry.store.read_artifact(mv.artifact))


def parse_conditions(text: str | None, mv: ModelVersion) -> dict[str, Any]:
    """``"carrier=UA,origin=JFK"`` as {column: value}, each value typed as its column;
    SynthError naming the column or the value and the fix."""
    if not text:
        return {}
    types = {f["name"]: f["type"] for f in mv.features}
    out: dict[str, Any] = {}
    for part in str(text).split(","):
        col, sep, value = part.partition("=")
        col, value = col.strip(), value.strip()
        if not sep or not col:
            raise SynthError(f"synth.conditions={text!r}: each condition is column=value, "
                             "e.g. conditions=\"carrier=UA\" (several: \"carrier=UA,origin=JFK\").")
        if col not in types:
            raise SynthError(f"synth.conditions names {col!r}, which {mv.ref} was not fitted "
                             f"on.{did_you_mean(col, list(types))} Its columns: "
                             f"{', '.join(types)}.")
        out[col] = _typed(value, types[col], col)
    return out


def _typed(value: str, arrow_type: str, col: str) -> Any:
    t = arrow_type.lower()
    try:
        if t.startswith(("int", "uint")):
            return int(value)
        if t in ("double", "float", "float64", "float32", "halffloat"):
            return float(value)
        if t in ("bool", "boolean"):
            if value.lower() not in ("true", "false"):
                raise ValueError(value)
            return value.lower() == "true"
    except ValueError:
        raise SynthError(f"synth.conditions: {col}={value!r} is not a {arrow_type} value; "
                         f"give one of the column's values.") from None
    return value


def plan(rows: int, rows_per_task: int, seed: int) -> list[tuple[int, int]]:
    """(rows, seed) per task: ``rows`` split into tasks of ``rows_per_task`` (the last one
    smaller), each seed drawn from ``SeedSequence([seed, task])``."""
    out, task, left = [], 0, int(rows)
    while left > 0:
        n = min(left, int(rows_per_task))
        task_seed = int(np.random.SeedSequence([int(seed), task]).generate_state(1)[0])
        out.append((n, task_seed))
        left -= n
        task += 1
    return out


def sample_rows(data: bytes, info: Mapping[str, Any], rows: int, seed: int,
                conditions: Mapping[str, Any], schema: str | None = None) -> pa.Table:
    """One task's rows: the synthesizer rebuilt from its artifact, sampled with ``seed``,
    in the real table's types (``schema``: :func:`raylake.synth.data.schema_text`)."""
    import torch

    from raylake.synth.data import as_table, schema_of
    from raylake.synth.flavor import FLAVOR

    torch.set_num_threads(1)  # tasks run side by side; one thread each
    synth = FLAVOR.load(data, dict(info))
    frame = synth.sample(rows, seed=seed, conditions=dict(conditions) or None)
    return as_table(frame, schema_of(schema) if schema else None)


def sample_to_table(lake: Lake, loaded: Loaded, tasks: list[tuple[int, int]],
                    conditions: Mapping[str, Any], out: str, *, run_id: str) -> Written:
    """Run ``tasks`` as Ray tasks and write their rows to ``out`` as one version (the
    table's previous rows replaced: a version is one sample)."""
    import ray

    from raylake.runtime import task_cause

    mv = loaded.version
    key = json.dumps({"model": mv.ref, "sha": mv.sha256, "tasks": tasks,
                      "conditions": {k: str(v) for k, v in conditions.items()}}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    app_id = f"raylake.synth-sample/{mv.name}/{digest}"
    txn = 1
    dtab = snapshot(lake, out)
    if dtab is not None:
        done = dtab.transaction_version(app_id)
        if done is not None:
            # This sample was written once; it is still the table's rows only if the
            # latest version is that write (another sample may have replaced it since).
            if (latest_output(lake, out) or {}).get("sample_key") == digest:
                return Written(dtab.version(), lake.count(out), False, digest)
            txn = int(done) + 1
    blob = ray.put(loaded.data)
    task = ray.remote(num_cpus=TASK_CPUS, max_retries=2)(sample_rows)
    schema = mv.training.get("arrow_schema")
    refs = [task.remote(blob, mv.flavor_info, n, s, dict(conditions), schema) for n, s in tasks]
    try:
        parts = ray.get(refs)
    except Exception as exc:  # a task's SynthError comes back wrapped by Ray
        cause = task_cause(exc)
        if isinstance(cause, SynthError):
            raise cause from None
        raise
    table = pa.concat_tables(parts, promote_options="permissive")
    version = write_table(lake, out, table, mode="overwrite", app_id=app_id, run_id=run_id,
                          job="synth-sample", txn_version=txn)
    return Written(version, table.num_rows, True, digest)


def latest_output(lake: Lake, table: str) -> dict[str, Any] | None:
    """What the run that wrote ``table``'s latest version recorded of it (its output entry:
    model, seed, conditions, sample key), None when no run record says."""
    from raylake.errors import RunNotFoundError
    from raylake.lake.runs import get_run

    if not lake.exists(table):
        return None
    run_id = (lake.table(table).history(1) or [{}])[0].get("raylake.run_id")
    if not run_id:
        return None
    try:
        record = get_run(lake, str(run_id))
    except RunNotFoundError:
        return None
    outs = [o for o in record.get("outputs") or [] if o.get("table") == table]
    return outs[0] if outs else None
