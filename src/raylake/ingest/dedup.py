"""Rows that repeat a primary key within one ingestion, found after the write.

Workers hash each good row's key and record where the row went (file and
position). The driver sorts the hashes: in the common case no hash repeats
and nothing more happens. Rows whose hashes repeat are compared on their
real key values (so a hash collision marks nothing); every occurrence after
the first (in source order: file, then record) is taken out of its data file,
which is rewritten, and put in the quarantine. All of this happens before the
commit, so readers never see a duplicate.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from raylake.ingest.cast import COLUMN, ERROR, FILE, RAW, ROW
from raylake.ingest.writer import RID_BITS, WriteTarget, quarantine_rows
from raylake.lake.files import write_files

_RECORD_MASK = (1 << RID_BITS) - 1


@dataclass
class DedupResult:
    """The data files to commit after duplicates were taken out, and what went to the quarantine."""

    data: list[dict]  # data file rows after rewrites
    quarantine: list[dict] = field(default_factory=list)  # new quarantine file rows
    duplicates: int = 0


def resolve_duplicates(
    target: WriteTarget,
    data: list[dict],
    keys: pa.Table,
    primary_key: Sequence[str],
    latest_by: str | None = None,
) -> DedupResult:
    """``data``: result rows of data files; ``keys``: h, rid, file (index into data), pos.

    The row kept per key is the first in source order, or with ``latest_by``
    (the cleansing step dedup_latest) the one with the largest value there.
    """
    if not primary_key or keys.num_rows == 0:
        return DedupResult(data)
    h = keys.column("h").to_numpy()
    hs = np.sort(h)
    repeated = np.zeros(len(hs), dtype=bool)
    repeated[1:] = hs[1:] == hs[:-1]
    if not repeated.any():
        return DedupResult(data)

    candidates = np.isin(h, np.unique(hs[repeated]))
    cand = keys.filter(pa.array(candidates)).to_pandas()
    frames = []
    for file_no, rows in cand.groupby("file"):
        wanted = [*primary_key, latest_by] if latest_by and latest_by not in primary_key else list(primary_key)
        values = _key_values(target, data[file_no], wanted, rows["pos"].to_numpy())
        values["rid"] = rows["rid"].to_numpy()
        values["file"] = file_no
        values["pos"] = rows["pos"].to_numpy()
        frames.append(values)
    frame = pd.concat(frames, ignore_index=True)
    if latest_by:  # latest event first; among equal events the later record
        frame = frame.sort_values([latest_by, "rid"], ascending=False, kind="stable",
                                  na_position="last")
    else:
        frame = frame.sort_values("rid", kind="stable")
    first = frame.groupby(list(primary_key), dropna=False, sort=False)["rid"].transform("first")
    dups = frame[frame["rid"] != first].assign(first=first[frame["rid"] != first])
    if dups.empty:
        return DedupResult(data)

    fs, root = target.storage.filesystem()
    out: list[dict | None] = list(data)  # None: a file whose rows were all duplicates
    dropped: list[pa.Table] = []
    raws: list[str] = []
    for file_no, rows in dups.groupby("file"):
        entry = data[file_no]
        full = f"{root.rstrip('/')}/{target.data_dir}/{entry['path']}"
        table = pq.read_table(full, filesystem=fs)
        drop = np.zeros(table.num_rows, dtype=bool)
        drop[rows["pos"].to_numpy()] = True
        kept = table.filter(pa.array(~drop))
        gone = table.filter(pa.array(drop))
        pv = json.loads(entry["partition_values"] or "{}")
        raws += [json.dumps({**r, **pv}, default=str) for r in gone.to_pylist()]
        rid_sorted = rows.sort_values("pos")
        dropped.append(_as_rejected(rid_sorted["rid"].to_numpy(), rid_sorted["first"].to_numpy(),
                                    target.source_files, primary_key, latest_by))
        out[file_no] = _rewrite(target, entry, kept, full, fs)
    rejected = pa.concat_tables(dropped)
    qtable = quarantine_rows(rejected, target.run_id, target.table, target.source_files, raws)
    qfiles = write_files(qtable, target.storage, target.quarantine_dir, ())
    quarantine = [
        {"kind": "quarantine", "path": f.path, "size": f.size, "partition_values": "{}",
         "stats": json.dumps(f.stats), "rows": f.rows, "node": "", "payload": None}
        for f in qfiles
    ]
    return DedupResult([d for d in out if d is not None], quarantine, len(dups))


def _key_values(target: WriteTarget, entry: dict, primary_key: Sequence[str],
                positions: np.ndarray) -> pd.DataFrame:
    fs, root = target.storage.filesystem()
    pv = json.loads(entry["partition_values"] or "{}")
    in_file = [k for k in primary_key if k not in pv]
    full = f"{root.rstrip('/')}/{target.data_dir}/{entry['path']}"
    table = pq.read_table(full, columns=in_file, filesystem=fs).take(pa.array(positions))
    frame = table.to_pandas()
    for k in primary_key:
        if k in pv:
            frame[k] = pv[k]
    return frame[list(primary_key)]


def _as_rejected(rids: np.ndarray, firsts: np.ndarray, source_files: Sequence[str],
                 primary_key: Sequence[str], latest_by: str | None = None) -> pa.Table:
    what = (f"superseded by a later {latest_by} (dedup_latest; kept" if latest_by
            else "duplicate primary key (first seen at")
    reasons = [
        f"{what} {source_files[int(f) >> RID_BITS]} record {int(f) & _RECORD_MASK})"
        for f in firsts
    ]
    return pa.table({
        FILE: pa.array((rids >> RID_BITS).astype(np.int32)),
        ROW: pa.array(rids & _RECORD_MASK),
        ERROR: pa.array(reasons, pa.string()),
        COLUMN: pa.array([",".join(primary_key)] * len(rids), pa.string()),
        RAW: pa.nulls(len(rids), pa.string()),
    })


def _rewrite(target: WriteTarget, entry: dict, kept: pa.Table, old_path: str, fs) -> dict | None:
    fs.delete_file(old_path)
    if kept.num_rows == 0:
        return None
    folder = f"{target.data_dir}/{entry['path'].rsplit('/', 1)[0]}" if "/" in entry["path"] else target.data_dir
    (new,) = write_files(kept, target.storage, folder, ())
    prefix = entry["path"].rsplit("/", 1)[0] + "/" if "/" in entry["path"] else ""
    return {**entry, "path": prefix + new.path, "size": new.size,
            "stats": json.dumps(new.stats), "rows": new.rows}
