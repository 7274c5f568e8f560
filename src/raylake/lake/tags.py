"""Named tags on table versions, kept in the lake's ``_tags`` table.

A tag is a name for one version of one table ("v0-raw", "train-2024-05"),
stored in the lake so it survives restarts and is shared by every client.
Setting a tag is a read-check-write committed onto the snapshot it read, with
an app id per tag: of two concurrent sets of one tag one wins, the other gets
ConcurrentWriteError (see ``raylake.lake.commit.transact``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

from raylake.errors import ConcurrentWriteError, LakeError, VersionNotFoundError, did_you_mean
from raylake.lake.commit import transact
from raylake.lake.tables import Lake, parse_version_ref

TAGS_TABLE = "_tags"
TAGS_SCHEMA = pa.schema(
    [
        ("table", pa.string()),
        ("tag", pa.string()),
        ("version", pa.int64()),
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("note", pa.string()),
    ]
)


class TagStore:
    def __init__(self, lake: Lake) -> None:
        self.lake = lake

    def _read(self) -> pa.Table:
        if not self.lake.exists(TAGS_TABLE, system=True):
            return TAGS_SCHEMA.empty_table()
        return self.lake.read(TAGS_TABLE, system=True)

    def list(self, table: str | None = None) -> list[dict[str, Any]]:
        """Tags, latest definition of each (table, tag), sorted by table and tag."""
        return _latest(self._read(), table)

    def get(self, table: str, tag: str) -> int:
        """The version that ``tag`` of ``table`` names (its latest definition);
        VersionNotFoundError when the table has no such tag."""
        tags = {t["tag"]: t["version"] for t in self.list(table)}
        if tag not in tags:
            raise VersionNotFoundError(
                f"Table {table!r} has no tag {tag!r}.{did_you_mean(tag, tags)} "
                f"Known tags: {sorted(tags) or 'none'}; a version is an integer, a tag "
                "name or an ISO timestamp."
            )
        return int(tags[tag])

    def set(
        self, table: str, tag: str, version: int | None = None, *, force: bool = False, note: str = ""
    ) -> int:
        """Tag ``version`` (the latest if None) of ``table``; return the version tagged."""
        if not tag or tag.strip() != tag or parse_version_ref(tag) is not None:
            raise LakeError(
                f"Tag name {tag!r} could be read as a version or a timestamp; "
                "use a name like 'baseline' or 'v1-raw'."
            )
        dtab = self.lake.table(table)
        latest = dtab.version()
        version = latest if version is None else int(version)
        if not 0 <= version <= latest:
            raise VersionNotFoundError(
                f"Table {table!r} has versions 0..{latest}; cannot tag version {version}."
            )
        want = version
        first: dict[str, Any] = {}  # the tag's version when first read

        def build(snap: DeltaTable, conflicts: int) -> pa.Table | None:
            """The tag's row, checked against snapshot ``snap`` of ``_tags``."""
            rows = snap.to_pyarrow_table(filesystem=self.lake.arrow_filesystem(TAGS_TABLE,
                                                                                system=True))
            existing = {t["tag"]: t["version"] for t in _latest(rows, table)}
            if existing.get(tag) == want:
                return None  # named so already (by this call's first try, or anyone)
            seen = first.setdefault("version", existing.get(tag))
            if conflicts and existing.get(tag) != seen:  # set concurrently: that writer won
                raise ConcurrentWriteError(
                    f"Tag {tag!r} of {table!r} was set to version {existing.get(tag)} by "
                    f"another writer while this one was setting it to {want}; nothing was "
                    f"changed. Check `raylake lake tags {table}` and set it again if needed."
                )
            if tag in existing and not force:
                raise LakeError(
                    f"Tag {tag!r} of {table!r} already names version {existing[tag]}; "
                    "pass --force to move it."
                )
            row = {"table": table, "tag": tag, "version": want,
                   "created_at": dt.datetime.now(dt.timezone.utc), "note": note}
            return pa.Table.from_pylist([row], schema=TAGS_SCHEMA)

        # One app id per (table, tag): only sets of the same tag conflict with each other.
        transact(self.lake, TAGS_TABLE, TAGS_SCHEMA, build, system=True,
                 app_id=f"raylake.tag/{table}/{tag}", job="tag")
        return version


def _latest(rows: pa.Table, table: str | None) -> list[dict[str, Any]]:
    """The latest definition of each (table, tag) in ``rows``, sorted by table and tag."""
    if table is not None:
        rows = rows.filter(pc.equal(rows["table"], table))
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows.sort_by([("created_at", "ascending")]).to_pylist():
        latest[(row["table"], row["tag"])] = row
    return [latest[k] for k in sorted(latest)]
