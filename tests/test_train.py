"""XGBoost on Ray Train: time splits, metrics, checkpoints and resume, registry, reproducibility."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from raylake.config.loader import compose_config
from raylake.errors import ConfigError
from raylake.lake.commit import write_table
from raylake.lake.runs import get_run
from raylake.models.registry import ModelRegistry
from raylake.train import metrics
from raylake.train.jobs import train

T0 = dt.datetime(2013, 1, 1, tzinfo=dt.timezone.utc)


def training_table(n: int = 6000, seed: int = 0) -> pa.Table:
    """A planted signal: delay odds rise with `wind` and for carrier 'BB'; `noise` is none."""
    rng = np.random.default_rng(seed)
    wind = rng.gamma(2.0, 5.0, n)
    carrier = rng.choice(["AA", "BB", "CC"], n)
    logit = -2.0 + 0.12 * wind + np.where(carrier == "BB", 1.0, 0.0)
    label = rng.random(n) < 1 / (1 + np.exp(-logit))
    wind[rng.random(n) < 0.05] = np.nan
    return pa.Table.from_pandas(pd.DataFrame({
        "time_hour": T0 + pd.to_timedelta(np.sort(rng.integers(0, 300 * 24, n)), unit="h"),
        "carrier": carrier,
        "wind": wind,
        "noise": rng.normal(size=n),
        "flight": rng.integers(1, 5000, n),
        "delayed": label,
    }), preserve_index=False)


def overrides(root: str, *extra: str) -> list[str]:
    return [f"lake.root={root}", "train.table=train_set", "train.label=delayed",
            "train.exclude=[flight]", "train.categorical=[carrier]",
            "train.split.valid_start=2013-08-01", "train.split.test_start=2013-09-15",
            "train.xgboost.num_boost_round=20", "train.checkpoint_every=5",
            "train.xgboost.params.max_depth=3", "train.model_name=toy", *extra]


@pytest.fixture
def toy_lake(lake):
    write_table(lake, "train_set", training_table())
    return lake


def quiet(*_a, **_k) -> None:
    pass


def test_xgboost_two_workers_learns_records_and_registers(ray_session, toy_lake):
    root = toy_lake.root
    out = train(compose_config(overrides(root, "train.scaling.threads_per_worker=2"),
                               job="train"), echo=quiet)
    m = out["metrics"]
    assert m["test"]["auc"] > 0.7 and m["valid"]["auc"] > 0.7
    # Two threads on half a CPU each: OpenMP in the worker allows both (Ray's default
    # for a fractional CPU would cap XGBoost at one).
    assert m["reported"]["omp_threads"] == 2
    assert m["features"] == ["wind", "noise", "carrier"]  # label, time and excluded columns out
    assert m["reported"]["round"] == 20
    for key in ("log_loss", "accuracy", "calibration_error", "cost_per_1000",
                "cost_per_1000_do_nothing"):
        assert key in m["test"]
    assert m["test"]["cost_per_1000"] < m["test"]["cost_per_1000_do_nothing"]
    # Time-based splits: no row of a later split is older than the split's start.
    assert m["split"] == {"valid_start": "2013-08-01T00:00:00+00:00",
                          "test_start": "2013-09-15T00:00:00+00:00"}
    table = training_table().to_pandas()
    assert m["test"]["rows"] == int((table["time_hour"] >= "2013-09-15").sum())
    run = get_run(toy_lake, out["run_id"])
    assert run["status"] == "succeeded"
    assert {"table": "train_set", "version": 0, "role": "training-set", "run_id": None} in run["inputs"]
    assert run["outputs"] == [{"model": "toy", "version": 1, "stage": "candidate"}]
    assert run["config"]["train"]["table_version"] == "0"
    mv, booster = ModelRegistry(toy_lake).load("toy", 1)
    assert mv.run_id == out["run_id"] and mv.metrics["test"]["auc"] == m["test"]["auc"]
    assert [f["name"] for f in mv.features] == ["wind", "noise", "carrier"]
    from raylake.models.flavors import get_flavor
    from raylake.models.spec import FeatureSpec

    xgb = get_flavor("xgboost")
    spec = FeatureSpec.from_dict(mv.preprocessing)
    sample = training_table(200, seed=5)
    np.testing.assert_allclose(xgb.predict(booster, spec, sample),
                               xgb.predict(out["model"], spec, sample), rtol=0, atol=0)
    # inplace_predict on the encoded matrix scores as a categorical DMatrix does.
    import xgboost

    dm = xgboost.DMatrix(spec.matrix(sample), feature_types=spec.feature_types(),
                         enable_categorical=True)
    np.testing.assert_allclose(xgb.predict(booster, spec, sample), booster.predict(dm),
                               rtol=1e-6)


def test_killed_worker_resumes_from_checkpoint(ray_session, toy_lake, tmp_path):
    marker = tmp_path / "killed"
    out = train(compose_config(overrides(toy_lake.root, "train.max_failures=1"), job="train"),
                echo=quiet, kill_at={"round": 12, "rank": 1, "marker": str(marker)})
    assert marker.read_text() == "12"  # the worker did die, after the round-10 checkpoint
    assert out["model"].num_boosted_rounds() == 20
    assert out["metrics"]["test"]["auc"] > 0.7


def test_same_config_and_versions_give_same_metrics_and_from_run_repeats(ray_session, toy_lake):
    cfg = overrides(toy_lake.root, "train.scaling.num_workers=1", "train.register=false")
    first = train(compose_config(cfg, job="train"), echo=quiet)
    # The table moves on; --from-run still reads the version the first run read.
    write_table(toy_lake, "train_set", training_table(seed=9), mode="overwrite")
    again = train(compose_config([f"lake.root={toy_lake.root}",
                                  f"train.from_run={first['run_id']}"], job="train"), echo=quiet)
    assert again["metrics"]["test"] == first["metrics"]["test"]
    assert again["metrics"]["from_run"] == first["run_id"]
    assert get_run(toy_lake, again["run_id"])["inputs"][0]["version"] == 0


def test_bad_train_config_names_the_fix(ray_session, toy_lake):
    with pytest.raises(ConfigError, match="train.label='late' is not a column"):
        train(compose_config(overrides(toy_lake.root, "train.label=late"), job="train"), echo=quiet)
    with pytest.raises(ConfigError, match="Did you mean 'xgboost'"):
        train(compose_config(overrides(toy_lake.root, "train.trainer=xgbost"), job="train"),
              echo=quiet)
    with pytest.raises(ConfigError, match="valid_start .* must come before test_start"):
        train(compose_config(overrides(toy_lake.root, "train.split.valid_start=2013-10-01"),
                             job="train"), echo=quiet)


def test_metrics_match_definitions():
    y = np.array([0, 0, 1, 1, 1, 0], dtype=float)
    p = np.array([0.1, 0.4, 0.35, 0.8, 0.8, 0.8])
    # AUC by pairs: (pos, neg) ordered right count 1, ties 1/2.
    pairs = [(a, b) for a in p[y == 1] for b in p[y == 0]]
    want = np.mean([1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs])
    assert metrics.auc(y, p) == pytest.approx(want)

    class Cost:
        missed, false_alarm, per = 100.0, 20.0, 1000

    # At 0.5: one missed (0.35), one false alarm (0.8 on a 0): (100 + 20) / 6 * 1000.
    assert metrics.expected_cost(y, p, 0.5, Cost) == pytest.approx(120 / 6 * 1000)
    assert metrics.evaluate(y, p, 0.5, Cost)["cost_per_1000_do_nothing"] == pytest.approx(50000)
    assert metrics.calibration_error(np.array([1.0, 0.0]), np.array([0.5, 0.5])) == 0.0
    assert json.dumps(metrics.evaluate(y, p, 0.3, Cost))  # plain numbers for the run record
