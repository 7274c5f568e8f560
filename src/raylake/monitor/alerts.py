"""Alerts: rules over a monitoring run's rows, raised once, kept, delivered, retried.

Rules (``monitor.alerts``) are judged per arm and window on whole-population rows:
``drift_share``: the share of tested input features (not ``_model``/``_prediction``)
with a flagged ``drift`` row is above the threshold; ``auc_drop``: training's test AUC
minus the realised AUC (or, with ``use_estimate`` and no realised value yet, CBPE's) is
above it; ``volume_drop``: the ``volume`` is under (1 - threshold) x the median of the
up to 7 windows before (earlier runs' of the same model version and arm from the
monitoring table; a window missing between two that have one had no traffic: 0); ``null_share_jump``: a feature's
``null_share`` rose above ``detail.reference`` by more than the threshold (or, without
a reference share, its row is flagged).

``_alerts`` is an event log: an ``alert_id``'s newest row is its state. An alert is raised
once: new alerts are appended by :func:`raylake.lake.commit.transact` under one
application id per model, so of two concurrent runs one adds them, the other finds
them. Delivery (a JSON POST to ``monitor.webhook_url``) comes after the alert is in the
lake: a failure (down, timeout, non-2xx) or a run that dies keeps it ``pending``, with
attempts and the error, and every later call retries pending alerts first. Delivery is
at least once (two runs retrying at one moment can both post): each POST carries the
alert id as ``Idempotency-Key``. Without a webhook an alert is ``no_sink``; the first
run that has a webhook delivers it too (:func:`pending` lists both states), so an alert
raised before the webhook was set up is not lost. Of the URL only ``scheme://host:port``
is recorded: chat webhooks (Slack, Discord) carry their secret in the path.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import statistics
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from raylake.config.values import parse_duration
from raylake.lake.clock import UTC, as_utc
from raylake.lake.commit import transact

TABLE = "_alerts"
_TS = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema([
    ("alert_id", pa.string()), ("model", pa.string()), ("model_version", pa.int32()),
    ("arm", pa.string()), ("rule", pa.string()), ("kind", pa.string()), ("window_start", _TS),
    ("window_end", _TS), ("value", pa.float64()), ("threshold", pa.float64()),
    ("message", pa.string()), ("state", pa.string()), ("attempts", pa.int32()),
    ("last_error", pa.string()), ("run_id", pa.string()), ("created_at", _TS)])
_FEATURE_SKIP = {"_model", "_prediction"}


def alert_id(model: str, rule: str, arm: str, window_start: dt.datetime) -> str:
    """The id of an alert: one per model, rule, arm and window (16 hex of a sha256)."""
    key = f"{model}|{rule}|{arm}|{as_utc(window_start).isoformat()}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def raise_and_deliver(lake: Any, conf: Any, model: Any, rows: list[dict[str, Any]],
                      run: Any) -> dict[str, Any]:
    """Retry ``model``'s pending alerts, raise the new ones the rules find in ``rows``,
    deliver them; the counts, and the run record's ``metrics["alerts"]``."""
    m = conf.monitor
    name = getattr(model, "name", model)
    url: str = m.webhook_url or ""
    # Undelivered alerts, including those raised while no webhook was set (no_sink).
    retry = pending(lake, name) if url else []
    found = evaluate(lake, conf, model, rows, run.run_id)
    raised = _raise(lake, name, found, "pending" if url else "no_sink", run.run_id)
    delivered: list[dict[str, Any]] = []
    for a in [*retry, *(a for a in raised if a["state"] == "pending")] if url else []:
        delivered.append(_deliver(a, url, m.webhook_timeout_s, run.run_id))
        if (delivered[-1]["last_error"] or "HTTP").startswith("HTTP"):
            continue
        break  # unreachable: the rest wait for the next run instead of a timeout each
    if delivered:
        transact(lake, TABLE, SCHEMA, lambda _s, _c: _table(delivered), system=True,
                 app_id=f"raylake.alerts/{name}", run_id=run.run_id, job="monitor")
    final = {a["alert_id"]: a for a in [*retry, *raised, *delivered]}
    keep = ("alert_id", "rule", "kind", "arm", "window_start", "value", "threshold", "state",
            "attempts", "message")
    run.metrics["alerts"] = [{k: _plain(a[k]) for k in keep} for a in final.values()]
    states = [a["state"] for a in final.values()]
    result = {"raised": len(raised), "retried": len(retry), "delivered": states.count(
        "delivered"), "pending": states.count("pending"), "no_sink": states.count("no_sink"),
        "webhook": origin(url)}
    run.metrics["alerts_summary"] = dict(result)
    result["alerts"] = run.metrics["alerts"]
    return result


def evaluate(lake: Any, conf: Any, model: Any, rows: list[dict[str, Any]],
             run_id: str) -> list[dict[str, Any]]:
    """The alerts the rules raise on ``rows`` (not yet checked against ``_alerts``)."""
    m = conf.monitor
    name = getattr(model, "name", model)
    width = parse_duration(m.window, "monitor.window")
    groups: dict[tuple[str, dt.datetime], list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("arm") and not r.get("segment"):  # the whole population of an arm
            groups.setdefault((r["arm"], as_utc(r["window_start"])), []).append(r)
    # The volume baseline is the same model version's: another version (or, in a shared
    # monitor.table, another model) on the same arm has its own traffic, and its
    # no_traffic rows would otherwise read as this version's empty windows.
    volumes = {(int(g[0]["model_version"]), arm): _volumes(lake, conf, name, rows, arm,
                                                          int(g[0]["model_version"]))
               for (arm, _), g in groups.items()}
    versions = {int(g[0]["model_version"]) for g in groups.values()}
    training = {v: _training_auc(lake, model, v) for v in versions} if any(
        str(r.kind) == "auc_drop" for r in m.alerts.values()) else {}
    out = []
    for rule_name, rule in m.alerts.items():
        kind, t = str(rule.kind), float(rule.threshold)
        for (arm, ws), here in sorted(groups.items(), key=lambda g: (g[0][1], g[0][0])):
            if kind == "drift_share":
                hit = _drift_share(here, t)
            elif kind == "auc_drop":
                hit = _auc_drop(here, training[int(here[0]["model_version"])], t,
                                rule.use_estimate)
            elif kind == "volume_drop":
                hit = _volume_drop(volumes[(int(here[0]["model_version"]), arm)], ws, width,
                                   t)
            else:
                hit = _null_jump(here, t)
            if hit is not None:
                out.append({"alert_id": alert_id(name, rule_name, arm, ws), "model": name,
                            "model_version": int(here[0]["model_version"]), "arm": arm,
                            "rule": rule_name, "kind": kind, "window_start": ws,
                            "window_end": as_utc(here[0]["window_end"]), "value": hit[0],
                            "threshold": t, "message": f"{name} {arm} {ws:%Y-%m-%d %H:%M}: "
                            f"{hit[1]}", "attempts": 0, "last_error": None, "run_id": run_id})
    return out


def _drift_share(rows: list[dict[str, Any]], t: float) -> tuple[float, str] | None:
    tested = [r for r in rows if r["check"] == "drift" and r["feature"] not in _FEATURE_SKIP
              and r.get("value") is not None]
    if not tested:
        return None
    drifted = sorted(r["feature"] for r in tested if r["flagged"])
    share = len(drifted) / len(tested)
    if share <= t:
        return None
    return share, (f"{len(drifted)} of {len(tested)} features drifted ({share:.2f} > {t:g}): "
                   + ", ".join(drifted[:8]))


def _auc_drop(rows: list[dict[str, Any]], training: float | None, t: float,
              use_estimate: bool) -> tuple[float, str] | None:
    by = {r["check"]: r.get("value") for r in rows if r["feature"] == "_model"}
    auc, label = by.get("auc"), "realised"
    if auc is None and use_estimate:
        auc, label = by.get("auc_estimated"), "estimated (CBPE)"
    if auc is None or training is None or training - auc <= t:
        return None
    return training - auc, (f"{label} AUC {auc:.3f} is {training - auc:.3f} under the "
                            f"training AUC {training:.3f} (> {t:g})")


def _volume_drop(volumes: dict[dt.datetime, float], ws: dt.datetime, width: dt.timedelta,
                 t: float) -> tuple[float, str] | None:
    before = [volumes.get(ws - k * width, 0.0) for k in range(1, 8)
              if ws in volumes and ws - k * width >= min(volumes)]
    median = statistics.median(before) if before else 0.0
    if median <= 0 or volumes[ws] >= (1 - t) * median:
        return None
    return volumes[ws], (f"{volumes[ws]:.0f} rows, under {1 - t:g} x the median "
                         f"{median:.0f} of the {len(before)} windows before")


def _null_jump(rows: list[dict[str, Any]], t: float) -> tuple[float, str] | None:
    jumps = []
    for r in rows:
        if r["check"] != "null_share" or r["feature"] in _FEATURE_SKIP or r.get("value") is None:
            continue
        ref = _detail(r).get("reference")
        rise = r["value"] - ref if isinstance(ref, (int, float)) else None
        if (rise is not None and rise > t) or (rise is None and r["flagged"]):
            jumps.append((rise if rise is not None else r["value"], r["feature"], r["value"]))
    if not jumps:
        return None
    jumps.sort(reverse=True)
    return jumps[0][0], "null share jumped: " + ", ".join(
        f"{f} {v:.2f}" for _, f, v in jumps[:8])


def _detail(row: dict[str, Any]) -> dict[str, Any]:
    try:
        d = json.loads(row.get("detail") or "{}")
    except ValueError:
        d = None
    return d if isinstance(d, dict) else {}


def _training_auc(lake: Any, model: Any, version: int) -> float | None:
    """The test AUC the model version was registered with (``model``: a ModelVersion, or
    a name whose ``version`` the registry gives)."""
    if not hasattr(model, "metrics"):
        from raylake.models.registry import ModelRegistry

        model = ModelRegistry(lake).get(str(model), version)
    value = (model.metrics.get("test") or {}).get("auc")
    return float(value) if value is not None else None


def _volumes(lake: Any, conf: Any, name: str, rows: list[dict[str, Any]], arm: str,
             version: int) -> dict[dt.datetime, float]:
    """Rows per window of model ``name`` version ``version`` on ``arm``: earlier runs'
    from the monitoring table, then this run's (which win)."""
    table = conf.monitor.table or f"monitoring/{name}"
    earlier: list[dict[str, Any]] = []
    if lake.exists(table):
        t = lake.dataset(table).to_table(
            columns=["model", "model_version", "window_start", "value", "created_at",
                     "check", "arm", "segment"],
            filter=(pads.field("check") == "volume") & (pads.field("arm") == arm)
            & (pads.field("model") == name) & (pads.field("model_version") == version))
        earlier = sorted(t.to_pylist(), key=lambda r: r["created_at"])  # newest wins
    return {as_utc(r["window_start"]): float(r["value"]) for r in [*earlier, *rows]
            if r["check"] == "volume" and r["arm"] == arm and not r.get("segment")
            and r.get("model", name) == name and int(r["model_version"]) == version
            and r.get("value") is not None}


def _raise(lake: Any, name: str, found: list[dict[str, Any]], state: str,
           run_id: str) -> list[dict[str, Any]]:
    """Append the alerts of ``found`` that ``_alerts`` does not hold yet; those rows."""
    if not found:
        return []
    added: list[dict[str, Any]] = []

    def build(snap: Any, _conflicts: int) -> pa.Table | None:
        have = snap.to_pyarrow_table(columns=["alert_id"], filesystem=lake.arrow_filesystem(
            TABLE, system=True))["alert_id"]
        seen = set(pc.unique(have).to_pylist())
        added[:] = [{**a, "state": state} for a in {a["alert_id"]: a for a in found}.values()
                    if a["alert_id"] not in seen]
        return _table(added) if added else None

    transact(lake, TABLE, SCHEMA, build, system=True, app_id=f"raylake.alerts/{name}",
             run_id=run_id, job="monitor")
    return added


def _deliver(alert: dict[str, Any], url: str, timeout: float, run_id: str) -> dict[str, Any]:
    """POST one alert; the row recording the attempt (delivered, or pending + error)."""
    body = json.dumps({k: _plain(v) for k, v in alert.items()
                       if k not in ("state", "attempts", "last_error")}).encode()
    error = None
    try:
        req = urllib.request.Request(url, data=body, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": "raylake-alerts",
            "Idempotency-Key": alert["alert_id"]})
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (http(s) only)
            if not 200 <= resp.status < 300:
                error = f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        error = f"HTTP {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError, ValueError) as exc:  # down, refused, timeout
        error = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
    # An error can quote the URL (a ValueError for a bad one): keep only its origin.
    error = error and error.replace(url, origin(url) or "<monitor.webhook_url>")[:500]
    return {**alert, "state": "pending" if error else "delivered",
            "attempts": int(alert.get("attempts") or 0) + 1, "last_error": error,
            "run_id": run_id}


def origin(url: str | None) -> str | None:
    """``scheme://host[:port]`` of ``url``, all that is recorded of the webhook: a chat
    webhook's secret is in its path (hooks.slack.com/services/T../B../<secret>), which
    no redaction by name can tell from a harmless path; None without a URL (or one
    without a scheme and host)."""
    if not url:
        return None
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:  # a port that is not a number: not worth showing either
        return None
    host = parts.hostname
    if not parts.scheme or not host:
        return None
    host = f"[{host}]" if ":" in host else host  # IPv6
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def _table(alerts: list[dict[str, Any]]) -> pa.Table:
    now = dt.datetime.now(UTC)  # wall time, also in replays: it orders the event log
    return pa.Table.from_pylist([{**{f: a.get(f) for f in SCHEMA.names}, "created_at": now}
                                 for a in alerts], schema=SCHEMA)


def _plain(v: Any) -> Any:
    return v.isoformat() if isinstance(v, dt.datetime) else v


def latest(lake: Any, model: str | None = None) -> list[dict[str, Any]]:
    """Every alert (of ``model``) in its newest state, oldest window first."""
    if not lake.exists(TABLE, system=True):
        return []
    t = lake.dataset(TABLE, system=True).to_table()
    if model is not None:
        t = t.filter(pc.equal(t["model"], model))
    newest: dict[str, dict[str, Any]] = {}
    for r in sorted(t.to_pylist(), key=lambda r: (r["created_at"], r["attempts"] or 0)):
        newest[r["alert_id"]] = r
    return sorted(newest.values(), key=lambda r: (r["window_start"], r["rule"], r["arm"]))


def pending(lake: Any, model: str | None = None) -> list[dict[str, Any]]:
    """The alerts (of ``model``) not delivered yet, to retry once there is a webhook:
    ``pending`` (a delivery failed) and ``no_sink`` (raised while there was none)."""
    return [a for a in latest(lake, model) if a["state"] in ("pending", "no_sink")]
