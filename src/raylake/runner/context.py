"""What a job function gets from the runner."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig

from raylake.config.schema import RaylakeConfig
from raylake.lake.runs import RunRecord
from raylake.lake.tables import Lake


@dataclass
class JobContext:
    """One run of one job: its typed config, the lake, its run record, where to print.

    ``run`` is None for jobs that keep no run record (servers, ``chain``, whose
    steps record their own). ``cfg`` is the composed config as given (None when a
    typed config was passed), for jobs that hand parts of it on untyped.
    """

    name: str
    conf: RaylakeConfig
    lake: Lake
    echo: Callable[[str], Any]
    run: RunRecord | None = None
    cfg: DictConfig | None = None
    # What ensure_ray answered: {"address": ..., "started": bool}; empty without Ray.
    ray: dict[str, Any] = field(default_factory=dict)

    @property
    def record(self) -> RunRecord:
        """The run record of a job that keeps one."""
        if self.run is None:
            raise RuntimeError(f"job {self.name!r} was declared with record=False")
        return self.run
