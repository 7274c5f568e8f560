"""Profile a Ray Dataset with Ray Data tasks; the block profiles merge into one.

Each task profiles one batch (optionally per segment value) and returns serialized
sketches; the driver merges them (``Profile.merged``). Plain tasks, not an actor pool:
profiling keeps no state between batches, and starting the actors cost more than
profiling flights x10 (15.8 s against 2.5 s, ``benchmarks/profile.py``). Tasks reserve a
fraction of a CPU so they never starve other work on a small machine; ``actors`` caps
how many run at once.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import ray

from raylake.quality.profile import Profile

WHOLE = ""  # the segment key of a whole-table profile
_SCHEMA = pa.schema([("segment", pa.string()), ("rows", pa.int64()), ("profile", pa.binary())])


def profile_batch(batch: pa.Table, segment_by: str | None = None,
                  selection: Any = None) -> pa.Table:
    """The profile of ``batch`` (only the rows the selection matches, when one is set) as
    rows of (segment, rows, serialized profile): one per segment value (null as ``""``)
    with ``segment_by``, else one ``WHOLE`` row."""
    if selection is not None:
        batch = batch.filter(selection)
    out: list[dict[str, Any]] = []
    if segment_by:
        keys = pc.unique(batch.column(segment_by)).to_pylist()
        for key in keys:
            mask = pc.is_null(batch.column(segment_by)) if key is None else pc.equal(
                batch.column(segment_by), key)
            part = batch.filter(mask)
            out.append({"segment": "" if key is None else str(key), "rows": part.num_rows,
                        "profile": Profile.of(part).to_bytes()})
    else:
        out.append({"segment": WHOLE, "rows": batch.num_rows,
                    "profile": Profile.of(batch).to_bytes()})
    return pa.Table.from_pylist(out, schema=_SCHEMA)


def profile_dataset(
    ds: ray.data.Dataset,
    *,
    segment_by: str | None = None,
    selection: Any = None,
    actors: int = 2,
    actor_cpus: float = 0.5,
    batch_rows: int | None = 100_000,
) -> dict[str, Profile]:
    """Profiles of ``ds`` (one per segment value, or ``{"": whole}``), merged on the driver.
    ``actors`` tasks at most run at once, each reserving ``actor_cpus``; ``batch_rows``
    rows per batch (None: one batch per block)."""
    out = ds.map_batches(
        profile_batch,
        fn_kwargs={"segment_by": segment_by, "selection": selection},
        batch_format="pyarrow",
        batch_size=batch_rows,
        concurrency=actors,
        num_cpus=actor_cpus,
    )
    parts: dict[str, list[bytes]] = {}
    for ref in out.to_arrow_refs():
        for row in ray.get(ref).to_pylist():
            if row["rows"]:
                parts.setdefault(row["segment"], []).append(row["profile"])
    merged = {seg: Profile.merged(datas) for seg, datas in parts.items()}
    if not segment_by and WHOLE not in merged:
        merged[WHOLE] = Profile.empty()
    return merged
