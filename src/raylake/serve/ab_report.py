"""``raylake ab report``: an A/B experiment's answers joined with their outcomes.

The model server logs every answer with its arm and the experiment (its salt). Outcomes
arrive later in a lake table keyed by ``request_id`` (the id every answer carries) or
``unit_id`` (the randomised unit: each unit is one observation, which keeps repeat
visitors from counting many times; a unit's outcomes are averaged for means, and for
rates the unit counts 1 if any outcome is 1). Shadow answers are left out (no client
saw them); errors are left out of the statistics and counted per arm, since an arm
that fails more often would otherwise look better on the answers it did give. Per arm:
the count, the rate or mean with its confidence interval; per treatment arm against control: the difference and its interval, the
two-proportion z-test (rates) or Welch's t-test (means), and the units per arm still
needed to detect the difference (or ``ab_report.mde``) with ``ab_report.power``.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raylake.errors import ConfigError, TableNotFoundError, did_you_mean
from raylake.lake.commit import write_table
from raylake.lake.tables import Lake
from raylake.serve.significance import compare, is_rate, summarize

REPORT_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("experiment", pa.string()), ("arm", pa.string()),
    ("is_control", pa.bool_()), ("metric", pa.string()), ("n", pa.int64()),
    ("awaiting", pa.int64()), ("value", pa.float64()), ("low", pa.float64()),
    ("high", pa.float64()), ("comparison", pa.string()),  # JSON; null for control
])


def run_report(lake: Lake, conf: Any, run: Any) -> dict[str, Any]:
    """Join the experiment's logged answers with their outcomes, analyse them, append the
    per-arm rows to ``ab_report.report_table``; the report (see :func:`analyse`)."""
    r, ms = conf.ab_report, conf.model_server
    experiment = r.experiment or ms.salt
    log_table = r.request_log_table or ms.request_log_table
    log = _answers(lake, log_table, experiment, r)
    answers = log.table
    out_version, outcomes = _outcomes(lake, r)
    run.add_input(table=log_table, version=log.version, role="request-log")
    run.add_input(table=r.outcomes_table, version=out_version, role="outcomes")
    report = analyse(answers, outcomes, experiment=experiment, join_on=r.join_on,
                     metric=r.metric, control=r.control or _default_control(ms, answers),
                     alpha=r.alpha, power=r.power, mde=r.mde, errors=log.errors)
    report["repeat_requests"] = log.repeat_requests
    run.metrics.update({"experiment": experiment, "metric": report["metric"],
                        "arms": {a["arm"]: a["n"] for a in report["arms"]}})
    if r.report_table:
        rows = [{"run_id": run.run_id, "experiment": experiment, "arm": a["arm"],
                 "is_control": a["arm"] == report["control"], "metric": report["metric"],
                 "n": a["n"], "awaiting": a["awaiting"], "value": a["value"],
                 "low": a["low"], "high": a["high"],
                 "comparison": json.dumps(a["comparison"]) if a["comparison"] else None}
                for a in report["arms"]]
        version = write_table(lake, r.report_table,
                              pa.Table.from_pylist(rows, schema=REPORT_SCHEMA),
                              app_id=f"raylake.ab-report/{run.run_id}", run_id=run.run_id,
                              job="ab-report")
        run.add_output(table=r.report_table, version=version, rows=len(rows))
    report["run_id"] = run.run_id
    return report


def check_config(conf: Any) -> None:
    """Refuse a report with no outcomes table or no request log, naming the key to set."""
    r, ms = conf.ab_report, conf.model_server
    if not r.outcomes_table:
        raise ConfigError("ab_report.outcomes_table is not set: name the lake table of "
                          f"outcomes keyed by {r.join_on}, e.g. "
                          "ab_report.outcomes_table=serving/outcomes ab_report.outcome=delayed.")
    if not (r.request_log_table or ms.request_log_table):
        raise ConfigError("No request log table: set ab_report.request_log_table (the "
                          "model server's model_server.request_log_table).")


def analyse(answers: pa.Table, outcomes: pa.Table, *, experiment: str, join_on: str,
            metric: str, control: str, alpha: float, power: float,
            mde: float | None, errors: dict[str, int] | None = None) -> dict[str, Any]:
    """``answers``: arm and ``join_on`` per answered request; ``outcomes``: ``join_on``
    and ``outcome``, any number per key; ``errors``: failed requests per arm."""
    arms = sorted(set(answers.column("arm").to_pylist()))
    if not arms:
        raise ConfigError(f"No answered requests of experiment {experiment!r} in the request "
                          "log: check ab_report.experiment (the model server's salt) and "
                          "ab_report.since/until.")
    if control not in arms:
        raise ConfigError(f"ab_report.control={control!r} answered no request; arms: "
                          f"{', '.join(arms)}.{did_you_mean(control, arms)}")
    # One arm per key: a unit seen in two arms (weights changed mid-test) is left out.
    per_key = answers.group_by(join_on).aggregate([("arm", "count_distinct"), ("arm", "min")])
    mixed = per_key.filter(pc.greater(per_key["arm_count_distinct"], 1)).num_rows
    per_key = per_key.filter(pc.equal(per_key["arm_count_distinct"], 1))
    outcomes = _same_key_type(outcomes, answers.schema.field(join_on).type, join_on)
    # Rate or mean is a property of the outcome itself, decided before any averaging.
    raw = outcomes.column("outcome").to_numpy(zero_copy_only=False).astype(float)
    rate = is_rate(raw) if metric == "auto" else metric == "rate"
    if rate and raw.size and not is_rate(raw):
        bad = raw[(raw != 0) & (raw != 1)][0]
        raise ConfigError(f"ab_report.metric=rate needs outcomes of 0 or 1; found {bad:g} "
                          "(use ab_report.metric=mean).")
    per_unit = outcomes.group_by(join_on).aggregate([("outcome", "max" if rate else "mean")])
    joined = per_key.join(per_unit.rename_columns([join_on, "value"]), join_on,
                          join_type="left outer")
    arm_col = joined.column("arm_min").to_numpy(zero_copy_only=False)
    values = joined.column("value").to_numpy(zero_copy_only=False).astype(float)
    seen = ~np.isnan(values)
    by_arm = {a: values[(arm_col == a) & seen] for a in arms}
    awaiting = {a: int(((arm_col == a) & ~seen).sum()) for a in arms}
    result = []
    for a in [control, *[x for x in arms if x != control]]:
        s = summarize(by_arm[a], rate=rate, alpha=alpha)
        cmp = None
        if a != control and s.n >= 2 and by_arm[control].size >= 2:
            cmp = compare(by_arm[control], by_arm[a], rate=rate, alpha=alpha, power=power,
                          mde=mde).to_dict()
        result.append({"arm": a, "n": s.n, "awaiting": awaiting[a], "value": s.value,
                       "low": s.low, "high": s.high, "comparison": cmp,
                       "errors": (errors or {}).get(a, 0)})
    # Outcomes for keys no arm answered (keys of several arms are counted as mixed).
    answered = answers.column(join_on).unique()
    unmatched = int(pc.sum(pc.invert(pc.is_in(per_unit[join_on], answered))).as_py() or 0)
    return {"experiment": experiment, "metric": "rate" if rate else "mean", "join_on": join_on,
            "control": control, "alpha": alpha, "power": power, "arms": result,
            "mixed_keys": mixed, "unmatched_outcomes": unmatched}


def format_report(report: dict[str, Any]) -> str:
    """A report from :func:`run_report` as printable text: per arm its value, interval and
    comparison with the control, then the keys left out and outcomes that no answered
    request matched."""
    conf = 100 * (1 - report["alpha"])
    lines = [f"A/B report {report['experiment']!r} ({report['metric']} of outcome per "
             f"{report['join_on']}, {conf:g}% intervals, control {report['control']!r})"]
    for a in report["arms"]:
        lines.append(f"  {a['arm']:<12} n={a['n']:<8} {a['value']:.4f} "
                     f"[{a['low']:.4f}, {a['high']:.4f}]  awaiting outcome: {a['awaiting']}"
                     + (f"  failed requests: {a['errors']}" if a.get("errors") else ""))
        c = a["comparison"]
        if c:
            rel = f" ({100 * c['relative']:+.1f}%)" if c["relative"] is not None else ""
            verdict = "significant" if c["significant"] else "not significant"
            more = ("" if c["n_more_per_arm"] is None else
                    f"; {c['n_needed_per_arm']} per arm detect {c['delta']:.4f} with power "
                    f"{report['power']:g} ({c['n_more_per_arm']} more)")
            lines.append(f"    vs control: {c['difference']:+.4f}{rel} [{c['low']:+.4f}, "
                         f"{c['high']:+.4f}], {c['test']} p={c['p_value']:.4g}, {verdict}{more}")
    if report["mixed_keys"]:
        lines.append(f"  left out: {report['mixed_keys']} keys answered by more than one arm")
    if report.get("repeat_requests"):
        lines.append(f"  note: {report['repeat_requests']} requests came from units already "
                     "seen, and arms are assigned per unit: per-request tests overstate "
                     "significance; use ab_report.join_on=unit_id")
    if report["unmatched_outcomes"]:
        lines.append(f"  outcomes with no answered request: {report['unmatched_outcomes']}")
    return "\n".join(lines)


@dataclass
class _Answers:
    version: int  # of the request log
    table: pa.Table  # arm and join key per answered request
    errors: dict[str, int]  # failed requests per arm
    repeat_requests: int  # requests beyond each unit's first (per-request analysis only)


def _answers(lake: Lake, table: str, experiment: str, r: Any) -> _Answers:
    if not lake.exists(table):
        raise TableNotFoundError(f"Request log table {table!r} does not exist: serve with "
                                 "model_server.request_log_table set, or point "
                                 "ab_report.request_log_table at it.")
    version = lake.version(table)
    ds = lake.dataset(table, version)
    if "experiment" not in ds.schema.names:
        raise ConfigError(f"{table!r} has no 'experiment' column: it was written before A/B "
                          "reports existed; serve again to log experiments.")
    import pyarrow.dataset as pads

    f = (pads.field("experiment") == experiment) & (pads.field("shadow") == False)  # noqa: E712
    if r.since:
        f &= pads.field("at") >= _ts(r.since, "since")
    if r.until:
        f &= pads.field("at") < _ts(r.until, "until")
    t = ds.to_table(columns=list(dict.fromkeys(["arm", "status", r.join_on, "unit_id"])),
                    filter=f)
    ok = pc.equal(t["status"], 200)
    failed = t.filter(pc.invert(ok)).group_by("arm").aggregate([("arm", "count")])
    errors = dict(zip(failed["arm"].to_pylist(), failed["arm_count"].to_pylist()))
    t = t.filter(ok)
    units = t["unit_id"].drop_null()
    repeats = len(units) - len(units.unique())
    t = t.select(["arm", r.join_on])
    keyed = t.filter(pc.is_valid(t[r.join_on]))
    if t.num_rows and not keyed.num_rows:
        raise ConfigError(f"None of the {t.num_rows} answers of {experiment!r} has a "
                          f"{r.join_on}: clients must send it, or report per request with "
                          "ab_report.join_on=request_id.")
    return _Answers(version, keyed, errors, repeats if r.join_on == "request_id" else 0)


def _outcomes(lake: Lake, r: Any) -> tuple[int, pa.Table]:
    if not lake.exists(r.outcomes_table):
        raise TableNotFoundError(f"Outcomes table {r.outcomes_table!r} does not exist; "
                                 "check ab_report.outcomes_table.")
    version = lake.version(r.outcomes_table)
    ds = lake.dataset(r.outcomes_table, version)
    for col in (r.join_on, r.outcome):
        if col not in ds.schema.names:
            raise ConfigError(f"Outcomes table {r.outcomes_table!r} has no column {col!r}; "
                              f"columns: {', '.join(ds.schema.names)}."
                              f"{did_you_mean(col, ds.schema.names)}")
    t = ds.to_table(columns=[r.join_on, r.outcome])
    t = t.rename_columns([r.join_on, "outcome"])
    outcome = t["outcome"]
    if not (pa.types.is_boolean(outcome.type) or pa.types.is_integer(outcome.type)
            or pa.types.is_floating(outcome.type)):
        raise ConfigError(f"ab_report.outcome={r.outcome!r} is {outcome.type}; it must be "
                          "a boolean or a number.")
    t = t.set_column(1, "outcome", pc.cast(outcome, pa.float64()))
    return version, t.filter(pc.is_valid(t["outcome"]))


def _same_key_type(outcomes: pa.Table, key_type: pa.DataType, key: str) -> pa.Table:
    """Outcome keys as the request log types them (ids are strings there; an outcomes
    table may hold them as numbers)."""
    col = outcomes.column(key)
    if col.type == key_type:
        return outcomes
    try:
        return outcomes.set_column(0, key, pc.cast(col, key_type))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ConfigError(f"The outcomes' {key!r} is {col.type} and the request log's is "
                          f"{key_type}; store {key!r} as {key_type} in the outcomes "
                          "table.") from exc


def _ts(value: str, key: str) -> pa.Scalar:
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise ConfigError(f"ab_report.{key}={value!r} is not an ISO time, e.g. "
                          "2026-11-27T00:00:00+00:00.") from exc
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return pa.scalar(t, pa.timestamp("us", tz="UTC"))


def _default_control(ms: Any, answers: pa.Table) -> str:
    arms = set(answers.column("arm").to_pylist())
    if "control" in arms or not arms:  # no arms: analyse() says there were no answers
        return "control"
    live = {k: v for k, v in (ms.arms or {}).items() if not v.shadow and k in arms}
    if live:
        return max(live, key=lambda k: live[k].weight)
    raise ConfigError(f"Which arm is control? Set ab_report.control to one of: "
                      f"{', '.join(sorted(arms))}.")
