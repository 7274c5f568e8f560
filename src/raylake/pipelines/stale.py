"""When a stage is stale, and why.

``pipelines run`` and ``watch`` (data-driven): a stage that never succeeded; an input table
with a version newer than the one the stage's last successful run read (from that run's
record in ``_runs``), counting, for an input limited to some partitions, only commits that
touched them; a source folder with files no successful ingest run recorded reading.

``repro`` adds DVC's two: the hash of the stage's resolved config (its ``params`` keys,
secrets redacted) or the code version differs from the last successful run's.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from raylake.errors import SourceError
from raylake.lake.storage import is_uri
from raylake.lake.tables import Lake
from raylake.pipelines.config import InputConfig, StageConfig
from raylake.pipelines.state import RunIndex, last_success


@dataclass
class Staleness:
    """Whether a stage must run: the reasons (empty: up to date), the new source files
    (an ingest stage's datums) and the input versions seen."""

    stage: str
    reasons: list[str] = field(default_factory=list)
    new_files: list[str] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=dict)

    @property
    def stale(self) -> bool:
        """True when the stage has anything to do."""
        return bool(self.reasons)

    def fingerprint(self) -> str:
        """What the stage would run on: a failed stage is not tried again (by ``watch``)
        until this changes."""
        return json.dumps([sorted(self.versions.items()), self.new_files])


def source_files(stage: StageConfig, lake: Lake) -> list[str]:
    """The files of an ingest stage's source folder (or glob), sorted; a folder that holds
    none yet gives none. SourceError (with the fix) when the folder does not exist."""
    from raylake.config.ingest import SourceConfig
    from raylake.ingest.sources import list_files, source_spec

    assert stage.source is not None
    path = source_path(stage)
    try:
        found = list_files(source_spec(SourceConfig(path=path), lake.storage.options))
    except SourceError as exc:
        if "matches no files" in str(exc):
            return []
        raise SourceError(f"{exc} (stage {stage.name}: set it in the pipeline file or with "
                          f"pipeline.stages.{stage.name}.source.path=<folder>)") from exc
    return [f.path for f in found]


def source_path(stage: StageConfig) -> str:
    """The stage's source path, a local one made absolute (run records name files so)."""
    assert stage.source is not None
    path = stage.source.path
    return path if is_uri(path) else os.path.abspath(os.path.expanduser(path))


def table_versions(lake: Lake, tables: list[str]) -> dict[str, int]:
    """The latest version of each of ``tables`` that exists."""
    return {t: lake.version(t) for t in tables if lake.exists(t)}


def check(lake: Lake, pipeline: str, stage: StageConfig, rows: list[dict[str, Any]],
          runs: RunIndex, *, config_hash: str | None = None,
          code: str | None = None) -> Staleness:
    """Why ``stage`` of ``pipeline`` is stale now (``rows``: the pipeline's records in
    ``_pipelines``); ``config_hash`` and ``code`` given (``repro``), a change of either
    makes it stale too."""
    out = Staleness(stage.name, versions=table_versions(lake, stage.input_tables))
    last = last_success(lake, pipeline, stage.name, rows)
    if stage.source is not None:
        done = runs.ingested_files(stage.job)
        out.new_files = [f for f in source_files(stage, lake) if f not in done]
        if out.new_files:
            out.reasons.append(f"{len(out.new_files)} new file(s) in {source_path(stage)}")
    if last is None:
        out.reasons.insert(0, "never ran")
        return out
    read = {**(last["inputs"] or {}), **runs.input_versions(last["run_ids"] or [])}
    for inp in stage.inputs:
        now = out.versions.get(inp.table)
        if now is None:
            continue  # not written yet: its writer runs first
        before = read.get(inp.table)
        if before is None:
            out.reasons.append(f"{inp.table}@{now} is new (no version recorded by the last run)")
        elif now > before and _touched(lake, inp, before, now):
            where = f" in {_parts_text(inp)}" if inp.partitions else ""
            out.reasons.append(f"{inp.table}@{now} is newer than {inp.table}@{before}{where} "
                               "read by the last run")
    if config_hash is not None and last["config_hash"] != config_hash:
        out.reasons.append("config changed" + (f" ({', '.join(stage.params)})"
                                               if stage.params else ""))
    if code is not None and last["code_version"] != code:
        out.reasons.append(f"code version changed ({last['code_version']} -> {code})")
    return out


def _parts_text(inp: InputConfig) -> str:
    return ", ".join(f"{c} in {v}" for c, v in inp.partitions.items())


def _touched(lake: Lake, inp: InputConfig, before: int, now: int) -> bool:
    """Whether a commit after ``before`` up to ``now`` added or removed a file in the
    input's partitions (any commit, for an input without partitions). A commit whose
    log is gone (cleaned up) counts as touching."""
    if not inp.partitions:
        return True
    fs = lake.arrow_filesystem(inp.table)
    for version in range(before + 1, now + 1):
        try:
            with fs.open_input_stream(f"_delta_log/{version:020d}.json") as stream:
                text = stream.read().decode()
        except OSError:
            return True
        for line in text.splitlines():
            action = json.loads(line) if line.strip() else {}
            change = action.get("add") or action.get("remove")
            if change is None:
                continue
            values = change.get("partitionValues") or {}
            if all(str(values.get(c)) in vals for c, vals in inp.partitions.items()):
                return True
    return False
