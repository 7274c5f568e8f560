"""Monitoring state as Prometheus gauges on the model server.

``raylake monitor`` writes its results to ``monitoring/<model>`` and its alerts to the
system table ``_alerts`` (docs/monitoring.md). Each model server replica re-reads both
every ``model_server.alerts_refresh_s`` seconds, in a background thread (the request
path never waits for it), for the models it serves, and sets ``ray.util.metrics``
gauges, which Ray exports with the server's other metrics (``ray_`` prefixed):

- ``raylake_monitor_alerts{model, rule, state}``: alerts of the model's latest
  monitored window, per rule and state (``pending``, ``delivered``, ``no_sink``);
- ``raylake_monitor_drift_share{model, arm}``: the share of input features whose drift
  check is flagged in the arm's latest window;
- ``raylake_monitor_auc{model, arm, estimated}``: the realised AUC
  (``estimated="false"``) and CBPE's estimate (``"true"``) of the latest window that
  has one (a window still waiting for outcomes leaves the last value showing).

The tables are read here directly with the lake (serve sits below monitor in the
layers), by their published schemas. A series seen before and absent now is set to 0
(an alert of an older window no longer counts). A failed read is logged and the
gauges keep their values; it never raises into the replica.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

log = logging.getLogger("raylake.serve")

ALERTS_TABLE = "_alerts"  # system table (monitor/alerts.py)
_INPUT_SKIP = ("_model", "_prediction")  # not input features: left out of the drift share


def monitoring_table(model: str, configured: str | None) -> str:
    """Where ``raylake monitor`` writes ``model``'s rows: ``monitor.table`` when set,
    else ``monitoring/<model>``."""
    return configured or f"monitoring/{model}"


class AlertGauges:
    """The gauges of one replica and the thread that refreshes them."""

    def __init__(self, lake: Any, models: Sequence[str], *, refresh_s: float,
                 monitor_table: str | None = None) -> None:
        from ray.util import metrics

        self.lake = lake
        self.models = sorted(set(models))
        self.tables = {m: monitoring_table(m, monitor_table) for m in self.models}
        self.refresh_s = refresh_s
        self.g_alerts = metrics.Gauge(
            "raylake_monitor_alerts", "Alerts of the model's latest monitored window, per "
            "rule and state (pending, delivered, no_sink).", ("model", "rule", "state"))
        self.g_drift = metrics.Gauge(
            "raylake_monitor_drift_share", "Share of input features flagged for drift in "
            "the arm's latest monitored window.", ("model", "arm"))
        self.g_auc = metrics.Gauge(
            "raylake_monitor_auc", "AUC of the arm's latest monitored window: realised "
            "(estimated=false) or CBPE's estimate (estimated=true).",
            ("model", "arm", "estimated"))
        self._set: dict[str, dict[tuple[str, ...], float]] = {"alerts": {}, "drift": {},
                                                               "auc": {}}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the thread ----------------------------------------------------------------

    def start(self) -> None:
        """Refresh now and then every ``refresh_s`` seconds in a daemon thread."""
        self._thread = threading.Thread(target=self._run, name="raylake-alert-gauges",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the thread after its current refresh."""
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self.refresh_s)

    # -- reading -----------------------------------------------------------------

    def refresh(self) -> dict[str, dict[tuple[str, ...], float]]:
        """Read the tables and set the gauges; the values set, by gauge and tags (for
        tests and logs). A table that cannot be read is logged and skipped."""
        latest: dict[str, Any] = {}
        drift: dict[tuple[str, ...], float] = {}
        auc: dict[tuple[str, ...], float] = {}
        ok = {"drift": True, "auc": True, "alerts": True}
        for model in self.models:
            try:
                rows = self._monitoring(model)
            except Exception:  # a replica serves on, whatever the monitoring table holds
                log.warning("alert gauges: cannot read %s", self.tables[model], exc_info=True)
                ok["drift"] = ok["auc"] = False
                continue
            if rows is None:
                continue
            latest[model] = _latest_window(rows)
            drift.update(_drift_shares(model, rows))
            auc.update(_aucs(model, rows))
        try:
            alerts = self._alerts(latest)
        except Exception:
            log.warning("alert gauges: cannot read %s", ALERTS_TABLE, exc_info=True)
            alerts, ok["alerts"] = {}, False
        for name, gauge, values in (("drift", self.g_drift, drift), ("auc", self.g_auc, auc),
                                    ("alerts", self.g_alerts, alerts)):
            if ok[name]:
                self._publish(name, gauge, values)
        return {k: dict(v) for k, v in self._set.items()}

    def _publish(self, name: str, gauge: Any, values: dict[tuple[str, ...], float]) -> None:
        keys = gauge_tags[name]
        # A series not found this time goes to 0 rather than keeping an old window's value.
        now = {**{k: 0.0 for k in self._set[name]}, **values}
        for tags, value in now.items():
            gauge.set(value, tags=dict(zip(keys, tags)))
        self._set[name] = now

    def _monitoring(self, model: str) -> pa.Table | None:
        import pyarrow.dataset as pads

        table = self.tables[model]
        if not self.lake.exists(table):
            return None
        f = (pads.field("check").isin(["drift", "auc", "auc_estimated"])
             & (pads.field("segment") == "") & (pads.field("model") == model))
        t = self.lake.dataset(table).to_table(
            columns=["model_version", "arm", "window_start", "feature", "check", "value",
                     "flagged", "created_at"], filter=f)
        return _newest(t, ["model_version", "arm", "window_start", "feature", "check"])

    def _alerts(self, latest: dict[str, Any]) -> dict[tuple[str, ...], float]:
        import pyarrow.dataset as pads

        if not self.lake.exists(ALERTS_TABLE, system=True):
            return {}
        t = self.lake.dataset(ALERTS_TABLE, system=True).to_table(
            columns=["alert_id", "model", "rule", "state", "window_start", "created_at"],
            filter=pads.field("model").isin(self.models))
        t = _newest(t, ["alert_id"])  # an event log: the newest row is the alert's state
        out: dict[tuple[str, ...], float] = {}
        for model in self.models:
            mine = t.filter(pc.equal(t["model"], model))
            if not mine.num_rows:
                continue
            # The latest monitored window; with no monitoring rows, the latest alerted one.
            window = latest.get(model) or pc.max(mine["window_start"])
            mine = mine.filter(pc.equal(mine["window_start"], window))
            for rule, state in zip(mine["rule"].to_pylist(), mine["state"].to_pylist()):
                out[(model, rule, state)] = out.get((model, rule, state), 0.0) + 1.0
        return out


gauge_tags = {"alerts": ("model", "rule", "state"), "drift": ("model", "arm"),
              "auc": ("model", "arm", "estimated")}


def _newest(t: pa.Table, keys: list[str]) -> pa.Table:
    """One row per ``keys``: the one with the latest ``created_at`` (the later row on a
    tie: tables are append-only logs)."""
    if not t.num_rows:
        return t
    t = t.append_column("_i", pa.array(range(t.num_rows), pa.int64()))
    t = t.sort_by([("created_at", "ascending"), ("_i", "ascending")])
    last = t.group_by(keys, use_threads=False).aggregate([("_i", "last")])
    return t.filter(pc.is_in(t["_i"], last["_i_last"])).drop_columns(["_i"])


def _latest_window(rows: pa.Table) -> Any:
    """The latest window the monitor wrote rows for (any arm), as an Arrow scalar."""
    return pc.max(rows["window_start"]) if rows.num_rows else None


def _per_arm_latest(rows: pa.Table, checks: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Per arm: the rows of ``checks`` in its latest window, of the newest model version
    in that window."""
    out: dict[str, list[dict[str, Any]]] = {}
    sel = rows.filter(pc.is_in(rows["check"], pa.array(list(checks))))
    by_arm: dict[str, list[dict[str, Any]]] = {}
    for r in sel.to_pylist():
        by_arm.setdefault(r["arm"], []).append(r)
    for arm, rs in by_arm.items():
        top = max((r["window_start"], r["model_version"] or 0) for r in rs)
        out[arm] = [r for r in rs if (r["window_start"], r["model_version"] or 0) == top]
    return out


def _drift_shares(model: str, rows: pa.Table) -> dict[tuple[str, ...], float]:
    out: dict[tuple[str, ...], float] = {}
    for arm, rs in _per_arm_latest(rows, ["drift"]).items():
        tested = [r for r in rs if r["feature"] not in _INPUT_SKIP and r["value"] is not None]
        if tested:
            out[(model, arm)] = sum(bool(r["flagged"]) for r in tested) / len(tested)
    return out


def _aucs(model: str, rows: pa.Table) -> dict[tuple[str, ...], float]:
    out: dict[tuple[str, ...], float] = {}
    # The latest window that has a value: a window still waiting for its outcomes
    # (too_few_outcomes, no value) leaves the last realised AUC showing rather than 0,
    # which an alert on the gauge would read as a collapse.
    rows = rows.filter(pc.is_valid(rows["value"]))
    for check, estimated in (("auc", "false"), ("auc_estimated", "true")):
        for arm, rs in _per_arm_latest(rows, [check]).items():
            values = [r["value"] for r in rs if r["feature"] == "_model" and r["value"] is not None]
            if values:
                out[(model, arm, estimated)] = float(values[0])
    return out
