"""The monitoring report: one JSON document and one self-contained HTML page per model.

``build`` gathers what monitoring recorded (the ``monitoring/<model>`` table, the
``_alerts`` table and the CT runs' decisions) onto one time axis; ``render_html`` draws it
with inline CSS and SVG (no scripts, nothing fetched), so the page opens anywhere and is
read from its pictures: performance with CT decisions, alerts, drift per feature (most
drifted first), null shares and volume.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from raylake.errors import ModelNotFoundError, RaylakeError
from raylake.lake.clock import parse_time
from raylake.lake.runs import list_runs
from raylake.lake.tables import Lake
from raylake.models.registry import ModelRegistry, parse_model_ref
from raylake.monitor import charts

ALERTS_TABLE = "_alerts"
# A monitoring row is identified by these; the newest row of a key is its value.
KEY = ("model_version", "arm", "window_start", "feature", "check", "segment")
PERFORMANCE = ("auc", "auc_estimated", "cost", "cost_estimated", "log_loss",
               "calibration_error", "positive_rate", "positive_rate_estimated")
QUALITY = ("null_share", "unseen_categories", "out_of_range")


def build(lake: Lake, model: str, *, table: str | None = None) -> dict[str, Any]:
    """The report document of ``model`` (``NAME`` or ``NAME:REF``; the name is used):
    windows, drift per feature (most drifted first), performance realised and estimated,
    data quality, volume, alerts and CT decisions, all JSON-able, times as ISO strings.
    Missing tables make empty parts, never an error."""
    name = parse_model_ref(model)[0]
    table = table or f"monitoring/{name}"
    rows = [r for r in _newest(_read(lake, table), KEY, "_order")
            if r.get("model") in (None, name)]
    windows = sorted({(r["window_start"], r["window_end"]) for r in rows})
    alerts = _alerts(lake, name)
    ct = _ct_decisions(lake, name)
    training = _training(lake, name)
    by = _index(rows)
    features = sorted((_drift(by, f) for f in _features(rows, "drift")),
                      key=lambda f: (-len(f["flagged_windows"]), -f["score"], f["name"]))
    performance = _performance(rows, by, training)
    report: dict[str, Any] = {
        "model": name, "table": table,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": sorted({int(r["model_version"]) for r in rows}),
        "arms": sorted({r["arm"] for r in rows}),
        "references": sorted({r["reference"] for r in rows if r.get("reference")}),
        "windows": [{"start": s, "end": e} for s, e in windows],
        "features": features,
        "performance": performance,
        "null_share": [f for f in (_quality(by, f, "null_share")
                                   for f in _features(rows, "null_share"))
                       if f["flagged_windows"] or any(p["value"] for s in f["series"].values()
                                                      for p in s)],
        "quality": [q for c in QUALITY for f in _features(rows, c)
                    if (q := _quality(by, f, c))["flagged_windows"]],
        "volume": _series(by, "volume", _volume_feature(rows)),
        "alerts": alerts,
        "alert_windows": _alert_windows(alerts),
        "ct": ct,
        "training": {str(v): m for v, m in training.items()},
    }
    report["counts"] = {
        "windows": len(windows), "alerts": len(alerts),
        "alerts_by_state": _count(a["state"] for a in alerts),
        "drifted_features": sum(1 for f in features if f["flagged_windows"]),
        "features": len(features), "ct_runs": len(ct),
        "promoted": sum(1 for c in ct if c["decision"] == "promoted"),
    }
    return report


def render_html(report: dict[str, Any]) -> str:
    """The report as one self-contained HTML page (inline CSS and SVG, no scripts)."""
    return charts.render_page(report)


def write_report(lake: Lake, conf: Any, model_name: str) -> tuple[Path, Path]:
    """Write ``<monitor.report_dir>/<model>/monitoring.html`` and ``monitoring.json``
    (folders created); returns (html, json) paths."""
    mon = getattr(conf, "monitor", None)
    base = Path(getattr(mon, "report_dir", None) or "reports")
    report = build(lake, model_name, table=getattr(mon, "table", None))
    folder = base / report["model"]
    folder.mkdir(parents=True, exist_ok=True)
    page, doc = folder / "monitoring.html", folder / "monitoring.json"
    doc.write_text(json.dumps(report, indent=2, default=str))
    page.write_text(render_html(report))
    return page, doc


# -- reading ------------------------------------------------------------------------

def _read(lake: Lake, table: str, *, system: bool = False) -> list[dict[str, Any]]:
    """The rows of ``table`` with times as ISO strings (UTC, seconds) and ``_order``, the
    creation time in microseconds; converted in Arrow, since aware datetimes made row by
    row are most of the time a year of daily windows takes."""
    if not lake.exists(table, system=system):
        return []
    t = lake.read(table, system=system)
    for i, f in enumerate(t.schema):
        if pa.types.is_timestamp(f.type):
            col = t.column(i)
            if f.name == "created_at":
                t = t.append_column("_order", col.cast(pa.int64()))
            secs = col.cast(pa.timestamp("s", tz="UTC"), safe=False)
            t = t.set_column(i, f.name, pc.strftime(secs, format="%Y-%m-%dT%H:%M:%S+00:00"))
    return t.to_pylist()


def _newest(rows: list[dict[str, Any]], key: tuple[str, ...], order: str) -> list[dict[str, Any]]:
    """The newest row (by ``order``) of each ``key``; appended rows are an event log."""
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in sorted(rows, key=lambda r: r.get(order) or 0):
        out[tuple((r.get(k) or "") if k == "segment" else r.get(k) for k in key)] = r
    return list(out.values())


def _alerts(lake: Lake, name: str) -> list[dict[str, Any]]:
    rows = [r for r in _newest(_read(lake, ALERTS_TABLE, system=True), ("alert_id",),
                               "_order") if r.get("model") == name]
    keep = ("alert_id", "model_version", "arm", "rule", "kind", "window_start", "window_end",
            "value", "threshold", "message", "state", "attempts", "last_error", "run_id",
            "created_at")
    out = [{k: _plain(r.get(k)) for k in keep} for r in rows]
    return sorted(out, key=lambda a: (a["window_start"] or "", a["rule"] or ""))


def _ct_decisions(lake: Lake, name: str) -> list[dict[str, Any]]:
    """Each CT run of ``name``: when (its replayed ``now``, else its start), what it
    decided and why, with both models' scores."""
    out = []
    for run in list_runs(lake, job="ct"):
        metrics, config = run.get("metrics") or {}, run.get("config") or {}
        ref = metrics.get("model") or config.get("model") or ""
        if str(ref).partition(":")[0] != name:
            continue
        at = _time(metrics.get("now") or (config.get("ct") or {}).get("now"))
        out.append({
            "run_id": run["run_id"], "status": run["status"],
            "at": at or _iso(run["started_at"]),
            "decision": str(metrics.get("decision") or run["status"]),
            "reason": str(metrics.get("reason") or run.get("error") or ""),
            "champion": _scores(metrics.get("champion")),
            "challenger": _scores(metrics.get("challenger")),
        })
    return sorted(out, key=lambda c: c["at"])


def _training(lake: Lake, name: str) -> dict[int, dict[str, float | None]]:
    """Each registered version's test AUC and cost (the training evaluation)."""
    try:
        versions = ModelRegistry(lake).list(name)
    except ModelNotFoundError:
        return {}
    out = {}
    for mv in versions:
        test = mv.metrics.get("test") or mv.metrics
        cost = next((v for k, v in test.items()
                     if k.startswith("cost_per_") and not k.endswith("_do_nothing")), None)
        out[mv.version] = {"auc": _num(test.get("auc")), "cost": _num(cost)}
    return out


# -- shaping --------------------------------------------------------------------------

def _features(rows: list[dict[str, Any]], check: str) -> list[str]:
    return sorted({r["feature"] for r in rows if r["check"] == check and r["feature"] != "_model"})


Index = dict[tuple[str, str, str], list[dict[str, Any]]]


def _index(rows: list[dict[str, Any]]) -> Index:
    """Rows by (check, feature, segment): each chart reads one bucket, not every row."""
    out: Index = {}
    for r in rows:
        out.setdefault((r["check"], r["feature"], r.get("segment") or ""), []).append(r)
    return out


def _series(by: Index, check: str, feature: str,
            segment: str = "") -> dict[str, list[dict[str, Any]]]:
    """Per arm, one point per window (the newest model version's where two served it)."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for r in by.get((check, feature, segment), []):
        k = (r["arm"], r["window_start"])
        if k not in best or r["model_version"] > best[k]["model_version"]:
            best[k] = r
    out: dict[str, list[dict[str, Any]]] = {}
    for (arm, _), r in sorted(best.items()):
        out.setdefault(arm, []).append({
            "start": r["window_start"], "end": r["window_end"], "value": _num(r["value"]),
            "threshold": _num(r.get("threshold")), "flagged": bool(r.get("flagged")),
            "estimated": bool(r.get("estimated")), "rows": r.get("rows"),
            "model_version": int(r["model_version"])})
    return out


def _drift(by: Index, feature: str) -> dict[str, Any]:
    series = _series(by, "drift", feature)
    points = [p for s in series.values() for p in s]
    details = [_detail(r) for r in by.get(("drift", feature, ""), [])[-50:]]
    metric = next((str(d["metric"]) for d in details if d.get("metric")), "")
    threshold = next((p["threshold"] for p in reversed(points) if p["threshold"] is not None), None)
    # Without a metric name, a threshold as small as a significance level means a p-value.
    pvalue = "pvalue" in metric if metric else (threshold is not None and threshold < 0.05)
    return {"name": feature, "metric": metric or ("pvalue" if pvalue else "statistic"),
            "pvalue": pvalue, "threshold": threshold, "series": series,
            "flagged_windows": sorted({p["start"] for p in points if p["flagged"]}),
            "score": max((_score(p["value"], threshold, pvalue) for p in points), default=0.0)}


def _score(value: float | None, threshold: float | None, pvalue: bool) -> float:
    """How far past its threshold a drift value is (1 = at it), comparable across metrics."""
    if value is None:
        return 0.0
    if pvalue:
        return -math.log10(max(value, 1e-300)) / -math.log10(min(max(threshold or 0.001, 1e-300), 0.5))
    return value / threshold if threshold else value


def _quality(by: Index, feature: str, check: str) -> dict[str, Any]:
    series = _series(by, check, feature)
    points = [p for s in series.values() for p in s]
    return {"name": feature, "check": check, "series": series,
            "threshold": next((p["threshold"] for p in points if p["threshold"] is not None), None),
            "max": max((p["value"] for p in points if p["value"] is not None), default=None),
            "flagged_windows": sorted({p["start"] for p in points if p["flagged"]})}


def _performance(rows: list[dict[str, Any]], by: Index,
                 training: dict[int, dict[str, float | None]]) -> dict[str, Any]:
    """Per arm and window: each performance metric realised and estimated, and the serving
    version's training AUC and cost; the mean absolute error of the AUC estimate."""
    per: dict[str, dict[str, dict[str, Any]]] = {}
    for check in PERFORMANCE:
        for arm, points in _series(by, check, "_model").items():
            for p in points:
                w = per.setdefault(arm, {}).setdefault(p["start"], {
                    "start": p["start"], "end": p["end"], "model_version": p["model_version"]})
                w[check] = p["value"]
                w[f"{check}_flagged"] = p["flagged"]
                if check == "auc":
                    w["rows"] = p["rows"]
    series = {arm: [dict(w, training_auc=training.get(w["model_version"], {}).get("auc"),
                         training_cost=training.get(w["model_version"], {}).get("cost"))
                    for _, w in sorted(ws.items())] for arm, ws in sorted(per.items())}
    gaps = [abs(w["auc_estimated"] - w["auc"]) for ws in series.values() for w in ws
            if w.get("auc") is not None and w.get("auc_estimated") is not None]
    segments = sorted({r["segment"] for r in rows if r.get("segment") and r["check"] == "auc"})
    return {"series": series,
            "auc_estimate_mae": sum(gaps) / len(gaps) if gaps else None,
            "segments": {s: _series(by, "auc", "_model", s) for s in segments}}


def _volume_feature(rows: list[dict[str, Any]]) -> str:
    names = {r["feature"] for r in rows if r["check"] == "volume"}
    return "_model" if "_model" in names or not names else sorted(names)[0]


def _alert_windows(alerts: list[dict[str, Any]]) -> dict[str, list[list[str]]]:
    out: dict[str, list[list[str]]] = {}
    for a in alerts:
        if a["window_start"] and a["window_end"]:
            out.setdefault(a["kind"] or "", []).append([a["window_start"], a["window_end"]])
    return out


# -- values ---------------------------------------------------------------------------

def _iso(t: Any) -> str | None:
    if t is None:
        return None
    if isinstance(t, dt.datetime):
        t = t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)
        return t.astimezone(dt.timezone.utc).isoformat(timespec="seconds")
    return str(t)


def _time(text: Any) -> str | None:
    if not text:
        return None
    try:
        return _iso(parse_time(str(text)))
    except RaylakeError:
        return None  # an unreadable replayed clock: the run's start time stands in


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _plain(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return _iso(v)
    return _num(v) if isinstance(v, float) else v


def _scores(d: Any) -> dict[str, Any]:
    if not isinstance(d, dict):
        return {}
    return {str(k): (_num(v) if isinstance(v, float) else v) for k, v in d.items()
            if isinstance(v, (int, float, str, bool)) or v is None}


def _detail(r: dict[str, Any]) -> dict[str, Any]:
    try:
        d = json.loads(r.get("detail") or "{}")
    except ValueError:
        return {}
    return d if isinstance(d, dict) else {}


def _count(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in items:
        out[str(i)] = out.get(str(i), 0) + 1
    return out

