"""The datasets of OpenLineage events: lake tables, source files, models and online store
views, named as OpenLineage names storage, with the facets the lake knows of them.

A lake table is named by where it lives (OpenLineage's naming: namespace ``file`` and
the folder's path for a local lake, ``s3://bucket`` and the key for S3), as Spark names
the same Delta table, so the graphs of both tools join; the ``symlinks`` facet adds
raylake's own name (the lake root's URI and the table name). Its facets: the Delta version
(``version``), the schema at that version, the classification of its columns (``tags``),
row counts, and, where the lake holds a profile of that version, data-quality metrics.
Statistics that repeat values (min, max, quantiles) are left out for columns classified
``pii`` or ``restricted``: the export leaves the lake, the profile does not.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pyarrow as pa

from raylake.errors import RaylakeError
from raylake.governance.openlineage_schema import facet
from raylake.lake.classification import classification_history
from raylake.lake.storage import Storage
from raylake.lake.tables import Lake
from raylake.lake.types import type_name
from raylake.models.store import ARTIFACTS_DIR
from raylake.quality.profile import Profile
from raylake.quality.store import PROFILES_TABLE

PROTECTED = ("pii", "restricted")  # classes whose value statistics stay in the lake
DATASET, INPUT, OUTPUT = "dataset", "input", "output"


def location(path: str) -> tuple[str, str]:
    """(namespace, name) of a file or folder, by OpenLineage's naming: ``file`` and the
    absolute path for a local one, ``scheme://authority`` and the path for a URI."""
    if "://" not in path:
        return "file", os.path.abspath(path)
    scheme, rest = path.split("://", 1)
    if scheme == "file":
        return "file", "/" + rest.lstrip("/")
    authority, _, key = rest.partition("/")
    return f"{scheme}://{authority}", key


def as_version(version: Any) -> int | None:
    """A recorded table version as an int (records hold ints; None when it names none)."""
    if isinstance(version, bool) or not isinstance(version, (int, str)):
        return None
    text = str(version).strip()
    return int(text) if text.isdigit() else None


def root_uri(storage: Storage) -> str:
    """The lake root as a URI (``file:///...`` for a local folder)."""
    return Path(storage.root).as_uri() if storage.local else storage.root


class Datasets:
    """Builds dataset entries of one lake, reading each table version's schema, profile and
    classification once however many events name it."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self._schemas: dict[tuple[str, str, int], pa.Schema | None] = {}
        self._profiles: dict[tuple[str, int], bytes] | None = None
        self._classes: list[dict[str, Any]] | None = None

    # -- identities ---------------------------------------------------------------

    def storage(self, branch: str | None = None) -> Storage:
        """The storage of the lake, or of ``branch`` of its home lake (merge records)."""
        if branch is None:
            return self.lake.storage
        return self.lake.home if branch == "main" else self.lake.home.for_branch(branch)

    def table_id(self, table: str, branch: str | None = None) -> tuple[str, str]:
        """(namespace, name) of lake table ``table`` (on ``branch``, default this lake)."""
        return location(self.storage(branch).uri(table))

    # -- datasets -----------------------------------------------------------------

    def table(self, table: str, version: Any, *, branch: str | None = None,
              versioned: bool = True) -> dict[str, Any]:
        """A lake table at ``version`` (None: unversioned) with version, schema, storage,
        type, raylake's name and its columns' classification."""
        ns, name = self.table_id(table, branch)
        v = as_version(version) if versioned else None
        facets: dict[str, Any] = {
            "storage": facet(DATASET, "storage", storageLayer="delta", fileFormat="parquet"),
            "datasetType": facet(DATASET, "datasetType", datasetType="TABLE"),
            "symlinks": facet(DATASET, "symlinks", identifiers=[
                {"namespace": root_uri(self.storage(branch)), "name": table, "type": "TABLE"}]),
        }
        if v is not None:
            facets["version"] = facet(DATASET, "version", datasetVersion=str(v))
            schema = self.schema(table, v, branch)
            if schema is not None:
                facets["schema"] = facet(DATASET, "schema", fields=_fields(schema))
        tags = self._tags(table, v) if branch is None else []
        if tags:
            facets["tags"] = facet(DATASET, "tags", tags=tags)
        return {"namespace": ns, "name": name, "facets": facets}

    def file(self, path: str) -> dict[str, Any]:
        """A source file or a report."""
        ns, name = location(path)
        return {"namespace": ns, "name": name,
                "facets": {"datasetType": facet(DATASET, "datasetType", datasetType="FILE")}}

    def model(self, model: str, version: Any) -> dict[str, Any]:
        """A registered model: its artifacts' folder, the version as the dataset version."""
        ns, name = location(self.lake.storage.uri(f"{ARTIFACTS_DIR}/{model}"))
        facets = {
            "datasetType": facet(DATASET, "datasetType", datasetType="MODEL"),
            "symlinks": facet(DATASET, "symlinks", identifiers=[
                {"namespace": root_uri(self.lake.storage), "name": f"model:{model}",
                 "type": "MODEL"}]),
        }
        if version is not None:
            facets["version"] = facet(DATASET, "version", datasetVersion=str(version))
        return {"namespace": ns, "name": name, "facets": facets}

    def online_view(self, kind: str, online: dict[str, Any], view: str) -> dict[str, Any]:
        """A feature view in the online store (``online`` as the run's config has it)."""
        if kind == "sqlite":
            ns, db = location(online.get("path") or f"{self.lake.root}/_online/online.db")
            name = f"{db}/{view}"
        else:
            ns = f"{kind}://{online.get('host')}:{online.get('port')}"
            name = f"{online.get('db', 0)}/{online.get('prefix', '')}{view}"
        return {"namespace": ns, "name": name, "facets": {
            "datasetType": facet(DATASET, "datasetType", datasetType="TABLE",
                                 subType="ONLINE_STORE")}}

    # -- what the lake knows of a table version -----------------------------------

    def schema(self, table: str, version: int, branch: str | None = None) -> pa.Schema | None:
        """The Arrow schema of ``table`` at ``version``; None when that version can no
        longer be read (a vacuumed log, a dropped table)."""
        key = (branch or "", table, version)
        if key not in self._schemas:
            lake = Lake(self.storage(branch)) if branch else self.lake
            try:
                dtab = lake.table(table, version, system=table.startswith("_"))
                self._schemas[key] = pa.schema(dtab.schema().to_arrow())
            except RaylakeError:
                self._schemas[key] = None
        return self._schemas[key]

    def metrics(self, kind: str, table: str, version: Any) -> dict[str, Any] | None:
        """The ``dataQualityMetrics`` facet (``kind`` input or dataset) of the profile the
        lake holds of ``table`` at ``version``; None without one."""
        v = as_version(version)
        data = self._stored_profiles().get((table, v)) if v is not None else None
        if not data:
            return None
        prof = Profile.from_bytes(data)
        classes = self._classes_at(table, v)
        columns = {}
        for col in prof.columns:
            s = prof.summary(col)
            m: dict[str, Any] = {"nullCount": int(s.nulls)}
            if s.distinct is not None and math.isfinite(s.distinct):
                m["distinctCount"] = int(round(s.distinct))
            protected = _protected(classes.get(col))
            if s.kind == "numeric" and not protected:
                m.update({k: v for k, v in (("min", s.min), ("max", s.max))
                          if v is not None and math.isfinite(v)})
                qs = {str(q): s.quantiles[f"q{int(q * 100):02d}"] for q in Profile.QUANTILES
                      if math.isfinite(s.quantiles.get(f"q{int(q * 100):02d}", math.nan))}
                if qs:
                    m["quantiles"] = qs
            columns[col] = m
        return facet(kind, "dataQualityMetrics", rowCount=int(prof.rows), columnMetrics=columns)

    def _stored_profiles(self) -> dict[tuple[str, int], bytes]:
        # _profiles is read once: the newest whole-table profile of each (table, version).
        if self._profiles is None:
            self._profiles = {}
            if self.lake.exists(PROFILES_TABLE, system=True):
                rows = self.lake.read(PROFILES_TABLE, system=True,
                                      columns=["table", "version", "segment_column",
                                               "profile", "created_at"])
                for r in rows.sort_by([("created_at", "ascending")]).to_pylist():
                    if r["segment_column"] == "":
                        self._profiles[(r["table"], int(r["version"]))] = r["profile"]
        return self._profiles

    def _classes_at(self, table: str, version: int | None) -> dict[str, dict[str, Any]]:
        """Each column's classification as of ``version``: the newest row written with that
        version or an earlier one (rows of unknown version count as earlier)."""
        if self._classes is None:
            self._classes = classification_history(self.lake)
        out: dict[str, dict[str, Any]] = {}
        for row in self._classes:  # oldest first: later rows win
            tv = row["table_version"]
            if row["table"] == table and (version is None or tv is None or tv <= version):
                out[row["column"]] = row
        return out

    def _tags(self, table: str, version: int | None) -> list[dict[str, str]]:
        tags = []
        for col, row in sorted(self._classes_at(table, version).items()):
            tags.append({"key": "classification", "value": str(row["class"]),
                         "source": "raylake", "field": col})
            tags += [{"key": "entity", "value": e, "source": "raylake", "field": col}
                     for e in sorted(row.get("entities") or {})]
            if row.get("policy") and row["policy"] != "keep":
                tags.append({"key": "policy", "value": str(row["policy"]),
                             "source": "raylake", "field": col})
        return tags


def _protected(row: dict[str, Any] | None) -> bool:
    if not row:
        return False
    return row["class"] in PROTECTED or bool(row.get("entities"))


def _fields(schema: pa.Schema | pa.StructType) -> list[dict[str, Any]]:
    out = []
    fields = list(schema) if isinstance(schema, pa.Schema) else [schema.field(i) for i in
                                                               range(schema.num_fields)]
    for i, f in enumerate(fields, start=1):
        entry: dict[str, Any] = {"name": f.name, "type": type_name(f.type), "ordinal_position": i}
        if pa.types.is_struct(f.type):
            entry["fields"] = _fields(f.type)
        out.append(entry)
    return out
