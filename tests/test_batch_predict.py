"""Batch inference: a registered model over a lake table, predictions into the lake."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost
from test_train import training_table

from raylake.config.loader import compose_config
from raylake.errors import ConfigError
from raylake.lake.commit import write_table
from raylake.lake.runs import get_run
from raylake.models.flavors import get_flavor
from raylake.models.registry import ModelRegistry
from raylake.models.spec import FeatureSpec
from raylake.serve.jobs import batch_predict


@pytest.fixture
def scored_lake(lake):
    """A table to score and a small XGBoost model registered for it (trained here, no Ray)."""
    table = training_table(3000, seed=3)
    write_table(lake, "rows", table)
    spec = FeatureSpec(["wind", "noise"], ["carrier"], {"carrier": ["AA", "BB", "CC"]}, "delayed")
    d = xgboost.DMatrix(spec.matrix(table), label=spec.labels(table),
                        feature_types=spec.feature_types(), enable_categorical=True)
    booster = xgboost.train({"objective": "binary:logistic", "max_depth": 3}, d, 10)
    ModelRegistry(lake).register(
        "toy", booster, flavor="xgboost",
        features=[{"name": n, "type": "double"} for n in spec.names],
        training={"table": "rows", "version": 0}, config={}, metrics={}, run_id=None,
        preprocessing=spec.to_dict())
    return lake, table, booster, spec


def test_predictions_written_once_with_model_version_and_run(ray_session, scored_lake):
    lake, table, booster, spec = scored_lake
    args = [f"lake.root={lake.root}", "model=toy:latest", "table=rows",
            "batch_predict.batch_rows=700", "batch_predict.actors=2"]
    out = batch_predict(compose_config(args, job="batch-predict"), echo=lambda *_: None)
    assert out["rows"] == 3000 and not out["skipped"]
    got = lake.read("predictions/toy").to_pandas()
    assert len(got) == 3000
    assert set(got.columns) == {"time_hour", "flight", "delayed", "prediction", "model_name",
                                "model_version", "run_id"}
    assert (got["model_version"] == 1).all() and (got["run_id"] == out["run_id"]).all()
    # Each row's prediction is the model's on that row (rows matched by time and flight).
    want = table.to_pandas().assign(want=get_flavor("xgboost").predict(booster, spec, table))
    merged = got.merge(want[["time_hour", "flight", "want"]].drop_duplicates(["time_hour", "flight"]),
                       on=["time_hour", "flight"])
    np.testing.assert_allclose(merged["prediction"], merged["want"], rtol=1e-6)
    # Same model version, same input version: nothing added.
    again = batch_predict(compose_config(args, job="batch-predict"), echo=lambda *_: None)
    assert again["skipped"] and lake.count("predictions/toy") == 3000
    run = get_run(lake, out["run_id"])
    assert {"model": "toy", "version": 1, "role": "model"} in run["inputs"]


def test_missing_features_and_arguments_are_named(ray_session, scored_lake):
    lake, table, *_ = scored_lake
    write_table(lake, "other", table.drop_columns(["wind"]))
    with pytest.raises(ConfigError, match=r"lacks feature\(s\) \['wind'\]"):
        batch_predict(compose_config([f"lake.root={lake.root}", "model=toy", "table=other"],
                                     job="batch-predict"), echo=lambda *_: None)
    with pytest.raises(ConfigError, match="needs model="):
        batch_predict(compose_config([f"lake.root={lake.root}", "table=rows"],
                                     job="batch-predict"), echo=lambda *_: None)
