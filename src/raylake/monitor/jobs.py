"""Monitoring jobs: ``raylake monitor model=NAME[:REF]`` and ``raylake monitor report``.

``monitor`` cuts [since, until) into epoch-aligned windows of ``monitor.window`` (since:
the version's first traffic; until: now, or the replayed clock ``monitor.now``; only
windows that have ended), compares each window's live traffic with the reference
(``monitor/reference.py``, ``monitor/checks.py``), adds performance per window
(``monitor/performance.py``), appends what changed to the monitoring table
(``monitor/store.py``) and raises the alerts the rules find (``monitor/alerts.py``).
No Ray: profiles are merged and compared on this process.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from typing import Any

from raylake.config.schema import RaylakeConfig
from raylake.config.values import parse_duration
from raylake.errors import MonitorError
from raylake.lake import clock
from raylake.lake.runs import RunRecord
from raylake.lake.tables import Lake
from raylake.models.registry import parse_model_ref
from raylake.monitor import checks, store
from raylake.monitor.reference import load_reference, resolve_model
from raylake.quality.profile import Profile
from raylake.runner import JobContext, job

# More windows than this is a mistake (a 1h window over years): say so, compute nothing.
MAX_WINDOWS = 20_000


def check_config(conf: RaylakeConfig) -> None:
    """Refuse early: no model, a bad model reference, since not before until."""
    if not conf.model:
        raise MonitorError("Which model? Add model=NAME[:VERSION|champion|latest], e.g. "
                           "`raylake monitor model=delay_model:champion`.")
    parse_model_ref(conf.model)
    m = conf.monitor
    if m.since and m.until and clock.parse_time(m.since, "monitor.since") >= \
            clock.parse_time(m.until, "monitor.until"):
        raise MonitorError(f"monitor.since={m.since!r} is not before monitor.until="
                           f"{m.until!r}; swap them or widen the range.")


def window_starts(since: dt.datetime, until: dt.datetime, now: dt.datetime,
                  width: dt.timedelta) -> list[dt.datetime]:
    """Starts of the windows overlapping [since, until) that have ended by ``now``."""
    starts = [s for s in clock.windows(since, until, width) if s + width <= now]
    if len(starts) > MAX_WINDOWS:
        raise MonitorError(f"{len(starts)} windows of {width} between {since} and {until}: "
                           "narrow monitor.since/monitor.until or widen monitor.window.")
    return starts


def run_monitor(lake: Lake, conf: RaylakeConfig, run: RunRecord) -> dict[str, Any]:
    """Check every ended window of the model's traffic; the rows, counts and summary."""
    m = conf.monitor
    mv = resolve_model(lake, conf.model)
    width = parse_duration(m.window, "monitor.window")
    now = clock.now(m.now, "monitor.now")
    first, arms = checks.traffic_span(lake, m.profile_table, mv.name, mv.version)
    since = clock.parse_time(m.since, "monitor.since") if m.since else first
    until = clock.parse_time(m.until, "monitor.until") if m.until else now
    run.add_input(model=mv.name, version=mv.version, role="model")
    if since is None:
        return {"windows": 0, "rows": 0, "summary": (
            f"monitor {mv.ref}: no traffic in {m.profile_table} yet and no monitor.since; "
            "nothing to check. Serve it with model_server.live_profile=true, or profile the "
            f"request log: `raylake profile-requests model={mv.ref}`.")}
    starts = window_starts(since, until, now, width)
    ref = load_reference(lake, conf, mv, run.run_id)
    run.add_input(table=ref.table, version=ref.version, role="reference")
    table = store.table_name(conf, mv.name)
    if not starts:
        return {"windows": 0, "rows": 0, "summary": (
            f"monitor {mv.ref}: no window of {m.window} between {since:%Y-%m-%d %H:%M} and "
            f"{min(until, now):%Y-%m-%d %H:%M} has ended yet; nothing to check.")}
    seen = checks.traffic(lake, m.profile_table, mv.name, mv.version, starts[0],
                          starts[-1] + width, width)
    if seen:
        system = checks.profile_system(m.profile_table)
        run.add_input(table=m.profile_table, version=lake.version(m.profile_table,
                                                                  system=system),
                      role="live-profiles")
    base = {"model": mv.name, "model_version": int(mv.version), "reference": ref.name,
            "run_id": run.run_id, "created_at": dt.datetime.now(clock.UTC)}
    rows: list[dict[str, Any]] = []
    for s in starts:
        for arm in sorted({a for a, _ in seen} | set(arms)) or ["main"]:
            w = seen.get((arm, s)) or checks.Window(arm, s, s + width, 0, Profile.empty())
            rows += checks.window_rows(ref, w, m, base)
    rows += _performance(lake, conf, mv, starts, run)
    version, written = store.append_changed(lake, table, mv.name, rows, run.run_id)
    if version is not None:
        run.add_output(table=table, version=version, rows=written)
    alerts = _alerts(lake, conf, mv, rows, run)
    result = _summary(mv.ref, ref.name, starts, rows, written, table, alerts)
    run.metrics.update(result["metrics"])
    return {**result, "rows": rows, "written": written, "table": table}


def _performance(lake: Lake, conf: RaylakeConfig, mv: Any, starts: list[dt.datetime],
                 run: RunRecord) -> list[dict[str, Any]]:
    from raylake.monitor import performance

    rows: list[dict[str, Any]] = performance.window_rows(lake, conf, mv, starts, run.run_id)
    return rows


def _alerts(lake: Lake, conf: RaylakeConfig, mv: Any, rows: list[dict[str, Any]],
            run: RunRecord) -> dict[str, Any]:
    from raylake.monitor import alerts

    if not conf.monitor.alerts:
        return {"raised": 0}
    out: dict[str, Any] = alerts.raise_and_deliver(lake, conf, mv, rows, run)
    return out


def _summary(ref: str, reference: str, starts: list[dt.datetime], rows: list[dict[str, Any]],
             written: int, table: str, alerts: dict[str, Any]) -> dict[str, Any]:
    """The run's metrics and its summary lines."""
    states: Counter[str] = Counter()
    for r in rows:
        if r["check"] == "volume":
            states[json.loads(r["detail"]).get("state", "ok")] += 1
    drifted = Counter(r["feature"] for r in rows if r["check"] == "drift" and r["flagged"])
    drift_windows = len({(r["arm"], r["window_start"]) for r in rows
                         if r["check"] == "drift" and r["flagged"]})
    flagged = Counter(r["check"] for r in rows if r["flagged"] and r["check"] != "drift")
    lines = [f"monitor {ref} against {reference}: {len(starts)} window(s) "
             f"{starts[0]:%Y-%m-%d %H:%M} .. {starts[-1]:%Y-%m-%d %H:%M}; "
             + ", ".join(f"{n} {s}" for s, n in sorted(states.items())),
             f"  drift in {drift_windows} window(s)"
             + (": " + ", ".join(f"{f} ({n})" for f, n in drifted.most_common(10))
                if drifted else ""),
             "  flagged: " + (", ".join(f"{c} {n}" for c, n in sorted(flagged.items()))
                              or "nothing"),
             f"  {written} new row(s) in {table}; alerts raised: {alerts.get('raised', 0)}"]
    metrics = {"windows": len(starts), "states": dict(states), "drifted": dict(drifted),
               "drift_windows": drift_windows, "flagged": dict(flagged),
               "rows_written": written}
    return {"metrics": metrics, "windows": len(starts), "alerts": alerts, "summary": lines}


@job("monitor", help="compare a model's live traffic per window with its training set: "
                     "drift, data quality, performance, alerts (monitoring/<model>)",
     ray=False, check=check_config)
def monitor(ctx: JobContext) -> dict[str, Any]:
    """``raylake monitor model=delay_model:champion [monitor.since=... monitor.now=...]``."""
    return run_monitor(ctx.lake, ctx.conf, ctx.record)


@job("monitor-report", help="write the monitoring report of a model: a self-contained "
                            "HTML page and its JSON (`raylake monitor report`)",
     ray=False, check=check_config)
def monitor_report(ctx: JobContext) -> dict[str, Any]:
    """``raylake monitor report model=NAME``: where the page was written."""
    from raylake.monitor.report import write_report

    assert ctx.conf.model
    name, _ = parse_model_ref(ctx.conf.model)
    html, doc = write_report(ctx.lake, ctx.conf, name)
    ctx.record.add_output(kind="files", files=[str(html), str(doc)])
    return {"html": str(html), "json": str(doc),
            "summary": f"monitoring report of {name}: {html} (data: {doc})"}
