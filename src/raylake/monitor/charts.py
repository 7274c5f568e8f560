"""The monitoring report's page: inline SVG line charts on one time axis, and the sections.

Every chart of one report shares the same time range, so a window, an alert and a CT
decision sit at the same x in every picture. Nothing here reads data: the report hands
over numbers and labels, and every label is escaped here.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from raylake.quality.report import _CSS as BASE_CSS  # one look for both reports

UTC = dt.timezone.utc
RED = "#d0342c"
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 46, 10, 10, 22


@dataclass
class Series:
    """One line: (time in epoch seconds, value or None for a gap) points."""

    label: str
    points: list[tuple[float, float | None]]
    color: str = "#2f6fde"
    dash: bool = False
    # Parallel to points: draw a red marker there (a flagged window).
    flagged: list[bool] = field(default_factory=list)
    tips: list[str] = field(default_factory=list)
    markers: bool = True


@dataclass
class VLine:
    """A vertical marker at ``at`` (epoch seconds), e.g. a CT decision."""

    at: float
    label: str
    color: str
    tip: str = ""


def epoch(iso: str) -> float:
    """Seconds since the UNIX epoch of an ISO time (naive = UTC)."""
    t = dt.datetime.fromisoformat(iso)
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()


def fmt(v: float | None) -> str:
    """A compact number for labels and tooltips (4 significant digits)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:,.0f}" if abs(v) >= 10_000 else f"{v:.4g}"


def _nice_ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    span = hi - lo or abs(hi) or 1.0
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _time_label(t: float, span: float) -> str:
    d = dt.datetime.fromtimestamp(t, UTC)
    if span >= 120 * 86_400:
        return d.strftime("%b %Y")
    return d.strftime("%m-%d") if span >= 3 * 86_400 else d.strftime("%m-%d %H:%M")


def line_chart(series: list[Series], *, x_range: tuple[float, float], ticks: list[float],
               width: int = 300, height: int = 120,
               hlines: Sequence[tuple[float, str, str]] = (), vlines: Sequence[VLine] = (),
               bands: Sequence[tuple[float, float]] = (),
               y_range: tuple[float, float] | None = None, title: str = "") -> str:
    """An SVG line chart: ``series`` over ``x_range`` with x ``ticks`` (window starts),
    horizontal reference lines (value, label, colour), vertical markers and shaded
    ``bands`` (e.g. windows with an alert); y fits the data and the lines unless
    ``y_range`` is given. Markers carry a hover tooltip (SVG ``<title>``)."""
    e = html.escape
    ys = [y for s in series for _, y in s.points if y is not None and math.isfinite(y)]
    ys += [y for y, _, _ in hlines]
    lo, hi = y_range or ((min(ys), max(ys)) if ys else (0.0, 1.0))
    if hi - lo < 1e-12:
        lo, hi = lo - (abs(lo) * 0.1 or 0.5), hi + (abs(hi) * 0.1 or 0.5)
    pad = (hi - lo) * 0.08
    lo, hi = (lo - pad if not y_range else lo), (hi + pad if not y_range else hi)
    x0, x1 = x_range
    pw, ph = width - MARGIN_L - MARGIN_R, height - MARGIN_T - MARGIN_B

    def px(t: float) -> float:
        return MARGIN_L + (t - x0) / ((x1 - x0) or 1) * pw

    def py(v: float) -> float:
        return MARGIN_T + (hi - min(max(v, lo), hi)) / (hi - lo) * ph

    out = [f"<svg role='img' width='{width}' height='{height}' viewBox='0 0 {width} {height}' "
           f"xmlns='http://www.w3.org/2000/svg' font-size='10'>"]
    if title:
        out.append(f"<title>{e(title)}</title>")
    for a, b in bands:
        out.append(f"<rect x='{px(a):.1f}' y='{MARGIN_T}' width='{max(px(b) - px(a), 2):.1f}' "
                   f"height='{ph}' fill='{RED}' fill-opacity='0.08'/>")
    for v in _nice_ticks(lo, hi):
        out.append(f"<line x1='{MARGIN_L}' x2='{width - MARGIN_R}' y1='{py(v):.1f}' "
                   f"y2='{py(v):.1f}' stroke='#e3e8ef'/><text x='{MARGIN_L - 4}' "
                   f"y='{py(v) + 3:.1f}' text-anchor='end' fill='#5f6b7a'>{e(fmt(v))}</text>")
    labels: dict[str, float] = {}  # daily windows over months: one tick per month label
    for t in ticks:
        labels.setdefault(_time_label(t, x1 - x0), t)
    step = max(1, math.ceil(len(labels) / max(1, pw // 60)))
    last = -math.inf
    for label, t in list(labels.items())[::step]:
        if px(t) - last < 60:  # a first window a few days before a month: labels would overlap
            continue
        last = px(t)
        out.append(f"<text x='{px(t):.1f}' y='{height - 6}' text-anchor='middle' "
                   f"fill='#5f6b7a'>{e(label)}</text>")
    out.append(f"<line x1='{MARGIN_L}' x2='{width - MARGIN_R}' y1='{MARGIN_T + ph}' "
               f"y2='{MARGIN_T + ph}' stroke='#9aa7b8'/>")
    for v, label, color in hlines:
        out.append(f"<line x1='{MARGIN_L}' x2='{width - MARGIN_R}' y1='{py(v):.1f}' "
                   f"y2='{py(v):.1f}' stroke='{color}' stroke-dasharray='2 3' stroke-width='1.5'>"
                   f"<title>{e(label)}: {e(fmt(v))}</title></line>")
    for m in vlines:
        x = px(m.at)
        out.append(f"<g><title>{e(m.tip or m.label)}</title><line x1='{x:.1f}' x2='{x:.1f}' "
                   f"y1='{MARGIN_T}' y2='{MARGIN_T + ph}' stroke='{m.color}' stroke-width='1.5'/>"
                   f"<text x='{x + 3:.1f}' y='{MARGIN_T + 9}' fill='{m.color}' "
                   f"font-weight='600'>{e(m.label)}</text></g>")
    for s in series:
        out.extend(_line(s, px, py))
    out.append("</svg>")
    return "".join(out)


def _line(s: Series, px: Callable[[float], float], py: Callable[[float], float]) -> list[str]:
    out: list[str] = []
    run: list[str] = []
    dash = " stroke-dasharray='6 4'" if s.dash else ""
    for t, v in [*s.points, (0.0, None)]:  # a None point ends a run of the line
        if v is not None and math.isfinite(v):
            run.append(f"{px(t):.1f},{py(v):.1f}")
        elif run:
            out.append(f"<polyline points='{' '.join(run)}' fill='none' stroke='{s.color}' "
                       f"stroke-width='2'{dash}/>")
            run = []
    for i, (t, v) in enumerate(s.points if s.markers else []):
        if v is None or not math.isfinite(v):
            continue
        bad = i < len(s.flagged) and s.flagged[i]
        if not bad and len(s.points) > 60:
            continue  # hundreds of windows: the line says it, dots would only blot it
        tip = s.tips[i] if i < len(s.tips) else f"{s.label}: {fmt(v)}"
        fill, r, cls = (RED, 4.5, " class='flag'") if bad else (s.color, 2.5, "")
        out.append(f"<circle cx='{px(t):.1f}' cy='{py(v):.1f}' r='{r}' fill='{fill}' "
                   f"stroke='#fff' stroke-width='1'{cls}>"
                   f"<title>{html.escape(tip)}</title></circle>")
    return out


# -- the page -------------------------------------------------------------------------

PALETTE = ("#2f6fde", "#c77c02", "#16a085", "#8e44ad", "#34495e", "#b5651d")
DECISIONS = {"promoted": "#1f9d55", "kept_champion": "#5f6b7a"}
# raylake.ct.decide's decisions as a chart labels them; other decisions show as they are.
LABELS = {"kept_champion": "kept", "not_promoted": "better, not promoted"}
QUIET = ("not_triggered",)  # a scheduled run that had nothing to do: counted, not drawn
_CSS = """
.chart { background:var(--card); border:1px solid var(--line); border-radius:8px;
         padding:12px 14px; margin-bottom:12px; overflow-x:auto; }
.chart h3 { margin:0 0 4px; font-size:14px; }
.card.flagged { box-shadow: inset 4px 0 0 var(--fail); }
.card svg { display:block; margin-top:6px; }
.empty { color:var(--muted); background:var(--card); border:1px dashed #c9d2de; border-radius:8px;
         padding:14px 16px; margin:0 0 12px; }
.legend svg { vertical-align:middle; margin:0 4px 0 12px; }
.muted { background:var(--ref); }
footer { color:var(--muted); font-size:12px; padding:0 32px 24px; }
"""


def render_page(report: dict[str, Any]) -> str:
    """The monitoring report as one HTML page: header and counts, performance over time
    with CT decisions, alerts, drift per feature, null shares and volume."""
    e = html.escape
    c, axis = report["counts"], _axis(report)
    span = (f"{report['windows'][0]['start'][:10]} &rarr; {report['windows'][-1]['end'][:10]}"
            if report["windows"] else "no windows yet")
    facts = [f"versions {e(', '.join(map(str, report['versions'])) or '–')}",
             f"arms {e(', '.join(report['arms']) or '–')}",
             f"reference {e(', '.join(report['references']) or '–')}", span]
    pending = sum(n for s, n in c["alerts_by_state"].items() if s != "delivered")
    mae = report["performance"]["auc_estimate_mae"]
    kpis = [("windows", str(c["windows"])),
            ("alerts", f"{c['alerts']}" + (f" ({pending} undelivered)" if pending else "")),
            ("drifted features", f"{c['drifted_features']} of {c['features']}"),
            ("AUC estimate error", f"{mae:.3f}" if mae is not None else "–"),
            ("CT runs", f"{c['ct_runs']} ({c['promoted']} promoted)")]
    return "".join([
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Monitoring: {e(report['model'])}</title>",
        f"<style>{BASE_CSS}{_CSS}</style></head><body>",
        f"<header><h1>Monitoring: {e(report['model'])}</h1><p>{' &middot; '.join(facts)}</p>"
        "</header><main><div class='kpis'>",
        "".join(f"<div class='kpi'><span>{k}</span><b>{e(v)}</b></div>" for k, v in kpis),
        "</div>", _performance(report, axis), _alerts(report), _drift(report, axis),
        _quality(report, axis),
        f"</main><footer>raylake monitoring report &middot; {e(report['table'])} &middot; "
        f"generated {e(report['created_at'])}</footer></body></html>"])


Axis = tuple[tuple[float, float], list[float]] | None


def _axis(report: dict[str, Any]) -> Axis:
    """The shared time range (windows, CT decisions, alerts) and the window starts."""
    starts = [epoch(w["start"]) for w in report["windows"]]
    times = starts + [epoch(w["end"]) for w in report["windows"]]
    times += [epoch(d["at"]) for d in _judged(report)]
    times += [epoch(t) for ws in report["alert_windows"].values() for w in ws for t in w]
    return ((min(times), max(times)), starts) if times else None


def _when(iso: Any) -> str:
    """A date, with the time of day only when there is one."""
    text = str(iso or "")
    return text[:10] if text[11:19] in ("", "00:00:00") else text[:16].replace("T", " ")


def _empty(text: str) -> str:
    return f"<p class='empty'>{html.escape(text)}</p>"


def _mid(p: dict[str, Any]) -> float:
    return (epoch(p["start"]) + epoch(p["end"])) / 2


def _legend(items: list[tuple[str, str, bool]]) -> str:
    dashed = " stroke-dasharray='5 3'"
    keys = "".join(
        f"<svg width='22' height='8'><line x1='0' x2='22' y1='4' y2='4' stroke='{color}' "
        f"stroke-width='2'{dashed if dash else ''}/></svg>{html.escape(label)}"
        for label, color, dash in items)
    return f"<p class='legend'>{keys}</p>"


def _ct_lines(report: dict[str, Any]) -> list[VLine]:
    out = []
    for d in _judged(report):
        ch, cl = d["champion"], d["challenger"]
        tip = (f"CT {_when(d['at'])}: {d['decision']}. {d['reason']} Champion AUC "
               f"{fmt(_f(ch.get('auc')))} cost {fmt(_f(ch.get('cost')))}; challenger AUC "
               f"{fmt(_f(cl.get('auc')))} cost {fmt(_f(cl.get('cost')))}")
        out.append(VLine(epoch(d["at"]), LABELS.get(d["decision"], d["decision"]),
                         DECISIONS.get(d["decision"], "#c77c02"), tip))
    return out


def _judged(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [d for d in report["ct"] if d["decision"] not in QUIET]


def _f(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _bands(report: dict[str, Any], kind: str) -> list[tuple[float, float]]:
    return [(epoch(a), epoch(b)) for a, b in report["alert_windows"].get(kind, [])]


def _metric_chart(report: dict[str, Any], axis: Axis, metric: str, title: str) -> str:
    series, legend = [], []
    for i, (arm, ws) in enumerate(report["performance"]["series"].items()):
        for key, label, dash in ((metric, "realised", False), (f"{metric}_estimated", "estimated", True)):
            color = PALETTE[(2 * i + dash) % len(PALETTE)]  # the estimate in its own hue
            if any(w.get(key) is not None for w in ws):
                series.append(Series(
                    f"{arm} {label}", [(_mid(w), w.get(key)) for w in ws], color, dash,
                    [bool(w.get(f"{key}_flagged")) for w in ws],
                    [f"{w['start'][:10]} {arm} v{w['model_version']} {label} {metric}: "
                     f"{fmt(w.get(key))}" for w in ws]))
                legend.append((f"{arm} {label}", color, dash))
        if any(w.get(f"training_{metric}") is not None for w in ws):
            series.append(Series(f"training {metric}", [(_mid(w), w.get(f"training_{metric}"))
                                                         for w in ws], "#9aa7b8", True, markers=False))
            legend.append((f"training {'AUC' if metric == 'auc' else metric} (test split, "
                           "serving version)", "#9aa7b8", True))
    if not series or axis is None:
        return ""
    chart = line_chart(series, x_range=axis[0], ticks=axis[1], width=1180, height=250,
                       vlines=_ct_lines(report), bands=_bands(report, "auc_drop"), title=title)
    return f"<div class='chart'><h3>{html.escape(title)}</h3>{_legend(legend)}{chart}</div>"


def _performance(report: dict[str, Any], axis: Axis) -> str:
    e = html.escape
    body = (_metric_chart(report, axis, "auc", "AUC per window: realised vs estimated (CBPE)")
            + _metric_chart(report, axis, "cost", "Business cost per window"))
    if not body:
        body = _empty("No performance recorded yet: no window had outcomes or estimates.")
    judged = _judged(report)
    if judged:
        rows = "".join(
            f"<tr><td>{e(_when(d['at']))}</td><td><span class='badge "
            f"{'ok' if d['decision'] == 'promoted' else 'muted'}'>"
            f"{e(LABELS.get(d['decision'], d['decision']))}</span></td>"
            f"<td>{e(d['reason'])}</td>"
            + "".join(f"<td class='num'>{e(fmt(_f(d[side].get(k))))}</td>"
                      for side in ("champion", "challenger") for k in ("auc", "cost"))
            + f"<td>{e(d['run_id'])}</td></tr>" for d in judged)
        body += ("<h3>CT decisions</h3><table><tr><th>when</th><th>decision</th><th>why</th>"
                 "<th>champion AUC</th><th>champion cost</th><th>challenger AUC</th>"
                 f"<th>challenger cost</th><th>run</th></tr>{rows}</table>")
    quiet = len(report["ct"]) - len(judged)
    if quiet:
        body += f"<p class='legend'>{quiet} more CT run(s) had nothing to retrain on.</p>"
    elif not judged:
        body += _empty("No CT runs recorded for this model.")
    return f"<section id='performance'><h2>Performance over time</h2>{body}</section>"


def _alerts(report: dict[str, Any]) -> str:
    e = html.escape
    if not report["alerts"]:
        return "<section id='alerts'><h2>Alerts</h2>" + _empty("No alerts raised.") + "</section>"
    state = {"delivered": "ok", "pending": "warn"}
    rows = "".join(
        f"<tr><td>{e(_when(a['window_start']))}</td><td>{e(str(a['rule']))}</td>"
        f"<td>{e(str(a['kind']))}</td><td>{e(str(a['arm']))} v{e(str(a['model_version']))}</td>"
        f"<td class='num'>{e(fmt(a['value']))}</td><td class='num'>{e(fmt(a['threshold']))}</td>"
        f"<td><span class='badge {state.get(str(a['state']), 'fail')}' "
        f"title='{e(str(a['last_error'] or ''))}'>{e(str(a['state']))}</span>"
        f"</td><td>{e(str(a['message'] or ''))}</td></tr>" for a in report["alerts"])
    return ("<section id='alerts'><h2>Alerts</h2><table><tr><th>window</th><th>rule</th>"
            "<th>kind</th><th>arm</th><th>value</th><th>threshold</th><th>state</th>"
            f"<th>message</th></tr>{rows}</table></section>")


def _small(name: str, sub: str, flagged: bool, chart: str) -> str:
    return (f"<div class='card{' flagged' if flagged else ''}'><h3>{html.escape(name)}</h3>"
            f"<div class='kind'>{html.escape(sub)}</div>{chart}</div>")


def _drift(report: dict[str, Any], axis: Axis) -> str:
    if not report["features"] or axis is None:
        return "<section id='drift'><h2>Drift per feature</h2>" + _empty(
            "No drift checks recorded yet.") + "</section>"
    cards = []
    for f in report["features"]:
        thr, pv = f["threshold"], f["pvalue"]
        # p-values span hundreds of decades: draw -log10 p, capped, so the threshold shows.
        cap = max(-math.log10(max(thr or 1e-3, 1e-300)) * 3, 10.0)

        def y(v: float | None, pv: bool = pv, cap: float = cap) -> float | None:
            return None if v is None else (min(-math.log10(max(v, 1e-300)), cap) if pv else v)

        series = [Series(arm, [(_mid(p), y(p["value"])) for p in ps], PALETTE[i % len(PALETTE)],
                         flagged=[p["flagged"] for p in ps],
                         tips=[f"{p['start'][:10]} {arm} v{p['model_version']}: {f['metric']} "
                               f"{fmt(p['value'])}{' FLAGGED' if p['flagged'] else ''}" for p in ps])
                  for i, (arm, ps) in enumerate(f["series"].items())]
        hl = [(y(thr) or 0.0, "threshold", RED)] if thr is not None else []
        chart = line_chart(series, x_range=axis[0], ticks=axis[1], width=330, height=130,
                           hlines=hl, bands=_bands(report, "drift_share"),
                           y_range=(0.0, cap) if pv else None)
        n = sum(len(ps) for ps in f["series"].values())
        what = f"−log10 p (capped at {cap:g})" if pv else f["metric"]
        sub = (f"{what} · threshold {fmt(thr)} · "
               f"flagged {len(f['flagged_windows'])} of {n} windows")
        cards.append(_small(f["name"], sub, bool(f["flagged_windows"]), chart))
    return ("<section id='drift'><h2>Drift per feature</h2><p class='legend'>Most drifted "
            "first; red dots: flagged windows; dashed red line: threshold; shaded: a drift "
            f"alert's window.</p><div class='grid'>{''.join(cards)}</div></section>")


def _quality(report: dict[str, Any], axis: Axis) -> str:
    e = html.escape
    parts = ["<section id='quality'><h2>Data quality and volume</h2>"]
    if axis is None:
        return "".join(parts) + _empty("No windows recorded yet.") + "</section>"
    vol = report["volume"]
    if vol:
        series = [Series(arm, [(_mid(p), p["value"]) for p in ps], PALETTE[i % len(PALETTE)],
                         flagged=[p["flagged"] for p in ps])
                  for i, (arm, ps) in enumerate(vol.items())]
        parts.append("<div class='chart'><h3>Rows per window</h3>" + line_chart(
            series, x_range=axis[0], ticks=axis[1], width=1180, height=160,
            bands=_bands(report, "volume_drop")) + "</div>")
    cards = []
    for f in report["null_share"]:
        series = [Series(arm, [(_mid(p), p["value"]) for p in ps], PALETTE[i % len(PALETTE)],
                         flagged=[p["flagged"] for p in ps])
                  for i, (arm, ps) in enumerate(f["series"].items())]
        cards.append(_small(f["name"], f"null share · max {fmt(f['max'])}",
                            bool(f["flagged_windows"]), line_chart(
                                series, x_range=axis[0], ticks=axis[1], width=330, height=110,
                                bands=_bands(report, "null_share_jump"), y_range=(0.0, 1.0))))
    parts.append("<h3>Null share</h3>" + (f"<div class='grid'>{''.join(cards)}</div>" if cards
                 else _empty("No feature had nulls in any window.")))
    if report["quality"]:
        rows = "".join(f"<tr><td>{e(q['name'])}</td><td>{e(q['check'])}</td>"
                       f"<td class='num'>{e(fmt(q['max']))}</td><td>"
                       f"{e(', '.join(w[:10] for w in q['flagged_windows']))}</td></tr>"
                       for q in report["quality"])
        parts.append("<h3>Flagged data-quality checks</h3><table><tr><th>feature</th>"
                     f"<th>check</th><th>worst value</th><th>windows</th></tr>{rows}</table>")
    return "".join(parts) + "</section>"
