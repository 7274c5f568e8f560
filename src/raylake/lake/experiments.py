"""Experiments: runs of a job compared side by side (DVC's ``exp show`` and ``exp diff``).

Every run record (``_runs``, :mod:`raylake.lake.runs`) is an experiment: its resolved
config gives the params, flattened to dotted keys (``train.xgboost.num_boost_round``),
its metrics the metrics (``test.auc``), its inputs and outputs the table (and model)
versions it read and wrote. Nothing here writes: these are pure functions over the
records :func:`~raylake.lake.runs.list_runs` returns, so they work on any lake, and on
any branch's lake, with no Ray.

- :func:`compare` selects the columns of ``raylake exp show``: the params whose values
  differ across the runs (all of them with ``all_params``), the metrics, the input
  versions; and sorts the runs by a metric or a param.
- :func:`diff_runs` is ``raylake exp diff A B``: params that differ, every metric with
  its change, inputs and outputs whose versions differ.

Configs are redacted again before they are shown (:func:`raylake.config.redact.redact`):
a record written by a caller that skipped :class:`~raylake.lake.runs.RunRecorder` still
prints no credential.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from raylake.config.redact import redact
from raylake.errors import RaylakeError, RunNotFoundError, did_you_mean
from raylake.lake.runs import list_runs
from raylake.lake.tables import Lake

STATUSES = ("succeeded", "failed", "running", "skipped")


class ExperimentError(RaylakeError, LookupError):
    """A metric or param to sort or filter by is not in the compared runs, or a run
    reference matches more than one run."""


@dataclass(frozen=True)
class Experiment:
    """One run as an experiment: flat params, metrics, inputs and outputs."""

    run_id: str
    job: str
    status: str
    started_at: Any
    code_version: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The experiment as plain data (the start time as ISO text)."""
        started = self.started_at
        return {
            "run_id": self.run_id, "job": self.job, "status": self.status,
            "started_at": started.isoformat() if hasattr(started, "isoformat") else started,
            "code_version": self.code_version, "params": self.params,
            "metrics": self.metrics, "inputs": self.inputs, "outputs": self.outputs,
            "error": self.error,
        }


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one mapping of dotted keys (``{"a": {"b": 1}}`` ->
    ``{"a.b": 1}``); lists and scalars are leaves. An empty mapping is a leaf too, so a
    key set to ``{}`` is still there."""
    if not isinstance(obj, Mapping) or (prefix and not obj):
        return {prefix: obj} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in obj.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def experiment(record: Mapping[str, Any]) -> Experiment:
    """The experiment of one decoded run record (a row of
    :func:`~raylake.lake.runs.list_runs` or :func:`~raylake.lake.runs.get_run`)."""
    return Experiment(
        run_id=str(record["run_id"]), job=str(record.get("job") or ""),
        status=str(record.get("status") or ""), started_at=record.get("started_at"),
        code_version=str(record.get("code_version") or ""),
        params=flatten(redact(record.get("config") or {})),
        metrics=flatten(record.get("metrics") or {}),
        inputs=_versions(record.get("inputs") or []),
        outputs=_versions(record.get("outputs") or []),
        error=record.get("error"),
    )


def _versions(entries: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Inputs or outputs as ``label -> version``: the label is the table (``model:NAME``
    for a model), with its role (``side``, ``role``, ...) added where the run names the
    same thing twice; files read are ``<n> files`` with their fingerprint."""
    entries = [e for e in entries if isinstance(e, Mapping)]
    names = [_name(e) for e in entries]
    out: dict[str, Any] = {}
    for entry, name in zip(entries, names):
        label = name
        if names.count(name) > 1:
            role = next((str(entry[k]) for k in ("side", "role", "view", "aggregation", "via")
                         if entry.get(k)), "")
            label = f"{name}[{role}]" if role else name
        value = entry.get("version")
        if value is None and entry.get("files") is not None:
            files = entry["files"]
            count = len(files) if isinstance(files, list) else files
            digest = str(entry.get("fingerprint") or entry.get("sha256") or "")[:12]
            value = f"{count} files" + (f" {digest}" if digest else "")
        while label in out:  # the same thing twice with the same role
            label += "'"
        out[label] = value
    return out


def _name(entry: Mapping[str, Any]) -> str:
    if entry.get("table"):
        return str(entry["table"])
    if entry.get("model"):
        return f"model:{entry['model']}"
    return str(entry.get("name") or entry.get("kind") or "?")


def select_runs(lake: Lake, job: str | None = None,
                statuses: Sequence[str] | None = ("succeeded",),
                limit: int | None = None) -> list[Experiment]:
    """The runs of ``job`` (every job when None) whose status is one of ``statuses``
    (any when None), newest first, at most ``limit``."""
    if statuses is not None:
        bad = [s for s in statuses if s not in STATUSES]
        if bad:
            raise ExperimentError(f"Unknown run status {bad[0]!r}.{did_you_mean(bad[0], STATUSES)}"
                                  f" Statuses are {', '.join(STATUSES)} (or all).")
    runs = [experiment(r) for r in list_runs(lake, job)]
    if statuses is not None:
        runs = [r for r in runs if r.status in statuses]
    return runs[:limit] if limit else runs


def _same(values: Sequence[Any]) -> bool:
    first = _key(values[0])
    return all(_key(v) == first for v in values[1:])


_MISSING = object()


def _key(value: Any) -> str:
    if value is _MISSING:
        return "\0missing"
    return json.dumps(value, sort_keys=True, default=str)


def changed_keys(mappings: Sequence[Mapping[str, Any]]) -> list[str]:
    """Keys whose value is not the same in every mapping (a key some lack counts as
    changed), in first-seen order."""
    keys = _union(mappings)
    if len(mappings) < 2:
        return []
    return [k for k in keys if not _same([m.get(k, _MISSING) for m in mappings])]


def _union(mappings: Iterable[Mapping[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for m in mappings:
        seen.update(dict.fromkeys(m))
    return list(seen)


def is_number(value: Any) -> bool:
    """A value a comparison can sort and subtract: an int or a float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _match(key: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def resolve_name(name: str, names: Sequence[str], what: str) -> str:
    """``name`` among ``names``: itself, else the one name ending in ``.name``
    (``auc`` -> ``test.auc`` when no other ``*.auc``); ExperimentError otherwise, naming
    the near miss or the names it could mean."""
    if name in names:
        return name
    tails = [n for n in names if n.endswith(f".{name}")]
    if len(tails) == 1:
        return tails[0]
    if tails:
        raise ExperimentError(f"{what} {name!r} is ambiguous: {', '.join(tails)}; "
                              "give the full dotted name.")
    hint = did_you_mean(name, names)
    if not hint:  # a typo of the last part: "acu" for test.auc (or valid.auc)
        tails = sorted({n.rsplit(".", 1)[-1] for n in names})
        near = difflib.get_close_matches(name, tails, n=1, cutoff=0.6)
        meant = [n for n in names if near and n.rsplit(".", 1)[-1] == near[0]]
        hint = f" Did you mean {' or '.join(repr(n) for n in meant)}?" if meant else ""
    shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    raise ExperimentError(f"No {what} {name!r} in the compared runs.{hint} "
                          f"They have: {shown or '(none)'}.")


@dataclass
class Comparison:
    """The table of ``raylake exp show``: experiments (rows) and the param, metric and
    input columns to show, in order."""

    experiments: list[Experiment]
    params: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    sort_by: str | None = None

    def rows(self) -> list[dict[str, Any]]:
        """One row per experiment: run, start, status, then ``params``, ``metrics`` and
        ``in:TABLE`` columns (None where a run lacks the value)."""
        out = []
        for e in self.experiments:
            row: dict[str, Any] = {"run_id": e.run_id, "started_at": e.started_at}
            if len({x.status for x in self.experiments}) > 1:
                row["status"] = e.status
            row.update({p: e.params.get(p) for p in self.params})
            row.update({m: e.metrics.get(m) for m in self.metrics})
            row.update({f"in:{i}": e.inputs.get(i) for i in self.inputs})
            out.append(row)
        return out

    def to_dict(self) -> dict[str, Any]:
        """``{"params": [...], "metrics": [...], "inputs": [...], "sort_by": ...,
        "runs": [...]}``: each run with its own shown params, metrics and inputs."""
        runs = []
        for e in self.experiments:
            d = e.to_dict()
            d["params"] = {p: e.params[p] for p in self.params if p in e.params}
            d["metrics"] = {m: e.metrics[m] for m in self.metrics if m in e.metrics}
            d["inputs"] = {i: e.inputs[i] for i in self.inputs if i in e.inputs}
            runs.append(d)
        return {"params": self.params, "metrics": self.metrics, "inputs": self.inputs,
                "sort_by": self.sort_by, "runs": runs}


def compare(experiments: Sequence[Experiment], *, all_params: bool = False,
            keep: Sequence[str] = (), drop: Sequence[str] = (),
            metrics: Sequence[str] = (), sort_by: str | None = None,
            descending: bool = False) -> Comparison:
    """The columns and order of ``exp show``.

    Params: those whose values differ across ``experiments`` (every param with
    ``all_params``), plus any matching a ``keep`` glob. Metrics: the numeric ones, only
    those matching a ``metrics`` glob when given. Inputs: every table read. Columns
    matching a ``drop`` glob go. ``sort_by`` names a metric (or else a param), by its full
    dotted name or a unique last part (``auc`` for ``test.auc``); runs without it sort
    last, ties keep newest first."""
    exps = list(experiments)
    all_param_keys = _union(e.params for e in exps)
    if all_params:
        params = all_param_keys
    else:
        changed = set(changed_keys([e.params for e in exps]))
        params = [k for k in all_param_keys if k in changed or _match(k, keep)]
    # Columns in the order of the run that has the most (a failed run has few metrics).
    fullest = sorted(exps, key=lambda e: -len(e.metrics))
    metric_keys = [k for k in _union(e.metrics for e in fullest)
                   if any(is_number(e.metrics.get(k)) for e in exps)]
    if metrics:
        metric_keys = [k for k in metric_keys if _match(k, metrics)]
    inputs = _union(e.inputs for e in sorted(exps, key=lambda e: -len(e.inputs)))
    if drop:
        params = [k for k in params if not _match(k, drop)]
        metric_keys = [k for k in metric_keys if not _match(k, drop)]
        inputs = [k for k in inputs if not _match(k, drop) and not _match(f"in:{k}", drop)]
    resolved = None
    if sort_by:
        resolved, source = _sort_key(sort_by, exps)
        exps = sort_experiments(exps, resolved, source, descending)
        # The sort column comes first among its kind, and is shown even when constant.
        if source == "metrics":
            metric_keys = [resolved, *(k for k in metric_keys if k != resolved)]
        else:
            params = [resolved, *(k for k in params if k != resolved)]
    return Comparison(exps, params, metric_keys, inputs, resolved)


def _sort_key(name: str, exps: Sequence[Experiment]) -> tuple[str, str]:
    metric_names = _union(e.metrics for e in exps)
    param_names = _union(e.params for e in exps)
    if name in metric_names:
        return name, "metrics"
    if name in param_names:
        return name, "params"
    try:
        return resolve_name(name, metric_names, "metric"), "metrics"
    except ExperimentError as metric_error:
        if name.startswith("params.") or any(p.endswith(f".{name}") for p in param_names):
            return resolve_name(name.removeprefix("params."), param_names, "param"), "params"
        if not exps:
            raise ExperimentError(f"No runs to sort by {name!r}.") from None
        raise metric_error from None


def sort_experiments(exps: Sequence[Experiment], key: str, source: str = "metrics",
                     descending: bool = False) -> list[Experiment]:
    """``exps`` ordered by ``key`` of their metrics (or params); runs without a value, or
    with NaN, come last whatever the order; numbers before text."""
    def value(e: Experiment) -> Any:
        return (e.metrics if source == "metrics" else e.params).get(key)

    present = [e for e in exps if _sortable(value(e))]
    absent = [e for e in exps if not _sortable(value(e))]
    numbers = [e for e in present if is_number(value(e))]
    others = [e for e in present if not is_number(value(e))]
    numbers.sort(key=value, reverse=descending)
    others.sort(key=lambda e: _key(value(e)), reverse=descending)
    return [*numbers, *others, *absent]


def _sortable(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def resolve_run(ref: str, experiments: Sequence[Experiment], where: str = "") -> Experiment:
    """The experiment ``ref`` names: a run id, a unique prefix of one, or a unique end of
    one (its 8 hex digits). RunNotFoundError (with the nearest id) when none does,
    ExperimentError when several do."""
    by_id = {e.run_id: e for e in experiments}
    if ref in by_id:
        return by_id[ref]
    matches = [e for e in experiments if ref and (e.run_id.startswith(ref) or e.run_id.endswith(ref))]
    if len(matches) == 1:
        return matches[0]
    if matches:
        ids = ", ".join(e.run_id for e in matches[:5])
        raise ExperimentError(f"Run {ref!r} matches {len(matches)} runs ({ids}"
                              f"{', ...' if len(matches) > 5 else ''}); give more of the id.")
    place = f" in {where}" if where else ""
    raise RunNotFoundError(f"No run {ref!r}{place}.{did_you_mean(ref, by_id)} "
                           "List them with `raylake exp show` or `raylake runs list`.")


@dataclass
class ExperimentDiff:
    """``raylake exp diff A B``: what differs between two runs. Each list holds
    ``(key, value in a, value in b)``; metrics add the change ``b - a`` (None unless
    both are numbers)."""

    a: Experiment
    b: Experiment
    params: list[tuple[str, Any, Any]]
    metrics: list[tuple[str, Any, Any, Any]]
    inputs: list[tuple[str, Any, Any]]
    outputs: list[tuple[str, Any, Any]]

    def to_dict(self) -> dict[str, Any]:
        """The diff as plain data: runs, and per section a list of
        ``{"key", "a", "b"}`` (metrics with ``"change"``)."""
        def rows(items: list[tuple[Any, ...]], names: tuple[str, ...]) -> list[dict[str, Any]]:
            return [dict(zip(names, item)) for item in items]

        return {
            "a": {k: v for k, v in self.a.to_dict().items() if k not in _SECTIONS},
            "b": {k: v for k, v in self.b.to_dict().items() if k not in _SECTIONS},
            "params": rows(self.params, ("key", "a", "b")),
            "metrics": rows(self.metrics, ("key", "a", "b", "change")),
            "inputs": rows(self.inputs, ("key", "a", "b")),
            "outputs": rows(self.outputs, ("key", "a", "b")),
        }


_SECTIONS = ("params", "metrics", "inputs", "outputs")


def diff_runs(a: Experiment, b: Experiment, *, all_keys: bool = False) -> ExperimentDiff:
    """What differs from run ``a`` to run ``b``: the params, metrics, inputs and outputs
    whose values differ (all of them with ``all_keys``), metrics with their change where
    both are numbers. A value a run lacks is None."""
    def section(x: Mapping[str, Any], y: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
        keys = _union([x, y])
        if not all_keys:
            keys = [k for k in keys if not _same([x.get(k, _MISSING), y.get(k, _MISSING)])]
        return [(k, x.get(k), y.get(k)) for k in keys]

    metrics = [(k, va, vb, _change(va, vb)) for k, va, vb in section(a.metrics, b.metrics)]
    return ExperimentDiff(a, b, section(a.params, b.params), metrics,
                          section(a.inputs, b.inputs), section(a.outputs, b.outputs))


def _change(a: Any, b: Any) -> Any:
    if is_number(a) and is_number(b):
        return b - a
    return None
