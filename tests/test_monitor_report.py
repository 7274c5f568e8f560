"""The monitoring report: a monitoring table, alerts and CT runs of half a year of monthly
windows become one JSON document and one self-contained page, drawn by headless chromium."""

from __future__ import annotations

import datetime as dt
import json
import re
import struct
import subprocess
import zlib
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest
from test_quality import CHROMIUM_FLAGS, chromium

from raylake.lake.commit import write_table
from raylake.lake.runs import RunRecorder
from raylake.monitor.report import build, render_html, write_report

UTC = dt.timezone.utc
EVIL = "<script>alert('x')</script>"
MONTHS = [dt.datetime(2013, m, 1, tzinfo=UTC) for m in range(4, 11)]  # Apr..Oct: 6 windows
MON_SCHEMA = pa.schema([
    ("model", pa.string()), ("model_version", pa.int32()), ("arm", pa.string()),
    ("window_start", pa.timestamp("us", tz="UTC")), ("window_end", pa.timestamp("us", tz="UTC")),
    ("feature", pa.string()), ("check", pa.string()), ("segment", pa.string()),
    ("value", pa.float64()), ("threshold", pa.float64()), ("flagged", pa.bool_()),
    ("estimated", pa.bool_()), ("rows", pa.int64()), ("detail", pa.string()),
    ("reference", pa.string()), ("run_id", pa.string()),
    ("created_at", pa.timestamp("us", tz="UTC"))])
ALERT_SCHEMA = pa.schema([
    ("alert_id", pa.string()), ("model", pa.string()), ("model_version", pa.int32()),
    ("arm", pa.string()), ("rule", pa.string()), ("kind", pa.string()),
    ("window_start", pa.timestamp("us", tz="UTC")), ("window_end", pa.timestamp("us", tz="UTC")),
    ("value", pa.float64()), ("threshold", pa.float64()), ("message", pa.string()),
    ("state", pa.string()), ("attempts", pa.int32()), ("last_error", pa.string()),
    ("run_id", pa.string()), ("created_at", pa.timestamp("us", tz="UTC"))])

# Temperature drifts in summer (p-values far below 0.001 in June-August), wind does not.
TEMP_P = [0.3, 0.02, 1e-9, 1e-60, 1e-35, 0.004]
WIND_P = [0.6, 0.4, 0.7, 0.2, 0.5, 0.35]
PRED_P = [0.5, 0.1, 0.01, 2e-5, 0.003, 0.2]
AUC = [0.742, 0.731, 0.702, 0.655, 0.701, 0.728]
AUC_EST = [0.748, 0.735, 0.716, 0.688, 0.709, 0.722]
COST = [61.0, 64.5, 72.0, 84.5, 70.2, 63.1]
ROWS = [9_800, 10_150, 10_020, 10_400, 10_380, 4_100]  # traffic fell in September


def _row(i: int, feature: str, check: str, value: float, threshold: float | None, flagged: bool,
         *, metric: str = "", created: dt.datetime | None = None, estimated: bool = False,
         segment: str = "") -> dict:
    return {"model": "delay", "model_version": 1 if i < 4 else 2, "arm": "champion",
            "window_start": MONTHS[i], "window_end": MONTHS[i + 1], "feature": feature,
            "check": check, "segment": segment, "value": value, "threshold": threshold,
            "flagged": flagged, "estimated": estimated, "rows": ROWS[i],
            "detail": json.dumps({"metric": metric} if metric else {}),
            "reference": "training/flights_delay@3", "run_id": f"monitor-{i}",
            "created_at": created or MONTHS[i + 1] + dt.timedelta(days=1)}


def monitoring_rows() -> list[dict]:
    rows = []
    for i in range(6):
        for name, ps in (("temp", TEMP_P), ("wind_speed", WIND_P), ("_prediction", PRED_P),
                         (EVIL, WIND_P)):
            rows.append(_row(i, name, "drift", ps[i], 0.001, ps[i] < 0.001, metric="pvalue"))
        # Lookups served null weather in July: a training/serving skew.
        rows.append(_row(i, "temp", "null_share", 0.45 if i == 3 else 0.0, 0.1, i == 3))
        rows.append(_row(i, "wind_speed", "null_share", 0.0, 0.1, False))
        rows.append(_row(i, "dest", "unseen_categories", 0.03 if i == 4 else 0.0, 0.01, i == 4))
        rows.append(_row(i, "_model", "volume", float(ROWS[i]), None, i == 5))
        rows.append(_row(i, "_model", "auc", AUC[i], 0.69, AUC[i] < 0.69))
        rows.append(_row(i, "_model", "auc_estimated", AUC_EST[i], 0.69, AUC_EST[i] < 0.69,
                         estimated=True))
        rows.append(_row(i, "_model", "cost", COST[i], None, False))
        rows.append(_row(i, "_model", "auc", AUC[i] - 0.03, None, False, segment="origin=JFK"))
    # An older run saw July's temperature as fine; the newer row (above) wins.
    rows.append(_row(3, "temp", "drift", 0.5, 0.001, False, metric="pvalue",
                     created=MONTHS[4]))
    return rows


def alert_rows() -> list[dict]:
    def alert(aid, rule, kind, i, value, thr, state, created, error=None):
        return {"alert_id": aid, "model": "delay", "model_version": 1, "arm": "champion",
                "rule": rule, "kind": kind, "window_start": MONTHS[i], "window_end": MONTHS[i + 1],
                "value": value, "threshold": thr, "message": f"{rule}: {value} > {thr}",
                "state": state, "attempts": 1 if state == "pending" else 2, "last_error": error,
                "run_id": f"monitor-{i}", "created_at": created}

    t = MONTHS[5]
    return [
        alert("a" * 16, "drift", "drift_share", 3, 0.5, 0.3, "pending", t, "connection refused"),
        alert("a" * 16, "drift", "drift_share", 3, 0.5, 0.3, "delivered", t + dt.timedelta(hours=1)),
        alert("b" * 16, "auc", "auc_drop", 3, 0.087, 0.05, "pending", t, "HTTP 503"),
        alert("c" * 16, "drift", "drift_share", 4, 0.25, 0.2, "no_sink", t),
        alert("d" * 16, "drift", "drift_share", 4, 0.9, 0.2, "delivered", t) | {"model": "other"},
    ]


def ct_run(lake, model: str, now: str, decision: str, reason: str, champion: dict,
           challenger: dict) -> None:
    with RunRecorder(lake, "ct", {"model": f"{model}:champion", "ct": {"now": now}}) as rec:
        rec.metrics.update(model=model, decision=decision, reason=reason, champion=champion,
                           challenger=challenger)


@pytest.fixture
def monitored(lake):
    write_table(lake, "monitoring/delay", pa.Table.from_pylist(monitoring_rows(), MON_SCHEMA))
    write_table(lake, "_alerts", pa.Table.from_pylist(alert_rows(), ALERT_SCHEMA), system=True)
    ct_run(lake, "delay", "2013-06-01", "not_triggered", "no alert since the last run", {}, {})
    ct_run(lake, "delay", "2013-07-01", "kept_champion", "kept the champion: cost 66.0 >= 64.5",
           {"version": 1, "auc": 0.731, "cost": 64.5}, {"auc": 0.712, "cost": 66.0})
    ct_run(lake, "delay", "2013-08-01T00:00:00", "promoted", "challenger cost 70.1 < 84.5",
           {"version": 1, "auc": 0.655, "cost": 84.5}, {"version": 2, "auc": 0.70, "cost": 70.1})
    ct_run(lake, "other", "2013-08-01", "promoted", "another model", {}, {})
    _register(lake, "delay", 0.751, 60.2)
    _register(lake, "delay", 0.744, 62.0)
    return lake


def _register(lake, name: str, auc: float, cost: float) -> None:
    import xgboost

    from raylake.models.registry import ModelRegistry

    x = np.random.default_rng(0).normal(size=(40, 2))
    booster = xgboost.train({"objective": "binary:logistic"},
                            xgboost.DMatrix(x, label=(x[:, 0] > 0).astype(float)), 2)
    ModelRegistry(lake).register(
        name, booster, flavor="xgboost", features=[{"name": "temp", "type": "double"},
                                                   {"name": "wind_speed", "type": "double"}],
        training={"table": "training/flights_delay", "version": 3}, config={},
        metrics={"test": {"auc": auc, "cost_per_1000": cost, "cost_per_1000_do_nothing": 99.0}},
        run_id=None)


def test_build_gathers_drift_performance_alerts_and_ct_on_one_axis(monitored):
    report = build(monitored, "delay:champion")
    json.dumps(report, allow_nan=False)  # a plain JSON document
    assert report["model"] == "delay" and report["table"] == "monitoring/delay"
    assert report["versions"] == [1, 2] and report["arms"] == ["champion"]
    assert report["references"] == ["training/flights_delay@3"]
    assert [w["start"][:10] for w in report["windows"]] == [m.date().isoformat() for m in MONTHS[:6]]
    names = [f["name"] for f in report["features"]]
    assert names[0] == "temp" and set(names) == {"temp", "wind_speed", "_prediction", EVIL}
    temp = report["features"][0]
    assert temp["pvalue"] and temp["threshold"] == 0.001
    # The newer July row (1e-60, flagged) beat the older re-run's 0.5.
    assert [p["value"] for p in temp["series"]["champion"]] == TEMP_P
    assert [w[:7] for w in temp["flagged_windows"]] == ["2013-06", "2013-07", "2013-08"]
    assert names.index("_prediction") == 1  # flagged once: second most drifted
    assert report["counts"] | {"alerts_by_state": None} == {
        "windows": 6, "alerts": 3, "alerts_by_state": None, "drifted_features": 2,
        "features": 4, "ct_runs": 3, "promoted": 1}
    assert report["counts"]["alerts_by_state"] == {"delivered": 1, "pending": 1, "no_sink": 1}

    perf = report["performance"]["series"]["champion"]
    assert [w["auc"] for w in perf] == AUC and [w["auc_estimated"] for w in perf] == AUC_EST
    assert [w["model_version"] for w in perf] == [1, 1, 1, 1, 2, 2]
    assert [w["training_auc"] for w in perf] == [0.751] * 4 + [0.744] * 2
    assert perf[3]["auc_flagged"] and not perf[0]["auc_flagged"]
    mae = np.mean(np.abs(np.array(AUC) - np.array(AUC_EST)))
    assert report["performance"]["auc_estimate_mae"] == pytest.approx(mae)
    assert [p["value"] for p in report["performance"]["segments"]["origin=JFK"]["champion"]] \
        == pytest.approx([a - 0.03 for a in AUC])

    assert [f["name"] for f in report["null_share"]] == ["temp"]  # wind was never null
    assert [(q["name"], q["check"]) for q in report["quality"]] == [
        ("temp", "null_share"), ("dest", "unseen_categories")]
    assert [p["value"] for p in report["volume"]["champion"]] == ROWS
    assert {a["alert_id"]: a["state"] for a in report["alerts"]} == {
        "a" * 16: "delivered", "b" * 16: "pending", "c" * 16: "no_sink"}
    assert [(c["at"][:10], c["decision"]) for c in report["ct"]] == [
        ("2013-06-01", "not_triggered"), ("2013-07-01", "kept_champion"),
        ("2013-08-01", "promoted")]
    assert report["ct"][2]["challenger"] == {"version": 2, "auc": 0.70, "cost": 70.1}


def _card(page: str, title: str) -> str:
    start = page.index(f"<h3>{title}</h3>")
    return page[start:page.index("</svg>", start)]


def test_page_marks_flagged_windows_and_escapes_data(monitored):
    page = render_html(build(monitored, "delay"))
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert page.index("<h3>temp</h3>") < page.index("<h3>wind_speed</h3>")  # most drifted first
    assert _card(page, "temp").count("class='flag'") == 3  # June, July, August in red
    assert _card(page, "wind_speed").count("class='flag'") == 0
    assert re.search(r"FLAGGED", _card(page, "temp"))
    for section in ("Performance over time", "Alerts", "Drift per feature", "Null share",
                    "Rows per window", "CT decisions"):
        assert section in page
    assert ">promoted</text>" in page and ">kept</text>" in page  # CT markers on the chart
    assert "not_triggered" not in page and "1 more CT run(s) had nothing" in page
    assert "stroke-dasharray='6 4'" in page  # the estimate is drawn dashed
    # A pending alert shows why it was not delivered; a delivered one's old error is gone.
    assert "title='HTTP 503'" in page and "connection refused" not in page


def test_empty_lake_gives_a_page_that_says_so(lake):
    report = build(lake, "delay")
    assert report["windows"] == [] and report["alerts"] == [] and report["ct"] == []
    page = render_html(report)
    for text in ("No performance recorded yet", "No alerts raised.", "No CT runs recorded",
                 "No drift checks recorded yet.", "no windows yet"):
        assert text in page


def test_write_report_writes_page_and_json_under_report_dir(monitored, tmp_path):
    conf = SimpleNamespace(monitor=SimpleNamespace(report_dir=str(tmp_path / "out"), table=None))
    page, doc = write_report(monitored, conf, "delay:champion")
    assert page == tmp_path / "out" / "delay" / "monitoring.html"
    assert doc == tmp_path / "out" / "delay" / "monitoring.json"
    assert json.loads(doc.read_text())["counts"]["windows"] == 6
    assert page.read_text().startswith("<!doctype html>")


def _png_pixels(data: bytes) -> np.ndarray:
    """An 8-bit RGB(A) non-interlaced PNG (what chromium writes) as an array (h, w, ch)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + size]
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        pos += size + 12
    w, h, depth, color = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and color in (2, 6), (depth, color)
    ch = 3 if color == 2 else 4
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + w * ch)
    out = np.zeros((h, w * ch), np.int32)
    prev = np.zeros(w * ch, np.int32)
    for y in range(h):
        f, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        if f == 1:  # Sub: a running sum per channel
            line = np.cumsum(line.reshape(w, ch), axis=0).reshape(-1) % 256
        elif f == 2:
            line = (line + prev) % 256
        elif f in (3, 4):  # Average, Paeth: depend on the decoded left pixel (plain ints)
            cur, up = line.tolist(), prev.tolist()
            for x in range(w * ch):
                a = cur[x - ch] if x >= ch else 0
                b = up[x]
                if f == 3:
                    pred = (a + b) >> 1
                else:
                    c = up[x - ch] if x >= ch else 0
                    p = a + b - c
                    pa_, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa_ <= pb and pa_ <= pc else (b if pb <= pc else c)
                cur[x] = (cur[x] + pred) & 255
            line = np.array(cur, np.int32)
        out[y] = prev = line
    return out.reshape(h, w, ch)


@pytest.mark.slow
def test_page_renders_in_headless_chromium(monitored, tmp_path):
    html_path = tmp_path / "monitoring.html"
    html_path.write_text(render_html(build(monitored, "delay")))
    flags = CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path / 'chromium'}"]
    # Console messages (script errors, console.error) go to stderr as ":CONSOLE" lines.
    dom = subprocess.run([chromium(), *flags, "--enable-logging=stderr", "--v=0", "--dump-dom",
                          html_path.as_uri()], capture_output=True, text=True, timeout=120)
    assert "Performance over time" in dom.stdout and dom.stdout.count("<svg") >= 8
    assert ":CONSOLE" not in dom.stderr, dom.stderr[-2000:]
    shot = tmp_path / "page.png"
    subprocess.run([chromium(), *flags, "--window-size=1280,1200", "--hide-scrollbars",
                    f"--screenshot={shot}", html_path.as_uri()], capture_output=True, timeout=120)
    pixels = _png_pixels(shot.read_bytes())[..., :3]
    colours = np.unique(pixels.reshape(-1, 3) // 8, axis=0)  # 32 levels a channel
    assert len(colours) > 200  # drawn charts and text, not a blank page
    red = (pixels[..., 0] > 180) & (pixels[..., 1] < 90) & (pixels[..., 2] < 90)
    assert red.sum() > 30  # the flagged markers are red on screen
