"""Alerts (monitor/alerts.py): the rules on monitoring rows, `_alerts` raised once per
rule, arm and window, and the webhook against a real local HTTP receiver (delivered
once; down -> pending and retried; slow -> timeout; no secret stored). No Ray."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
import time
import types

import pytest
from conftest import free_port

from raylake.config.loader import compose_config, to_config
from raylake.lake.runs import RunRecord
from raylake.monitor import alerts

UTC = dt.timezone.utc
DAY = dt.timedelta(days=1)
D0 = dt.datetime(2013, 7, 1, tzinfo=UTC)
MV = types.SimpleNamespace(name="delay", version=3, metrics={"test": {"auc": 0.75}})
FEATURES = ["temp", "dewp", "humid", "wind_speed", "precip", "visib"]


def _row(day: int, check: str, feature: str = "_model", value=0.0, flagged=False, arm="champion",
         detail=None, segment=""):
    ws = D0 + day * DAY
    return {"model": "delay", "model_version": 3, "arm": arm, "window_start": ws,
            "window_end": ws + DAY, "feature": feature, "check": check, "segment": segment,
            "value": value, "threshold": None, "flagged": flagged, "estimated": False,
            "rows": 100, "detail": json.dumps(detail or {}), "reference": "t@1", "run_id": "r",
            "created_at": D0}


def _window(day: int, volume: float = 1000, drifted=(), auc=None, auc_est=None, nulls=None,
            arm="champion"):
    rows = [_row(day, "volume", value=volume, arm=arm)]
    rows += [_row(day, "drift", f, 0.0001 if f in drifted else 0.5, f in drifted, arm)
             for f in FEATURES]
    rows.append(_row(day, "drift", "_prediction", 0.0, True, arm))  # not a feature
    rows += [_row(day, "auc", value=auc, arm=arm), _row(day, "auc_estimated", value=auc_est, arm=arm)]
    for f, (share, ref) in (nulls or {}).items():
        rows.append(_row(day, "null_share", f, share, share - ref > 0.1, arm, {"reference": ref}))
    return rows


def _conf(lake, url=None, timeout=2.0):
    extra = [f"monitor.webhook_url='{url}'", f"monitor.webhook_timeout_s={timeout}"] if url else []
    return to_config(compose_config([f"lake.root={lake.root}", *extra]))


def _run(job="monitor"):
    return RunRecord(job=job, config={})


class Receiver:
    """A local HTTP receiver: records each POST; answers ``status``, after ``delay`` s."""

    def __init__(self, port: int | None = None):
        self.port, self.posts, self.status, self.delay = port or free_port(), [], 200, 0.0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(outer.delay)
                outer.posts.append({"body": json.loads(body), "path": self.path,
                                    "key": self.headers["Idempotency-Key"]})
                self.send_response(outer.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/alerts"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_rules_find_drift_auc_drop_volume_drop_and_null_jump(lake):
    conf = _conf(lake)
    rows = (_window(0, auc=0.74)
            + _window(1, drifted=FEATURES[:2], auc_est=0.73)  # 2/6 = 0.33 > 0.3
            + _window(2, drifted=FEATURES[:1], auc=0.72, auc_est=0.60)  # realised wins
            + _window(3, volume=1200, auc_est=0.68)  # estimate: 0.07 drop
            # day 4: no traffic at all (no rows); day 5: a third of the traffic
            + _window(5, volume=400, nulls={"temp": (0.95, 0.01), "dewp": (0.05, 0.01)}))
    found = {(a["rule"], a["window_start"]): a for a in alerts.evaluate(lake, conf, MV, rows, "r")}
    assert set(found) == {("drifted_features", D0 + DAY), ("auc_drop", D0 + 3 * DAY),
                          ("volume_drop", D0 + 5 * DAY), ("null_jump", D0 + 5 * DAY)}
    drift = found[("drifted_features", D0 + DAY)]
    assert drift["value"] == pytest.approx(2 / 6) and "dewp, temp" in drift["message"]
    auc = found[("auc_drop", D0 + 3 * DAY)]
    assert auc["value"] == pytest.approx(0.07) and "estimated (CBPE)" in auc["message"]
    # Median of the 7 windows before day 5 (days 0-4; day 4 had no traffic: 0) is 1000.
    vol = found[("volume_drop", D0 + 5 * DAY)]
    assert vol["value"] == 400 and "median 1000" in vol["message"]
    null = found[("null_jump", D0 + 5 * DAY)]
    assert null["value"] == pytest.approx(0.94) and "temp" in null["message"]
    assert "dewp" not in null["message"]
    # Per arm: the same drift on another arm is another alert, with its own id.
    other = alerts.evaluate(lake, conf, MV, _window(1, drifted=FEATURES[:3], arm="shadow"), "r")
    assert [a["arm"] for a in other] == ["shadow"] and other[0]["alert_id"] != drift["alert_id"]
    # Estimates off: the estimated drop on day 3 raises nothing.
    conf.monitor.alerts["auc_drop"].use_estimate = False
    assert not [a for a in alerts.evaluate(lake, conf, MV, rows, "r") if a["rule"] == "auc_drop"]


def test_no_webhook_is_no_sink_and_a_rerun_raises_nothing_twice(lake, receiver):
    conf = _conf(lake)
    rows = _window(0) + _window(1, drifted=FEATURES[:3])
    run = _run()
    out = alerts.raise_and_deliver(lake, conf, MV, rows, run)
    assert out["raised"] == 1 and out["no_sink"] == 1 and out["webhook"] is None
    assert run.metrics["alerts"][0]["state"] == "no_sink"
    assert run.metrics["alerts"][0]["window_start"] == (D0 + DAY).isoformat()
    again = alerts.raise_and_deliver(lake, conf, MV, rows, _run())
    assert again["raised"] == 0 and again["alerts"] == []
    assert lake.dataset("_alerts", system=True).count_rows() == 1
    (latest,) = alerts.latest(lake, "delay")
    assert latest["state"] == "no_sink" and latest["rule"] == "drifted_features"
    assert alerts.latest(lake, "other") == []
    # Not lost: once a webhook is set up, the next run delivers it (and only once).
    assert [a["alert_id"] for a in alerts.pending(lake)] == [latest["alert_id"]]
    out = alerts.raise_and_deliver(lake, _conf(lake, receiver.url), MV, rows, _run())
    assert out["raised"] == 0 and out["retried"] == 1 and out["delivered"] == 1
    assert [p["key"] for p in receiver.posts] == [latest["alert_id"]]
    assert receiver.posts[0]["body"]["rule"] == "drifted_features"
    (done,) = alerts.latest(lake, "delay")
    assert done["state"] == "delivered" and done["attempts"] == 1 and alerts.pending(lake) == []
    alerts.raise_and_deliver(lake, _conf(lake, receiver.url), MV, rows, _run())
    assert len(receiver.posts) == 1


def test_webhook_delivers_each_alert_once(lake, receiver):
    conf = _conf(lake, receiver.url)
    rows = _window(0) + _window(1, drifted=FEATURES[:3]) + _window(2, drifted=FEATURES)
    out = alerts.raise_and_deliver(lake, conf, MV, rows, _run())
    assert out["raised"] == 2 and out["delivered"] == 2 and out["pending"] == 0
    assert len(receiver.posts) == 2
    post = receiver.posts[0]
    assert post["path"] == "/hooks/alerts" and post["key"] == post["body"]["alert_id"]
    assert {"rule", "kind", "arm", "window_start", "value", "threshold", "message",
            "model", "model_version"} <= set(post["body"])
    assert {a["state"] for a in alerts.latest(lake)} == {"delivered"}
    # The next run (the same windows again, and a new one) posts only the new alert.
    out = alerts.raise_and_deliver(lake, conf, MV, rows + _window(3, drifted=FEATURES), _run())
    assert out["raised"] == 1 and len(receiver.posts) == 3
    assert len({p["key"] for p in receiver.posts}) == 3


def test_receiver_down_keeps_alerts_pending_and_the_next_run_delivers(lake):
    port = free_port()  # nothing listens here yet
    conf = _conf(lake, f"http://127.0.0.1:{port}/alerts")
    rows = _window(0) + _window(1, drifted=FEATURES[:3]) + _window(2, drifted=FEATURES)
    first = alerts.raise_and_deliver(lake, conf, MV, rows, _run())
    assert first["raised"] == 2 and first["pending"] == 2 and first["delivered"] == 0
    # The first refusal stops this run's attempts: the other alert waits, untried.
    p = alerts.pending(lake, "delay")
    assert [a["attempts"] for a in p] == [1, 0]
    assert "refused" in p[0]["last_error"].lower() and p[1]["last_error"] is None
    # Still down: the next run (no new rows) tries again, first the oldest.
    alerts.raise_and_deliver(lake, conf, MV, [], _run())
    assert [a["attempts"] for a in alerts.pending(lake)] == [2, 0]
    receiver = Receiver(port)
    try:
        receiver.status = 500  # up, but failing: both tried, both still pending
        out = alerts.raise_and_deliver(lake, conf, MV, rows, _run())
        assert out["retried"] == 2 and out["raised"] == 0 and out["pending"] == 2
        assert [a["attempts"] for a in alerts.pending(lake)] == [3, 1]
        assert alerts.pending(lake)[0]["last_error"].startswith("HTTP 500")
        receiver.status = 200
        out = alerts.raise_and_deliver(lake, conf, MV, rows, _run())
        assert out["retried"] == 2 and out["delivered"] == 2 and out["pending"] == 0
        got = alerts.latest(lake)
        assert [(a["state"], a["attempts"], a["last_error"]) for a in got] == \
            [("delivered", 4, None), ("delivered", 2, None)]
        # Once delivered, nothing is retried or posted again.
        alerts.raise_and_deliver(lake, conf, MV, rows, _run())
        assert len(receiver.posts) == 4  # two answered 500, two answered 200
        assert sorted(p["key"] for p in receiver.posts[2:]) == sorted(a["alert_id"] for a in got)
    finally:
        receiver.close()


def test_slow_receiver_times_out_and_no_secret_is_stored(lake, receiver):
    receiver.delay = 1.5
    # A chat webhook carries its secret in the path (Slack, Discord), others in the query.
    url = receiver.url + "/T0/B0/PATHS3CR3T?token=S3CR3T&team=ops"
    conf = _conf(lake, url, timeout=0.3)
    run = _run()
    out = alerts.raise_and_deliver(lake, conf, MV, _window(0) + _window(1, drifted=FEATURES), run)
    assert out["pending"] == 1
    (p,) = alerts.pending(lake)
    assert "timed out" in p["last_error"].lower()
    assert out["webhook"] == f"http://127.0.0.1:{receiver.port}"
    assert receiver.posts == [] or receiver.posts[0]["path"].endswith("PATHS3CR3T?token=S3CR3T"
                                                                      "&team=ops")
    stored = json.dumps(lake.dataset("_alerts", system=True).to_table().to_pylist(), default=str)
    for secret in ("S3CR3T", "/hooks/"):
        assert secret not in stored and secret not in json.dumps(run.metrics, default=str)
    assert alerts.origin("https://u:S3CR3T@h.example:8443/x/S3CR3T?k=S3CR3T") == \
        "https://h.example:8443"
    assert alerts.origin("http://[::1]:9000/a") == "http://[::1]:9000"
    assert alerts.origin(None) is None and alerts.origin("hooks.example/S3CR3T") is None


def test_a_bad_webhook_error_keeps_only_the_origin():
    alert = {"alert_id": "a1", "attempts": 0}
    # urllib's error quotes a URL it cannot use; the config refuses such a URL, this is
    # the second line of defence.
    got = alerts._deliver(alert, "hooks.example/services/S3CR3T", 1.0, "r")
    assert got["state"] == "pending" and got["attempts"] == 1
    assert got["last_error"] == "ValueError: unknown url type: '<monitor.webhook_url>'"


def test_volume_baseline_is_the_same_model_version(lake):
    """Earlier runs' volume rows of another version (retired, no traffic since) or of
    another model in a shared monitoring table do not stand in for this version's."""
    from raylake.monitor import store

    def vol(model, version, day, value, state, created):
        return {**_row(day, "volume", value=value, detail={"state": state}), "model": model,
                "model_version": version, "created_at": D0 + dt.timedelta(days=30 + created)}

    mine = [vol("delay", 3, d, 1000.0, "ok", 0) for d in range(5)]
    # Written later (newest wins within a key): zeros of version 2 and of model "other".
    others = ([vol("delay", 2, d, 0.0, "no_traffic", 1) for d in range(5)]
              + [vol("other", 3, d, 0.0, "no_traffic", 1) for d in range(5)])
    for table in ("monitoring/delay", "monitoring/shared"):
        store.append_changed(lake, table, "delay", mine)
        store.append_changed(lake, table, "delay", [r for r in others if r["model"] == "delay"])
        store.append_changed(lake, table, "other", [r for r in others if r["model"] == "other"])
    for table in (None, "monitoring/shared"):
        conf = _conf(lake)
        conf.monitor.table = table
        found = [a for a in alerts.evaluate(lake, conf, MV, _window(5, volume=400), "r")
                 if a["rule"] == "volume_drop"]
        assert len(found) == 1 and "median 1000 of the 5 windows" in found[0]["message"]


def test_concurrent_runs_raise_an_alert_once(lake):
    conf = _conf(lake)
    rows = _window(0) + _window(1, drifted=FEATURES) + _window(2, drifted=FEATURES)
    results, errors = [], []

    def go():
        try:
            results.append(alerts.raise_and_deliver(lake, conf, MV, rows, _run()))
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(r["raised"] for r in results) == 2
    assert lake.dataset("_alerts", system=True).count_rows() == 2
