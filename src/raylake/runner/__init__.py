"""The job runner: every raylake job is one function decorated with :func:`job`.

The runner owns what every job used to repeat: the typed config, the lake, Ray,
the run record, the summary line and turning foreign exceptions into raylake's
errors. A domain adds a job by writing one function in its ``jobs`` module.

Names are imported on first use: ``raylake --help`` reads the registry without
loading the lake, Ray or any domain.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from raylake.runner.context import JobContext
    from raylake.runner.derive import job_config
    from raylake.runner.registry import DeclaredJob, declared, get_job, jobs
    from raylake.runner.spec import JobSpec, job, run_spec

_WHERE = {
    "JobContext": "raylake.runner.context",
    "JobSpec": "raylake.runner.spec", "job": "raylake.runner.spec", "run_spec": "raylake.runner.spec",
    "DeclaredJob": "raylake.runner.registry", "declared": "raylake.runner.registry",
    "get_job": "raylake.runner.registry", "jobs": "raylake.runner.registry",
    "job_config": "raylake.runner.derive",
}

__all__ = ["DeclaredJob", "JobContext", "JobSpec", "declared", "get_job", "job", "job_config",
           "jobs", "run_spec"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'raylake.runner' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
