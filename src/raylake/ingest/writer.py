"""Write a block's good rows and its quarantined rows as Parquet files.

Runs in Ray Data tasks. Files land under the table's folder (or a staging
folder for merges) with unique names and stay invisible until the driver
commits them; a crashed or retried task leaves only uncommitted files, which
``raylake lake vacuum`` removes. Each task returns one row per file written
(path, size, partition values, Delta statistics), and one ``keys`` row that
maps every good row's primary-key hash to the file and position it went to,
so the driver can find repeated keys without another pass over the data.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raylake.ingest.cast import COLUMN, ERROR, FILE, KEY, RAW, ROW
from raylake.lake.files import WrittenFile, write_files
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
        ("kind", pa.string()),  # data | quarantine | keys | profile | segment | checks
        ("path", pa.string()),  # relative to the folder written
        ("size", pa.int64()),
        ("partition_values", pa.string()),
        ("stats", pa.string()),
        ("rows", pa.int64()),  # rows in the file; for "keys": rows the block had
        ("node", pa.string()),
        # "keys": Arrow IPC of KEYS_SCHEMA; "profile": the good rows' profile.
        ("payload", pa.binary()),
    ]
)

# One row per good row of a block: its key hash, its id (file index << 40 |
# record number), and where it was written (nth data file of the block, row).
KEYS_SCHEMA = pa.schema(
    [("h", pa.uint64()), ("rid", pa.int64()), ("file", pa.int32()), ("pos", pa.int32())]
)

RID_BITS = 40


@dataclass(frozen=True)
class WriteTarget:
    """Where and how one ingestion run writes (picklable, sent to every task)."""

    storage: Storage
    data_dir: str  # relative to the lake root: the table, or a staging folder
    quarantine_dir: str
    table: str
    columns: tuple[str, ...]
    partition_by: tuple[str, ...]
    run_id: str
    source_files: tuple[str, ...]
    profile: bool = False  # profile the good rows in the same pass
    segment_by: str | None = None  # also one profile per value of this column
    fail_after_write: bool = False


def write_block(block: pa.Table, target: WriteTarget) -> pa.Table:
    """Split a cast block into good and bad rows and write each as Parquet."""
    import ray

    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    bad = block.column(ERROR).is_valid().to_numpy(zero_copy_only=False)
    good_idx = np.flatnonzero(~bad)
    good = block.select(list(target.columns))
    if bad.any():
        good = good.take(good_idx)
    results: list[dict] = []
    key_parts: list[pa.Table] = []
    if good.num_rows:
        files = write_files(good, target.storage, target.data_dir, target.partition_by)
        keyed = block.column(KEY).null_count < block.num_rows  # tables with a primary key
        rids = row_ids(block)[good_idx]
        hashes = pc.fill_null(block.column(KEY), 0).to_numpy()[good_idx]
        for n, f in enumerate(files):
            results.append(_result("data", f, node))
            if keyed:
                key_parts.append(pa.table({
                    "h": pa.array(hashes[f.positions], pa.uint64()),
                    "rid": pa.array(rids[f.positions], pa.int64()),
                    "file": pa.array(np.full(f.rows, n, np.int32)),
                    "pos": pa.array(np.arange(f.rows, dtype=np.int32)),
                }, schema=KEYS_SCHEMA))
    if bad.any():
        rejected = quarantine_rows(block.filter(pa.array(bad)), target.run_id, target.table,
                                   target.source_files)
        for f in write_files(rejected, target.storage, target.quarantine_dir, ()):
            results.append(_result("quarantine", f, node))
    keys = pa.concat_tables(key_parts) if key_parts else KEYS_SCHEMA.empty_table()
    if target.profile and good.num_rows:
        from raylake.quality.profile import Profile

        results.append({"kind": "profile", "rows": good.num_rows, "node": node,
                        "payload": Profile.of(good).to_bytes()})
        if target.segment_by:
            seg = good.column(target.segment_by)
            for value in pc.unique(seg).to_pylist():
                mask = pc.is_null(seg) if value is None else pc.equal(seg, value)
                part = good.filter(mask)
                results.append({"kind": "segment", "path": "" if value is None else str(value),
                                "rows": part.num_rows, "node": node,
                                "payload": Profile.of(part).to_bytes()})
    results.append({"kind": "keys", "rows": block.num_rows, "node": node, "payload": _ipc(keys)})
    if target.fail_after_write:
        raise RuntimeError("injected failure after writing files (ingest.inject_failure=write)")
    return pa.Table.from_pylist(results, schema=RESULT_SCHEMA)


def row_ids(block: pa.Table) -> np.ndarray:
    """One int64 per row: file index in the high bits, record number in the low."""
    files = block.column(FILE).to_numpy().astype(np.int64)
    rows = block.column(ROW).to_numpy().astype(np.int64)
    return (files << RID_BITS) | rows


def quarantine_rows(rejected: pa.Table, run_id: str, table: str, source_files: Sequence[str],
                    raw: Sequence[str | None] | None = None) -> pa.Table:
    """Rows of the quarantine table for rows that failed a check."""
    n = rejected.num_rows
    files = rejected.column(FILE).to_pylist()
    return pa.table(
        {
            "run_id": pa.array([run_id] * n, pa.string()),
            "table": pa.array([table] * n, pa.string()),
            "source_file": pa.array([source_files[i] for i in files], pa.string()),
            "source_row": rejected.column(ROW).cast(pa.int64()),
            "reason": rejected.column(ERROR),
            "column": rejected.column(COLUMN),
            "raw": rejected.column(RAW) if raw is None else pa.array(raw, pa.string()),
            "quarantined_at": pa.array([dt.datetime.now(dt.timezone.utc)] * n,
                                       pa.timestamp("us", tz="UTC")),
        },
        schema=QUARANTINE_SCHEMA,
    )


def decode_keys(data: bytes) -> pa.Table:
    """The ``keys`` payload of a write task (Arrow IPC of ``KEYS_SCHEMA``) as a table."""
    with pa.ipc.open_stream(data) as reader:
        return reader.read_all()


def _result(kind: str, f: WrittenFile, node: str) -> dict:
    return {
        "kind": kind, "path": f.path, "size": f.size,
        "partition_values": json.dumps(f.partition_values), "stats": json.dumps(f.stats),
        "rows": f.rows, "node": node, "payload": None,
    }


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()
