"""Named tags on table versions, kept in the lake's ``_tags`` table.

A tag is a name for one version of one table ("v0-raw", "train-2024-05"),
stored in the lake so it survives restarts and is shared by every client.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from raylake.errors import LakeError, VersionNotFoundError, did_you_mean
from raylake.lake.commit import write_table
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
        rows = self._read()
        if table is not None:
            rows = rows.filter(pc.equal(rows["table"], table))
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        for row in rows.sort_by([("created_at", "ascending")]).to_pylist():
            latest[(row["table"], row["tag"])] = row
        return [latest[k] for k in sorted(latest)]

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
        existing = {t["tag"]: t["version"] for t in self.list(table)}
        if tag in existing and existing[tag] != version and not force:
            raise LakeError(
                f"Tag {tag!r} of {table!r} already names version {existing[tag]}; "
                "pass --force to move it."
            )
        row = {
            "table": table,
            "tag": tag,
            "version": version,
            "created_at": dt.datetime.now(dt.timezone.utc),
            "note": note,
        }
        write_table(self.lake, TAGS_TABLE, pa.Table.from_pylist([row], schema=TAGS_SCHEMA), system=True)
        return version
