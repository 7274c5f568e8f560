"""Quality reports: one JSON document and one self-contained HTML page per table version.

The JSON holds everything (column summaries with histogram data, constraint
results, drift with both distributions); the page is drawn from it with
inline CSS and SVG, no scripts and nothing fetched, so it opens anywhere.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from raylake.quality.drift import DriftReport
from raylake.quality.profile import Profile

BINS = 20
TOP = 10


def column_data(profile: Profile, column: str) -> dict[str, Any]:
    """One column's report entry: counts, null share, distinct estimate and inferred types,
    plus statistics, quantiles and a histogram for a numeric column or its ``TOP`` most
    frequent values for a categorical one."""
    s = profile.summary(column)
    out: dict[str, Any] = {
        "name": column, "kind": s.kind, "count": s.count, "nulls": s.nulls,
        "null_share": round(s.null_share, 6), "distinct": round(s.distinct or 0),
        "types": s.types,
    }
    if s.kind == "numeric":
        out.update(mean=s.mean, stddev=s.stddev, min=s.min, max=s.max, quantiles=s.quantiles,
                   histogram=histogram(profile, column))
    elif s.kind == "categorical":
        out["top"] = [[k, v] for k, v in s.frequent[:TOP]]
    return out


def histogram(profile: Profile, column: str, edges: list[float] | None = None) -> dict[str, Any]:
    """The shares of ``column``'s values in the bins between ``edges``, from the quantile
    sketch (the outer bins also hold values beyond them); without ``edges``, ``BINS`` equal
    bins from its min to max, which only a numeric column has (RaylakeError otherwise)."""
    s = profile.summary(column)
    if edges is None:
        lo, hi = s.bounds()
        edges = list(np.linspace(lo, hi if hi > lo else lo + 1, BINS + 1))
    cdf = np.concatenate([[0.0], profile.cdf(column, edges[1:-1]), [1.0]])
    share = np.clip(np.diff(cdf), 0, 1)
    return {"edges": [float(e) for e in edges], "share": [round(float(v), 6) for v in share]}


# Columns that are a part of a time: selecting on one (`month in [1]`) makes every
# timestamp column differ between the sides, and selecting a time window makes them differ.
DATE_PARTS = frozenset({"year", "quarter", "month", "week", "day", "dayofweek", "weekday",
                        "dayofyear", "hour", "minute", "date"})


def drift_exclusions(selections: list[str | None], column_types: dict[str, str]
                     ) -> dict[str, str]:
    """The columns a drift verdict must not judge, each with the reason: those the
    selections are made on (they differ between the sides by construction) and, when a
    selection is on a part of a time (``month``) or on a time, the time columns or the
    time parts that follow from it. ``column_types``: column -> Arrow type text."""
    from raylake.lake.selection import selection_columns

    times = [c for c, t in column_types.items() if t.startswith(("timestamp", "date"))]
    out: dict[str, str] = {}
    for text in selections:
        for col in selection_columns(text):
            out.setdefault(col, f"the selection is made on it ({text})")
            if col.lower() in DATE_PARTS:
                for t in times:
                    out.setdefault(t, f"a time: it follows {col}, which the selection is made on")
            if col in times:
                for part in column_types:
                    if part.lower() in DATE_PARTS:
                        out.setdefault(part, f"a part of {col}, which the selection is made on")
    return out


def build_report(table: str, version: int, profile: Profile, checks: list[dict],
                 drift: DriftReport | None = None, reference: Profile | None = None,
                 current: Profile | None = None, drift_sides: dict[str, str] | None = None,
                 excluded: dict[str, str] | None = None, no_drift: str | None = None,
                 column_types: dict[str, str] | None = None) -> dict[str, Any]:
    """The report document of ``table`` at ``version``: column entries from ``profile``, the
    constraint results ``checks`` and, when ``drift`` and both side profiles are given, each
    drift column with both distributions on shared bins (``drift_sides`` describes the
    sides; ``excluded``: columns left out of the verdict, with why). Without drift,
    ``no_drift`` says why there is none (version 0: nothing earlier to compare with).
    ``column_types`` (column -> Arrow type text) labels time axes as dates."""
    types = column_types or {}
    report: dict[str, Any] = {
        "table": table, "version": version, "rows": profile.rows,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "columns": [{**column_data(profile, c), "type": types.get(c)} for c in profile.columns],
        "constraints": checks,
        "drift": None,
        "no_drift": None if drift is not None else no_drift,
    }
    if drift is not None and reference is not None and current is not None:
        cols = []
        for c in drift.columns:
            entry = {**c.__dict__, "type": types.get(c.column)}
            if c.kind == "numeric":
                r, k = reference.summary(c.column), current.summary(c.column)
                (r_lo, r_hi), (k_lo, k_hi) = r.bounds(), k.bounds()
                lo, hi = min(r_lo, k_lo), max(r_hi, k_hi)
                edges = list(np.linspace(lo, hi if hi > lo else lo + 1, BINS + 1))
                entry["reference"] = histogram(reference, c.column, edges)
                entry["current"] = histogram(current, c.column, edges)
            else:
                entry["reference"] = {"top": [[k, v] for k, v in reference.summary(c.column).frequent[:TOP]]}
                entry["current"] = {"top": [[k, v] for k, v in current.summary(c.column).frequent[:TOP]]}
            cols.append(entry)
        report["drift"] = {**drift.to_dict(), "columns": cols, "sides": drift_sides or {},
                           "excluded": excluded or {}}
    return report


def write_report(report: dict[str, Any], folder: Path) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.html`` into ``folder`` (created if needed);
    returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    js, page = folder / "report.json", folder / "report.html"
    js.write_text(json.dumps(report, indent=2, default=str))
    page.write_text(render_html(report))
    return js, page


# -- HTML -------------------------------------------------------------------------

_CSS = """
:root { --ink:#1d2733; --muted:#5f6b7a; --line:#e3e8ef; --bg:#f6f8fb; --card:#fff;
        --accent:#2f6fde; --ref:#9aa7b8; --ok:#1f9d55; --warn:#c77c02; --fail:#d0342c; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       color:var(--ink); background:var(--bg); }
header { background:#14213d; color:#fff; padding:22px 32px; }
header h1 { margin:0 0 4px; font-size:22px; font-weight:600; }
header p { margin:0; color:#c8d3e6; }
main { padding:24px 32px; max-width:1280px; }
section { margin-bottom:28px; }
h2 { font-size:17px; margin:0 0 12px; }
.kpis { display:flex; gap:12px; flex-wrap:wrap; margin-bottom:24px; }
.kpi { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:12px 16px;
       min-width:150px; }
.kpi b { display:block; font-size:20px; }
.kpi span { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.grid { display:grid; grid-template-columns:repeat(auto-fill, minmax(300px, 1fr)); gap:14px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:14px; }
.card h3 { margin:0 0 2px; font-size:15px; }
.card .kind { color:var(--muted); font-size:12px; }
.stats { display:grid; grid-template-columns:1fr 1fr; gap:2px 12px; font-size:12.5px; margin:8px 0; }
.stats dt { color:var(--muted); } .stats dd { margin:0; text-align:right; font-variant-numeric:tabular-nums; }
table { width:100%; border-collapse:collapse; background:var(--card); border:1px solid var(--line);
        border-radius:8px; overflow:hidden; }
th, td { text-align:left; padding:8px 10px; border-bottom:1px solid var(--line); vertical-align:middle; }
th { background:#eef2f7; font-size:12px; text-transform:uppercase; letter-spacing:.04em; color:var(--muted); }
td.num { text-align:right; font-variant-numeric:tabular-nums; }
.badge { display:inline-block; padding:2px 8px; border-radius:10px; font-size:12px; font-weight:600; color:#fff; }
.ok { background:var(--ok); } .warn { background:var(--warn); } .fail { background:var(--fail); }
.legend { font-size:12px; color:var(--muted); margin:6px 0 10px; }
.sw { display:inline-block; width:10px; height:10px; border-radius:2px; margin:0 4px 0 10px; }
.bar-label { font-size:11px; fill:var(--muted); }
"""


def render_html(report: dict[str, Any]) -> str:
    """The report as one self-contained HTML page (inline CSS and SVG, no scripts)."""
    e = html.escape
    checks = report.get("constraints") or []
    failed = sum(1 for c in checks if not c["passed"])
    drift = report.get("drift")
    kpis = [("rows", f"{report['rows']:,}"), ("columns", str(len(report["columns"]))),
            ("constraints", f"{len(checks) - failed}/{len(checks)} ok" if checks else "none")]
    if drift:
        kpis.append(("drift", "DRIFT" if drift["drifted"] else "none"))
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Quality: {e(report['table'])}@{report['version']}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<header><h1>{e(report['table'])} <small>version {report['version']}</small></h1>",
        f"<p>raylake quality report &middot; {e(report['created_at'])}</p></header><main>",
        "<div class='kpis'>" + "".join(f"<div class='kpi'><span>{k}</span><b>{e(v)}</b></div>"
                                       for k, v in kpis) + "</div>",
    ]
    if checks:
        parts.append("<section id='constraints'><h2>Constraints</h2><table><tr><th>status</th>"
                     "<th>constraint</th><th>check</th><th>policy</th><th>violations</th>"
                     "<th>detail</th></tr>")
        for c in checks:
            state = "ok" if c["passed"] else ("fail" if c["policy"] == "fail" else "warn")
            parts.append(
                f"<tr><td><span class='badge {state}'>{state}</span></td><td>{e(c['name'])}</td>"
                f"<td>{e(c['check'])}</td><td>{e(c['policy'])}</td>"
                f"<td class='num'>{c.get('violations') or 0:,}</td><td>{e(c['message'])}</td></tr>")
        parts.append("</table></section>")
    if drift:
        sides = drift.get("sides") or {}
        parts.append(
            "<section id='drift'><h2>Drift</h2>"
            f"<p class='legend'>reference: {e(sides.get('reference', ''))} "
            f"({drift['reference_rows']:,} rows)<span class='sw' style='background:var(--ref)'></span>"
            f"current: {e(sides.get('current', ''))} ({drift['current_rows']:,} rows)"
            "<span class='sw' style='background:var(--accent)'></span> &middot; "
            f"{len(drift['drifted_columns'])} of {len(drift['columns'])} columns drifted</p>"
            + _excluded_note(drift.get("excluded") or {}) +
            "<table><tr><th>column</th><th>metric</th><th>value</th><th>threshold</th><th>status</th>"
            "<th>reference vs current</th></tr>")
        for c in drift["columns"]:
            state = "fail" if c["drifted"] else "ok"
            label = "drift" if c["drifted"] else "ok"
            chart = _pair_svg(c)
            parts.append(
                f"<tr><td>{e(c['column'])}</td><td>{e(c['metric'])}</td>"
                f"<td class='num'>{c['value']:.4f}</td><td class='num'>{c['threshold']}</td>"
                f"<td><span class='badge {state}'>{label}</span></td><td>{chart}</td></tr>")
        parts.append("</table></section>")
    if not drift and report.get("no_drift"):
        parts.append("<section id='drift'><h2>Drift</h2>"
                     f"<p class='legend'>No drift section: {e(report['no_drift'])}</p></section>")
    parts.append("<section id='columns'><h2>Columns</h2><div class='grid'>")
    for col in report["columns"]:
        parts.append(_column_card(col))
    parts.append("</div></section></main></body></html>")
    return "".join(parts)


def _fmt(v: Any) -> str:
    if v is None:
        return "&ndash;"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e6 else f"{v:,.0f}"
    return f"{v:,}" if isinstance(v, int) else html.escape(str(v))


def _column_card(col: dict[str, Any]) -> str:
    rows = [("count", col["count"]), ("nulls", col["nulls"]),
            ("null share", f"{col['null_share']:.2%}"), ("distinct ~", col["distinct"])]
    chart = ""
    if col["kind"] == "numeric":
        q = col.get("quantiles", {})
        rows += [("mean", col["mean"]), ("stddev", col["stddev"]), ("min", col["min"]),
                 ("median", q.get("q50")), ("max", col["max"])]
        chart = _hist_svg(col["histogram"]["share"], None, 280, 84,
                          col["histogram"].get("edges"), _is_time(col.get("type")))
    elif col["kind"] == "categorical":
        chart = _top_svg(col.get("top", []), None, 280)
    if col.get("types"):
        rows.append(("types", ", ".join(f"{k} {v:,}" for k, v in col["types"].items())))
    stats = "".join(f"<dt>{k}</dt><dd>{v if isinstance(v, str) else _fmt(v)}</dd>" for k, v in rows)
    return (f"<div class='card'><h3>{html.escape(col['name'])}</h3>"
            f"<div class='kind'>{col['kind']}</div><dl class='stats'>{stats}</dl>{chart}</div>")


# Room around a histogram's plot for its axes: share ticks on the left, values below.
_LEFT, _BOTTOM, _TOP = 34, 16, 6


def tick(value: float, kind: str = "") -> str:
    """An axis tick: 4 significant digits (``1400``, ``12,350``, ``0.25``); a timestamp
    column's value (seconds since 1970) as a date."""
    if kind == "time":
        try:
            when = dt.datetime.fromtimestamp(value, dt.timezone.utc)
            return when.strftime("%Y-%m-%d")
        except (OverflowError, OSError, ValueError):
            pass
    short = f"{value:.4g}"
    if 10_000 <= abs(value) < 1e15:
        return f"{float(short):,.0f}"
    return short


def _hist_svg(share: list[float], other: list[float] | None, w: int, h: int,
              edges: list[float] | None = None, time: bool = False) -> str:
    """Bars of ``share`` (and ``other``, the reference, beside them) with axes: the share
    of rows on the left (0 and the tallest bar), the values at the low end, middle and
    high end of the bins below."""
    n = len(share)
    top = max([*share, *(other or [])] or [1]) or 1
    pw, ph = w - _LEFT, h - _BOTTOM - _TOP  # the plot inside the axes
    bw = pw / n
    kind = "time" if time else ""

    def y(v: float) -> float:
        return _TOP + ph - v / top * ph

    bars = []
    for i, v in enumerate(share):
        x = _LEFT + i * bw
        if other is not None:
            ov = other[i]
            bars.append(f"<rect x='{x + 1:.1f}' y='{y(ov):.1f}' width='{bw / 2 - 1:.1f}' "
                        f"height='{ov / top * ph:.1f}' fill='#9aa7b8'/>")
            bars.append(f"<rect x='{x + bw / 2:.1f}' y='{y(v):.1f}' width='{bw / 2 - 1:.1f}' "
                        f"height='{v / top * ph:.1f}' fill='#2f6fde'/>")
        else:
            bars.append(f"<rect x='{x + 1:.1f}' y='{y(v):.1f}' width='{max(bw - 2, 0.5):.1f}' "
                        f"height='{v / top * ph:.1f}' fill='#2f6fde' rx='1'/>")
    base = _TOP + ph
    axes = [f"<line x1='{_LEFT}' y1='{_TOP}' x2='{_LEFT}' y2='{base}' stroke='#9aa7b8'/>",
            f"<line x1='{_LEFT}' y1='{base}' x2='{w}' y2='{base}' stroke='#9aa7b8'/>",
            f"<text class='bar-label' x='{_LEFT - 3}' y='{_TOP + 8}' "
            f"text-anchor='end'>{top:.0%}</text>",
            f"<text class='bar-label' x='{_LEFT - 3}' y='{base}' text-anchor='end'>0%</text>"]
    if edges and len(edges) == n + 1:
        for frac, anchor in ((0.0, "start"), (0.5, "middle"), (1.0, "end")):
            value = edges[0] + frac * (edges[-1] - edges[0])
            x = _LEFT + frac * pw
            axes.append(f"<line x1='{x:.1f}' y1='{base}' x2='{x:.1f}' y2='{base + 3}' "
                        "stroke='#9aa7b8'/>")
            axes.append(f"<text class='bar-label axis-x' x='{x:.1f}' y='{h - 2}' "
                        f"text-anchor='{anchor}'>{html.escape(tick(value, kind))}</text>")
    return (f"<svg role='img' width='{w}' height='{h}' viewBox='0 0 {w} {h}' "
            f"xmlns='http://www.w3.org/2000/svg'>{''.join(axes)}{''.join(bars)}</svg>")


def _is_time(arrow_type: Any) -> bool:
    return str(arrow_type or "").startswith(("timestamp", "date"))


def _excluded_note(excluded: dict[str, str]) -> str:
    if not excluded:
        return ""
    items = "; ".join(f"<b>{html.escape(c)}</b>: {html.escape(why)}" for c, why in excluded.items())
    return (f"<p class='legend' id='drift-excluded'>Not in the verdict ({len(excluded)} "
            f"columns, they differ between the sides by construction): {items}</p>")


def _top_svg(top: list, other: list | None, w: int) -> str:
    if not top:
        return ""
    ref = dict(other or [])
    total = sum(v for _, v in top) or 1
    ref_total = sum(ref.values()) or 1
    h = 16 * len(top)
    rows = []
    for i, (k, v) in enumerate(top):
        y = i * 16
        share = v / total
        rows.append(f"<text class='bar-label' x='0' y='{y + 11}'>{html.escape(str(k))[:12]}</text>")
        if other is not None:
            rs = ref.get(k, 0) / ref_total
            rows.append(f"<rect x='80' y='{y + 2}' width='{rs * (w - 90):.1f}' height='5' fill='#9aa7b8'/>")
            rows.append(f"<rect x='80' y='{y + 8}' width='{share * (w - 90):.1f}' height='5' fill='#2f6fde'/>")
        else:
            rows.append(f"<rect x='80' y='{y + 3}' width='{share * (w - 90):.1f}' height='10' "
                        f"fill='#2f6fde' rx='1'/>")
    return (f"<svg role='img' width='{w}' height='{h}' viewBox='0 0 {w} {h}' "
            f"xmlns='http://www.w3.org/2000/svg'>{''.join(rows)}</svg>")


def _pair_svg(c: dict[str, Any]) -> str:
    if c["kind"] == "numeric":
        return _hist_svg(c["current"]["share"], c["reference"]["share"], 260, 64,
                         c["current"].get("edges"), _is_time(c.get("type")))
    cur = c["current"]["top"]
    return _top_svg(cur, c["reference"]["top"], 260)
