"""``raylake replay``: months of traffic through the real model server on a replayed clock.

A backtest of monitoring and continuous training, with every part real: the first model
is trained on [train_start, train_end) of the entity table; then each day of [start,
end), in order:

1. ``materialize-incremental`` brings the online store up to the end of that day, so
   entity lookups find that day's feature values (weather) within their TTL;
2. the day's rows go to ``POST /predict`` as a client would send them (entity keys and
   the request's own fields; one request per scheduled hour, the hour as the replayed
   clock in ``X-Raylake-Clock``), so the server's lookups, request log and live
   profiles all see the replayed time;
3. the outcomes of the rows served ``outcome_delay_days`` earlier arrive over ``POST
   /outcomes`` (the label expression of ``training_set.label``, evaluated on the row).

After each month (once its last outcomes are in): ``raylake monitor`` over the month's
windows and, with ``replay.ct``, ``raylake ct`` with the clock at the month's end; a
promotion redeploys the server with the new champion. At the end: ``raylake monitor
report`` and a summary (JSON): per month the drifted features, the realised AUC of the
served model, CBPE's estimate, the first model's AUC on the same rows (no CT), and the
CT decisions.

The lake holds the whole entity table from the start (it is ingested once); nothing of
the replay reads past the replayed clock: training windows end at it, the online store
is filled up to the day being served, outcomes arrive after their day.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from omegaconf import DictConfig, OmegaConf

from raylake.errors import RaylakeError
from raylake.lake.clock import UTC
from raylake.lake.selection import parse_selection
from raylake.runner import job_config

KEY_NAME = "replay"
DAY = dt.timedelta(days=1)


class Replay:
    """One replay: ``run()`` does the whole of it; each step is a method (tests call them)."""

    def __init__(self, conf: Any, cfg: DictConfig, lake: Any, echo: Any) -> None:
        self.conf, self.cfg, self.lake, self.echo = conf, cfg, lake, echo
        self.r = conf.replay
        self.model_name = conf.train.model_name
        self.http: Any = None
        self.url = f"http://{conf.model_server.host}:{conf.model_server.port}"
        self.pending: list[tuple[dt.date, list[dict[str, Any]]]] = []  # outcomes not yet sent
        self.sent = {"requests": 0, "rows": 0, "outcomes": 0}
        self.months: list[dict[str, Any]] = []
        self.first_version: int | None = None
        self.stale_result: dict[str, Any] = {}
        self.started = time.perf_counter()

    # -- config of each step ---------------------------------------------------------

    def job_cfg(self, job: str, **keys: Any) -> DictConfig:
        """The replay's composed config for ``job`` with dotted ``keys`` set."""
        return job_config(self.cfg, job, **keys)

    def say(self, text: str) -> None:
        """Print ``text`` with the seconds since the replay started."""
        self.echo(f"[{time.perf_counter() - self.started:6.0f}s] {text}")

    # -- the first model ---------------------------------------------------------------

    def prepare(self) -> int:
        """Ingest, aggregate, feature definitions, the training set over [train_start,
        train_end), train and promote: the first champion's version."""
        from raylake.features.jobs import aggregate, features_apply, training_set
        from raylake.ingest.jobs import ingest
        from raylake.models.registry import ModelRegistry
        from raylake.train.jobs import train

        quiet = _quiet(self.echo)
        self.say(f"ingest {self.conf.dataset.name}")
        ingest(self.job_cfg("ingest"), echo=quiet)
        if self.conf.features.aggregations:
            aggregate(self.job_cfg("aggregate"), echo=quiet)
        features_apply(self.job_cfg("features-apply"), echo=quiet)
        end = dt.date.fromisoformat(self.r.train_end)
        ts = training_set(self.job_cfg("training-set", **{
            "training_set.start": self.r.train_start, "training_set.end": self.r.train_end}),
            echo=self.echo)
        out = train(self.job_cfg("train", **{
            "train.table_version": str(ts["version"]),
            "train.split.valid_start": str(end - 4 * 7 * DAY),
            "train.split.test_start": str(end - 2 * 7 * DAY)}), echo=self.echo)
        mv = ModelRegistry(self.lake).promote(self.model_name, out["version"], "champion",
                                              reason="raylake replay: the first model")
        self.first_version = mv.version
        return mv.version

    # -- serving -------------------------------------------------------------------------

    def deploy(self) -> None:
        """(Re)deploy the champion with the replayed clock on and one-day live profiles."""
        from raylake.serve.jobs import serve

        c = self.job_cfg("serve", model=f"{self.model_name}:champion", **{
            "model_server.api_keys_file": self.key_file,
            "model_server.feature_service": self.conf.training_set.feature_service,
            "model_server.replay_clock": True, "model_server.profile_window": "1d",
            "model_server.min_replicas": 1, "model_server.max_replicas": 1})
        serve(c, echo=_quiet(self.echo), blocking=False)
        if self.http is None:
            import requests

            self.http = requests.Session()
            self.http.headers.update({"Authorization": f"Bearer {self.secret}",
                                      "Content-Type": "application/json"})

    def stop(self) -> None:
        """Remove the app: replicas flush their request log and live profiles."""
        from ray import serve

        from raylake.serve.deploy import APP_NAME

        serve.delete(APP_NAME)

    # -- one day -------------------------------------------------------------------------

    def rows_of(self, day: dt.date) -> pa.Table:
        """The entity rows scheduled on ``day``, sampled to ``rows_per_day``."""
        t = self.conf.training_set
        lo = dt.datetime.combine(day, dt.time(), UTC)
        rows = self.entities.filter(pc.and_(
            pc.greater_equal(self.entities[t.event_timestamp_column], pa.scalar(lo, self.ts_type)),
            pc.less(self.entities[t.event_timestamp_column], pa.scalar(lo + DAY, self.ts_type))))
        n = self.r.rows_per_day
        if n is not None and rows.num_rows > n:
            rng = np.random.default_rng(self.r.seed + day.toordinal())
            rows = rows.take(np.sort(rng.choice(rows.num_rows, n, replace=False)))
        return rows

    def load_entities(self) -> None:
        """The entity table's columns a request or an outcome needs, read once."""
        t = self.conf.training_set
        from raylake.features.definitions import resolve
        from raylake.models.registry import ModelRegistry

        reg = resolve(self.conf.features)
        views = reg.select(t.feature_service)
        self.keys = list(dict.fromkeys(k for v in views if v in reg.views
                                       for k in reg.view(v).join_keys))
        mv = ModelRegistry(self.lake).get(self.model_name, "champion")
        names = set(mv.feature_names) | set(reg.request_types(list(views)))
        self.own = [c for c in t.entity_columns if c in names and c not in t.drop_columns
                    and c not in self.keys]
        label_inputs = [c for c in t.entity_columns if c in (t.label or "")]
        cols = list(dict.fromkeys([t.event_timestamp_column, *self.keys, *self.own,
                                   *label_inputs]))
        table = self.lake.read(t.entity_table, columns=cols)
        start = dt.datetime.combine(dt.date.fromisoformat(self.r.start), dt.time(), UTC)
        end = dt.datetime.combine(dt.date.fromisoformat(self.r.end), dt.time(), UTC)
        self.ts_type = table.schema.field(t.event_timestamp_column).type
        when = table[t.event_timestamp_column]
        table = table.filter(pc.and_(pc.greater_equal(when, pa.scalar(start, self.ts_type)),
                                     pc.less(when, pa.scalar(end, self.ts_type))))
        for k in self.keys:
            table = table.filter(pc.is_valid(table[k]))
        import pyarrow.dataset as pds

        label = pds.dataset(table).to_table(columns={"_label": parse_selection(t.label)})
        self.entities = table.append_column("_label", label.column("_label"))

    def materialize(self, day: dt.date) -> None:
        """The online store up to the end of ``day`` (``materialize-incremental``)."""
        from raylake.features.jobs import materialize_incremental

        end = dt.datetime.combine(day + DAY, dt.time(), UTC).isoformat()
        materialize_incremental(self.job_cfg("materialize-incremental", **{
            "materialize.end": end}), echo=_quiet(self.echo))

    def serve_day(self, day: dt.date) -> int:
        """The day's rows as requests, one per scheduled hour; their outcomes queued."""
        t = self.conf.training_set
        rows = self.rows_of(day)
        if not rows.num_rows:
            return 0
        hours = pc.floor_temporal(rows[t.event_timestamp_column], unit="hour")
        outcomes: list[dict[str, Any]] = []
        limit = self.conf.model_server.max_rows
        for hour in pc.unique(hours).to_pylist():
            part = rows.filter(pc.equal(hours, pa.scalar(hour, hours.type)))
            for at in range(0, part.num_rows, limit):
                chunk = part.slice(at, limit)
                answer = self.predict(chunk, hour)
                for i, y in enumerate(chunk["_label"].to_pylist()):
                    if y is not None:
                        outcomes.append({"request_id": answer["request_id"], "row": i,
                                         "outcome": float(y), "outcome_at": hour.isoformat()})
        self.pending.append((day, outcomes))
        self.sent["rows"] += rows.num_rows
        return rows.num_rows

    def predict(self, chunk: pa.Table, at: dt.datetime) -> dict[str, Any]:
        """One POST /predict of ``chunk``'s rows by entity key, at replayed time ``at``."""
        body = {"entities": {k: chunk[k].to_pylist() for k in self.keys},
                "features": {c: chunk[c].to_pylist() for c in self.own}}
        r = self.http.post(self.url + "/predict", data=json.dumps(body, default=str),
                           headers={"X-Raylake-Clock": at.isoformat()}, timeout=120)
        if r.status_code != 200:
            raise RaylakeError(f"replay: POST /predict answered {r.status_code}: {r.text[:500]}")
        self.sent["requests"] += 1
        return r.json()

    def send_outcomes(self, today: dt.date) -> None:
        """POST /outcomes for the days whose outcomes are due by ``today``."""
        due = [p for p in self.pending if p[0] + self.r.outcome_delay_days * DAY <= today]
        self.pending = [p for p in self.pending if p not in due]
        size = self.conf.outcomes.max_rows_per_request
        for _, outcomes in due:
            for at in range(0, len(outcomes), size):
                part = outcomes[at:at + size]
                r = self.http.post(self.url + "/outcomes", data=json.dumps({"outcomes": part}),
                                   timeout=120)
                if r.status_code != 200:
                    raise RaylakeError(f"replay: POST /outcomes answered {r.status_code}: "
                                       f"{r.text[:500]}")
                self.sent["outcomes"] += len(part)

    # -- one month ---------------------------------------------------------------------

    def wait_for_log(self) -> None:
        """Until the request log holds every answer sent (replicas append in batches)."""
        table = self.conf.model_server.request_log_table
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.lake.exists(table) and self.lake.count(table) >= self.sent["requests"]:
                return
            time.sleep(1.0)
        raise RaylakeError(f"replay: the request log {table!r} did not reach "
                           f"{self.sent['requests']} rows in 120 s")

    def close_month(self, first: dt.date, until: dt.date, nxt: dt.date) -> dict[str, Any]:
        """Monitor the month's replayed days [first, until), then CT with the clock at the
        month's end ``nxt``; the server comes back with the champion of then."""
        from raylake.monitor.jobs import monitor

        # Stopping the app flushes the replicas' request log and live profiles (the
        # month's last window included); the app comes back with the champion of then.
        self.stop()
        self.wait_for_log()
        month: dict[str, Any] = {"month": first.strftime("%Y-%m"), "since": first,
                                 "until": until}
        m = monitor(self.monitor_cfg(first, until, until + self.r.outcome_delay_days * DAY),
                    echo=self.echo)
        month["monitor_run"] = m.get("run_id")
        if self.r.ct:
            from raylake.ct.jobs import ct

            out = ct(self.job_cfg("ct", model=self.model_name, **{"ct.now": nxt.isoformat()}),
                     echo=self.echo)
            month["ct"] = {k: out.get(k) for k in ("decision", "reason", "run_id",
                                                   "challenger", "champion")}
        self.deploy()
        self.months.append(month)
        return month

    def monitor_cfg(self, since: dt.date, until: dt.date, now: dt.date, **keys: Any
                    ) -> DictConfig:
        """``raylake monitor`` of the champion over [since, until) at clock ``now``, with
        the replay's window and, with ``drift_ks``, numeric features judged by the KS
        statistic (per-column thresholds)."""
        keys = {"monitor.since": since.isoformat(), "monitor.until": until.isoformat(),
                "monitor.now": now.isoformat(), "monitor.window": self.r.monitor_window,
                **keys}
        if self.r.drift_ks is not None:
            from raylake.models.registry import ModelRegistry

            mv = ModelRegistry(self.lake).get(self.model_name, "champion")
            numeric = [f["name"] for f in mv.features if f.get("encoding") == "numeric"]
            given = OmegaConf.to_container(self.cfg.monitor.thresholds)
            assert isinstance(given, dict)
            keys["monitor.thresholds"] = {
                **{n: {"metric": "ks", "threshold": self.r.drift_ks} for n in numeric},
                **given}
        return self.job_cfg("monitor", model=f"{self.model_name}:champion", **keys)

    def stale(self, day: dt.date) -> dict[str, Any]:
        """``day``'s rows sent again ``stale_days`` later without materializing: the
        online store's newest weather is then older than the view's TTL, lookups serve
        nulls, and the monitor (one-day windows, its own table) flags the null shares."""
        from raylake.monitor.jobs import monitor

        shift = self.r.stale_days * DAY
        rows = self.rows_of(day)
        t = self.conf.training_set
        hours = pc.floor_temporal(rows[t.event_timestamp_column], unit="hour")
        for hour in pc.unique(hours).to_pylist():
            part = rows.filter(pc.equal(hours, pa.scalar(hour, hours.type)))
            for at in range(0, part.num_rows, self.conf.model_server.max_rows):
                self.predict(part.slice(at, self.conf.model_server.max_rows), hour + shift)
        self.stop()
        self.wait_for_log()
        table = f"monitoring/{self.model_name}_stale"
        out = monitor(self.monitor_cfg(day + shift, day + shift + DAY, day + shift + 2 * DAY,
                                       **{"monitor.window": "1d", "monitor.table": table}),
                      echo=self.echo)
        rows_out = self.lake.read(table).to_pylist()
        flagged = sorted({r["feature"] for r in rows_out
                          if r["check"] == "null_share" and r["flagged"]})
        return {"day": (day + shift).isoformat(), "null_share_flagged": flagged,
                "run_id": out.get("run_id")}

    # -- the whole replay --------------------------------------------------------------

    def days(self) -> list[dt.date]:
        """The replayed days, in order."""
        d, end = dt.date.fromisoformat(self.r.start), dt.date.fromisoformat(self.r.end)
        out = []
        while d < end:
            if self.r.days_per_month is None or d.day <= self.r.days_per_month:
                out.append(d)
            d += DAY
        return out

    def run(self) -> dict[str, Any]:
        """Prepare, serve, replay every day, close every month, report."""
        self.key_file, self.secret = _key_file(self.conf.lake.root)
        version = self.prepare()
        self.say(f"first champion {self.model_name}:{version}")
        self.load_entities()
        self.deploy()
        days = self.days()
        try:
            for i, day in enumerate(days):
                self.materialize(day)
                n = self.serve_day(day)
                self.send_outcomes(day)
                nxt = days[i + 1] if i + 1 < len(days) else dt.date.fromisoformat(self.r.end)
                if nxt.month != day.month or i + 1 == len(days):
                    self.send_outcomes(day + self.r.outcome_delay_days * DAY)
                    first = day.replace(day=1)
                    month_end = (first + 32 * DAY).replace(day=1)
                    self.say(f"{day}: {n} rows; closing {first:%Y-%m}")
                    self.close_month(first, day + DAY, month_end)
            if self.r.stale_days and days:
                self.stale_result = self.stale(days[-1])
        finally:
            self.stop()
        from raylake.monitor.jobs import monitor_report

        report = monitor_report(self.job_cfg("monitor-report", model=self.model_name),
                                echo=self.echo)
        months = self.summarize()
        summary: dict[str, Any] = {"months": months, "sent": self.sent,
                   "first_version": self.first_version, "report": report.get("html"),
                   "stale": self.stale_result,
                   "seconds": round(
                       time.perf_counter() - self.started)}
        if self.r.summary_file:
            with open(self.r.summary_file, "w") as f:
                json.dump(summary, f, indent=1, default=str)
        for m in months:
            self.echo(_month_line(m))
        return summary

    # -- the write-up -------------------------------------------------------------------

    def summarize(self) -> list[dict[str, Any]]:
        """Per replayed month: the served version, realised AUC, CBPE's estimated AUC, the
        first model's AUC on the same rows (no CT), the features flagged drifted (share of
        the month's windows) and the CT decision taken at the month's end."""
        from raylake.models.registry import ModelRegistry

        registry = ModelRegistry(self.lake)
        flagged = self._flagged()
        out = []
        for month in self.months:
            # The month's replayed days only (the stale day after the last is not one).
            first = dt.datetime.combine(month["since"], dt.time(), UTC)
            until = dt.datetime.combine(month["until"], dt.time(), UTC)
            row: dict[str, Any] = {"month": month["month"], **flagged.get(month["month"], {})}
            row.update(self._performance(registry, first, until))
            if "ct" in month:
                row["ct"] = month["ct"]
            out.append(row)
        return out

    def _performance(self, registry: Any, start: dt.datetime, end: dt.datetime
                     ) -> dict[str, Any]:
        from raylake.models.flavors import get_flavor
        from raylake.models.spec import FeatureSpec
        from raylake.monitor import cbpe
        from raylake.monitor.performance import labelled_scores
        from raylake.train.metrics import auc

        log = self.conf.model_server.request_log_table
        versions = _versions_served(self.lake, log, self.model_name, start, end)
        out: dict[str, Any] = {"versions": versions}
        if not versions or not self.lake.exists(self.conf.outcomes.table):
            return out
        mv = registry.get(self.model_name, versions[-1])
        rescore = self.first_version is not None and mv.version != self.first_version
        s, y, features = labelled_scores(self.lake, self.conf, mv, start, end,
                                         with_features=rescore)
        known = ~np.isnan(y)
        y_ref, p_ref, _ = cbpe.reference_scores(self.lake, self.conf, mv)
        est = cbpe.estimate(s, cbpe.calibrator(y_ref, p_ref),
                            float(mv.metrics["test"]["threshold"]), self.conf.train.cost)
        out.update(rows=int(s.size), labelled=int(known.sum()),
                   auc=auc(y[known], s[known]) if known.any() else None,
                   auc_estimated=est["auc"])
        if rescore and features is not None:
            # The first model on the very rows the served one scored: the same read.
            first_mv, model = registry.load(self.model_name, self.first_version)
            p = get_flavor(first_mv.flavor).predict(model, FeatureSpec.from_dict(
                first_mv.preprocessing), features)
            out["auc_without_ct"] = auc(y[known], np.asarray(p)[known])
        else:
            out["auc_without_ct"] = out["auc"]
        return out

    def _flagged(self) -> dict[str, dict[str, Any]]:
        """Per month: for each (feature, check) flagged in some window, the share of the
        month's windows that flagged it."""
        table = self.conf.monitor.table or f"monitoring/{self.model_name}"
        if not self.lake.exists(table):
            return {}
        rows = self.lake.read(table, columns=["window_start", "feature", "check", "segment",
                                              "arm", "flagged", "created_at"]).to_pylist()
        newest: dict[tuple, dict[str, Any]] = {}
        for r in sorted(rows, key=lambda r: r["created_at"]):
            newest[(r["window_start"], r["feature"], r["check"], r["segment"], r["arm"])] = r
        from raylake.config.values import parse_duration

        width = parse_duration(self.r.monitor_window, "replay.monitor_window")
        by_month: dict[str, dict[str, Any]] = {}
        for r in newest.values():
            if r["segment"] or r["check"] not in ("drift", "null_share", "unseen_categories",
                                                  "out_of_range"):
                continue
            # A window counts for each replayed month it overlaps (7-day windows straddle
            # months).
            start = r["window_start"]
            for replayed in self.months:
                lo = dt.datetime.combine(replayed["since"], dt.time(), UTC)
                hi = dt.datetime.combine(replayed["until"], dt.time(), UTC)
                if not (start < hi and start + width > lo):
                    continue
                m = by_month.setdefault(replayed["month"], {"windows": set()})
                m["windows"].add(start)
                key = f"{r['check']}:{r['feature']}"
                m[key] = m.get(key, 0) + int(bool(r["flagged"]))
        out = {}
        for month, m in by_month.items():
            n = len(m.pop("windows"))
            out[month] = {"windows": n, "flagged": {k: round(v / n, 2) for k, v in
                                                    sorted(m.items()) if v}}
        return out


def _versions_served(lake: Any, log: str, name: str, start: dt.datetime,
                     end: dt.datetime) -> list[int]:
    import pyarrow.dataset as pds

    ts = pa.timestamp("us", tz="UTC")
    t = lake.dataset(log).to_table(columns=["model_version"], filter=(
        (pds.field("model_name") == name) & (pds.field("status") == 200)
        & (pds.field("at") >= pa.scalar(start, ts)) & (pds.field("at") < pa.scalar(end, ts))))
    return sorted(v for v in pc.unique(t["model_version"]).to_pylist() if v is not None)


def _month_line(m: dict[str, Any]) -> str:
    def f(v: Any) -> str:
        return "-" if v is None else f"{v:.3f}"

    drift = ", ".join(k.split(":", 1)[1] for k, v in m.get("flagged", {}).items()
                      if k.startswith("drift:") and v >= 0.5) or "none"
    ct = m.get("ct") or {}
    return (f"{m['month']}: v{m.get('versions')}, AUC {f(m.get('auc'))} (CBPE "
            f"{f(m.get('auc_estimated'))}, without CT {f(m.get('auc_without_ct'))}); drifted "
            f"in most windows: {drift}; CT: {ct.get('decision', '-')}")


def _key_file(root: str) -> tuple[str, str]:
    """The replay's own API key (read and push scopes), new each run, in a key file only
    its owner can read (``model_server.api_keys_file``): the replicas read it there, so it
    is never in config, Serve's arguments or a run record."""
    import secrets
    import tempfile

    secret = secrets.token_urlsafe(24)
    fd, path = tempfile.mkstemp(prefix="raylake-replay-keys-", suffix=".txt")
    with os.fdopen(fd, "w") as f:  # mkstemp made it 0600
        f.write(f"{KEY_NAME}:read+push:{secret}\n")
    return path, secret


def _quiet(echo: Any) -> Any:
    return lambda *_a, **_k: None
