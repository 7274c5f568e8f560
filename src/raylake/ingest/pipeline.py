"""Ingest one table: read -> cast and check -> de-duplicate -> write -> commit.

The driver lists and fingerprints the source files, Ray Data reads and casts
them in parallel, the driver finds repeated primary keys from one 8-byte hash
per row, workers write Parquet files for good rows and for quarantined rows,
and the driver checks ``read == written + quarantined`` before it commits the
quarantine and then the table, each in one Delta transaction tagged with the
input's fingerprint. A failure before the table commit leaves its version as
it was; a re-run over the same input finds the fingerprint and adds nothing.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import ray
from deltalake.transaction import AddAction

from raylake.config.schema import IngestConfig, TableConfig, WriteMode
from raylake.errors import CountMismatchError, IngestError, RaylakeError
from raylake.ingest import cast as C
from raylake.ingest.sources import (
    RawRowsDatasource,
    fingerprint,
    list_files,
    source_spec,
    with_format,
)
from raylake.ingest.types import column_specs, declared_schema
from raylake.ingest.writer import QUARANTINE_SCHEMA, WriteTarget, good_rows, row_ids, write_block
from raylake.lake.commit import already_committed, commit_files, merge_rows
from raylake.lake.names import quarantine_table, validate_table_name
from raylake.lake.tables import Lake

log = logging.getLogger(__name__)

DUP_DTYPE = np.dtype([("row_id", np.int64), ("first_row", np.int64)])


@dataclass
class TableResult:
    table: str
    mode: str
    fingerprint: str
    rows_read: int = 0
    rows_written: int = 0
    rows_quarantined: int = 0
    version: int | None = None
    quarantine_version: int | None = None
    skipped: bool = False
    files: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    merge_metrics: dict[str, Any] = field(default_factory=dict)


def ingest_table(
    lake: Lake,
    key: str,
    tcfg: TableConfig,
    *,
    run_id: str,
    job: str = "ingest",
    ingest_cfg: IngestConfig | None = None,
    task_cpus: float = 0.5,
) -> TableResult:
    ingest_cfg = ingest_cfg or IngestConfig()
    name = validate_table_name(tcfg.table or key)
    qname = quarantine_table(name)
    specs = column_specs(tcfg.columns, name)
    schema = declared_schema(specs)
    _check_keys(name, tcfg, schema)
    mode = WriteMode(tcfg.mode).value
    t0 = time.perf_counter()
    spec = source_spec(tcfg.source, lake.storage.options)
    files = list_files(spec)
    spec = with_format(spec, files)
    layout = json.dumps(
        {"table": name, "schema": str(schema), "pk": list(tcfg.primary_key), "mode": mode,
         "partition_by": list(tcfg.partition_by)}, sort_keys=True)
    fp = fingerprint(files, spec, layout)
    app_id = f"raylake.ingest.{fp}"
    result = TableResult(name, mode, fp, files=[f.path for f in files])
    result.seconds["list"] = round(time.perf_counter() - t0, 3)

    if already_committed(lake, name, app_id):
        result.skipped = True
        result.version = lake.version(name)
        log.info("%s: this input (fingerprint %s) is already in the table; nothing to add", name, fp)
        return result

    t1 = time.perf_counter()
    source = RawRowsDatasource(files, spec, [s.source for s in specs])
    remote = {"num_cpus": task_cpus}
    ds = ray.data.read_datasource(source, **remote)
    ds = ds.map_batches(
        C.cast_block, batch_format="pyarrow", batch_size=None, zero_copy_batch=True,
        fn_kwargs={"specs": specs, "primary_key": list(tcfg.primary_key)}, **remote,
    )
    try:
        cast = ds.materialize()
        result.rows_read = cast.count()
        result.seconds["read_cast"] = round(time.perf_counter() - t1, 3)

        t2 = time.perf_counter()
        duplicates = _find_duplicates(cast, list(tcfg.primary_key)) if tcfg.primary_key else np.empty(0, DUP_DTYPE)
        dup_ref = ray.put(duplicates)
        result.seconds["dedup"] = round(time.perf_counter() - t2, 3)

        t3 = time.perf_counter()
        target = WriteTarget(
            storage=lake.storage, table=name, quarantine=qname,
            columns=tuple(schema.names), partition_by=tuple(tcfg.partition_by),
            run_id=run_id, source_files=tuple(f.path for f in files),
            write_data=mode != "merge" or not lake.exists(name),
            fail_after_write=ingest_cfg.inject_failure == "write",
        )
        written = cast.map_batches(
            _write_with_ref, batch_format="pyarrow", batch_size=None, zero_copy_batch=True,
            fn_kwargs={"target": target, "dup_ref": dup_ref}, **remote,
        )
        files_out = pa.concat_tables(ray.get(written.to_arrow_refs()))
        result.seconds["write"] = round(time.perf_counter() - t3, 3)
    except RaylakeError:
        raise
    except Exception as exc:  # Ray wraps worker failures; keep the cause, say what happened
        raise IngestError(
            f"Ingesting {name!r} failed before commit: {_root_cause(exc)}. "
            f"Nothing was committed; table {name!r} is unchanged. Fix the cause and re-run."
        ) from exc

    data = files_out.filter(pc.equal(files_out["kind"], "data"))
    quarantined = files_out.filter(pc.equal(files_out["kind"], "quarantine"))
    blocks = files_out.filter(pc.equal(files_out["kind"], "block"))
    result.nodes = sorted({n for n in files_out.column("node").to_pylist() if n})
    seen = int(pc.sum(blocks["rows"]).as_py() or 0)
    result.rows_quarantined = int(pc.sum(quarantined["rows"]).as_py() or 0)
    result.reasons = _reason_counts(lake, qname, quarantined) if result.rows_quarantined else {}

    t4 = time.perf_counter()
    if target.write_data:
        result.rows_written = int(pc.sum(data["rows"]).as_py() or 0)
    else:
        result.rows_written = _count_good(cast, specs, dup_ref)
    if seen != result.rows_read or result.rows_read != result.rows_written + result.rows_quarantined:
        raise CountMismatchError(
            f"{name}: rows read {result.rows_read} (blocks saw {seen}) != written "
            f"{result.rows_written} + quarantined {result.rows_quarantined}. Nothing was "
            "committed. This is a bug in raylake: report it with the run id."
        )
    if result.rows_read and result.rows_quarantined / result.rows_read > ingest_cfg.max_quarantine_fraction:
        raise IngestError(
            f"{name}: {result.rows_quarantined} of {result.rows_read} rows failed their checks, "
            f"over ingest.max_quarantine_fraction={ingest_cfg.max_quarantine_fraction}. Nothing "
            f"was committed. Reasons: {result.reasons}. Fix the source or the declared schema."
        )

    if result.rows_quarantined:
        result.quarantine_version = commit_files(
            lake, qname, QUARANTINE_SCHEMA, _actions(quarantined), mode="append",
            app_id=app_id, run_id=run_id, job=job,
        ) if not already_committed(lake, qname, app_id) else lake.version(qname)
    if ingest_cfg.inject_failure == "commit":
        raise IngestError(
            f"injected failure before committing {name!r} (ingest.inject_failure=commit); "
            "nothing was committed to the table"
        )
    if target.write_data:
        result.version = commit_files(
            lake, name, schema, _actions(data),
            mode="overwrite" if mode == "overwrite" else "append",
            partition_by=tcfg.partition_by, app_id=app_id, run_id=run_id, job=job,
            description=tcfg.description,
        )
    else:
        reader = _good_reader(cast, specs, schema, dup_ref)
        result.version, result.merge_metrics = merge_rows(
            lake, name, reader, tcfg.primary_key, app_id=app_id, run_id=run_id, job=job,
        )
    result.seconds["commit"] = round(time.perf_counter() - t4, 3)
    result.seconds["total"] = round(time.perf_counter() - t0, 3)
    return result


def _write_with_ref(block: pa.Table, target: WriteTarget, dup_ref: Any) -> pa.Table:
    return write_block(block, target, ray.get(dup_ref))


def _check_keys(name: str, tcfg: TableConfig, schema: pa.Schema) -> None:
    for what, cols in (("primary_key", tcfg.primary_key), ("partition_by", tcfg.partition_by),
                       ("event_time", [tcfg.event_time] if tcfg.event_time else [])):
        for col in cols:
            if col not in schema.names:
                raise IngestError(
                    f"Table {name!r}: {what} column {col!r} is not declared in `columns` "
                    f"({', '.join(schema.names)}). Declare it or fix {what}."
                )
    if WriteMode(tcfg.mode) == WriteMode.merge and not tcfg.primary_key:
        raise IngestError(f"Table {name!r}: mode=merge upserts on the primary key; set primary_key.")


def _find_duplicates(cast: ray.data.Dataset, primary_key: list[str]) -> np.ndarray:
    """Rows repeating an earlier row's primary key, and that earlier row.

    The driver sees one 64-bit hash per good row; rows sharing a hash are then
    compared on their real key values, so a hash collision marks nothing.
    """
    def keys_only(block: pa.Table) -> pa.Table:
        good = block.filter(block.column(C.KEY).is_valid())
        return pa.table({"h": good.column(C.KEY), "id": pa.array(row_ids(good))})

    refs = cast.map_batches(keys_only, batch_format="pyarrow", batch_size=None,
                            num_cpus=0.25).to_arrow_refs()
    tables = [t for t in ray.get(refs) if t.num_rows]
    if not tables:
        return np.empty(0, DUP_DTYPE)
    keys = pa.concat_tables(tables)
    h = keys.column("h").to_numpy()
    ids = keys.column("id").to_numpy()
    order = np.lexsort((ids, h))
    hs = h[order]
    repeated = np.zeros(len(hs), dtype=bool)
    repeated[1:] = hs[1:] == hs[:-1]
    if not repeated.any():
        return np.empty(0, DUP_DTYPE)
    candidates = pa.array(np.unique(hs[repeated]))

    def candidate_rows(block: pa.Table) -> pa.Table:
        mask = pc.is_in(block.column(C.KEY), value_set=candidates)
        rows = block.filter(pc.fill_null(mask, False))
        return rows.select(primary_key).append_column("_rl_id", pa.array(row_ids(rows)))

    rows = pa.concat_tables(ray.get(cast.map_batches(
        candidate_rows, batch_format="pyarrow", batch_size=None, num_cpus=0.25).to_arrow_refs()))
    frame = rows.to_pandas().sort_values("_rl_id", kind="stable")
    first = frame.groupby(primary_key, dropna=False, sort=False)["_rl_id"].transform("first")
    dup = frame["_rl_id"] != first
    out = np.empty(int(dup.sum()), DUP_DTYPE)
    out["row_id"] = frame.loc[dup, "_rl_id"].to_numpy()
    out["first_row"] = first[dup].to_numpy()
    return out


def _count_good(cast: ray.data.Dataset, specs, dup_ref) -> int:
    cols = [s.name for s in specs]
    counts = cast.map_batches(
        lambda b: pa.table({"n": [good_rows(b, cols, ray.get(dup_ref)).num_rows]}),
        batch_format="pyarrow", batch_size=None, num_cpus=0.25,
    )
    return int(sum(t.column("n").to_pylist()[0] for t in ray.get(counts.to_arrow_refs())))


def _good_reader(cast: ray.data.Dataset, specs, schema: pa.Schema, dup_ref) -> pa.RecordBatchReader:
    cols = [s.name for s in specs]
    good = cast.map_batches(lambda b: good_rows(b, cols, ray.get(dup_ref)),
                            batch_format="pyarrow", batch_size=None, num_cpus=0.25)

    def batches():
        for ref in good.to_arrow_refs():
            table = ray.get(ref).cast(schema)
            yield from table.to_batches()

    return pa.RecordBatchReader.from_batches(schema, batches())


def _actions(files: pa.Table) -> list[AddAction]:
    now = int(time.time() * 1000)
    return [
        AddAction(
            path=row["path"], size=row["size"],
            partition_values=json.loads(row["partition_values"] or "{}"),
            modification_time=now, data_change=True, stats=row["stats"],
        )
        for row in files.to_pylist()
    ]


def _reason_counts(lake: Lake, qname: str, quarantined: pa.Table) -> dict[str, int]:
    """Quarantined rows per kind of reason (the text before any quoted value)."""
    import pyarrow.parquet as pq

    fs, root = lake.storage.filesystem()
    counts: dict[str, int] = {}
    for path in quarantined.column("path").to_pylist():
        full = f"{root}/{qname}/{path}"
        reasons = pq.read_table(full, columns=["reason", "column"], filesystem=fs)
        frame = reasons.to_pandas()
        kinds = frame["reason"].str.replace(r"'.*$|\(.*$|:.*$", "", regex=True).str.strip()
        kinds = kinds + frame["column"].fillna("").map(lambda c: f" [{c}]" if c else "")
        for kind, n in pd.Series(kinds).value_counts().items():
            counts[kind] = counts.get(kind, 0) + int(n)
    return counts


def _root_cause(exc: BaseException) -> str:
    seen = exc
    while seen.__cause__ is not None:
        seen = seen.__cause__
    text = str(seen).strip().splitlines()
    return text[-1] if text else type(seen).__name__
