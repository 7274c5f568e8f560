"""The real rows a synthesizer learns from: one table version read with Ray Data, the
columns chosen, a seeded sample when the table is larger than ``synth.max_rows``."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa

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

    @property
    def rows(self) -> int:
        """Rows fitted on."""
        return len(self.frame)


# Which rows are sampled and which held out is decided by a hash of each row's values
# (keyed by the seed), never by position: the same table version, seed and shares give
# the same rows however Ray splits the reading into blocks, so `synth report` finds again
# exactly the rows a fit used and the ones it never saw.
_BUCKETS = 1_000_000


def _pick(frame: pd.DataFrame, names: list[str], sample: float, holdout: float,
          seed: int) -> pd.DataFrame:
    """The rows of one block kept by the sample, with a ``__holdout`` flag: both from one
    64-bit hash of the row's values keyed by the seed (its low digits decide the sample,
    the next ones the holdout, so the two are independent)."""
    rows = frame[names]
    key = f"raylake{int(seed) % 10**9:09d}"  # hash_pandas_object takes a 16-character key
    h = pd.util.hash_pandas_object(rows, index=False, hash_key=key).to_numpy()
    keep = (h % _BUCKETS) < sample * _BUCKETS
    held = ((h // _BUCKETS) % _BUCKETS) < holdout * _BUCKETS
    return rows[keep].assign(__holdout=held[keep])


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
    picked = ds.map_batches(_pick, batch_format="pandas", fn_kwargs={
        "names": names, "sample": share, "holdout": holdout, "seed": seed})
    frame = picked.to_pandas()
    held = frame.pop("__holdout").to_numpy(bool)
    frame = frame[names]
    kept = schema if not columns else pa.schema([schema.field(n) for n in names])
    features = [{"name": f.name, "type": str(f.type)} for f in kept]
    fit, out = frame[~held].reset_index(drop=True), frame[held].reset_index(drop=True)
    if len(fit) == 0:
        raise SynthError(f"{table}@{resolved}: no row is left to fit on after the holdout "
                         f"({holdout:.0%}); lower synth.report.holdout or add rows.")
    return RealRows(fit, out, resolved, total, features)


def plain(value: Any) -> Any:
    """A config dataclass as plain JSON values (enums as their text)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value
