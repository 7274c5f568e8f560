"""Write a block's good rows and its quarantined rows as Parquet files.

Runs in Ray Data tasks. Files land under the table's folder with unique
names and stay invisible until the driver commits them; a crashed or retried
task leaves only uncommitted files, which ``raylake lake vacuum`` removes.
Each task returns one row per file written (path, size, partition values,
Delta statistics) and one ``block`` row with the number of rows it saw.
"""

from __future__ import annotations

import datetime as dt
import json
import posixpath
import urllib.parse
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pds
import pyarrow.fs as pafs

from raylake.ingest.cast import COLUMN, ERROR, FILE, RAW, ROW
from raylake.lake.storage import Storage

QUARANTINE_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("table", pa.string()),
        ("source_file", pa.string()),
        ("source_row", pa.int64()),
        ("reason", pa.string()),
        ("column", pa.string()),
        ("raw", pa.string()),
        ("quarantined_at", pa.timestamp("us", tz="UTC")),
    ]
)

RESULT_SCHEMA = pa.schema(
    [
        ("kind", pa.string()),  # data | quarantine | block
        ("path", pa.string()),
        ("size", pa.int64()),
        ("partition_values", pa.string()),
        ("stats", pa.string()),
        ("rows", pa.int64()),
        ("node", pa.string()),
    ]
)

_HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


@dataclass(frozen=True)
class WriteTarget:
    """Where and how one ingestion run writes (picklable, sent to every task)."""

    storage: Storage
    table: str
    quarantine: str
    columns: tuple[str, ...]
    partition_by: tuple[str, ...]
    run_id: str
    source_files: tuple[str, ...]
    write_data: bool = True
    fail_after_write: bool = False


def write_block(block: pa.Table, target: WriteTarget, duplicates: np.ndarray) -> pa.Table:
    """Split a cast block into good and bad rows and write each as Parquet."""
    import ray

    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    bad = block.column(ERROR).is_valid()
    if len(duplicates):
        bad = _mark_duplicates(block, bad, duplicates)
        block = block.set_column(block.schema.get_field_index(ERROR), ERROR, _dup_reasons(block, duplicates))
    results: list[dict] = [
        {"kind": "block", "path": None, "size": 0, "partition_values": None, "stats": None,
         "rows": block.num_rows, "node": node}
    ]
    good = block.filter(pc.invert(bad)).select(list(target.columns))
    rejected = block.filter(bad)
    if target.write_data and good.num_rows:
        results += _write(good, target.storage, target.table, target.partition_by, "data", node)
    if rejected.num_rows:
        results += _write(_quarantine_rows(rejected, target), target.storage, target.quarantine,
                          (), "quarantine", node)
    if target.fail_after_write:
        raise RuntimeError("injected failure after writing files (ingest.inject_failure=write)")
    return pa.Table.from_pylist(results, schema=RESULT_SCHEMA)


def good_rows(block: pa.Table, columns: Sequence[str], duplicates: np.ndarray) -> pa.Table:
    """The rows of a cast block that pass every check (for merge writes)."""
    bad = block.column(ERROR).is_valid()
    if len(duplicates):
        bad = _mark_duplicates(block, bad, duplicates)
    return block.filter(pc.invert(bad)).select(list(columns))


def row_ids(block: pa.Table) -> np.ndarray:
    """One int64 per row: file index in the high bits, record number in the low."""
    files = block.column(FILE).to_numpy().astype(np.int64)
    rows = block.column(ROW).to_numpy().astype(np.int64)
    return (files << 40) | rows


def _mark_duplicates(block: pa.Table, bad: pa.Array, duplicates: np.ndarray) -> pa.Array:
    is_dup = np.isin(row_ids(block), duplicates["row_id"])
    return pc.or_(bad, pa.array(is_dup))


def _dup_reasons(block: pa.Table, duplicates: np.ndarray) -> pa.Array:
    ids = row_ids(block)
    first = dict(zip(duplicates["row_id"].tolist(), duplicates["first_row"].tolist()))
    reasons = block.column(ERROR).to_pylist()
    for i, rid in enumerate(ids.tolist()):
        if reasons[i] is None and rid in first:
            reasons[i] = f"duplicate primary key (first seen at record {first[rid] & ((1 << 40) - 1)})"
    return pa.array(reasons, pa.string())


def _quarantine_rows(rejected: pa.Table, target: WriteTarget) -> pa.Table:
    n = rejected.num_rows
    files = rejected.column(FILE).to_pylist()
    return pa.table(
        {
            "run_id": pa.array([target.run_id] * n, pa.string()),
            "table": pa.array([target.table] * n, pa.string()),
            "source_file": pa.array([target.source_files[i] for i in files], pa.string()),
            "source_row": rejected.column(ROW).cast(pa.int64()),
            "reason": rejected.column(ERROR),
            "column": rejected.column(COLUMN),
            "raw": _raw_or_values(rejected, target.columns),
            "quarantined_at": pa.array([dt.datetime.now(dt.timezone.utc)] * n,
                                       pa.timestamp("us", tz="UTC")),
        },
        schema=QUARANTINE_SCHEMA,
    )


def _raw_or_values(rejected: pa.Table, columns: Sequence[str]) -> pa.Array:
    """The raw source values; for rows that failed after the cast (duplicates), the typed ones."""
    raw = rejected.column(RAW).to_pylist()
    if all(r is not None for r in raw):
        return pa.array(raw, pa.string())
    rows = rejected.select(list(columns)).to_pylist()
    return pa.array(
        [r if r is not None else json.dumps(rows[i], default=str) for i, r in enumerate(raw)],
        pa.string(),
    )


def _write(table: pa.Table, storage: Storage, name: str, partition_by: Sequence[str], kind: str,
           node: str) -> list[dict]:
    fs, root = storage.filesystem()
    base = posixpath.join(root, name) if not storage.local else f"{root}/{name}"
    partitioning = (
        pds.partitioning(table.select(list(partition_by)).schema, flavor="hive")
        if partition_by else None
    )
    written: list[dict] = []

    def visit(f: pds.WrittenFile) -> None:
        rel = posixpath.relpath(f.path.lstrip("/"), base.lstrip("/"))
        written.append(
            {
                "kind": kind,
                "path": rel,
                "size": f.size,
                "partition_values": json.dumps(_partition_values(rel, partition_by)),
                "stats": json.dumps(_stats(f.metadata)),
                "rows": f.metadata.num_rows,
                "node": node,
            }
        )

    pds.write_dataset(
        table,
        base_dir=base,
        filesystem=fs,
        format="parquet",
        partitioning=partitioning,
        basename_template=f"part-{uuid.uuid4().hex}-{{i}}.parquet",
        existing_data_behavior="overwrite_or_ignore",
        file_visitor=visit,
        create_dir=isinstance(fs, pafs.LocalFileSystem),
        max_rows_per_group=1 << 20,
    )
    return written


def _partition_values(rel: str, partition_by: Sequence[str]) -> dict[str, str | None]:
    values: dict[str, str | None] = {}
    for part in rel.split("/")[:-1]:
        key, _, value = part.partition("=")
        if key in partition_by:
            value = urllib.parse.unquote(value)
            values[key] = None if value == _HIVE_NULL else value
    return values


def _stats(meta) -> dict:
    """Delta file statistics from the Parquet footer (numRecords, nulls, min/max)."""
    nulls: dict[str, int] = {}
    mins: dict[str, object] = {}
    maxs: dict[str, object] = {}
    schema = meta.schema.to_arrow_schema()
    for j, fld in enumerate(schema):
        null_total, lo, hi, ok = 0, None, None, True
        for g in range(meta.num_row_groups):
            st = meta.row_group(g).column(j).statistics
            if st is None:
                ok = False
                break
            null_total += st.null_count or 0
            if st.has_min_max:
                lo = st.min if lo is None else min(lo, st.min)
                hi = st.max if hi is None else max(hi, st.max)
        if not ok:
            continue
        nulls[fld.name] = null_total
        t = fld.type
        if lo is None or not (pa.types.is_integer(t) or pa.types.is_string(t)
                              or pa.types.is_date(t) or pa.types.is_timestamp(t)):
            continue
        lo_v, hi_v = _stat_value(lo, t), _stat_value(hi, t)
        if lo_v is not None and hi_v is not None:
            mins[fld.name], maxs[fld.name] = lo_v, hi_v
    return {"numRecords": meta.num_rows, "minValues": mins, "maxValues": maxs, "nullCount": nulls}


def _stat_value(value, t: pa.DataType):
    if pa.types.is_timestamp(t):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        value = value.astimezone(dt.timezone.utc)
        if value.microsecond % 1000:
            return None  # Delta stats carry milliseconds; a truncated max would skip rows
        text = value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}"
        return text + "Z" if t.tz else text
    if pa.types.is_date(t):
        return value.isoformat()
    return value
