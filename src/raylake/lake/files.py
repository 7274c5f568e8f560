"""Parquet data files written by Ray workers, and the records that become Delta add actions.

A worker writes its rows with :func:`write_files` under a table's folder (or a
staging folder) with unique names; the files stay invisible until the driver
commits them. The worker sends back :func:`file_records` (small, picklable
dicts) and the driver turns them into add actions with
``raylake.lake.commit.add_actions`` and commits them in one transaction.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.parse
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from raylake.lake.storage import Storage

# Hive's folder name for a null partition value (what Delta readers expect).
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


@dataclass
class WrittenFile:
    """One Parquet file written under a folder, not yet committed."""

    path: str  # relative to the folder written
    size: int
    partition_values: dict[str, str | None]
    stats: dict[str, Any]
    rows: int
    positions: np.ndarray  # row index in the written table of each row in the file, in file order


def write_files(table: pa.Table, storage: Storage, folder: str,
                partition_by: Sequence[str]) -> list[WrittenFile]:
    """Write ``table`` under ``folder`` (hive-partitioned), one file per partition.

    Rows keep their order inside each file, so a row's position is known and a
    file can later be rewritten without one of them.
    """
    fs, root = storage.filesystem()
    base = f"{root.rstrip('/')}/{folder}"
    if partition_by:
        frame = table.select(list(partition_by)).to_pandas()
        groups = frame.groupby(list(partition_by), dropna=False, sort=True).indices
        data = table.drop_columns(list(partition_by))
        parts = []
        for key, idx in groups.items():
            values = key if isinstance(key, tuple) else (key,)
            pv = {c: _partition_text(v) for c, v in zip(partition_by, values)}
            parts.append((pv, np.asarray(idx)))
    else:
        data = table
        parts = [({}, np.arange(table.num_rows))]
    out = []
    for pv, idx in parts:
        subdir = "/".join(
            f"{c}={urllib.parse.quote(HIVE_NULL if v is None else v, safe='')}" for c, v in pv.items()
        )
        rel = f"{subdir}/part-{uuid.uuid4().hex}.parquet" if subdir else f"part-{uuid.uuid4().hex}.parquet"
        chunk = data if len(idx) == table.num_rows and not partition_by else data.take(pa.array(idx))
        full = f"{base}/{rel}"
        fs.create_dir(full.rsplit("/", 1)[0], recursive=True)
        with fs.open_output_stream(full) as sink:
            pq.write_table(chunk, sink, compression="snappy")
        size = fs.get_file_info(full).size
        out.append(WrittenFile(rel, size, pv, file_stats(chunk), chunk.num_rows, idx))
    return out


def file_records(files: Sequence[WrittenFile], schema: pa.Schema) -> list[dict[str, Any]]:
    """What a worker sends back for the files it wrote: one dict per file with
    ``path``, ``size``, ``partition_values`` and ``stats`` (JSON, as
    ``raylake.lake.commit.add_actions`` takes them), ``rows``, and ``schema`` (the
    table's Arrow schema, serialized, so the driver can create the table without
    reading a file: ``pa.ipc.read_schema(pa.py_buffer(records[0]["schema"]))``)."""
    serialized = schema.serialize().to_pybytes()
    return [{"path": f.path, "size": f.size, "partition_values": json.dumps(f.partition_values),
             "stats": json.dumps(f.stats), "rows": f.rows, "schema": serialized}
            for f in files]


def file_stats(table: pa.Table) -> dict[str, Any]:
    """Delta file statistics: numRecords, nullCount, and min/max where exact."""
    nulls: dict[str, int] = {}
    mins: dict[str, object] = {}
    maxs: dict[str, object] = {}
    for name, col in zip(table.column_names, table.columns):
        nulls[name] = col.null_count
        t = col.type
        if col.null_count == len(col) or not (
            pa.types.is_integer(t) or pa.types.is_string(t) or pa.types.is_date(t)
            or pa.types.is_timestamp(t)
        ):
            continue
        mm = pc.min_max(col)
        lo, hi = _stat_value(mm["min"].as_py(), t), _stat_value(mm["max"].as_py(), t)
        if lo is not None and hi is not None:
            mins[name], maxs[name] = lo, hi
    return {"numRecords": table.num_rows, "minValues": mins, "maxValues": maxs, "nullCount": nulls}


def _stat_value(value: Any, t: pa.DataType) -> Any:
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


def _partition_text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT:
        return None
    if hasattr(value, "isoformat"):  # dates, times, pandas Timestamps
        return cast(str, value.isoformat())
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    if isinstance(value, (np.integer,)):
        return str(int(value))
    return str(value)
