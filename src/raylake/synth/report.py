"""The evaluation report of synthetic rows: JSON, and one self-contained HTML page.

``report(real, synthetic, target=..., holdout=...)`` gathers, JSON-safe (a NaN is null):

- ``quality``: the SDMetrics quality score with its column shapes and column pair trends,
  per column and per pair (``raylake.synth.metrics``);
- ``distributions``: per column, real and synthetic shares on shared bins (numbers and
  times: 20 equal bins over the real 1st..99th percentile, the rows outside it counted in
  the end bins; categories: the 12 most frequent real ones and "(other)"), and the null shares;
- ``trends``: the pair trends as two matrices, real and synthetic (Pearson's r for two
  numbers, Cramér's V for any other pair), and the per-pair similarity score;
- ``utility`` (with ``target`` and ``holdout``): train on synthetic, test on real
  (``raylake.synth.utility.tstr``, tested on the holdout);
- ``privacy`` (with ``holdout``): DCR, exact copies, membership inference
  (``raylake.synth.privacy``).

``render_html`` turns it into a page with inline CSS and SVG only (no script, no fetch):
score cards, each column's real and synthetic distribution side by side, the two heat maps,
the utility and the privacy figures. ``write_report`` writes ``report.json`` and
``report.html`` to a folder.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from raylake.synth.metrics import CATEGORICAL, DATETIME, as_float, infer_sdtypes, quality
from raylake.synth.privacy import privacy
from raylake.synth.utility import Label, tstr

BINS = 20
TOP = 12


def report(real: pd.DataFrame, synthetic: pd.DataFrame, *, target: str | None = None,
           holdout: pd.DataFrame | None = None, label: Label | None = None,
           label_text: str | None = None, drop: Iterable[str] = (),
           discrete: Iterable[str] | None = None, name: str = "synthetic data",
           warnings: Sequence[str] = (), sample: int = 2000, num_boost_round: int = 100,
           seed: int = 0,
           extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report of ``synthetic`` against the ``real`` rows it was trained on (see the
    module docstring); ``extra`` (model, epochs, fit seconds, ...) is stored as given."""
    discrete = list(discrete or ())
    sdtypes = infer_sdtypes(real, discrete=discrete)
    q = quality(real, synthetic, sdtypes=sdtypes)
    out: dict[str, Any] = {
        "name": name,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "rows": {"real": len(real), "synthetic": len(synthetic),
                 "holdout": None if holdout is None else len(holdout)},
        "sdtypes": sdtypes,
        "quality": q,
        "distributions": [_distribution(real[c], synthetic[c], t) for c, t in sdtypes.items()],
        "trends": _trends(q, list(sdtypes)),
        "utility": None,
        "privacy": None,
        "warnings": list(warnings),
        "extra": extra or {},
    }
    if holdout is not None:
        out["privacy"] = privacy(real, synthetic, holdout, discrete=discrete, sample=sample,
                                 seed=seed)
        if target is not None:
            out["utility"] = tstr(real, synthetic, holdout, target=target, label=label,
                                  drop=drop, discrete=discrete, seed=seed,
                                  num_boost_round=num_boost_round)
            out["utility"]["label"] = label_text or target
    elif target is not None:
        out["warnings"].append(f"utility not measured: target {target!r} needs real holdout "
                               "rows to test on (pass holdout=)")
    return json_safe(out)


def json_safe(value: Any) -> Any:
    """Nested dicts/lists with numpy scalars made Python and NaN/inf made None."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _distribution(real: pd.Series, syn: pd.Series, sdtype: str) -> dict[str, Any]:
    base = {"column": real.name, "sdtype": sdtype,
            "null_real": float(real.isna().mean()) if len(real) else 0.0,
            "null_synthetic": float(syn.isna().mean()) if len(syn) else 0.0}
    if sdtype == CATEGORICAL:
        r = real.dropna().astype(str).value_counts(normalize=True)
        s = syn.dropna().astype(str).value_counts(normalize=True)
        top = list(r.index[:TOP])
        labels = top + (["(other)"] if len(r) > TOP or not set(s.index) <= set(top) else [])

        def shares(v: pd.Series) -> list[float]:
            kept = [float(v.get(k, 0.0)) for k in top]
            return kept + ([max(0.0, 1.0 - sum(kept))] if len(labels) > len(top) else [])

        return {**base, "kind": "bars", "labels": labels, "real": shares(r),
                "synthetic": shares(s)}
    x, y = as_float(real), as_float(syn)
    x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    # The real 1st..99th percentile: a long tail does not squash the bulk into one bin;
    # the rows beyond count in the end bins.
    lo, hi = (float(np.quantile(x, 0.01)), float(np.quantile(x, 0.99))) if len(x) else (0, 1)
    hi = hi if hi > lo else lo + 1.0
    edges = np.linspace(lo, hi, BINS + 1)

    def hist(v: np.ndarray) -> list[float]:
        counts = np.histogram(np.clip(v, lo, hi), edges)[0]
        return (counts / max(len(v), 1)).tolist()

    ticks = [_fmt_value(lo, sdtype), _fmt_value((lo + hi) / 2, sdtype), _fmt_value(hi, sdtype)]
    return {**base, "kind": "histogram", "edges": edges.tolist(), "ticks": ticks,
            "real": hist(x), "synthetic": hist(y)}


def _fmt_value(v: float, sdtype: str) -> str:
    if sdtype == DATETIME:
        return str(pd.Timestamp(int(v)).date())
    return f"{v:,.0f}" if abs(v) >= 10_000 else f"{v:.4g}"


def _trends(q: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    n = len(columns)
    pos = {c: i for i, c in enumerate(columns)}
    real = np.eye(n)
    syn = np.eye(n)
    score = np.ones((n, n))
    metric = [["" for _ in columns] for _ in columns]
    for p in q["pairs"]:
        i, j = pos[p["column_1"]], pos[p["column_2"]]
        for m, key in ((real, "real"), (syn, "synthetic"), (score, "score")):
            m[i, j] = m[j, i] = np.nan if p[key] is None else p[key]
        metric[i][j] = metric[j][i] = p["metric"]
    return {"columns": columns, "real": real, "synthetic": syn, "score": score,
            "metric": metric}


def write_report(rep: dict[str, Any], folder: str | Path) -> tuple[Path, Path]:
    """``report.json`` and ``report.html`` in ``folder`` (created)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    js, page = folder / "report.json", folder / "report.html"
    js.write_text(json.dumps(rep, indent=1, allow_nan=False))
    page.write_text(render_html(rep))
    return js, page


# ---- the page -------------------------------------------------------------------------

_REAL, _SYN = "#8d99ae", "#2f6fde"
_CSS = """
:root { --bg:#f6f7f9; --card:#fff; --ink:#1d2330; --muted:#687385; --line:#e3e7ee;
        --ok:#1f9d55; --warn:#d97706; --fail:#dc2626; }
* { box-sizing:border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;
       background:var(--bg); color:var(--ink); }
header { background:#1d2330; color:#fff; padding:22px 32px; }
header h1 { margin:0; font-size:22px; font-weight:600; }
header p { margin:4px 0 0; color:#b8c0cc; }
main { padding:20px 32px 40px; max-width:1400px; }
section { margin-top:28px; }
h2 { font-size:17px; margin:0 0 4px; }
.note { color:var(--muted); margin:0 0 12px; max-width:900px; }
.kpis { display:flex; gap:12px; flex-wrap:wrap; }
.kpi { background:var(--card); border:1px solid var(--line); border-radius:10px;
       padding:12px 16px; min-width:150px; }
.kpi span { display:block; color:var(--muted); font-size:12px; text-transform:uppercase;
            letter-spacing:.04em; }
.kpi b { font-size:24px; font-weight:650; }
.kpi small { display:block; color:var(--muted); }
.kpi.main b { font-size:34px; }
.grid { display:grid; grid-template-columns:repeat(auto-fill,minmax(330px,1fr)); gap:12px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:10px;
        padding:12px 14px; }
.card h3 { margin:0; font-size:14px; display:flex; justify-content:space-between; gap:8px; }
.card .meta { color:var(--muted); font-size:12px; margin:2px 0 6px; }
.badge { display:inline-block; border-radius:999px; padding:1px 8px; font-size:12px;
         color:#fff; font-weight:600; }
.good { background:var(--ok); } .fair { background:var(--warn); } .poor { background:var(--fail); }
.legend { font-size:12px; color:var(--muted); margin:4px 0 10px; }
.sw { display:inline-block; width:10px; height:10px; border-radius:2px; margin:0 4px 0 12px;
      vertical-align:-1px; }
.maps { display:flex; gap:24px; flex-wrap:wrap; align-items:flex-start; }
.maps figure { margin:0; background:var(--card); border:1px solid var(--line);
               border-radius:10px; padding:12px; }
figcaption { font-weight:600; margin-bottom:6px; }
table { border-collapse:collapse; background:var(--card); border:1px solid var(--line); }
th, td { padding:6px 12px; border-bottom:1px solid var(--line); text-align:left; }
td.num { text-align:right; font-variant-numeric:tabular-nums; }
.warnings { background:#fff7e6; border:1px solid #f3d19c; border-radius:10px;
            padding:10px 14px; }
svg text { font-family:inherit; }
"""


def _grade(score: float | None) -> str:
    if score is None:
        return "fair"
    return "good" if score >= 0.85 else "fair" if score >= 0.7 else "poor"


def _num(v: Any, fmt: str = ".3f") -> str:
    return "&ndash;" if v is None else format(v, fmt)


def render_html(rep: dict[str, Any]) -> str:
    """The report as one self-contained HTML page (inline CSS and SVG, no scripts)."""
    e = html.escape
    q = rep["quality"]
    util, priv = rep.get("utility"), rep.get("privacy")
    kpis = [("quality score", _num(q["score"]), "mean of the two below", "main", "score"),
            ("column shapes", _num(q["column_shapes"]), "KS / TV complement", "", "shapes"),
            ("column pair trends", _num(q["column_pair_trends"]),
             "correlation / contingency similarity", "", "trends")]
    if util:
        kpis.append(("TSTR AUC ratio", _num(util["ratio"]),
                     f"{_num(util['auc_synthetic'])} synthetic vs {_num(util['auc_real'])} real",
                     "", "tstr"))
    if priv:
        kpis.append(("membership AUC", _num(priv["membership_auc"]), "0.5 = nothing leaks",
                     "", "mia"))
        kpis.append(("exact copies", _num(priv["exact_copy_share"], ".2%"),
                     f"holdout by chance: {_num(priv['holdout_exact_copy_share'], '.2%')}",
                     "", "copies"))
    rows = rep["rows"]
    sub = (f"{rows['real']:,} real rows &middot; {rows['synthetic']:,} synthetic rows"
           + (f" &middot; {rows['holdout']:,} holdout rows" if rows.get("holdout") else "")
           + f" &middot; {e(rep['created_at'])}")
    extra = rep.get("extra") or {}
    if extra:
        sub += " &middot; " + ", ".join(f"{e(str(k))} {e(str(v))}" for k, v in extra.items())
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>Synthetic data report: {e(rep['name'])}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<header><h1>{e(rep['name'])}</h1><p>raylake synthetic data report &middot; {sub}</p>"
        "</header><main>",
        "<div class='kpis'>" + "".join(
            f"<div class='kpi {cls}' id='kpi-{key}'><span>{e(k)}</span><b>{v}</b>"
            f"<small>{e(note)}</small></div>" for k, v, note, cls, key in kpis) + "</div>",
    ]
    if rep.get("warnings"):
        parts.append("<section id='warnings' class='warnings'><b>Warnings</b><ul>"
                     + "".join(f"<li>{e(w)}</li>" for w in rep["warnings"]) + "</ul></section>")
    scores = {c["column"]: c for c in q["columns"]}
    parts.append(
        "<section id='columns'><h2>Column shapes</h2><p class='note'>Each column's "
        "distribution, real beside synthetic on the same bins. The score is SDMetrics' "
        "KSComplement (numbers, times) or TVComplement (categories): 1 is identical.</p>"
        f"<div class='legend'><span class='sw' style='background:{_REAL}'></span>real"
        f"<span class='sw' style='background:{_SYN}'></span>synthetic</div><div class='grid'>")
    for d in rep["distributions"]:
        parts.append(_column_card(d, scores.get(d["column"], {})))
    parts.append("</div></section>")
    t = rep["trends"]
    parts.append(
        "<section id='trends'><h2>Column pair trends</h2><p class='note'>How each pair of "
        "columns moves together, in the real rows and in the synthetic ones: Pearson's r for "
        "two numbers (blue positive, orange negative), Cramér's V for any other pair. Matching "
        "maps mean the trends were learnt; hover a cell for the pair's similarity score.</p>"
        "<div class='maps'>"
        f"<figure id='heatmap-real'><figcaption>Real</figcaption>"
        f"{_heatmap(t, 'real')}</figure>"
        f"<figure id='heatmap-synthetic'><figcaption>Synthetic</figcaption>"
        f"{_heatmap(t, 'synthetic')}</figure></div>")
    worst = sorted((p for p in q["pairs"] if p["score"] is not None),
                   key=lambda p: p["score"])[:8]
    if worst:
        parts.append("<p class='note' style='margin-top:12px'>Least similar pairs:</p><table>"
                     "<tr><th>pair</th><th>metric</th><th>real</th><th>synthetic</th>"
                     "<th>score</th></tr>" + "".join(
                         f"<tr><td>{e(p['column_1'])} &times; {e(p['column_2'])}</td>"
                         f"<td>{e(p['metric'])}</td><td class='num'>{_num(p['real'])}</td>"
                         f"<td class='num'>{_num(p['synthetic'])}</td>"
                         f"<td class='num'>{_num(p['score'])}</td></tr>" for p in worst)
                     + "</table>")
    parts.append("</section>")
    if util:
        parts.append(_utility(util))
    if priv:
        parts.append(_privacy(priv))
    parts.append("</main></body></html>")
    return "".join(parts)


def _column_card(d: dict[str, Any], score: dict[str, Any]) -> str:
    e = html.escape
    s = score.get("score")
    badge = f"<span class='badge {_grade(s)}'>{_num(s)}</span>"
    nulls = ""
    if d["null_real"] or d["null_synthetic"]:
        nulls = f" &middot; nulls {d['null_real']:.1%} real, {d['null_synthetic']:.1%} synthetic"
    chart = _hist_svg(d) if d["kind"] == "histogram" else _bars_svg(d)
    return (f"<div class='card column' data-column='{e(str(d['column']))}'>"
            f"<h3><span>{e(str(d['column']))}</span>{badge}</h3>"
            f"<div class='meta'>{e(d['sdtype'])} &middot; {e(score.get('metric', ''))}{nulls}"
            f"</div>{chart}</div>")


def _hist_svg(d: dict[str, Any]) -> str:
    w, h, pad = 300, 110, 16
    real, syn = d["real"], d["synthetic"]
    top = max([*real, *syn, 1e-12])
    bw = w / len(real)
    bars = []
    for i, (a, b) in enumerate(zip(real, syn)):
        for k, (v, color) in enumerate(((a, _REAL), (b, _SYN))):
            bh = v / top * (h - pad - 4)
            bars.append(f"<rect x='{i * bw + 1 + k * (bw - 2) / 2:.1f}' y='{h - pad - bh:.1f}' "
                        f"width='{(bw - 2) / 2:.1f}' height='{bh:.1f}' fill='{color}'>"
                        f"<title>{'real' if k == 0 else 'synthetic'} {v:.1%}</title></rect>")
    ticks = d["ticks"]
    labels = (f"<text x='0' y='{h - 3}' font-size='10' fill='#687385'>"
              f"{html.escape(ticks[0])}</text>"
              f"<text x='{w / 2}' y='{h - 3}' font-size='10' fill='#687385' "
              f"text-anchor='middle'>{html.escape(ticks[1])}</text>"
              f"<text x='{w}' y='{h - 3}' font-size='10' fill='#687385' "
              f"text-anchor='end'>{html.escape(ticks[2])}</text>")
    return (f"<svg class='dist' role='img' aria-label='{html.escape(str(d['column']))}' "
            f"width='{w}' height='{h}' viewBox='0 0 {w} {h}' xmlns='http://www.w3.org/2000/svg'>"
            f"<line x1='0' x2='{w}' y1='{h - pad}' y2='{h - pad}' stroke='#e3e7ee'/>"
            f"{''.join(bars)}{labels}</svg>")


def _bars_svg(d: dict[str, Any]) -> str:
    w, row, lw = 300, 18, 96
    labels, real, syn = d["labels"], d["real"], d["synthetic"]
    top = max([*real, *syn, 1e-12])
    h = row * len(labels) + 2
    parts = []
    for i, (name, a, b) in enumerate(zip(labels, real, syn)):
        y = i * row
        text = html.escape(str(name) if len(str(name)) <= 14 else str(name)[:13] + "…")
        parts.append(f"<text x='0' y='{y + 12}' font-size='11' fill='#687385'>{text}</text>")
        for k, (v, color) in enumerate(((a, _REAL), (b, _SYN))):
            width = v / top * (w - lw - 40)
            parts.append(f"<rect x='{lw}' y='{y + 2 + k * 7}' width='{width:.1f}' "
                         f"height='6' fill='{color}'><title>{html.escape(str(name))}: "
                         f"{'real' if k == 0 else 'synthetic'} {v:.1%}</title></rect>")
        parts.append(f"<text x='{w}' y='{y + 12}' font-size='10' fill='#687385' "
                     f"text-anchor='end'>{b - a:+.1%}</text>")
    return (f"<svg class='dist' role='img' aria-label='{html.escape(str(d['column']))}' "
            f"width='{w}' height='{h}' viewBox='0 0 {w} {h}' xmlns='http://www.w3.org/2000/svg'>"
            f"{''.join(parts)}</svg>")


def _color(v: float | None, metric: str) -> str:
    if v is None:
        return "#eef0f3"
    t = min(1.0, abs(v))
    hue = 215 if v >= 0 or metric != "CorrelationSimilarity" else 25
    return f"hsl({hue},70%,{97 - 52 * t:.0f}%)"


def _heatmap(t: dict[str, Any], side: str) -> str:
    cols = t["columns"]
    n = len(cols)
    cell = max(14, min(30, 520 // max(n, 1)))
    lab = 8 + 6 * min(16, max((len(str(c)) for c in cols), default=4))
    w = h = lab + cell * n
    parts = []
    for i, c in enumerate(cols):
        name = html.escape(str(c)[:16])
        parts.append(f"<text x='{lab - 4}' y='{lab + i * cell + cell * 0.65:.1f}' "
                     f"font-size='10' text-anchor='end' fill='#1d2330'>{name}</text>")
        x = lab + i * cell + cell * 0.65
        parts.append(f"<text x='{x:.1f}' y='{lab - 4}' font-size='10' fill='#1d2330' "
                     f"transform='rotate(-90 {x:.1f} {lab - 4})'>{name}</text>")
    for i in range(n):
        for j in range(n):
            v = t[side][i][j]
            metric = t["metric"][i][j]
            score = t["score"][i][j]
            tip = (f"{cols[i]} × {cols[j]}: {side} "
                   f"{'r' if metric == 'CorrelationSimilarity' else 'V'} {_num(v)}"
                   + (f", similarity {_num(score)}" if i != j else ""))
            parts.append(f"<rect class='cell' x='{lab + j * cell}' y='{lab + i * cell}' "
                         f"width='{cell - 1}' height='{cell - 1}' fill='{_color(v, metric)}'>"
                         f"<title>{html.escape(tip)}</title></rect>")
    return (f"<svg class='heatmap' data-side='{side}' role='img' width='{w}' height='{h}' "
            f"viewBox='0 0 {w} {h}' xmlns='http://www.w3.org/2000/svg'>{''.join(parts)}</svg>")


def _utility(u: dict[str, Any]) -> str:
    e = html.escape
    w, row = 360, 26
    bars = []
    for i, (name, v, color) in enumerate((("train on real", u["auc_real"], _REAL),
                                          ("train on synthetic", u["auc_synthetic"], _SYN))):
        width = (v or 0) * (w - 175)
        bars.append(f"<text x='0' y='{i * row + 16}' font-size='12'>{name}</text>"
                    f"<rect x='130' y='{i * row + 4}' width='{width:.1f}' height='16' "
                    f"fill='{color}'/><text x='{134 + width:.1f}' y='{i * row + 16}' "
                    f"font-size='12'>{_num(v)}</text>")
    chart = (f"<svg id='utility-chart' role='img' width='{w}' height='{2 * row + 4}' "
             f"viewBox='0 0 {w} {2 * row + 4}' xmlns='http://www.w3.org/2000/svg'>"
             f"{''.join(bars)}</svg>")
    return (
        "<section id='utility'><h2>Utility: train on synthetic, test on real</h2>"
        f"<p class='note'>An XGBoost classifier of <b>{e(str(u.get('label', u['target'])))}</b>"
        f" ({e(u['model'])}) trained on the real training rows and, separately, on the "
        "synthetic rows; both tested on the same real holdout rows.</p>"
        f"{chart}<table><tr><th></th><th>AUC</th><th>accuracy</th></tr>"
        f"<tr><td>real</td><td class='num'>{_num(u['auc_real'])}</td>"
        f"<td class='num'>{_num(u['accuracy_real'])}</td></tr>"
        f"<tr><td>synthetic</td><td class='num'>{_num(u['auc_synthetic'])}</td>"
        f"<td class='num'>{_num(u['accuracy_synthetic'])}</td></tr>"
        f"<tr><td>ratio</td><td class='num'>{_num(u['ratio'])}</td><td></td></tr></table>"
        "</section>")


def _privacy(p: dict[str, Any]) -> str:
    hist = p["dcr_synthetic_hist"]
    w, h = 360, 120
    n = len(hist["synthetic"])
    top = max([*hist["synthetic"], *hist["holdout"], 1e-12])
    bw = w / n
    bars = []
    for i in range(n):
        for k, (key, color) in enumerate((("holdout", _REAL), ("synthetic", _SYN))):
            v = hist[key][i]
            bh = v / top * (h - 20)
            bars.append(f"<rect x='{i * bw + 1 + k * (bw - 2) / 2:.1f}' y='{h - 16 - bh:.1f}' "
                        f"width='{(bw - 2) / 2:.1f}' height='{bh:.1f}' fill='{color}'/>")
    edges = hist["edges"]
    bars.append(f"<text x='0' y='{h - 3}' font-size='10' fill='#687385'>0</text>"
                f"<text x='{w}' y='{h - 3}' font-size='10' fill='#687385' text-anchor='end'>"
                f"{edges[-1]:.3g}</text>")
    chart = (f"<svg id='dcr-chart' role='img' width='{w}' height='{h}' viewBox='0 0 {w} {h}' "
             f"xmlns='http://www.w3.org/2000/svg'>{''.join(bars)}</svg>")
    rows = [("median DCR, synthetic to training", _num(p["dcr_synthetic_median"], ".4f")),
            ("median DCR, holdout to training", _num(p["dcr_holdout_median"], ".4f")),
            ("5th percentile DCR, synthetic / holdout",
             f"{_num(p['dcr_synthetic_p05'], '.4f')} / {_num(p['dcr_holdout_p05'], '.4f')}"),
            ("synthetic rows closer to training than to holdout",
             _num(p["closer_to_training_share"], ".1%") + " (50% expected)"),
            ("exact copies of training rows", _num(p["exact_copy_share"], ".3%")),
            ("holdout rows equal to a training row (chance)",
             _num(p["holdout_exact_copy_share"], ".3%")),
            ("membership-inference AUC", _num(p["membership_auc"]) + " (0.5 = no leak)")]
    table = "<table>" + "".join(f"<tr><td>{k}</td><td class='num'>{v}</td></tr>"
                                for k, v in rows) + "</table>"
    return ("<section id='privacy'><h2>Privacy</h2><p class='note'>Distance to the closest "
            "record (DCR): each synthetic row's distance to the nearest training row, against "
            "a real holdout row's (numbers scaled to [0, 1], categories one-hot). Synthetic "
            "rows much nearer than holdout rows are near-copies.</p>"
            f"<div class='legend'><span class='sw' style='background:{_REAL}'></span>holdout"
            f"<span class='sw' style='background:{_SYN}'></span>synthetic</div>"
            f"<div class='maps'><div>{chart}</div>{table}</div></section>")
