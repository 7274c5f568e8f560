"""Where the lake lives and how raylake reaches Ray: the ``lake`` and ``ray`` groups."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Optional

from raylake.config.values import at_least, positive
from raylake.errors import ConfigValueError

# A branch name is one folder name: it starts with a letter (so `flights@3` is a version and
# `flights@exp1` a branch) and cannot hold "/" or "..", which would leave _branches/.
_BRANCH = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,63}$")
MAIN = "main"


def validate_branch_name(name: str) -> str:
    """``name`` when it is a valid branch name (``main`` included), else ConfigValueError
    naming the value and the rule."""
    text = str(name)
    if not _BRANCH.match(text):
        why = ("it holds '/' or '..', which would leave the lake's _branches/ folder"
               if "/" in text or ".." in text or "\\" in text else
               "it must start with a letter and hold only letters, digits, '_' and '-' "
               "(at most 64)")
        raise ConfigValueError(f"Branch name {text!r} is not valid: {why}. Give a name like "
                               "exp1 or fix-delays.")
    return text


@dataclass
class LakeConfig:
    # A local path or a URI (s3://bucket/prefix). Credentials are never set
    # here: deltalake and pyarrow read them from the environment.
    root: str = "lake"
    # Non-secret storage options passed to deltalake and pyarrow
    # (e.g. AWS_REGION, AWS_ENDPOINT_URL, AWS_ALLOW_HTTP).
    storage_options: dict[str, str] = field(default_factory=dict)
    # A branch of the lake (`raylake branch create NAME`): jobs read and write its tables
    # (<root>/_branches/NAME) and touch nothing on main. None or "main": the lake itself.
    branch: Optional[str] = None

    def __post_init__(self) -> None:
        if not str(self.root).strip():
            raise ConfigValueError("lake.root is empty; give a folder or a URI, e.g. "
                                   "lake.root=lake or lake.root=s3://bucket/lake.")
        if self.branch is not None:
            name = validate_branch_name(self.branch)
            self.branch = None if name == MAIN else name


@dataclass
class RayConfig:
    # None: RAY_ADDRESS if set, else a new local Ray.
    address: Optional[str] = None
    num_cpus: Optional[int] = None
    include_dashboard: bool = False
    namespace: str = "raylake"
    # CPUs reserved by each Ray Data task of raylake's pipelines. Ingestion
    # fuses read, cast and write into one task per file: a whole CPU each runs
    # fastest (measured by benchmarks/ingest.py); a fraction shares the CPU
    # with actors or Serve replicas on a small machine.
    data_task_cpus: float = 1.0

    def __post_init__(self) -> None:
        at_least("ray.num_cpus", self.num_cpus, 1, "2 (or null: all of them)")
        positive("ray.data_task_cpus", self.data_task_cpus, "0.5")


class LogLevel(Enum):
    """``log_level``: the level of Ray's own log lines a command shows on the terminal.
    Every line of Ray's goes to the command's log file (``log_dir``) whatever the level;
    raylake's summaries and errors are always shown."""

    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
