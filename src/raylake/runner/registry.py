"""The one registry of jobs: ``raylake <job>``, ``raylake --help`` and jobs/*.py read it.

A job is declared where it is written, by ``@job("name", help="...")`` on a function in
a domain's ``jobs`` module (``raylake.<domain>.jobs``): a new domain's jobs appear on
the command line with no list to edit. Listing them must not import every domain (Ray,
torch, scipy: seconds), so :func:`declared` reads the decorators from the modules'
source; running a job imports only its own module. The decorator's name and help are
therefore plain string literals (a test checks the two views agree).
"""

from __future__ import annotations

import ast
import functools
import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from raylake.errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    from raylake.runner.spec import JobSpec

_JOBS: dict[str, JobSpec] = {}
# The lifecycle's order for `raylake --help`; other domains follow alphabetically.
_ORDER = ("chain", "ingest", "quality", "features", "train", "serve")


@dataclass(frozen=True)
class DeclaredJob:
    """A job as its module declares it, known without importing the module."""

    name: str
    help: str
    module: str


def register(spec: JobSpec) -> None:
    """Add a job; two jobs of one name are a programming error, caught at import."""
    known = _JOBS.get(spec.name)
    if known is not None and known.fn.__module__ != spec.fn.__module__:
        raise ValueError(f"job {spec.name!r} is defined in {known.fn.__module__} and "
                         f"{spec.fn.__module__}; rename one")
    _JOBS[spec.name] = spec


@functools.cache
def declared() -> dict[str, DeclaredJob]:
    """Every job of every domain, in lifecycle order, read from the jobs modules' source."""
    import raylake

    domains = sorted((m.name for m in pkgutil.iter_modules(raylake.__path__) if m.ispkg),
                     key=lambda d: (_ORDER.index(d) if d in _ORDER else len(_ORDER), d))
    out: dict[str, DeclaredJob] = {}
    for domain in domains:
        # ``jobs.py``, and ``jobs_<part>.py`` where a domain's jobs are many enough to split.
        for path in sorted((Path(raylake.__path__[0]) / domain).glob("jobs*.py")):
            for found in _decorated(path, f"raylake.{domain}.{path.stem}"):
                out[found.name] = found
    return out


def _decorated(path: Path, module: str) -> list[DeclaredJob]:
    found = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for deco in node.decorator_list:
            if (isinstance(deco, ast.Call) and isinstance(deco.func, ast.Name)
                    and deco.func.id == "job" and deco.args):
                name = ast.literal_eval(deco.args[0])
                text = next((ast.literal_eval(k.value) for k in deco.keywords if k.arg == "help"),
                            "")
                found.append(DeclaredJob(name, text, module))
    return found


def get_job(name: str) -> JobSpec:
    """The job called ``name``, its module imported; an unknown name gets the nearest one."""
    known = declared()
    if name not in known:
        raise ConfigError(f"Unknown job {name!r}.{did_you_mean(name, known)} "
                          f"Jobs: {', '.join(known)} (`raylake --help`).")
    importlib.import_module(known[name].module)
    return _JOBS[name]


def jobs() -> dict[str, JobSpec]:
    """Every job, every jobs module imported (slow: for tests and tools, not for --help)."""
    return {name: get_job(name) for name in declared()}
