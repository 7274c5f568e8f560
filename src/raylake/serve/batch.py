"""Batch scoring: a registered model over a lake table, predictions into the lake.

Ray Data reads the table version with only the columns needed, a pool of actors
(each loads the model once, from the registry's safe format) scores batches and
writes each batch's predictions as a Parquet file itself; only file metadata
comes back. The driver commits every file in one Delta transaction whose id is
the model version plus the input version: a crash commits nothing, and a re-run
for the same model and input adds nothing.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pyarrow as pa
import ray

from raylake.errors import ConfigError, CountMismatchError, did_you_mean
from raylake.lake.commit import add_actions, already_committed, commit_files
from raylake.lake.tables import Lake


class Scorer:
    """One actor: the model loaded once, its flavor's scoring function set up once
    (``threads`` scoring threads), then batches scored and written."""

    def __init__(self, storage: Any, name: str, version: int, output: str,
                 keep: list[str], run_id: str, threads: int) -> None:
        from raylake.models.flavors import get_flavor
        from raylake.models.registry import ModelRegistry
        from raylake.models.spec import FeatureSpec

        self.storage, self.output, self.keep, self.run_id = storage, output, keep, run_id
        self.mv, model = ModelRegistry(Lake(storage)).load(name, version)
        spec = FeatureSpec.from_dict(self.mv.preprocessing)
        self.predict = get_flavor(self.mv.flavor).predictor(model, spec, threads)

    def __call__(self, batch: pa.Table) -> pa.Table:
        """Score ``batch`` and write the kept columns with ``prediction``, ``model_name``,
        ``model_version`` and ``run_id`` as Parquet files under the output table, not
        committed; returns their file records."""
        from raylake.lake.files import file_records, write_files

        p = self.predict(batch)
        n = batch.num_rows
        out = batch.select(self.keep).append_column("prediction", pa.array(p, pa.float64()))
        out = out.append_column("model_name", pa.array([self.mv.name] * n, pa.string()))
        out = out.append_column("model_version", pa.array([self.mv.version] * n, pa.int32()))
        out = out.append_column("run_id", pa.array([self.run_id] * n, pa.string()))
        files = write_files(out, self.storage, self.output, ())
        return pa.Table.from_pylist(file_records(files, out.schema))


def check_config(conf: Any) -> None:
    """batch-predict needs a model and a table."""
    if not conf.model or not conf.table:
        raise ConfigError("batch-predict needs model=NAME[:VERSION|champion] and table=NAME "
                          "(e.g. raylake batch-predict model=delay_model table=training/flights_delay).")


def score_table(lake: Lake, conf: Any, run: Any) -> dict[str, Any]:
    """Score ``conf.table`` with ``conf.model`` into the predictions table, once."""
    from raylake.models.registry import ModelRegistry, parse_model_ref

    b = conf.batch_predict
    name, ref = parse_model_ref(conf.model)
    mv = ModelRegistry(lake).get(name, ref)
    features = [f["name"] for f in mv.features]
    dtab = lake.table(conf.table, conf.version)
    version = dtab.version()
    columns = [f.name for f in pa.schema(dtab.schema().to_arrow())]
    missing = [c for c in features if c not in columns]
    if missing:
        raise ConfigError(f"Table {conf.table!r}@{version} lacks feature(s) {missing} of model "
                          f"{mv.ref}.{did_you_mean(missing[0], columns)} Score a table that "
                          "has the model's features (its training set, or one built the same way).")
    keep = list(b.keep_columns) or [c for c in columns if c not in features]
    unknown = [c for c in keep if c not in columns]
    if unknown:
        raise ConfigError(f"batch_predict.keep_columns {unknown} are not columns of "
                          f"{conf.table!r}.{did_you_mean(unknown[0], columns)}")
    output = b.output_table or f"predictions/{name}"
    app_id = "raylake.predict." + hashlib.sha256(json.dumps(
        [name, mv.version, conf.table, version, keep]).encode()).hexdigest()[:24]
    run.add_input(table=conf.table, version=version, role="rows")
    run.add_input(model=name, version=mv.version, role="model")
    if already_committed(lake, output, app_id):
        out_version, rows, skipped = lake.version(output), 0, True
    else:
        ds = ray.data.read_delta(dtab.table_uri, version=version,
                                 columns=list(dict.fromkeys([*features, *keep])),
                                 storage_options=lake.storage.delta_options())
        files = ds.map_batches(
            Scorer, fn_constructor_kwargs={
                "storage": lake.storage, "name": name, "version": mv.version,
                "output": output, "keep": keep, "run_id": run.run_id,
                "threads": b.threads_per_actor},
            concurrency=b.actors, num_cpus=b.actor_cpus, batch_size=b.batch_rows,
            batch_format="pyarrow")
        actions = [a for t in ray.get(files.to_arrow_refs()) for a in t.to_pylist()]
        rows = sum(a["rows"] for a in actions)
        expected = lake.count(conf.table, version)
        if rows != expected or not actions:
            raise CountMismatchError(
                f"{rows:,} predictions for {expected:,} rows of {conf.table}@{version}; "
                "nothing was committed. Check the table has rows, then re-run.")
        schema = pa.ipc.read_schema(pa.py_buffer(actions[0]["schema"]))
        out_version = commit_files(
            lake, output, schema, add_actions(actions), mode="append", app_id=app_id,
            run_id=run.run_id, job="batch-predict",
            description=f"predictions of {mv.ref} on {conf.table}@{version}")
        skipped = False
    run.add_output(table=output, version=out_version, rows=rows, skipped=skipped)
    run.metrics.update(rows=rows, model=mv.ref)
    return {"version": out_version, "rows": rows, "skipped": skipped,
            "summary": f"batch-predict {mv.ref} on {conf.table}@{version}: "
                       + (f"already written ({output}@{out_version}), nothing added" if skipped
                          else f"{rows:,} predictions -> {output}@{out_version}")
                       + f"; run {run.run_id}"}
