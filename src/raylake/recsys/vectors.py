"""The item vectors of a two-tower version: every item of ``recsys.items_table`` through the
item tower, into ``recsys.item_vectors_table`` (item_id, vector, model_version, run_id).

Ray Data reads the items table version (its ``item_id`` column only); a pool of actors,
each loading the towers once from the registry (fractional CPUs: the machine keeps a CPU
for the rest), encodes ids with the model's own :class:`~raylake.models.spec.FeatureSpec`
(an id the towers never saw is code 0, the "unknown item" vector), computes the vectors
and writes them as Parquet files; the driver commits them all in one Delta transaction
that replaces the table. A re-run for the same model version and the same items adds
nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raylake.errors import CountMismatchError, ModelError, RunNotFoundError
from raylake.lake.commit import add_actions, commit_files
from raylake.lake.runs import get_run
from raylake.lake.tables import Lake
from raylake.models.registry import ModelRegistry, ModelVersion, parse_model_ref

JOB = "recsys-vectors"
# The encoding actors: a fraction of a CPU each (a 2-CPU machine keeps one for the
# driver, Ray Data's reads and the other jobs), one torch thread, rows per batch.
ACTORS = 2
ACTOR_CPUS = 0.5
BATCH_ROWS = 8192


def vectors_schema(dim: int) -> pa.Schema:
    """The item-vectors table's columns for vectors of dimension ``dim``."""
    return pa.schema([("item_id", pa.int64()), ("vector", pa.list_(pa.float32(), dim)),
                      ("model_version", pa.int64()), ("run_id", pa.string())])


class ItemEncoder:
    """One actor: the towers loaded once, then batches of item ids turned into vectors and
    written as Parquet files under the output table (not committed)."""

    def __init__(self, storage: Any, name: str, version: int, output: str,
                 run_id: str) -> None:
        import torch

        from raylake.models.spec import FeatureSpec

        torch.set_num_threads(1)  # a fraction of a CPU: one thread, no oversubscription
        self.storage, self.output, self.run_id = storage, output, run_id
        self.mv, self.net = ModelRegistry(Lake(storage)).load(name, version)
        self.spec = FeatureSpec.from_dict(self.mv.preprocessing)

    def __call__(self, batch: pa.Table) -> pa.Table:
        """Vectors of ``batch``'s item ids, written; returns the files' records."""
        from raylake.lake.files import file_records, write_files

        out = item_vector_rows(self.net, self.spec, batch.column("item_id"),
                               self.mv.version, self.run_id)
        return pa.Table.from_pylist(file_records(
            write_files(out, self.storage, self.output, ()), out.schema))


def item_codes(spec: Any, item_ids: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """The towers' codes of ``item_ids``: the spec's second categorical column is the
    item (TwoTower's ``[user, item]``), 1..n for ids seen in training, 0 for the others."""
    column = spec.categorical[1]
    only = type(spec)([], [column], {column: spec.vocab[column]}, spec.label)
    _, cat = only.encode(pa.table({column: item_ids}))
    return cat[:, 0]


def item_vector_rows(net: Any, spec: Any, item_ids: pa.ChunkedArray | pa.Array,
                     model_version: int, run_id: str) -> pa.Table:
    """The item-vector rows of ``item_ids`` under towers ``net``."""
    import torch

    codes = item_codes(spec, item_ids)
    with torch.inference_mode():
        vec = net.item_vectors(torch.from_numpy(codes)).float().numpy()
    n, dim = vec.shape
    flat = pa.array(np.ascontiguousarray(vec).reshape(-1), pa.float32())
    return pa.Table.from_arrays(
        [pc.cast(item_ids, pa.int64()), pa.FixedSizeListArray.from_arrays(flat, dim),
         pa.array(np.full(n, model_version, np.int64)), pa.array([run_id] * n, pa.string())],
        schema=vectors_schema(dim))


def tower_version(lake: Lake, conf: Any, ref: str | None) -> ModelVersion:
    """The registered two-tower version ``ref`` (``NAME[:VERSION|champion|latest]``; None:
    ``recsys.tower_model``, its champion or else its latest version); ModelError unless
    it is a TwoTower stored with the torch flavor."""
    name, version = parse_model_ref(ref or conf.recsys.tower_model)
    mv = ModelRegistry(lake).get(name, version)
    if mv.flavor != "torch" or mv.flavor_info.get("architecture") != "TwoTower":
        raise ModelError(f"Model {mv.ref} is a {mv.flavor} {mv.flavor_info.get('architecture')}"
                         ", not a two-tower network (torch flavor, TwoTower); name the "
                         f"towers' model (recsys.tower_model={conf.recsys.tower_model!r}).")
    categorical = (mv.preprocessing or {}).get("categorical") or []
    if len(categorical) != 2:
        raise ModelError(f"Model {mv.ref}'s feature spec has categorical columns "
                         f"{categorical}; a two-tower reads exactly [user, item].")
    return mv


def write_item_vectors(lake: Lake, conf: Any, tower_model_ref: str | None, run: Any, *,
                       echo: Callable[[str], Any] | None = None) -> tuple[str, int, int]:
    """Write the vector of every item of ``recsys.items_table`` (its latest version) under
    two-tower version ``tower_model_ref`` to ``recsys.item_vectors_table``, in one commit;
    returns (table, version, rows written: 0 when the table already holds these vectors).
    Inputs and output are recorded on ``run``."""
    import ray

    rc = conf.recsys
    mv = tower_version(lake, conf, tower_model_ref)
    items = lake.table(rc.items_table)
    items_version = items.version()
    output = rc.item_vectors_table
    run.add_input(table=rc.items_table, version=items_version, role="items")
    run.add_input(model=mv.name, version=mv.version, role="towers")

    current = _holds(lake, output, mv, rc.items_table, items_version)
    if current is not None:
        msg = (f"{output}@{current} already holds the vectors of {mv.ref} for "
               f"{rc.items_table}@{items_version}; nothing added")
        run.add_output(table=output, version=current, rows=0, skipped=True)
        run.metrics.update(rows=0, skipped=True, model=mv.ref)
        if echo is not None:
            echo(msg)
        return output, current, 0

    # The app id names the input and the table version it replaces: two writers of the
    # same input racing from the same version commit once (the loser finds the id and
    # deletes its files), while writing this model again after another one is a new
    # commit, not "already done".
    base = lake.version(output) if lake.exists(output) else -1
    app_id = "raylake.item_vectors." + hashlib.sha256(json.dumps(
        [mv.name, mv.version, rc.items_table, items_version, base]).encode()).hexdigest()[:24]
    ds = ray.data.read_delta(items.table_uri, version=items_version, columns=["item_id"],
                             storage_options=lake.storage.delta_options())
    files = ds.map_batches(
        ItemEncoder, fn_constructor_kwargs={
            "storage": lake.storage, "name": mv.name, "version": mv.version,
            "output": output, "run_id": run.run_id},
        compute=ray.data.ActorPoolStrategy(size=ACTORS), num_cpus=ACTOR_CPUS,
        batch_size=BATCH_ROWS, batch_format="pyarrow")
    actions = [a for t in ray.get(files.to_arrow_refs()) for a in t.to_pylist()]
    rows = sum(a["rows"] for a in actions)
    expected = lake.count(rc.items_table, items_version)
    if rows != expected or not actions:
        raise CountMismatchError(
            f"{rows:,} item vectors for {expected:,} items of {rc.items_table}@{items_version}; "
            "nothing was committed. Check the items table has rows, then re-run.")
    schema = pa.ipc.read_schema(pa.py_buffer(actions[0]["schema"]))
    # Overwrite: the table holds the vectors of one model version. Vectors of two versions
    # live in different spaces (an index mixing them would rank nonsense), and the index is
    # built from the whole table at a version; earlier versions stay readable by time travel.
    version = commit_files(
        lake, output, schema, add_actions(actions), mode="overwrite", app_id=app_id,
        run_id=run.run_id, job=JOB,
        description=f"item vectors of {mv.ref} for {rc.items_table}@{items_version}")
    run.add_output(table=output, version=version, rows=rows, skipped=False)
    unknown = int((item_codes(_spec(mv), lake.read(rc.items_table, items_version,
                                                    columns=["item_id"])["item_id"]) == 0).sum())
    run.metrics.update(rows=rows, skipped=False, model=mv.ref, unknown_items=unknown)
    if echo is not None:
        echo(f"{rows:,} item vectors of {mv.ref} -> {output}@{version}"
             + (f" ({unknown:,} items unknown to the towers share the unknown-item vector)"
                if unknown else ""))
    return output, version, rows


def read_item_vectors(lake: Lake, table: str,
                      version: int | None = None) -> tuple[np.ndarray, np.ndarray, pa.Table]:
    """(item ids int64 (n,), vectors float32 (n, dim), the table without its vectors) of
    the item-vectors table at ``version`` (latest if None)."""
    t = lake.read(table, version)
    col = t.column("vector").combine_chunks()
    flat = pc.list_flatten(col).to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    n = t.num_rows
    dim = len(flat) // n if n else 0
    if n and (len(flat) != n * dim or pc.any(pc.not_equal(pc.list_value_length(col), dim)).as_py()):
        raise ModelError(f"The vectors of {table}@{version} are not all of one length; "
                         "write the item vectors again.")
    ids = t.column("item_id").to_numpy().astype(np.int64, copy=False)
    return ids, flat.reshape(n, dim), t.drop_columns(["vector"])


def _spec(mv: ModelVersion) -> Any:
    from raylake.models.spec import FeatureSpec

    return FeatureSpec.from_dict(mv.preprocessing)


def _holds(lake: Lake, output: str, mv: ModelVersion, items_table: str,
           items_version: int) -> int | None:
    """The item-vectors table's latest version when it already holds the vectors of ``mv``
    for exactly the items of ``items_table``@``items_version``; None otherwise."""
    if not lake.exists(output):
        return None
    version = lake.version(output)
    have = lake.read(output, version, columns=["item_id", "model_version", "run_id"])
    run_ids = set(have["run_id"].to_pylist())
    if set(have["model_version"].to_pylist()) != {mv.version} or len(run_ids) != 1:
        return None
    # The rows give the version, their run the model's name (two models may share a
    # version number).
    try:
        inputs = get_run(lake, str(run_ids.pop())).get("inputs") or []
    except RunNotFoundError:
        return None
    if not any(i.get("model") == mv.name and i.get("version") == mv.version for i in inputs):
        return None
    want = lake.read(items_table, items_version, columns=["item_id"])["item_id"]
    same = np.array_equal(np.sort(have["item_id"].to_numpy()), np.sort(want.to_numpy()))
    return version if same else None
