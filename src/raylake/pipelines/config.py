"""What a pipeline is: stages declared in ``conf/pipelines/<name>.yaml``, typed and checked.

A stage names the job it runs (any ``raylake <job>``) with its overrides, the lake
tables it reads (``inputs``, optionally only some partitions of them), or, for an
ingest stage, a ``source`` folder whose files are its datums (Pachyderm's
``input.pfs.glob: /*``), the tables it writes (``outputs``) and the config keys its
result depends on (``params``, DVC's ``params:``; ``raylake repro`` hashes them).

The file is read with OmegaConf (so ``${oc.env:VAR,default}`` works) and built into the
dataclasses below by hand: an unknown key is an error with the nearest valid key, a
value of the wrong type names the full key and an example.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from raylake.errors import ConfigError, RaylakeError, did_you_mean

PIPELINES_DIR = Path(__file__).resolve().parent.parent / "conf" / "pipelines"
_NAME = re.compile(r"^[A-Za-z][\w\-]*$")


class PipelineError(ConfigError):
    """A pipeline file is missing, malformed, or its stages do not form a graph (a cycle,
    two stages writing one table)."""


class StageFailedError(RaylakeError):
    """A stage's job failed on every try; its dependents were not run."""


@dataclass
class RetryConfig:
    """How a failing stage (or one datum of it) is tried again."""

    # Tries in all, the first included: 1 never retries.
    attempts: int = 3
    # Seconds before the second try; each later wait doubles, up to max_backoff_s.
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0

    def check(self, key: str) -> None:
        """PipelineError naming ``key`` when a value is out of range."""
        if self.attempts < 1:
            raise PipelineError(f"{key}.attempts={self.attempts} must be at least 1 "
                                "(1 tries once and never retries).")
        if self.backoff_s < 0 or self.max_backoff_s < self.backoff_s:
            raise PipelineError(f"{key}: backoff_s={self.backoff_s} must be >= 0 and at most "
                                f"max_backoff_s={self.max_backoff_s}.")

    def wait(self, attempt: int) -> float:
        """Seconds to wait after failed try number ``attempt`` (1-based)."""
        return float(min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1)))


@dataclass
class WatchConfig:
    """``raylake pipelines watch``: how often table versions and source folders are polled."""

    interval_s: float = 5.0

    def check(self, key: str) -> None:
        """PipelineError when the interval is not positive."""
        if self.interval_s <= 0:
            raise PipelineError(f"{key}.interval_s={self.interval_s} must be > 0 seconds, "
                                "e.g. 5.")


@dataclass
class InputConfig:
    """A lake table a stage reads; with ``partitions`` only commits that touch those
    partition values make the stage stale (``{origin: [JFK]}``)."""

    table: str = ""
    partitions: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class SourceConfig:
    """A folder (or glob) of files an ingest stage ingests, one file per datum, into the
    dataset table ``table`` (a key of ``dataset.tables``)."""

    path: str = ""
    table: str = ""


@dataclass
class StageConfig:
    """One stage: a job, its overrides, what it reads and writes."""

    job: str = ""
    name: str = ""  # set from the key in `stages`
    overrides: list[str] = field(default_factory=list)
    inputs: list[InputConfig] = field(default_factory=list)
    source: SourceConfig | None = None
    outputs: list[str] = field(default_factory=list)
    # Stages this one runs after though it reads none of their tables (a model, a store).
    after: list[str] = field(default_factory=list)
    # Config keys (dotted) whose values decide this stage's result: `raylake repro` re-runs
    # the stage when their resolved values change. Empty: the whole config.
    params: list[str] = field(default_factory=list)
    retry: RetryConfig | None = None
    description: str = ""

    @property
    def input_tables(self) -> list[str]:
        """The tables this stage reads, in declared order."""
        return [i.table for i in self.inputs]


@dataclass
class PipelineConfig:
    """A named pipeline: its stages and how they run."""

    name: str = ""
    description: str = ""
    # Overrides every stage's job gets (before the command line's and the stage's own).
    overrides: list[str] = field(default_factory=list)
    retry: RetryConfig = field(default_factory=RetryConfig)
    watch: WatchConfig = field(default_factory=WatchConfig)
    stages: dict[str, StageConfig] = field(default_factory=dict)

    def retry_of(self, stage: StageConfig) -> RetryConfig:
        """The stage's own retry settings, else the pipeline's."""
        return stage.retry or self.retry


# -- loading ------------------------------------------------------------------------------


def pipeline_names(directory: Path = PIPELINES_DIR) -> list[str]:
    """The pipelines shipped in ``directory`` (``conf/pipelines/*.yaml``), sorted."""
    return sorted(p.stem for p in directory.glob("*.yaml"))


def pipeline_path(name: str, directory: Path = PIPELINES_DIR) -> Path:
    """The file of pipeline ``name``: a path to a YAML file, or a name under ``directory``."""
    if name.endswith((".yaml", ".yml")) or "/" in name:
        path = Path(name)
        if not path.is_file():
            raise PipelineError(f"Pipeline file {name!r} does not exist.")
        return path
    path = directory / f"{name}.yaml"
    if not path.is_file():
        known = pipeline_names(directory)
        raise PipelineError(f"No pipeline {name!r} in {directory}.{did_you_mean(name, known)} "
                            f"Pipelines: {', '.join(known) or '(none)'}; or give a YAML file.")
    return path


def load_pipeline(name: str, overrides: Sequence[str] = (),
                  directory: Path = PIPELINES_DIR) -> PipelineConfig:
    """Pipeline ``name`` (or a YAML file) with ``overrides`` (``stages.X.source.path=...``,
    the ``pipeline.`` prefix of the command line removed), typed and checked."""
    path = pipeline_path(name, directory)
    try:
        raw = OmegaConf.load(path)
        if overrides:
            raw = OmegaConf.merge(raw, OmegaConf.from_dotlist(list(overrides)))
        assert isinstance(raw, DictConfig)
        data = OmegaConf.to_container(raw, resolve=True)
    except (OmegaConfBaseException, ValueError, OSError) as exc:
        raise PipelineError(f"Cannot read pipeline {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise PipelineError(f"Pipeline {path} must be a mapping with `stages:`.")
    spec = {str(k): v for k, v in data.items()}
    spec.setdefault("name", path.stem)
    return parse_pipeline(spec, where=str(path))


def parse_pipeline(data: Mapping[str, Any], where: str = "pipeline") -> PipelineConfig:
    """A :class:`PipelineConfig` from plain data, every key and value checked."""
    _known_keys(data, PipelineConfig, "pipeline", where)
    name = str(data.get("name") or "")
    if not _NAME.match(name):
        raise PipelineError(f"{where}: name={name!r} must start with a letter and hold only "
                            "letters, digits, '_' and '-'.")
    retry = _retry(data.get("retry"), "retry", where) or RetryConfig()
    watch_data = data.get("watch") or {}
    _known_keys(watch_data, WatchConfig, "watch", where)
    watch = WatchConfig(interval_s=_number(watch_data.get("interval_s", 5.0), "watch.interval_s",
                                           where))
    watch.check("watch")
    stages_data = data.get("stages")
    if not isinstance(stages_data, Mapping) or not stages_data:
        raise PipelineError(f"{where}: `stages` must map stage names to stages "
                            "(each with at least `job:`).")
    stages = {str(k): _stage(str(k), v, where) for k, v in stages_data.items()}
    pipe = PipelineConfig(name=name, description=str(data.get("description") or ""),
                          overrides=_strings(data.get("overrides"), "overrides", where),
                          retry=retry, watch=watch, stages=stages)
    for stage in stages.values():
        for dep in stage.after:
            if dep not in stages:
                raise PipelineError(f"{where}: stages.{stage.name}.after names {dep!r}, which is "
                                    f"not a stage.{did_you_mean(dep, stages)}")
    from raylake.pipelines.graph import order

    order(pipe)  # a cycle or two writers of one table: refused when loaded
    return pipe


def _stage(name: str, data: Any, where: str) -> StageConfig:
    key = f"stages.{name}"
    if not _NAME.match(name):
        raise PipelineError(f"{where}: stage name {name!r} must start with a letter and hold "
                            "only letters, digits, '_' and '-'.")
    if not isinstance(data, Mapping):
        raise PipelineError(f"{where}: {key} must be a mapping with at least `job:`.")
    _known_keys(data, StageConfig, key, where, skip=("name",))
    job = data.get("job")
    if not isinstance(job, str) or not job:
        raise PipelineError(f"{where}: {key}.job is required: the `raylake <job>` this stage "
                            "runs, e.g. job: aggregate.")
    inputs = []
    for i, item in enumerate(data.get("inputs") or []):
        inputs.append(_input(item, f"{key}.inputs[{i}]", where))
    source = None
    if data.get("source") is not None:
        src = data["source"]
        if not isinstance(src, Mapping):
            raise PipelineError(f"{where}: {key}.source must be a mapping "
                                "{path: <folder>, table: <dataset table>}.")
        _known_keys(src, SourceConfig, f"{key}.source", where)
        path, table = src.get("path"), src.get("table")
        if not path or not table:
            raise PipelineError(f"{where}: {key}.source needs `path` (a folder or glob of files) "
                                "and `table` (the dataset.tables key they are ingested into).")
        source = SourceConfig(path=str(path), table=str(table))
        if job != "ingest":
            raise PipelineError(f"{where}: {key}.source is for ingest stages (a file is a "
                                f"datum the ingest job reads); this stage runs {job!r}.")
    return StageConfig(
        job=job, name=name, overrides=_strings(data.get("overrides"), f"{key}.overrides", where),
        inputs=inputs, source=source,
        outputs=_strings(data.get("outputs"), f"{key}.outputs", where),
        after=_strings(data.get("after"), f"{key}.after", where),
        params=_strings(data.get("params"), f"{key}.params", where),
        retry=_retry(data.get("retry"), f"{key}.retry", where),
        description=str(data.get("description") or ""))


def _input(item: Any, key: str, where: str) -> InputConfig:
    if isinstance(item, str):
        return InputConfig(table=item)
    if not isinstance(item, Mapping) or not item.get("table"):
        raise PipelineError(f"{where}: {key} must be a table name or "
                            "{table: <name>, partitions: {<column>: [<value>, ...]}}.")
    _known_keys(item, InputConfig, key, where)
    parts = item.get("partitions") or {}
    if not isinstance(parts, Mapping):
        raise PipelineError(f"{where}: {key}.partitions must map partition columns to lists of "
                            "values, e.g. {origin: [JFK]}.")
    partitions = {}
    for col, values in parts.items():
        values = values if isinstance(values, list) else [values]
        partitions[str(col)] = [str(v) for v in values]
    return InputConfig(table=str(item["table"]), partitions=partitions)


def _retry(data: Any, key: str, where: str) -> RetryConfig | None:
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise PipelineError(f"{where}: {key} must be a mapping "
                            "{attempts: 3, backoff_s: 1, max_backoff_s: 30}.")
    _known_keys(data, RetryConfig, key, where)
    base = RetryConfig()
    attempts = data.get("attempts", base.attempts)
    if not isinstance(attempts, int) or isinstance(attempts, bool):
        raise PipelineError(f"{where}: {key}.attempts={attempts!r} must be a whole number, e.g. 3.")
    retry = RetryConfig(attempts=attempts,
                        backoff_s=_number(data.get("backoff_s", base.backoff_s),
                                          f"{key}.backoff_s", where),
                        max_backoff_s=_number(data.get("max_backoff_s", base.max_backoff_s),
                                              f"{key}.max_backoff_s", where))
    retry.check(key)
    return retry


def _number(value: Any, key: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PipelineError(f"{where}: {key}={value!r} must be a number of seconds, e.g. 5.")
    return float(value)


def _strings(value: Any, key: str, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
        raise PipelineError(f"{where}: {key} must be a list of strings, e.g. [a, b].")
    return [str(v) for v in value]


def _known_keys(data: Any, cls: type, key: str, where: str, skip: Sequence[str] = ()) -> None:
    if not isinstance(data, Mapping):
        raise PipelineError(f"{where}: {key} must be a mapping.")
    names = [f.name for f in dataclasses.fields(cls) if f.name not in skip]
    for k in data:
        if k not in names:
            raise PipelineError(f"{where}: {key}.{k} is not a key of {key}."
                                f"{did_you_mean(str(k), names)} Keys: {', '.join(names)}.")
