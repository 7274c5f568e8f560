"""The registry's storage: the ``_models`` event table and the artifact files.

``_models`` is append-only. A version's first row (event ``registered``)
carries its metadata and the stage ``candidate``; each stage change appends a
row (event ``stage``). Rows of one model are numbered by ``seq``; a version's
newest row gives its stage, and all its rows are its stage history.

Every change to one model is one Delta transaction carrying the application
transaction id ``raylake.models/<name>``, and it is committed against the
snapshot its rows were computed from. delta-rs fails a commit when a commit
since that snapshot carried the same id, so two writers that computed the same
next version (or both moved the champion) cannot both succeed: the loser reads
again and recomputes. Changes to different models do not conflict.

Artifacts live outside any table folder, under ``_model_artifacts/`` (Delta's
vacuum deletes files in a table folder that no version references). They are
named by their content hash, so two writers never overwrite each other's file
with different bytes.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.fs as pafs
from deltalake import DeltaTable, Schema, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError

from raylake.errors import ArtifactError, LakeError
from raylake.lake.commit import commit_properties
from raylake.lake.tables import Lake

MODELS_TABLE = "_models"
ARTIFACTS_DIR = "_model_artifacts"
CONFLICT_RETRIES = 30

MODELS_SCHEMA = pa.schema(
    [
        ("name", pa.string()),
        ("version", pa.int64()),
        ("seq", pa.int64()),
        ("event", pa.string()),
        ("stage", pa.string()),
        ("previous_stage", pa.string()),
        ("at", pa.timestamp("us", tz="UTC")),
        ("reason", pa.string()),
        ("flavor", pa.string()),
        ("flavor_info", pa.string()),
        ("artifact", pa.string()),
        ("sha256", pa.string()),
        ("size_bytes", pa.int64()),
        ("features", pa.string()),
        ("training", pa.string()),
        ("config", pa.string()),
        ("metrics", pa.string()),
        ("preprocessing", pa.string()),
        ("run_id", pa.string()),
        ("description", pa.string()),
    ]
)
JSON_FIELDS = ("flavor_info", "features", "training", "config", "metrics", "preprocessing")

T = TypeVar("T")
Build = Callable[[list[dict[str, Any]]], tuple[list[dict[str, Any]], T]]


class ModelStore:
    def __init__(self, lake: Lake) -> None:
        self.lake = lake

    # -- the event table -------------------------------------------------------

    def events(self) -> list[dict[str, Any]]:
        """Every row of ``_models`` (empty when nothing was registered yet)."""
        if not self.lake.exists(MODELS_TABLE, system=True):
            return []
        return self._read(self.lake.table(MODELS_TABLE, system=True))

    def _read(self, dtab: DeltaTable) -> list[dict[str, Any]]:
        try:
            table = dtab.to_pyarrow_table(
                filesystem=self.lake.arrow_filesystem(MODELS_TABLE, system=True)
            )
        except (DeltaError, OSError, pa.ArrowException) as exc:
            raise LakeError(f"Cannot read the model registry ({MODELS_TABLE}): {exc}") from exc
        rows = table.to_pylist()
        for row in rows:
            for key in JSON_FIELDS:
                row[key] = json.loads(row[key]) if row[key] is not None else None
        return rows

    def _snapshot(self) -> DeltaTable:
        # The table is created empty first: delta-rs lets two racing creators
        # both commit (the loser becomes version 1) without checking
        # transaction ids, so rows are only ever written to an existing table.
        if not self.lake.exists(MODELS_TABLE, system=True):
            try:
                DeltaTable.create(
                    self.lake.uri(MODELS_TABLE, system=True),
                    Schema.from_arrow(MODELS_SCHEMA),
                    mode="ignore",
                    name="models",
                    description="raylake model registry (append-only events)",
                    storage_options=self.lake.storage.delta_options(),
                )
            except (DeltaError, OSError) as exc:
                if not self.lake.exists(MODELS_TABLE, system=True):
                    raise LakeError(f"Cannot create the model registry table: {exc}") from exc
        return self.lake.table(MODELS_TABLE, system=True)

    def transact(self, name: str, build: Build[T], *, run_id: str | None, job: str) -> T:
        """Read the events, let ``build`` turn them into new rows, commit those rows.

        ``build`` gets all rows of ``_models`` and returns (rows to append,
        result); it may raise. On a conflicting concurrent change to the same
        model it runs again on the new events.
        """
        app_id = f"raylake.models/{name}"
        for attempt in range(CONFLICT_RETRIES):
            dtab = self._snapshot()
            rows, result = build(self._read(dtab))
            if not rows:
                return result
            data = pa.Table.from_pylist([_encode(r) for r in rows], schema=MODELS_SCHEMA)
            try:
                write_deltalake(
                    dtab,
                    data,
                    mode="append",
                    commit_properties=commit_properties(app_id, run_id, job, len(rows)),
                )
                return result
            except CommitFailedError:
                # Jittered backoff so writers that collided do not collide again.
                time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
            except (DeltaError, OSError, pa.ArrowException) as exc:
                raise LakeError(
                    f"Cannot write to the model registry: {exc}. Nothing was committed."
                ) from exc
        raise LakeError(
            f"Model {name!r} was changed concurrently {CONFLICT_RETRIES} times while this "
            "change was being committed; nothing was committed. Try again."
        )

    # -- artifacts -------------------------------------------------------------

    def write_artifact(self, name: str, data: bytes, extension: str) -> tuple[str, str]:
        """Store ``data``; return its path under the lake root and its sha256."""
        sha = sha256_hex(data)
        rel = f"{ARTIFACTS_DIR}/{name}/{sha}.{extension}"
        fs, root = self.lake.storage.filesystem()
        path = f"{root}/{rel}"
        try:
            info = fs.get_file_info(path)
            if info.type == pafs.FileType.File and info.size == len(data):
                return rel, sha  # same name, same content: already stored
            fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
            # Object stores make a finished upload visible at once; a local file
            # is written under a temporary name and renamed so no reader ever
            # sees half of it.
            target = f"{path}.tmp-{uuid.uuid4().hex}" if self.lake.storage.local else path
            with fs.open_output_stream(target) as out:
                out.write(data)
            if target != path:
                fs.move(target, path)
        except OSError as exc:
            raise ArtifactError(f"Cannot write the model artifact {self.uri(rel)}: {exc}") from exc
        return rel, sha

    def read_artifact(self, rel: str) -> bytes:
        """The bytes of the artifact at ``rel`` (a path under the lake root); ArtifactError
        when it is missing or cannot be read."""
        fs, root = self.lake.storage.filesystem()
        try:
            with fs.open_input_stream(f"{root}/{rel}") as src:
                return src.read()
        except FileNotFoundError as exc:
            raise ArtifactError(
                f"The model artifact {self.uri(rel)} is missing: it was deleted or the lake was "
                "copied without `_model_artifacts/`. Restore the file or register the model again."
            ) from exc
        except OSError as exc:
            raise ArtifactError(f"Cannot read the model artifact {self.uri(rel)}: {exc}") from exc

    def uri(self, rel: str) -> str:
        """The full location of ``rel``, a path under the lake root."""
        return self.lake.storage.uri(rel)


def sha256_hex(data: bytes) -> str:
    """The SHA-256 digest of ``data`` in lowercase hex."""
    return hashlib.sha256(data).hexdigest()


def _encode(row: dict[str, Any]) -> dict[str, Any]:
    out = {f.name: row.get(f.name) for f in MODELS_SCHEMA}
    for key in JSON_FIELDS:
        if out[key] is not None and not isinstance(out[key], str):
            out[key] = json.dumps(out[key], sort_keys=True)
    return out
