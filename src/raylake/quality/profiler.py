"""Profile a Ray Dataset with a pool of actors; the block profiles merge into one.

Each actor profiles the blocks it is given (optionally per segment value) and
returns serialized sketches; the driver merges them. Actors reserve a
fraction of a CPU so the pool never starves other work on a small machine.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import ray

from raylake.quality.profile import Profile

WHOLE = ""  # the segment key of a whole-table profile


class ProfileActor:
    """Ray Data actor: profiles each batch, per segment value when asked."""

    def __init__(self, segment_by: str | None = None, selection: Any = None) -> None:
        self.segment_by = segment_by
        self.selection = selection

    def __call__(self, batch: pa.Table) -> pa.Table:
        """The profile of ``batch`` (only the rows the selection matches, when one is set)
        as rows of (segment, rows, serialized profile): one per segment value (null as
        ``""``) with ``segment_by``, else one ``WHOLE`` row."""
        if self.selection is not None:
            batch = batch.filter(self.selection)
        out: list[dict[str, Any]] = []
        if self.segment_by:
            keys = pc.unique(batch.column(self.segment_by)).to_pylist()
            for key in keys:
                mask = pc.is_null(batch.column(self.segment_by)) if key is None else pc.equal(
                    batch.column(self.segment_by), key)
                part = batch.filter(mask)
                out.append({"segment": "" if key is None else str(key), "rows": part.num_rows,
                            "profile": Profile.of(part).to_bytes()})
        else:
            out.append({"segment": WHOLE, "rows": batch.num_rows,
                        "profile": Profile.of(batch).to_bytes()})
        return pa.Table.from_pylist(out, schema=pa.schema(
            [("segment", pa.string()), ("rows", pa.int64()), ("profile", pa.binary())]))


def profile_dataset(
    ds: ray.data.Dataset,
    *,
    segment_by: str | None = None,
    selection: Any = None,
    actors: int = 2,
    actor_cpus: float = 0.5,
    batch_rows: int = 100_000,
) -> dict[str, Profile]:
    """Profiles of ``ds`` (one per segment value, or ``{"": whole}``), merged on the driver."""
    out = ds.map_batches(
        ProfileActor,
        fn_constructor_kwargs={"segment_by": segment_by, "selection": selection},
        batch_format="pyarrow",
        batch_size=batch_rows,
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=actor_cpus,
    )
    merged: dict[str, Profile] = {}
    for ref in out.to_arrow_refs():
        for row in ray.get(ref).to_pylist():
            if not row["rows"]:
                continue
            part = Profile.from_bytes(row["profile"])
            seg = row["segment"]
            merged[seg] = merged[seg].merge(part) if seg in merged else part
    if not segment_by and WHOLE not in merged:
        merged[WHOLE] = Profile.empty()
    return merged
