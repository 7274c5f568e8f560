"""Quality and monitoring pages: the existing HTML reports embedded, and drift and
performance over time as SVG charts."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow.fs as pafs
from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from raylake.monitor import charts
from raylake.monitor import report as monitor_report
from raylake.quality.drift import compare
from raylake.quality.report import build_report, render_html
from raylake.quality.store import PROFILES_TABLE, load_profile
from raylake.ui.app import Missing, Ui, View

MONITORING = "monitoring/"
DRIFT_CHARTS = 6
PALETTE = ("#2f6fde", "#8e44ad", "#1f9d55", "#c77c02", "#d0342c", "#5f6b7a")


def profiles(v: View) -> list[dict[str, Any]]:
    """The stored whole-table profiles: table, version, rows, run, when (newest first)."""
    if not v.reader.exists(PROFILES_TABLE):
        return []
    ver = v.reader.latest(PROFILES_TABLE)

    def read() -> list[dict[str, Any]]:
        t = v.lake.read(PROFILES_TABLE, ver, columns=["table", "version", "segment_column",
                                                      "rows", "run_id", "created_at"],
                        system=True)
        rows = [r for r in t.to_pylist() if not r["segment_column"]]
        return sorted(rows, key=lambda r: r["created_at"], reverse=True)
    return v.reader.values.get(("profiles", ver), read)


def report_file(v: View, table: str, version: int) -> str | None:
    """The HTML of ``raylake quality report``'s page for ``table``@``version``, if written."""
    fs, root = v.lake.storage.filesystem()
    path = f"{root.rstrip('/')}/_reports/{table.replace('/', '_')}@{version}/report.html"
    try:
        if fs.get_file_info(path).type != pafs.FileType.File:
            return None
        with fs.open_input_stream(path) as f:
            return bytes(f.read()).decode("utf-8", errors="replace")
    except OSError:
        return None


def quality_html(v: View, table: str, version: int) -> str:
    """The quality report page of ``table``@``version``: the written report, else one drawn
    from the stored profile (drift against the previous stored version's profile)."""
    written = report_file(v, table, version)
    if written is not None:
        return written
    stored = sorted({p["version"] for p in profiles(v) if p["table"] == table})
    if version not in stored:
        raise Missing(f"No quality report or stored profile of {table}@{version}. Profiled "
                      f"versions: {', '.join(map(str, stored)) or 'none'} (`raylake profile "
                      f"table={table}` stores one).",
                      [(f"{table}@{x}", v.u(f"/quality/{table}", version=x)) for x in stored]
                      + [("every stored profile", v.u("/quality")),
                         (f"{table}@{version}", v.u(f"/table/{table}", version=version))],
                      "quality report")

    def build() -> str:
        prof = load_profile(v.lake, table, [version])
        earlier = [x for x in stored if x < version]
        drift = ref = None
        sides: dict[str, str] = {}
        if earlier:
            ref = load_profile(v.lake, table, [earlier[-1]])
            drift = compare(ref, prof) if ref.rows and prof.rows else None
            sides = {"reference": f"version {earlier[-1]}", "current": f"version {version}"}
        return render_html(build_report(table, version, prof, [], drift, ref, prof, sides))
    return v.reader.values.get(("quality", table, version, len(stored)), build)


def monitoring_report(v: View, model: str) -> dict[str, Any]:
    """The monitoring report document of ``model`` (cached by the monitoring table's,
    the alerts' and the runs' versions)."""
    table = f"{MONITORING}{model}"
    if not v.reader.exists(table):
        names = [n[len(MONITORING):] for n in v.names() if n.startswith(MONITORING)]
        raise Missing(f"No monitoring table {table!r}: model {model!r} was never monitored "
                      f"(`raylake monitor model={model}`). Monitored: "
                      f"{', '.join(names) or 'none'}.",
                      [(n, v.u(f"/monitoring/{n}")) for n in names], "monitoring")
    key = ("monitoring", model, v.reader.latest(table),
           *(v.reader.latest(t) if v.reader.exists(t) else None for t in ("_alerts", "_runs")))
    return v.reader.values.get(key, lambda: monitor_report.build(v.lake, model, table=table))


def drift_charts(report: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(feature and metric, SVG, flagged) for the most drifted features: each arm's value
    per window against the threshold."""
    out: list[tuple[str, str, bool]] = []
    axis = _axis(report)
    if axis is None:
        return out
    for f in report["features"][:DRIFT_CHARTS]:
        series = [charts.Series(arm, [(_mid(p), p["value"]) for p in pts], PALETTE[i % 6],
                                flagged=[p["flagged"] for p in pts],
                                tips=[f"{p['start'][:10]} {arm}: {charts.fmt(p['value'])}"
                                      for p in pts])
                  for i, (arm, pts) in enumerate(f["series"].items())]
        hl = [(f["threshold"], "threshold", "#d0342c")] if f["threshold"] is not None else []
        svg = charts.line_chart(series, x_range=axis[0], ticks=axis[1], width=380, height=140,
                                hlines=hl, title=f"drift of {f['name']} ({f['metric']})")
        out.append((f"{f['name']} ({f['metric']})", svg, bool(f["flagged_windows"])))
    return out


def performance_chart(report: dict[str, Any]) -> str:
    """AUC per window, realised and estimated, per arm (empty when none was recorded)."""
    axis = _axis(report)
    series = []
    for i, (arm, ws) in enumerate(report["performance"]["series"].items()):
        for key, dash in (("auc", False), ("auc_estimated", True)):
            if any(w.get(key) is not None for w in ws):
                series.append(charts.Series(
                    f"{arm} {key}", [(_mid(w), w.get(key)) for w in ws],
                    PALETTE[(2 * i + dash) % 6], dash,
                    tips=[f"{w['start'][:10]} {arm} v{w['model_version']} {key}: "
                          f"{charts.fmt(w.get(key))}" for w in ws]))
    if not series or axis is None:
        return ""
    return charts.line_chart(series, x_range=axis[0], ticks=axis[1], width=780, height=200,
                             title="AUC per window: realised (solid), estimated (dashed)")


def _axis(report: dict[str, Any]) -> tuple[tuple[float, float], list[float]] | None:
    starts = [charts.epoch(w["start"]) for w in report["windows"]]
    ends = [charts.epoch(w["end"]) for w in report["windows"]]
    return ((min(starts), max(ends)), starts) if starts else None


def _mid(p: dict[str, Any]) -> float:
    return (charts.epoch(p["start"]) + charts.epoch(p["end"])) / 2


def routes(app: FastAPI, ui: Ui) -> None:
    """Add the quality and monitoring pages to ``app``."""

    @app.get("/quality", response_class=HTMLResponse)
    def quality(branch: str = "") -> HTMLResponse:
        v = ui.view(branch)
        return ui.render(v, "quality.html", rows=profiles(v))

    @app.get("/quality/{name:path}", response_class=HTMLResponse)
    def quality_page(name: str, version: int, branch: str = "") -> HTMLResponse:
        v = ui.view(branch)
        quality_html(v, name, version)  # 404 before the frame asks
        return ui.render(v, "quality_page.html", name=name, version=version,
                         written=report_file(v, name, version) is not None)

    @app.get("/quality-report/{name:path}", response_class=HTMLResponse)
    def quality_report(name: str, version: int, branch: str = "") -> HTMLResponse:
        return HTMLResponse(quality_html(ui.view(branch), name, version))

    @app.get("/monitoring", response_class=HTMLResponse)
    def monitoring(branch: str = "") -> HTMLResponse:
        v = ui.view(branch)
        rows = [(n[len(MONITORING):], v.reader.latest(n)) for n in v.names()
                if n.startswith(MONITORING)]
        return ui.render(v, "monitoring.html", rows=rows)

    @app.get("/monitoring/{model}", response_class=HTMLResponse)
    def monitoring_page(model: str, branch: str = "") -> HTMLResponse:
        v = ui.view(branch)
        rep = monitoring_report(v, model)
        return ui.render(v, "monitoring_page.html", model=model, r=rep,
                         drift=drift_charts(rep), performance=performance_chart(rep),
                         now=dt.datetime.now(dt.timezone.utc))

    @app.get("/monitoring-report/{model}", response_class=HTMLResponse)
    def monitoring_html(model: str, branch: str = "") -> HTMLResponse:
        return HTMLResponse(monitor_report.render_html(monitoring_report(ui.view(branch),
                                                                         model)))
