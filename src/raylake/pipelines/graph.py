"""The stage graph: a stage depends on the stages that write the tables it reads (and on
those it names in ``after``); stages run in dependency order, ties in declared order."""

from __future__ import annotations

from collections.abc import Iterable

from raylake.errors import did_you_mean
from raylake.pipelines.config import PipelineConfig, PipelineError


def writers(pipe: PipelineConfig) -> dict[str, str]:
    """Table -> the stage that writes it; PipelineError when two stages write one table."""
    out: dict[str, str] = {}
    for stage in pipe.stages.values():
        tables = list(stage.outputs)
        for table in tables:
            if table in out and out[table] != stage.name:
                raise PipelineError(
                    f"Pipeline {pipe.name}: stages {out[table]!r} and {stage.name!r} both write "
                    f"{table!r}; a table has one writer (give one of them another output).")
            out[table] = stage.name
    return out


def dependencies(pipe: PipelineConfig) -> dict[str, list[str]]:
    """Stage -> the stages it depends on (writers of its inputs and source table, and
    ``after``), in declared order."""
    wrote = writers(pipe)
    deps: dict[str, list[str]] = {}
    for stage in pipe.stages.values():
        found = [wrote[t] for t in stage.input_tables if t in wrote]
        found += list(stage.after)
        # A stage reading its own output is a cycle of one: each run would make it stale.
        deps[stage.name] = list(dict.fromkeys(found))
    return deps


def order(pipe: PipelineConfig) -> list[str]:
    """Stages in dependency order (declared order among stages that are ready together);
    PipelineError naming the stages of a cycle, and the tables that link them."""
    deps = dependencies(pipe)
    declared = list(pipe.stages)
    done: list[str] = []
    left = set(declared)
    while left:
        ready = [s for s in declared if s in left and all(d not in left for d in deps[s])]
        if not ready:
            cycle = _cycle(deps, left)
            raise PipelineError(
                f"Pipeline {pipe.name} has a cycle: {' -> '.join(cycle)} "
                f"({_links(pipe, cycle)}). A stage cannot read what it (or a stage after it) "
                "writes: split the table, or drop an input.")
        done.extend(ready)
        left -= set(ready)
    return done


def _cycle(deps: dict[str, list[str]], left: set[str]) -> list[str]:
    """One cycle among ``left`` (every stage there waits on another one there)."""
    start = sorted(left)[0]
    path, seen = [start], {start: 0}
    node = start
    while True:
        node = next(d for d in deps[node] if d in left)
        if node in seen:
            cycle = path[seen[node]:] + [node]
            cycle.reverse()  # as data flows: writer -> reader
            return cycle
        seen[node] = len(path)
        path.append(node)


def _links(pipe: PipelineConfig, cycle: list[str]) -> str:
    wrote = writers(pipe)
    parts = []
    for a, b in zip(cycle, cycle[1:]):
        tables = [t for t in pipe.stages[b].input_tables if wrote.get(t) == a]
        parts.append(f"{b} reads {', '.join(tables)} written by {a}" if tables
                     else f"{b} runs after {a}")
    return "; ".join(parts)


def upstream(pipe: PipelineConfig, targets: Iterable[str]) -> list[str]:
    """``targets`` and every stage they depend on, in run order; PipelineError for an
    unknown stage name."""
    deps = dependencies(pipe)
    want: set[str] = set()
    todo = []
    for t in targets:
        if t not in pipe.stages:
            raise PipelineError(f"Pipeline {pipe.name} has no stage {t!r}."
                                f"{did_you_mean(t, pipe.stages)} Stages: "
                                f"{', '.join(pipe.stages)}.")
        todo.append(t)
    while todo:
        s = todo.pop()
        if s not in want:
            want.add(s)
            todo.extend(deps[s])
    return [s for s in order(pipe) if s in want]


def downstream(pipe: PipelineConfig, stage: str) -> list[str]:
    """Every stage that depends on ``stage``, directly or not, in run order."""
    deps = dependencies(pipe)
    hit = {stage}
    out = []
    for s in order(pipe):
        if s != stage and any(d in hit for d in deps[s]):
            hit.add(s)
            out.append(s)
    return out
