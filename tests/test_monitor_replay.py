"""The replayed year on a small slice: `raylake replay` over two summer months, the real
model server over HTTP on a replayed clock, outcomes a day later, `raylake monitor` and
`raylake ct` after each month, the report. benchmarks/replay_year.py runs the whole year
(docs/monitoring.md)."""

from __future__ import annotations

import json

import pytest

from raylake.config.loader import compose_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def replayed(ray_session, tmp_path_factory):
    from conftest import free_port
    from ray import serve

    from raylake.chain.jobs import replay

    work = tmp_path_factory.mktemp("replay")
    root = str(work / "lake")
    lines: list[str] = []
    cfg = compose_config([
        f"lake.root={root}", f"online.path={work / 'online.db'}",
        f"model_server.port={free_port()}", "model_server.log_flush_s=0.5",
        "model_server.log_flush_rows=50", f"model_server.log_spool_dir={work / 'spool'}",
        "train.xgboost.num_boost_round=20", "train.checkpoint_every=20",
        # Two summer months after a January-March model, two days of each, 150 flights a day.
        "replay.start=2013-07-01", "replay.end=2013-09-01", "replay.days_per_month=2",
        "replay.rows_per_day=150", f"replay.summary_file={work / 'summary.json'}",
        f"monitor.report_dir={work / 'reports'}", "ct.trigger=always",
    ])
    try:
        out = replay(cfg, echo=lines.append)
    finally:
        serve.shutdown()
    from raylake.lake import Lake, Storage

    return {"out": out, "lines": lines, "lake": Lake(Storage.from_config(root)), "work": work}


def test_every_answer_is_logged_and_every_outcome_recorded(replayed):
    lake, sent = replayed["lake"], replayed["out"]["sent"]
    assert sent["rows"] == 4 * 150
    assert lake.count("serving/requests") == sent["requests"]
    outcomes = lake.read("serving/outcomes")
    # Every flight that departed has its outcome once (cancelled ones have none).
    assert outcomes.num_rows == sent["outcomes"] > 0.95 * sent["rows"]
    keys = set(zip(outcomes["request_id"].to_pylist(), outcomes["row"].to_pylist()))
    assert len(keys) == outcomes.num_rows


def test_summer_weather_drifts_against_the_january_to_march_reference(replayed):
    months = {m["month"]: m for m in replayed["out"]["months"]}
    assert set(months) == {"2013-07", "2013-08"}
    # July's replayed days fall in one 7-day window (June 27 - July 4), judged once it
    # ended; temperature drifted in it. August's window (August 1 - 8) has not ended when
    # the slice stops, so it is not judged (only ended windows are).
    july = months["2013-07"]
    assert july["windows"] == 1
    assert july["flagged"].get("drift:weather__temp") == 1.0, july["flagged"]
    assert "windows" not in months["2013-08"]
    for m in months.values():
        assert m["labelled"] > 250 and 0.5 < m["auc"] < 0.9
        # CBPE's estimate is an AUC of the same scores, close to what was realised.
        assert abs(m["auc_estimated"] - m["auc"]) < 0.15


def test_ct_decides_after_each_month_and_lineage_shows_it(replayed):
    from raylake.lake.runs import list_runs

    months = replayed["out"]["months"]
    decisions = [m["ct"]["decision"] for m in months]
    assert all(d in ("promoted", "kept_champion") for d in decisions), decisions
    runs = [r for r in list_runs(replayed["lake"], job="ct") if r["status"] == "succeeded"]
    assert len(runs) == 2
    for r in runs:
        m = r["metrics"]
        assert m["decision"] in decisions and m["challenger"]["cost"] > 0
        assert m["champion"]["cost"] > 0  # both judged on the same holdout
    # A month after a promotion is served by the new champion.
    if months[0]["ct"]["decision"] == "promoted":
        assert months[1]["versions"] == [months[0]["ct"]["challenger"]]


def test_monitoring_table_and_report(replayed):
    from raylake.monitor.report import build

    lake = replayed["lake"]
    rows = lake.read("monitoring/delay_model").to_pylist()
    checks = {r["check"] for r in rows}
    assert {"drift", "null_share", "volume", "auc", "auc_estimated"} <= checks
    report = build(lake, "delay_model")
    assert report["features"] and json.dumps(report)
    lines = "\n".join(replayed["lines"])
    assert "2013-07: " in lines and "2013-08: " in lines


def test_a_store_no_longer_fed_serves_nulls_and_the_null_share_check_flags_it(replayed):
    # The last day's rows again a day later, without materializing: the newest weather is
    # older than the view's 2-hour TTL, so lookups serve nulls (training/serving skew).
    stale = replayed["out"]["stale"]
    assert stale["day"] == "2013-08-03"
    assert {"weather__temp", "weather__humid", "weather__wind_speed"} <= set(
        stale["null_share_flagged"]), stale
    # Not the request's own fields, which do not come from the store.
    assert "distance" not in stale["null_share_flagged"]
