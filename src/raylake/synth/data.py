"""The real rows a synthesizer learns from: one table version read with Ray Data, the
columns chosen, a seeded sample when the table is larger than ``synth.max_rows``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from raylake.errors import SynthError, did_you_mean
from raylake.lake.tables import Lake


@dataclass
class RealRows:
    """A table version's rows as the synthesizer sees them: those it is fitted on, and a
    holdout it never sees (the privacy baseline and the utility test set of the report)."""

    frame: pd.DataFrame  # the rows fitted on
    holdout: pd.DataFrame  # rows of the same version held out of the fit
    version: int
    table_rows: int  # rows of the version (the two frames may be a sample of them)
    features: list[dict[str, str]]  # {"name", "type"} per column, as the registry keeps them
    schema: pa.Schema | None = None  # the columns' Arrow types (samples are cast to them)

    @property
    def rows(self) -> int:
        """Rows fitted on."""
        return len(self.frame)


# Which rows are sampled and which held out is decided by a hash of each row's values
# (keyed by the seed), never by position: the same table version, seed and shares give
# the same rows however Ray splits the reading into blocks, so `synth report` finds again
# exactly the rows a fit used and the ones it never saw.
_BUCKETS = 1_000_000


def _canonical(rows: pa.Table) -> pd.DataFrame:
    """Each column as text from its Arrow type (nulls as NUL): the same value hashes the
    same in every block, whatever pandas would make of the block (an int64 column with a
    null in it turns float in pandas, a bool one object)."""
    cols = {}
    for name in rows.column_names:
        col = rows.column(name)
        try:
            text = pc.cast(col, pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            text = pa.array([None if v is None else repr(v) for v in col.to_pylist()], pa.string())
        cols[name] = pc.fill_null(text, "\x00").to_numpy(zero_copy_only=False)
    return pd.DataFrame(cols)


def _pick(batch: pa.Table, names: list[str], sample: float, holdout: float,
          seed: int) -> pa.Table:
    """The rows of one block kept by the sample, with a ``__holdout`` flag and their hash
    (``__hash``, to put them in an order that does not depend on the blocks): both from one
    64-bit hash of the row's values keyed by the seed (its low digits decide the sample,
    the next ones the holdout, so the two are independent)."""
    rows = batch.select(names)
    key = f"raylake{int(seed) % 10**9:09d}"  # hash_pandas_object takes a 16-character key
    h = pd.util.hash_pandas_object(_canonical(rows), index=False, hash_key=key).to_numpy()
    keep = (h % _BUCKETS) < sample * _BUCKETS
    held = ((h // _BUCKETS) % _BUCKETS) < holdout * _BUCKETS
    mask = pa.array(keep)
    return (rows.filter(mask).append_column("__holdout", pa.array(held[keep]))
            .append_column("__hash", pa.array(h[keep], pa.uint64())))


def _learnable(frame: pd.DataFrame, schema: pa.Schema) -> pd.DataFrame:
    """Dates as timestamps and decimals as floats: the synthesizers model times and
    numbers; samples are cast back to the table's types when written (``arrow_schema``)."""
    for f in schema:
        if f.name not in frame.columns:
            continue
        if pa.types.is_date(f.type):
            frame[f.name] = pd.to_datetime(frame[f.name])
        elif pa.types.is_decimal(f.type):
            frame[f.name] = frame[f.name].astype("float64")
    return frame


def schema_text(schema: pa.Schema) -> str:
    """An Arrow schema as base64 of its IPC bytes (JSON-safe, holds no code)."""
    import base64

    return base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")


def schema_of(text: str) -> pa.Schema:
    """The schema :func:`schema_text` wrote."""
    import base64

    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


def as_table(frame: pd.DataFrame, schema: pa.Schema | None) -> pa.Table:
    """Sampled rows as Arrow in the real table's types (ints with nulls stay ints, strings
    strings, dates dates), not what pandas would infer."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if schema is None:
        return table
    cols = [table.column(f.name).cast(f.type, safe=False) if f.name in table.column_names
            else pa.nulls(table.num_rows, f.type) for f in schema]
    return pa.Table.from_arrays(cols, schema=pa.schema([pa.field(f.name, f.type) for f in schema]))


def read_real(lake: Lake, table: str, version: Any, columns: list[str],
              max_rows: int | None, seed: int, holdout: float = 0.2) -> RealRows:
    """``table`` at ``version`` (latest if None) with ``columns`` (every column if empty),
    read and sampled by Ray Data tasks: about ``max_rows`` rows when there are more, and a
    ``holdout`` share of them set aside (both decided per row, see ``_pick``)."""
    import ray

    dtab = lake.table(table, version)
    resolved = dtab.version()
    schema = pa.schema(dtab.schema().to_arrow())
    names = list(schema.names)
    if columns:
        missing = [c for c in columns if c not in names]
        if missing:
            raise SynthError(f"synth.columns names {missing[0]!r}, which {table}@{resolved} "
                             f"does not have.{did_you_mean(missing[0], names)} Its columns: "
                             f"{', '.join(names)}.")
        names = list(columns)
    total = lake.count(table, resolved)
    if total == 0:
        raise SynthError(f"{table}@{resolved} has no rows: a synthesizer needs rows to learn "
                         "from; ingest some or pick another version.")
    share = 1.0 if max_rows is None or total <= max_rows else max_rows / total
    ds = ray.data.read_delta(dtab.table_uri, version=resolved, columns=names,
                             storage_options=lake.storage.delta_options())
    picked = ds.map_batches(_pick, batch_format="pyarrow", fn_kwargs={
        "names": names, "sample": share, "holdout": holdout, "seed": seed})
    # Blocks come back in any order: the rows are put in the order of their hash (ties are
    # equal rows), so the same version and seed give the same frame, row for row.
    frame = picked.to_pandas().sort_values("__hash", kind="stable")
    held = frame.pop("__holdout").to_numpy(bool)
    frame = _learnable(frame[names], schema)
    kept = schema if not columns else pa.schema([schema.field(n) for n in names])
    features = [{"name": f.name, "type": str(f.type)} for f in kept]
    fit, out = frame[~held].reset_index(drop=True), frame[held].reset_index(drop=True)
    if len(fit) == 0:
        raise SynthError(f"{table}@{resolved}: no row is left to fit on after the holdout "
                         f"({holdout:.0%}); lower synth.report.holdout or add rows.")
    return RealRows(fit, out, resolved, total, features, kept)


def plain(section: Any) -> Any:
    """A typed config section as plain JSON values (enums as their text)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.structured(section), enum_to_str=True)
