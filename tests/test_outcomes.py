"""Outcomes: `raylake outcomes add` and `POST /outcomes` (checked, idempotent per key,
conflicts and unknown ids reported), the A/B report on them, and the monitoring gauges of
the model server (read from `_alerts` and `monitoring/<model>`, exported by Ray)."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time

import pyarrow as pa
import pytest
import requests

from raylake.cli import main
from raylake.config.loader import compose_config
from raylake.errors import ModelRequestError, MonitorError
from raylake.lake.commit import write_table
from raylake.lake.runs import get_run, list_runs
from raylake.serve.outcomes import add_outcomes, check_items, check_rows
from raylake.serve.request_log import SCHEMA as LOG_SCHEMA

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
LOG = "serving/requests"
OUT = "serving/outcomes"


def log_requests(lake, ids: list[str], units: list[str] | None = None) -> None:
    rows = [{"request_id": r, "at": T0, "unit_id": (units or [None] * len(ids))[i],
             "experiment": "raylake", "arm": "main", "model_name": "toy", "model_version": 1,
             "shadow": False, "status": 200, "rows": 2, "latency_ms": 1.0}
            for i, r in enumerate(ids)]
    write_table(lake, LOG, pa.Table.from_pylist(rows, schema=LOG_SCHEMA))


def outcomes(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows)


# ------------------------------------------------------------------ adding (no Ray)


def test_adding_is_idempotent_per_key_and_reports_conflicts_and_unknown_ids(lake):
    log_requests(lake, ["r1", "r2", "r3"], ["u1", "u2", "u1"])
    first = outcomes([{"request_id": "r1", "row": 0, "outcome": 1},
                      {"request_id": "r1", "row": 1, "outcome": 0},
                      {"request_id": "r2", "outcome": 1},
                      {"request_id": "late", "outcome": 0}])
    c = add_outcomes(lake, OUT, first, "cli", LOG)
    assert (c["added"], c["duplicate"], c["conflicting"], c["unknown"]) == (4, 0, 0, 1)
    assert c["unknown_ids"] == ["request_id=late"] and c["log_version"] == 0
    version = lake.version(OUT)
    # The same outcomes again add nothing, commit nothing.
    again = add_outcomes(lake, OUT, first, "cli", LOG)
    assert (again["added"], again["duplicate"], again["conflicting"]) == (0, 4, 0)
    assert lake.version(OUT) == version
    # A different value for a recorded key is kept out and named; the first one stands.
    c = add_outcomes(lake, OUT, outcomes([{"request_id": "r1", "row": 1, "outcome": 1},
                                          {"request_id": "r3", "outcome": 1},
                                          {"request_id": "r3", "outcome": 0}]), "http", LOG)
    assert (c["added"], c["duplicate"], c["conflicting"]) == (1, 0, 2)
    assert c["conflicting_ids"] == ["request_id=r1 row 1", "request_id=r3"]
    table = lake.read(OUT).to_pylist()
    got = {(r["request_id"], r["row"]): r["outcome"] for r in table}
    assert got == {("r1", 0): 1.0, ("r1", 1): 0.0, ("r2", 0): 1.0, ("late", 0): 0.0,
                   ("r3", 0): 1.0}
    # Outcomes sent by request id carry the answer's unit (for per-unit reports).
    units = {r["request_id"]: r["unit_id"] for r in table}
    assert units == {"r1": "u1", "r2": "u2", "r3": "u1", "late": None}
    assert {r["source"] for r in table} == {"cli", "http"}
    # Unit keys: checked against the log's unit ids.
    c = add_outcomes(lake, OUT, outcomes([{"unit_id": "u2", "outcome": 3.5},
                                          {"unit_id": "nobody", "outcome": 1}]), "cli", LOG)
    assert (c["added"], c["unknown"], c["unknown_ids"]) == (2, 1, ["unit_id=nobody"])


def test_concurrent_adds_of_the_same_ids_add_them_once(lake):
    rows = outcomes([{"request_id": f"q{i}", "outcome": i % 2} for i in range(40)])
    results: list[dict] = []
    threads = [threading.Thread(target=lambda: results.append(
        add_outcomes(lake, OUT, rows, "http", None))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r["added"] for r in results) == [0, 0, 0, 40]
    assert sum(r["duplicate"] for r in results) == 120
    assert lake.read(OUT).num_rows == 40
    # No log table configured: ids are not checked (and not called unknown).
    assert all(r["unknown"] == 0 for r in results)


@pytest.mark.parametrize(("rows", "text"), [
    ([{"request_id": "a", "outcome": 1}, {"row": 0, "outcome": 1}],
     "outcomes[1].request_id: the outcome has neither a request_id nor a unit_id"),
    ([{"request_id": "a", "outcome": float("nan")}], "outcomes[0].outcome is nan"),
    ([{"request_id": "a", "outcome": float("inf")}], "outcomes[0].outcome is inf"),
    ([{"request_id": "a", "row": -1, "outcome": 1}], "outcomes[0].row is -1; it must be an integer >= 0"),
    ([{"request_id": "a", "row": 0.5, "outcome": 1}], "outcomes[0].row is 0.5"),
    ([{"unit_id": "a", "outcome": "1"}, {"unit_id": "b", "outcome": "soon"}],
     "outcomes[1].outcome is 'soon'"),
    ([{"request_id": "a", "outcome": 1, "outcome_at": "yesterday"}],
     "outcomes[0].outcome_at is 'yesterday'"),
    ([{"id": "a", "outcome": 1}], "no request_id or unit_id column (columns: id, outcome)"),
    ([{"request_id": "a", "result": 1}], "no outcome column"),
])
def test_bad_rows_are_refused_naming_the_row_and_field(lake, rows, text):
    with pytest.raises(MonitorError) as err:
        add_outcomes(lake, OUT, outcomes(rows), "cli", None)
    assert text in str(err.value)
    assert not lake.exists(OUT)  # nothing written, not even the table


def fail(status, message, kind):
    return ModelRequestError(status, message, kind)


@pytest.mark.parametrize(("items", "status", "text"), [
    ("x", 422, "outcomes must be a non-empty list"),
    ([], 422, "outcomes must be a non-empty list"),
    ([1], 422, "outcomes[0] is 1; it must be an object"),
    ([{"request_id": "a", "outcom": 1}], 422, "outcomes[0].outcom is not a field of an "
                                              "outcome. Did you mean 'outcome'?"),
    ([{"request_id": {"x": 1}, "outcome": 1}], 422, "outcomes[0].request_id is dict"),
    ([{"request_id": "a" * 5000, "outcome": 1}], 422, "text of at most 1024"),
    ([{"request_id": "a", "outcome": True, "row": True}], 422, "outcomes[0].row is True"),
    ([{"request_id": "a", "outcome": 10 ** 400}], 422, "outcomes[0].outcome is 1000"),
    ([{"request_id": "a", "outcome": None}], 422, "outcomes[0].outcome is None"),
    ([{"request_id": "a", "outcome": 1, "outcome_at": 5}], 422, "outcomes[0].outcome_at is 5"),
    ([{"request_id": f"r{i}", "outcome": 1} for i in range(11)], 413, "11 outcomes is over"),
])
def test_bad_items_of_a_body_get_4xx_naming_the_field(items, status, text):
    with pytest.raises(ModelRequestError) as err:
        check_items(items, max_rows=10, max_string=1024, fail=fail)
    assert err.value.status == status and text in str(err.value), str(err.value)
    assert len(str(err.value)) < 400  # a huge value is never echoed whole


def test_checked_rows_take_booleans_integer_ids_and_times():
    t = check_rows(pa.table({"unit_id": pa.array([7, 8]), "outcome": [True, False],
                             "outcome_at": ["2013-07-01T18:00:00Z", None]}))
    assert t["unit_id"].to_pylist() == ["7", "8"] and t["outcome"].to_pylist() == [1.0, 0.0]
    assert t["row"].to_pylist() == [0, 0]
    assert t["outcome_at"][0].as_py() == dt.datetime(2013, 7, 1, 18, tzinfo=dt.timezone.utc)
    ok = check_items([{"request_id": "a", "row": 2, "outcome": 0.25,
                       "outcome_at": "2013-07-01T18:00:00+02:00"}],
                     max_rows=5, max_string=100, fail=fail)
    assert ok["outcome_at"][0].as_py() == dt.datetime(2013, 7, 1, 16, tzinfo=dt.timezone.utc)


# ------------------------------------------------------------------ the CLI (no Ray)


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.slow
def test_cli_adds_csv_and_json_lines_once_and_records_the_file(lake, tmp_path, capsys):
    log_requests(lake, ["r1", "r2", "r3"], ["u1", "u2", "u3"])
    csv = tmp_path / "delays.csv"
    csv.write_text("request_id,row,delayed,note\nr1,0,1,x\nr1,1,0,y\nr2,0,true,z\nr9,0,0,\n")
    root = f"lake.root={lake.root}"
    code, out, err = cli(capsys, "outcomes", "add", str(csv), root, "outcomes.outcome=delayed")
    assert code == 0, err
    assert "added 4, duplicate 0, conflicting 0, unknown 1" in out and "request_id=r9" in out
    code, out, _ = cli(capsys, "outcomes", "add", str(csv), root, "outcomes.outcome=delayed")
    assert code == 0 and "added 0, duplicate 4" in out
    assert lake.read(OUT).num_rows == 4
    run = list_runs(lake, "outcomes-add", 1)[0]
    rec = get_run(lake, run["run_id"])
    import hashlib

    sha = hashlib.sha256(csv.read_bytes()).hexdigest()
    files = [i for i in rec["inputs"] if i.get("kind") == "files"]
    assert files == [{"kind": "files", "table": OUT, "files": [str(csv)], "sha256": sha,
                      "fingerprint": sha, "rows": 4, "role": "outcomes"}]
    assert {"table": LOG, "version": 0, "role": "request-log"} in rec["inputs"]
    assert rec["outputs"] == [{"table": OUT, "version": lake.version(OUT), "rows": 0}]
    assert rec["metrics"]["duplicate"] == 4

    # JSON Lines keyed by unit, outcome times given; a conflict is reported, not written.
    jl = tmp_path / "rebooked [nov], 1.jsonl"  # any path is one argument
    jl.write_text("\n".join(json.dumps(r) for r in [
        {"unit_id": "u2", "outcome": 1, "outcome_at": "2026-11-02T10:00:00Z"},
        {"unit_id": "u3", "outcome": 0}]) + "\n")
    code, out, err = cli(capsys, "outcomes", "add", str(jl), root, "outcomes.join_on=unit_id")
    assert code == 0, err
    assert "added 2, duplicate 0, conflicting 0, unknown 0" in out
    jl.write_text(json.dumps({"unit_id": "u3", "outcome": 1}) + "\n")
    code, out, _ = cli(capsys, "outcomes", "add", str(jl), root, "outcomes.join_on=unit_id")
    assert "conflicting 1" in out and "unit_id=u3" in out
    assert lake.read(OUT, filters=[("unit_id", "=", "u3")])["outcome"].to_pylist() == [0.0]


@pytest.mark.parametrize(("name", "text", "args", "message"), [
    ("bad.csv", "request_id,outcome\nr1,1\nr2,maybe\n", {},
     "bad.csv record 2, column outcome is 'maybe'; it must be a finite number"),
    ("bad.csv", "request_id,row,outcome\nr1,-3,1\n", {}, "record 1, column row is -3"),
    ("units.csv", "unit_id,outcome\nu1,1\n", {}, "has no request_id column (columns: unit_id, "
                                                 "outcome); outcomes.join_on=request_id needs one. "
                                                 "It has unit_id: set outcomes.join_on=unit_id."),
    ("o.csv", "request_id,delayd\nr1,1\n", {"outcome": "delayed"},
     "no 'delayed' column for the outcome (columns: request_id, delayd). Did you mean 'delayd'?"),
    ("o.txt", "request_id,outcome\n", {}, "Cannot tell the format of"),
    ("o.jsonl", '{"request_id": "r1", "outcome": 1}\n{"request_id": \n', {}, "Cannot read"),
    ("gone.csv", None, {}, "No outcomes file"),
])
def test_a_bad_file_is_refused_naming_record_column_and_fix(tmp_path, name, text, args,
                                                             message):
    from raylake.serve.outcomes import file_format, read_file

    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(MonitorError) as err:
        read_file(str(path), file_format(str(path), None), key=args.get("key", "request_id"),
                  outcome=args.get("outcome", "outcome"))
    assert message in str(err.value)


@pytest.mark.slow
def test_cli_exits_1_on_a_bad_file_or_none(lake, tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text("request_id,outcome\nr1,1\nr2,maybe\n")
    code, _, err = cli(capsys, "outcomes", "add", str(path), f"lake.root={lake.root}")
    assert code == 1 and "bad.csv record 2, column outcome is 'maybe'" in err, err
    assert not lake.exists(OUT)
    code, _, err = cli(capsys, "outcomes", "add", f"lake.root={lake.root}")
    assert code == 1 and "raylake outcomes add FILE" in err


@pytest.mark.slow
def test_ab_report_reads_outcomes_added_by_the_cli(lake, tmp_path, capsys):
    from test_ab_report import answers_and_outcomes

    from raylake.serve.jobs import ab_report

    answers_and_outcomes(lake, {"control": 0.2, "treatment": 0.35}, units=1500)
    # The same outcomes, recorded as a user would: a CSV of unit ids and 0/1.
    rows = lake.read("serving/delay_ab_outcomes").to_pylist()
    csv = tmp_path / "rebooked.csv"
    csv.write_text("unit_id,rebooked\n" + "".join(f"{r['unit_id']},{int(r['rebooked'])}\n"
                                                  for r in rows))
    code, out, err = cli(capsys, "outcomes", "add", str(csv), f"lake.root={lake.root}",
                         "experiment=delay_ab", "outcomes.join_on=unit_id",
                         "outcomes.outcome=rebooked")
    assert code == 0 and f"added {len(rows)}, duplicate 0, conflicting 0, unknown 0" in out, err
    conf = compose_config([f"lake.root={lake.root}", "experiment=delay_ab",
                           f"ab_report.outcomes_table={OUT}", "ab_report.outcome=outcome"],
                          job="ab-report")
    report = ab_report(conf, echo=lambda *_: None)
    direct = ab_report(compose_config([f"lake.root={lake.root}", "experiment=delay_ab"],
                                      job="ab-report"), echo=lambda *_: None)
    # Same numbers as the report on the hand-written table.
    assert [(a["arm"], a["n"], a["value"]) for a in report["arms"]] == \
        [(a["arm"], a["n"], a["value"]) for a in direct["arms"]]
    assert report["arms"][1]["comparison"]["significant"]


def test_delay_ab_serves_entity_keys_like_the_main_config():
    from raylake.config.loader import to_config
    from raylake.features.definitions import resolve

    conf = to_config(compose_config(["experiment=delay_ab"], job="serve"))
    assert conf.model_server.feature_service == conf.training_set.feature_service
    resolve(conf.features).select(conf.model_server.feature_service)  # a service that exists


# ------------------------------------------------------------------ gauges (no Ray)


def alert_rows(model: str, windows: list[tuple[dt.datetime, str, str, str]]) -> pa.Table:
    from raylake.monitor.alerts import SCHEMA, alert_id

    rows = []
    for i, (ws, rule, arm, state) in enumerate(windows):
        rows.append({"alert_id": alert_id(model, rule, arm, ws), "model": model,
                     "model_version": 1, "arm": arm, "rule": rule, "kind": "drift_share",
                     "window_start": ws, "window_end": ws + dt.timedelta(days=1), "value": 0.5,
                     "threshold": 0.3, "message": "m", "state": state, "attempts": 0,
                     "last_error": None, "run_id": "r",
                     "created_at": T0 + dt.timedelta(seconds=i)})
    return pa.Table.from_pylist(rows, schema=SCHEMA)


MON_SCHEMA = pa.schema([
    ("model", pa.string()), ("model_version", pa.int32()), ("arm", pa.string()),
    ("window_start", pa.timestamp("us", tz="UTC")), ("window_end", pa.timestamp("us", tz="UTC")),
    ("feature", pa.string()), ("check", pa.string()), ("segment", pa.string()),
    ("value", pa.float64()), ("threshold", pa.float64()), ("flagged", pa.bool_()),
    ("estimated", pa.bool_()), ("rows", pa.int64()), ("detail", pa.string()),
    ("reference", pa.string()), ("run_id", pa.string()),
    ("created_at", pa.timestamp("us", tz="UTC"))])


def monitoring_rows(model: str) -> pa.Table:
    d1, d2 = T0, T0 + dt.timedelta(days=1)

    def row(ws, feature, check, value, flagged=False, segment="", created=0, arm="main"):
        return {"model": model, "model_version": 1, "arm": arm, "window_start": ws,
                "window_end": ws + dt.timedelta(days=1), "feature": feature, "check": check,
                "segment": segment, "value": value, "threshold": 0.05, "flagged": flagged,
                "estimated": check.endswith("_estimated"), "rows": 100, "detail": "{}",
                "reference": "t@1", "run_id": "r", "created_at": T0 + dt.timedelta(seconds=created)}

    rows = [
        # Day 1: one of two features drifted; realised AUC 0.7.
        row(d1, "wind", "drift", 0.01, True), row(d1, "noise", "drift", 0.5),
        row(d1, "_model", "auc", 0.7),
        # Day 2 (latest): three of four inputs drifted (the prediction is no input).
        *[row(d2, f, "drift", 0.01, True) for f in ("wind", "noise", "carrier")],
        row(d2, "temp", "drift", 0.4), row(d2, "_prediction", "drift", 0.5),
        row(d2, "_model", "auc_estimated", 0.66),
        # Day 2's outcomes have not arrived: its realised AUC has no value (day 1's shows).
        row(d2, "_model", "auc", None),
        # A re-run rewrote one row: the newest row of a key wins.
        row(d2, "temp", "drift", 0.01, True, created=5),
        row(d2, "_model", "auc_estimated", 0.61, created=5),
        # A segment's rows are not the arm's.
        row(d2, "_model", "auc_estimated", 0.1, segment="carrier=AA"),
        row(d2, "wind", "drift", 0.4, arm="treatment"),
    ]
    return pa.Table.from_pylist(rows, schema=MON_SCHEMA)


def test_gauges_show_the_latest_window(lake):
    from raylake.serve.alert_gauges import AlertGauges

    # Not "toy": with the session's Ray up, these driver-side gauges are exported too,
    # and must not shadow the replica's series in test_gauges_on_rays_metrics_endpoint.
    gauges = AlertGauges(lake, ["unit"], refresh_s=60)
    assert gauges.refresh() == {"alerts": {}, "drift": {}, "auc": {}}  # no tables yet
    d1, d2 = T0, T0 + dt.timedelta(days=1)
    write_table(lake, "_alerts", alert_rows("unit", [
        (d1, "drifted_features", "main", "pending"), (d1, "drifted_features", "main", "delivered"),
        (d2, "drifted_features", "main", "pending"), (d2, "null_jump", "main", "no_sink"),
        (d2, "null_jump", "treatment", "no_sink")]), system=True)
    write_table(lake, "_alerts", alert_rows("other", [(d2, "r", "main", "pending")]), system=True)
    write_table(lake, "monitoring/unit", monitoring_rows("unit"))
    got = gauges.refresh()
    assert got["drift"] == {("unit", "main"): 1.0, ("unit", "treatment"): 0.0}
    assert got["auc"] == {("unit", "main", "false"): 0.7, ("unit", "main", "true"): 0.61}
    assert got["alerts"] == {("unit", "drifted_features", "pending"): 1.0,
                             ("unit", "null_jump", "no_sink"): 2.0}
    # Delivered since: the series of the old state goes to 0, the new one counts.
    row = alert_rows("unit", [(d2, "drifted_features", "main", "delivered")])
    write_table(lake, "_alerts", row.set_column(
        row.schema.get_field_index("created_at"), "created_at",
        pa.array([T0 + dt.timedelta(hours=1)], pa.timestamp("us", tz="UTC"))), system=True)
    got = gauges.refresh()["alerts"]
    assert got[("unit", "drifted_features", "pending")] == 0.0
    assert got[("unit", "drifted_features", "delivered")] == 1.0


def test_gauges_survive_an_unreadable_table(lake, caplog):
    from raylake.serve.alert_gauges import AlertGauges

    write_table(lake, "monitoring/unit", pa.table({"model": ["unit"], "x": [1]}))  # no such columns
    gauges = AlertGauges(lake, ["unit"], refresh_s=60)
    assert gauges.refresh()["drift"] == {}
    assert "cannot read monitoring/unit" in caplog.text


# ------------------------------------------------------------------ the server (Ray)

READ_KEY = "r" * 8 + "-read-secret-0002"
PUSH_KEY = "p" * 8 + "-push-secret-0002"
KEYS = f"reader:read:{READ_KEY}\npusher:read+push:{PUSH_KEY}\n"


@pytest.fixture(scope="module")
def server(ray_session, tmp_path_factory):
    from conftest import free_port
    from ray import serve
    from test_model_server import register_toys

    from raylake.config.loader import to_config
    from raylake.lake import Lake
    from raylake.serve.app import build_app

    work = tmp_path_factory.mktemp("outcomes")
    keys = work / "keys"
    keys.write_text(KEYS)
    overrides = [f"lake.root={work / 'lake'}", "model=toy:champion",
                 "model_server.max_replicas=1", "model_server.log_flush_rows=10",
                 "model_server.log_flush_s=0.3", "model_server.live_profile=false",
                 f"model_server.api_keys_file={keys}", "model_server.alerts_refresh_s=1",
                 "outcomes.max_rows_per_request=20"]
    conf = to_config(compose_config(overrides, job="serve"))
    lake = Lake.from_config(conf.lake)
    register_toys(lake)
    # Monitoring state the replica's gauges will show.
    write_table(lake, "_alerts", alert_rows("toy", [
        (T0 + dt.timedelta(days=1), "drifted_features", "main", "pending")]), system=True)
    write_table(lake, "monitoring/toy", monitoring_rows("toy"))
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(conf, lake), name="outcomes", route_prefix="/")
    yield {"url": f"http://127.0.0.1:{port}", "lake": lake, "keys": keys, "root": str(work / "lake"),
           "overrides": overrides, "http": requests.Session()}
    serve.delete("outcomes")
    serve.shutdown()


def post(srv, path: str, body, key: str | None = PUSH_KEY) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    r = srv["http"].post(srv["url"] + path, data=data, headers=headers, timeout=60)
    assert r.status_code < 500, r.text
    return r


def wait_for(predicate, timeout: float = 60.0, what: str = ""):
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def logged(srv, ids: set[str]) -> bool:
    lake = srv["lake"]
    return lake.exists(LOG) and ids <= set(lake.read(LOG, columns=["request_id"])
                                           ["request_id"].to_pylist())


@pytest.mark.slow
def test_post_outcomes_over_http(server):
    answers = [post(server, "/predict", {"unit_id": f"user-{i}", "features": {
        "wind": float(i), "noise": 0.0, "carrier": "AA"}}, key=READ_KEY).json()
        for i in range(24)]
    ids = [a["request_id"] for a in answers]
    wait_for(lambda: logged(server, set(ids)), what="the request log")
    body = {"outcomes": [{"request_id": r, "row": 0, "outcome": i % 3 == 0}
                         for i, r in enumerate(ids[:18])]}
    # Keys: none -> 401, a read key -> 403, a push key -> 200.
    assert post(server, "/outcomes", body, key=None).status_code == 401
    refused = post(server, "/outcomes", body, key=READ_KEY)
    assert refused.status_code == 403 and "lacks the 'push' scope" in refused.json()["error"]
    r = post(server, "/outcomes", body)
    assert r.status_code == 200, r.text
    assert r.json() == {"added": 18, "duplicate": 0, "conflicting": 0, "unknown": 0,
                        "conflicting_ids": [], "unknown_ids": []}
    # A retry adds nothing; a changed value conflicts; an id never answered is unknown.
    assert post(server, "/outcomes", body).json()["duplicate"] == 18
    mixed = {"outcomes": [{"request_id": ids[0], "outcome": 0},
                          {"request_id": "never-answered", "outcome": 1,
                           "outcome_at": "2026-11-02T08:00:00Z"},
                          *[{"request_id": r, "outcome": 1} for r in ids[18:]]]}
    got = post(server, "/outcomes", mixed).json()
    assert (got["added"], got["conflicting"], got["unknown"]) == (7, 1, 1)
    assert got["conflicting_ids"] == [f"request_id={ids[0]}"]
    assert got["unknown_ids"] == ["request_id=never-answered"]
    stored = server["lake"].read(OUT).to_pylist()
    assert len(stored) == 25 and {r["source"] for r in stored} == {"http"}
    assert {r["unit_id"] for r in stored if r["request_id"] in ids} == \
        {f"user-{i}" for i in range(24)}

    # The A/B report reads them (one arm here: control is `main`).
    from raylake.serve.jobs import ab_report

    conf = compose_config([*server["overrides"], f"ab_report.outcomes_table={OUT}",
                           "ab_report.join_on=unit_id", "ab_report.control=main"],
                          job="ab-report")
    report = ab_report(conf, echo=lambda *_: None)
    main_arm = report["arms"][0]
    assert report["metric"] == "rate" and main_arm["n"] == 24 and main_arm["awaiting"] == 0
    assert main_arm["value"] == pytest.approx(sum(i % 3 == 0 for i in range(18)) / 24 + 6 / 24)


@pytest.mark.slow
@pytest.mark.parametrize(("body", "status", "text"), [
    (b"{not json", 400, "not JSON"),
    ([1], 400, "The body must be"),
    ({"outcomes": [], "extra": 1}, 422, "The body must be"),
    ({"outcomes": [{"request_id": "a", "outcome": "late"}]}, 422, "outcomes[0].outcome is 'late'"),
    ({"outcomes": [{"request_id": "a", "row": -1, "outcome": 1}]}, 422, "outcomes[0].row is -1"),
    ({"outcomes": [{"outcome": 1}]}, 422, "neither a request_id nor a unit_id"),
    ({"outcomes": [{"request_id": f"r{i}", "outcome": 1} for i in range(21)]}, 413,
     "21 outcomes is over the limit of 20"),
    (b'{"outcomes": [{"request_id": "a", "outcome": NaN}]}', 400, "NaN"),
    (b"[" * 50_000, 400, "nests deeper"),
])
def test_bad_outcome_bodies_get_4xx(server, body, status, text):
    r = post(server, "/outcomes", body)
    assert r.status_code == status and text in r.json()["error"], r.text
    assert server["http"].get(server["url"] + "/health", timeout=10).json()["status"] == "ok"


@pytest.mark.slow
def test_without_keys_outcomes_are_off(server):
    server["keys"].write_text("# no keys\n")
    try:
        r = post(server, "/outcomes", {"outcomes": [{"request_id": "x", "outcome": 1}]})
        assert r.status_code == 403 and "push is off" in r.json()["error"]
        assert "RAYLAKE_API_KEYS" in r.json()["error"]
    finally:
        server["keys"].write_text(KEYS)


@pytest.mark.slow
def test_gauges_on_rays_metrics_endpoint(server):
    import ray

    port = ray._private.worker.global_worker.node.metrics_export_port
    url = f"http://127.0.0.1:{port}/metrics"

    def scraped() -> str | None:
        try:
            text = requests.get(url, timeout=10).text
        except requests.RequestException:
            return None
        # The replica's own series (model "toy"): driver-side gauges of other tests in this
        # session are exported too and may show first.
        series = [ln for ln in text.splitlines() if ln.startswith("ray_raylake_monitor_")
                  and 'model="toy"' in ln]
        wanted = ("ray_raylake_monitor_auc", "ray_raylake_monitor_drift_share",
                  "ray_raylake_monitor_alerts")
        return text if all(any(ln.startswith(w) for ln in series) for w in wanted) else None

    text = wait_for(scraped, timeout=180, what=f"the gauges on {url}")
    lines = [ln for ln in text.splitlines() if ln.startswith("ray_raylake_monitor_")]

    def value(name: str, **tags: str) -> float:
        for ln in lines:
            if ln.startswith(name + "{") and all(f'{k}="{v}"' in ln for k, v in tags.items()):
                return float(ln.rsplit(" ", 1)[1])
        raise AssertionError(f"{name} {tags} not in {lines}")

    assert value("ray_raylake_monitor_drift_share", model="toy", arm="main") == 1.0
    assert value("ray_raylake_monitor_auc", model="toy", arm="main", estimated="true") == 0.61
    assert value("ray_raylake_monitor_auc", model="toy", arm="main", estimated="false") == 0.7
    assert value("ray_raylake_monitor_alerts", model="toy", rule="drifted_features",
                 state="pending") == 1.0
