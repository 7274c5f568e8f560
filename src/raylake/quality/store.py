"""Profiles kept in the lake: the ``_profiles`` table, one row per table version and segment."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc

from raylake.lake.commit import write_table
from raylake.lake.tables import Lake
from raylake.quality.profile import Profile

PROFILES_TABLE = "_profiles"
PROFILES_SCHEMA = pa.schema(
    [
        ("table", pa.string()),
        ("version", pa.int64()),
        ("segment_column", pa.string()),  # "" for the whole table
        ("segment", pa.string()),  # the segment's value; "" for the whole table
        ("rows", pa.int64()),
        ("profile", pa.binary()),
        ("run_id", pa.string()),
        ("created_at", pa.timestamp("us", tz="UTC")),
    ]
)


def save_profiles(lake: Lake, table: str, version: int, profiles: dict[str, Profile],
                  *, segment_column: str = "", run_id: str = "") -> int:
    """Store one profile per segment value ("" for the whole table); return the _profiles version."""
    now = dt.datetime.now(dt.timezone.utc)
    rows = [
        {"table": table, "version": version, "segment_column": segment_column, "segment": seg,
         "rows": p.rows, "profile": p.to_bytes(), "run_id": run_id, "created_at": now}
        for seg, p in profiles.items()
    ]
    return write_table(lake, PROFILES_TABLE, pa.Table.from_pylist(rows, schema=PROFILES_SCHEMA),
                       system=True)


def load_profile(lake: Lake, table: str, versions: Iterable[int] | None = None,
                 *, segment_column: str = "", segments: Iterable[str] | None = None) -> Profile:
    """Merge the stored profiles of ``table`` over versions and segments (newest row wins)."""
    if not lake.exists(PROFILES_TABLE, system=True):
        return Profile.empty()
    rows = lake.read(PROFILES_TABLE, system=True)
    mask = pc.and_(pc.equal(rows["table"], table), pc.equal(rows["segment_column"], segment_column))
    rows = rows.filter(mask)
    if versions is not None:
        rows = rows.filter(pc.is_in(rows["version"], pa.array(list(versions), pa.int64())))
    if segments is not None:
        rows = rows.filter(pc.is_in(rows["segment"], pa.array([str(s) for s in segments])))
    latest: dict[tuple[int, str], bytes] = {}
    for r in rows.sort_by([("created_at", "ascending")]).to_pylist():
        latest[(r["version"], r["segment"])] = r["profile"]
    merged = Profile.empty()
    for data in latest.values():
        merged = merged.merge(Profile.from_bytes(data))
    return merged


def stored_versions(lake: Lake, table: str) -> list[int]:
    """The versions of ``table`` that have a stored profile, ascending (empty when none has)."""
    if not lake.exists(PROFILES_TABLE, system=True):
        return []
    rows = lake.read(PROFILES_TABLE, columns=["table", "version"], system=True)
    return sorted(set(rows.filter(pc.equal(rows["table"], table)).column("version").to_pylist()))


def versions_between(lake: Lake, table: str, start: dt.datetime | None = None,
                     end: dt.datetime | None = None) -> list[int]:
    """Versions of ``table`` committed in [start, end): a time window for load_profile."""
    out = []
    for entry in lake.history(table):
        ts = entry["timestamp"]
        if ts is not None and (start is None or ts >= start) and (end is None or ts < end):
            out.append(int(entry["version"]))
    return sorted(out)
