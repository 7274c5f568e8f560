"""``raylake ct``: continuous training, runnable on a schedule.

trigger? (ct.trigger: always | new_data | alert) -> the training set rebuilt on the last
``ct.train_window`` up to now (``ct.now``: a replayed clock) -> a challenger trained on
it, its test split the last ``ct.holdout`` (or the registered ``ct.challenger``) ->
champion and challenger scored on the same holdout rows -> promoted only when the
challenger's business cost is lower by ``ct.margin``. Every run, triggered or not, is a
run record (job ``ct``) whose metrics say the decision, why, and both scores; its inputs
name both model versions and the holdout, its outputs the promotion. `raylake lineage
model:NAME:V` shows the decisions a version took part in.

No model is judged on rows it learned from: when the champion (or a registered
challenger) was trained or validated on rows after the holdout's start (ct runs more
often than ``ct.holdout``), the holdout starts where that training ended, and the
challenger ct trains has the same moved start as its test split. With fewer than
``decide.MIN_HOLDOUT_ROWS`` (or ``monitor.min_rows``) labelled rows left, nothing is
judged and the run records ``not_triggered``: a trigger that fired stays armed (the
next run is triggered again), where ``kept_champion`` would consume it.

A promotion commits only while the champion is still the one judged against: the check
runs in the registry transaction that moves the stage, so of two concurrent ct runs
only one promotes; the other records ``kept_champion`` (the champion changed).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
from omegaconf import OmegaConf

from raylake.config.schema import RaylakeConfig
from raylake.config.values import parse_duration
from raylake.ct import decide
from raylake.ct.retrain import (
    build_training_set,
    evaluate,
    holdout_rows,
    holdout_scores,
    train_challenger,
)
from raylake.errors import (
    ConfigError,
    ModelNotFoundError,
    MonitorError,
    RaylakeError,
    RunNotFoundError,
)
from raylake.lake.clock import as_utc, parse_time
from raylake.lake.clock import now as clock_now
from raylake.lake.runs import get_run, list_runs
from raylake.lake.tables import Lake
from raylake.models.registry import ModelRegistry, ModelVersion, Ref, parse_model_ref
from raylake.models.store import Build, ModelStore
from raylake.runner import JobContext, job

ALERTS_TABLE = "_alerts"


def model_name(conf: RaylakeConfig) -> str:
    """The model ct retrains: ``model=NAME`` (a ``:REF`` is ignored: ct judges against
    the champion), else ``train.model_name``."""
    if conf.model:
        return parse_model_ref(conf.model)[0]
    return parse_model_ref(conf.train.model_name)[0]


def challenger_ref(conf: RaylakeConfig, name: str) -> Ref:
    """``ct.challenger`` (``VERSION``, ``latest`` or ``NAME:REF``) as a ref of ``name``;
    None when ct trains the challenger itself."""
    text = conf.ct.challenger
    if not text:
        return None
    other, ref = parse_model_ref(text) if ":" in str(text) else (name, str(text).strip())
    if other != name:
        raise ConfigError(f"ct.challenger={text!r} is a version of {other!r}, but ct judges "
                          f"model {name!r}; write ct.challenger={name}:VERSION (or set "
                          f"model={other}).")
    if isinstance(ref, str) and ref.isdigit():
        return int(ref)
    if ref in (None, "champion"):
        raise ConfigError(f"ct.challenger={text!r} names no challenger: give a version "
                          f"number or 'latest', e.g. ct.challenger={name}:3.")
    return ref


def _check(conf: RaylakeConfig) -> None:
    challenger_ref(conf, model_name(conf))


@job("ct", help="continuous training: retrain on a recent window, promote only a better "
                "model (ct.trigger=always|new_data|alert)", check=_check)
def ct(ctx: JobContext) -> dict[str, Any]:
    """Decide whether to retrain, retrain, judge the challenger against the champion on
    the same holdout, promote it only if it is better by the margin; record why."""
    conf, lake, run, echo = ctx.conf, ctx.lake, ctx.record, ctx.echo
    c = conf.ct
    name = model_name(conf)
    now = clock_now(c.now, "ct.now")
    holdout = parse_duration(c.holdout, "ct.holdout")
    configured = decide.window(now, parse_duration(c.train_window, "ct.train_window"),
                               holdout)
    registry = ModelRegistry(lake)
    champion = _champion(registry, name)
    entities = conf.training_set.entity_table
    entity_version = lake.table(entities, conf.training_set.entity_version).version()
    run.metrics.update(model=name, trigger=str(c.trigger), now=now.isoformat(),
                       window=configured.iso(), margin=c.margin,
                       entities={"table": entities, "version": entity_version},
                       champion={"version": champion.version} if champion else None)
    fired, why = _trigger(lake, conf, name, champion, entities, entity_version)
    run.metrics["trigger_reason"] = why
    if not fired:
        run.metrics.update(decision=decide.NOT_TRIGGERED, reason=why)
        return {"decision": decide.NOT_TRIGGERED, "reason": why,
                "summary": f"ct {name}: not triggered ({c.trigger}): {why}; run {run.run_id}"}

    # The models judged, and the end of the rows each learned from: the holdout starts
    # after all of them (a challenger ct trains learns only from rows before it).
    ref = challenger_ref(conf, name)
    given = registry.get(name, ref) if ref is not None else None
    if champion is not None and given is not None and given.version == champion.version:
        raise ConfigError(f"ct.challenger={c.challenger!r} is {name}'s champion (v"
                          f"{champion.version}); name another version.")
    time_column, label = conf.train.split.time_column, conf.train.label
    seen = {role: (mv.version, *learned_until(lake, mv, time_column))
            for role, mv in (("champion", champion), ("challenger", given)) if mv is not None}
    win = decide.holdout_after(configured, max(
        (until for _, until, _ in seen.values() if until is not None), default=None), holdout)
    minimum = max(decide.MIN_HOLDOUT_ROWS, conf.monitor.min_rows)
    run.metrics.update(window=win.iso(), holdout={
        "start": win.test_start.isoformat(), "end": win.end.isoformat(),
        "configured_start": configured.test_start.isoformat(),
        "moved": win.test_start > configured.test_start, "min_rows": minimum,
        "learned_until": {role: {"version": v, "until": until.isoformat() if until else None,
                                 "source": source}
                          for role, (v, until, source) in seen.items()}})
    echo(f"ct {name}: triggered ({c.trigger}): {why}; window [{win.start.isoformat()}, "
         f"{win.end.isoformat()}), holdout from {win.test_start.isoformat()}"
         + (f" (moved from {configured.test_start.isoformat()}: a judged model learned "
            "from rows up to there)" if win.test_start > configured.test_start else ""))

    cfg = ctx.cfg if ctx.cfg is not None else OmegaConf.structured(conf)
    built = build_training_set(cfg, win, entity_version, echo)
    table, version = conf.training_set.output_table, int(built["version"])
    out: dict[str, Any] = {"training_set": {"table": table, "version": version,
                                            "run_id": built.get("run_id")}}
    rows = holdout_rows(lake, table, version, time_column, label, win)
    if rows < minimum:
        reason = decide.too_few_rows(rows, minimum, win, configured, str(c.holdout), seen)
        run.metrics.update(decision=decide.NOT_TRIGGERED, reason=reason, holdout_rows=rows,
                           **out)
        return {"decision": decide.NOT_TRIGGERED, "reason": reason, "holdout_rows": rows,
                **out, "summary": f"ct {name}: not judged: {reason}; run {run.run_id}"}
    if given is None:
        trained = train_challenger(cfg, name, table, version, win, echo)
        ref, out["train_run"] = trained["version"], trained.get("run_id")
    challenger = given or registry.get(name, ref)

    models = {"challenger": registry.load(name, challenger.version)}
    if champion is not None:
        models["champion"] = registry.load(name, champion.version)
    y, probabilities = holdout_scores(lake, table, version, time_column, label, win, models)
    scores = {k: {"version": models[k][0].version,
                  **evaluate(y, p, models[k][0], conf.train.cost)}
              for k, p in probabilities.items()}
    verdict = decide.judge(scores.get("champion"), scores["challenger"], margin=c.margin,
                           promote=c.promote, shadow=c.shadow)

    if champion is not None:
        run.add_input(model=name, version=champion.version, role="champion")
    run.add_input(model=name, version=challenger.version, role="challenger",
                  run_id=challenger.run_id)
    run.add_input(table=table, version=version, role="holdout", run_id=built.get("run_id"),
                  start=win.test_start.isoformat(), end=win.end.isoformat())
    if verdict.promote:
        expected = champion.version if champion else None
        promoted, current = promote_if_champion(
            registry, name, challenger.version, expected,
            reason=f"ct run {run.run_id}: {verdict.reason}"[:500])
        if promoted:
            run.add_output(model=name, version=challenger.version, stage="champion",
                           previous=expected)
            if champion is not None:
                run.add_output(model=name, version=champion.version, stage="archived")
        else:
            verdict = decide.Verdict(decide.KEPT, decide.champion_changed(expected, current),
                                     verdict.better)
            run.metrics["champion_now"] = current
            echo(f"ct {name}: not promoted: {verdict.reason}")
    run.metrics.update(decision=verdict.decision, reason=verdict.reason,
                       champion=scores.get("champion"), challenger=scores["challenger"],
                       holdout_rows=int(len(y)), better=verdict.better, **out)
    mine, theirs = scores["challenger"], scores.get("champion")
    vs = (f" vs champion v{theirs['version']} cost {theirs['cost']:.1f}, AUC {theirs['auc']:.4f}"
          if theirs else "")
    return {"decision": verdict.decision, "reason": verdict.reason, "scores": scores,
            "challenger": challenger.version, "champion": champion.version if champion else None,
            "holdout_rows": int(len(y)), "holdout_start": win.test_start.isoformat(), **out,
            "summary": f"ct {name}: {verdict.decision} (challenger v{challenger.version} cost "
                       f"{mine['cost']:.1f}, AUC {mine['auc']:.4f}{vs}; {len(y):,} holdout "
                       f"rows of {table}@{version} from {win.test_start.isoformat()}); "
                       f"run {run.run_id}"}


def _champion(registry: ModelRegistry, name: str) -> ModelVersion | None:
    """The champion of ``name``; None when it has none (or no version at all)."""
    try:
        mv = registry.get(name, None)
    except ModelNotFoundError:  # no model of that name registered yet
        return None
    return mv if mv.stage == "champion" else None


def _trigger(lake: Lake, conf: RaylakeConfig, name: str, champion: ModelVersion | None,
             entities: str, entity_version: int) -> tuple[bool, str]:
    """Whether this run retrains, and why (``ct.trigger``)."""
    trigger = str(conf.ct.trigger)
    if trigger == "always":
        return True, "ct.trigger=always: the schedule decides when"
    if champion is None:
        return True, f"{name} has no champion yet"
    last = last_decision(lake, name)
    if trigger == "new_data":
        table, trained = trained_on(lake, champion)
        if table != entities:  # the champion came from another entity table: follow it
            entity_version = lake.version(table)
        judged = (last or {}).get("metrics", {}).get("entities") or {}
        return decide.new_data(table, entity_version, trained,
                               judged.get("version") if judged.get("table") == table else None)
    return decide.alerts_since(alerts_of(lake, name), last["started_at"] if last else None)


def last_decision(lake: Lake, name: str) -> dict[str, Any] | None:
    """The newest succeeded ct run of model ``name`` that was triggered (judged a
    challenger); None when there is none."""
    for r in list_runs(lake, job="ct"):
        m = r.get("metrics") or {}
        if r["status"] == "succeeded" and m.get("model") == name and \
                m.get("decision") not in (None, decide.NOT_TRIGGERED):
            return r
    return None


def trained_on(lake: Lake, mv: ModelVersion) -> tuple[str, int]:
    """The entity table and version ``mv``'s training set was built from, followed through
    the registry's training lineage (the training-set run's inputs)."""
    training = mv.training or {}
    inputs = list(training.get("inputs") or [])
    if not inputs and training.get("run_id"):
        try:
            inputs = get_run(lake, training["run_id"]).get("inputs") or []
        except RunNotFoundError:
            inputs = []
    for i in inputs:
        if i.get("role") == "entities" and i.get("table") and i.get("version") is not None:
            return str(i["table"]), int(i["version"])
    raise MonitorError(
        f"Model {mv.ref} has no recorded training lineage: its training set "
        f"{training.get('table')}@{training.get('version')} was not built by a recorded "
        "`raylake training-set` run, so ct cannot tell which entity table version it learned "
        "from. Use ct.trigger=always (a schedule) or ct.trigger=alert for it, or promote a "
        "model trained by `raylake train` on a training set raylake built.")


def learned_until(lake: Lake, mv: ModelVersion,
                  time_column: str) -> tuple[dt.datetime | None, str]:
    """The end of the rows ``mv`` was trained and validated on (its test split, after
    it, was held out), and where the registry's lineage says so: its train run's split
    (``metrics.split.test_start``), its registered config (``train.split.test_start``),
    the end of the window its training set was built on (``training_set.end`` of the
    training-set run), else that training set's newest row. (None, why) when none of
    them is known: the holdout is then not moved for it."""
    if mv.run_id:
        split = (_record(lake, mv.run_id).get("metrics") or {}).get("split") or {}
        if split.get("test_start"):
            return (parse_time(split["test_start"], "split.test_start"),
                    f"the split of its train run {mv.run_id}")
    split = ((mv.config or {}).get("train") or {}).get("split") or {}
    if split.get("test_start"):
        return (parse_time(split["test_start"], "train.split.test_start"),
                "train.split.test_start of its registered config")
    training = mv.training or {}
    if training.get("run_id"):
        built = _record(lake, training["run_id"])
        end = ((built.get("config") or {}).get("training_set") or {}).get("end") or next(
            (i.get("end") for i in built.get("inputs") or [] if i.get("role") == "entities"),
            None)
        if end:
            return (parse_time(end, "training_set.end"), "the end of its training set's "
                    f"window (training-set run {training['run_id']})")
    table, version = training.get("table"), training.get("version")
    if table and version is not None:
        try:
            times = lake.dataset(str(table), int(version)).to_table(columns=[time_column])
            newest = pc.max(times[time_column]).as_py()
        except (RaylakeError, OSError, ValueError, KeyError, pa.ArrowException):
            newest = None
        if isinstance(newest, dt.datetime):
            return (as_utc(newest) + dt.timedelta(microseconds=1),
                    f"the newest row of its training set {table}@{version}")
    return None, ("unknown: no train run, split, training-set window or training set "
                  "recorded; the holdout is not moved for it")


def _record(lake: Lake, run_id: str) -> dict[str, Any]:
    try:
        return get_run(lake, run_id)
    except RunNotFoundError:
        return {}


class _ChampionGuard(ModelStore):
    """The registry's store, whose transactions on ``name`` commit only while its
    champion is still ``expected`` (None: none). The check reads the snapshot the rows are
    computed from and committed against (``ModelStore.transact``: a concurrent change to
    the model fails the commit and the check runs again on the new events), so it leaves
    no window between the check and the promotion."""

    def __init__(self, lake: Lake, name: str, expected: int | None) -> None:
        super().__init__(lake)
        self.name, self.expected = name, expected

    def transact(self, name: str, build: Build[Any], *, run_id: str | None,
                 job: str) -> Any:
        """``ModelStore.transact``, raising _ChampionChanged (nothing committed) when the
        champion of the events is not the expected one."""
        def guarded(events: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], Any]:
            current = champion_of(events, self.name)
            if name == self.name and current != self.expected:
                raise _ChampionChanged(current)
            return build(events)

        return super().transact(name, guarded, run_id=run_id, job=job)


class _ChampionChanged(Exception):
    def __init__(self, current: int | None) -> None:
        super().__init__(f"the champion is {current}")
        self.current = current


def champion_of(events: list[dict[str, Any]], name: str) -> int | None:
    """The champion version of ``name`` in the registry's event rows (``_models``: a
    version's newest row, by ``seq``, gives its stage; should two be champions, the one
    promoted last); None when it has none."""
    newest: dict[int, dict[str, Any]] = {}
    for e in events:
        if e["name"] == name and (e["version"] not in newest
                                  or e["seq"] > newest[e["version"]]["seq"]):
            newest[e["version"]] = e
    champions = [e for e in newest.values() if e["stage"] == "champion"]
    return int(max(champions, key=lambda e: e["seq"])["version"]) if champions else None


def promote_if_champion(registry: ModelRegistry, name: str, version: int,
                        expected: int | None, *, reason: str) -> tuple[bool, int | None]:
    """Promote ``version`` of ``name`` to champion only while its champion is still
    ``expected`` (the one it was judged against; None: none), in one registry
    transaction. (True, version) when promoted; (False, the champion found) when another
    run changed the champion meanwhile, and nothing was written."""
    guarded = ModelRegistry(registry.lake)
    guarded.store = _ChampionGuard(registry.lake, name, expected)
    try:
        guarded.promote(name, version, "champion", reason=reason)
    except _ChampionChanged as changed:
        return False, changed.current
    return True, version


def alerts_of(lake: Lake, name: str) -> list[dict[str, Any]]:
    """The rows of the ``_alerts`` table for model ``name`` (empty when there is none)."""
    if not lake.exists(ALERTS_TABLE, system=True):
        return []
    rows = lake.dataset(ALERTS_TABLE, system=True).to_table(
        columns=["alert_id", "model", "rule", "created_at"],
        filter=pads.field("model") == name).to_pylist()
    return [{**r, "created_at": _aware(r["created_at"])} for r in rows]


def _aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


__all__ = ["ct"]
