"""The label matrix: every LF's vote on every row of a table version, built with Ray Data
(``map_batches``, one task per block) and stored in the lake as one int8 column per LF
beside the row's key columns.

Errors never stop the pass: each block returns, beside its votes, a 0/1 column per LF
marking the rows on which that LF raised (or returned a non-class), and the first message
per LF; the driver sums them and drops those columns before the matrix is written.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from raylake.labeling.errors import LabelingError
from raylake.labeling.lfs import LFSet

_ERR = "__err__"
_MSG = "__messages__"


@dataclass
class LabelMatrix:
    """A label matrix with its keys: ``table`` holds the key columns and one int8 column per
    LF; ``errors`` counts each LF's failed rows; ``messages`` keeps each one's first error."""

    table: pa.Table
    lfs: list[str]
    errors: dict[str, int] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def L(self) -> np.ndarray:
        """The votes as a rows x LFs int8 matrix (-1: abstain)."""
        if self.table.num_rows == 0:
            return np.zeros((0, len(self.lfs)), np.int8)
        return np.stack([self.table.column(n).to_numpy() for n in self.lfs], axis=1)


def matrix_schema(lfset: LFSet, key: list[str], source: pa.Schema) -> pa.Schema:
    """Key columns (their source types), then one int8 column per LF."""
    return pa.schema([source.field(k) for k in key] + [pa.field(n, pa.int8(), nullable=False)
                                                      for n in lfset.names])


def vote_block(block: pa.Table, lfset: Any, key: list[str], report_errors: bool = True) -> pa.Table:
    """One block's key columns and votes (plus per-LF error marks and messages)."""
    if not isinstance(lfset, LFSet):  # Ray Data hands fn_args through as object refs
        import ray

        lfset = ray.get(lfset)
    votes = lfset.apply(block)
    cols: dict[str, Any] = {k: block.column(k) for k in key}
    for j, name in enumerate(lfset.names):
        cols[name] = pa.array(votes.matrix[:, j], pa.int8())
    if report_errors:
        # Per-row marks are only needed where some LF failed; a 0-length batch stays empty.
        for j, name in enumerate(lfset.names):
            mark = np.zeros(block.num_rows, np.int32)
            if votes.errors[j] and block.num_rows:
                mark[0] = votes.errors[j]  # the block's count, on its first row
            cols[_ERR + name] = pa.array(mark, pa.int32())
        msgs: list[str | None] = [None] * block.num_rows
        if votes.messages and block.num_rows:
            msgs[0] = json.dumps(votes.messages)
        cols[_MSG] = pa.array(msgs, pa.string())
    return pa.table(cols)


def _split_errors(table: pa.Table, lfs: list[str]) -> tuple[pa.Table, dict[str, int],
                                                            dict[str, str]]:
    errors = {n: int(np.asarray(table.column(_ERR + n).to_numpy()).sum()) if table.num_rows else 0
              for n in lfs}
    messages: dict[str, str] = {}
    if table.num_rows:
        for text in table.column(_MSG).drop_null().to_pylist():
            for name, msg in json.loads(text).items():
                messages.setdefault(name, msg)
    keep = [c for c in table.column_names if not c.startswith(_ERR) and c != _MSG]
    return table.select(keep), errors, messages


def _check_key(key: list[str], schema: pa.Schema, table: str) -> None:
    if not key:
        raise LabelingError("labeling.id_columns is empty: name the column(s) that identify a row "
                            f"of {table!r}, e.g. labeling.id_columns=[comment_id].")
    missing = [k for k in key if k not in schema.names]
    if missing:
        raise LabelingError(f"labeling.id_columns names {missing}, not columns of {table!r} "
                            f"(columns: {', '.join(schema.names)}).")


def apply_local(lfset: LFSet, table: pa.Table, key: list[str]) -> LabelMatrix:
    """The label matrix of an in-memory Arrow table, in this process (no Ray)."""
    _check_key(key, table.schema, "the table")
    started = time.perf_counter()
    out, errors, messages = _split_errors(vote_block(table, lfset, key), lfset.names)
    return LabelMatrix(out, lfset.names, errors, messages, time.perf_counter() - started)


def apply_dataset(ds: Any, lfset: LFSet, key: list[str], *, batch_rows: int = 8192,
                  num_cpus: float = 1.0) -> LabelMatrix:
    """The label matrix of a Ray Dataset: one ``map_batches`` task per batch, the votes
    (int8 columns, a few bytes a row) gathered on the driver in block order."""
    import ray

    started = time.perf_counter()
    ref = ray.put(lfset)
    voted = ds.map_batches(vote_block, fn_args=(ref, list(key)),
                           batch_format="pyarrow", batch_size=batch_rows, num_cpus=num_cpus)
    blocks = [b for b in ray.get(voted.to_arrow_refs()) if b.num_rows]
    if not blocks:  # an empty table version: an empty matrix of the same columns
        empty = {k: pa.array([], pa.string()) for k in key}
        return LabelMatrix(_split_errors(vote_block(pa.table(empty), lfset, key),
                                         lfset.names)[0], lfset.names)
    table = pa.concat_tables(blocks)
    out, errors, messages = _split_errors(table, lfset.names)
    return LabelMatrix(out, lfset.names, errors, messages, time.perf_counter() - started)


def table_dataset(lake: Any, table: str, version: Any = None) -> tuple[Any, int]:
    """A Ray Dataset over a lake table version, and the version read."""
    import ray

    dtab = lake.table(table, version)
    ds = ray.data.read_delta(dtab.table_uri, version=dtab.version(),
                             storage_options=lake.storage.delta_options())
    return ds, dtab.version()


def build_matrix(lake: Any, table: str, version: Any, lfset: LFSet, key: list[str], *,
                 batch_rows: int = 8192, num_cpus: float = 1.0) -> tuple[LabelMatrix, int]:
    """The label matrix of ``table`` at ``version`` (latest if None), with Ray Data."""
    schema = pa.schema(lake.table(table, version).schema().to_arrow())
    _check_key(key, schema, table)
    ds, resolved = table_dataset(lake, table, version)
    return apply_dataset(ds, lfset, key, batch_rows=batch_rows, num_cpus=num_cpus), resolved


def error_report(m: LabelMatrix) -> list[str]:
    """One line per LF that failed on some rows: the count and its first message."""
    rows = m.table.num_rows
    return [f"LF {n!r} failed on {c:,} of {rows:,} rows (abstained there): "
            f"{m.messages.get(n, '')}" for n, c in m.errors.items() if c]
