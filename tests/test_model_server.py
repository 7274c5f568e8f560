"""The model server through real HTTP against a running Ray Serve app: predictions,
bad requests, sticky A/B arms and their split, shadow answers, the request log."""

from __future__ import annotations

import json
import time
from collections import Counter

import numpy as np
import pytest
import requests
import xgboost
from conftest import free_port
from test_train import training_table

from raylake.config.loader import compose_config, to_config
from raylake.config.schema import (
    ArmConfig,
    EntityConfig,
    FeatureConfig,
    FeaturesConfig,
    FeatureViewConfig,
)
from raylake.errors import ConfigError
from raylake.models.flavors import get_flavor
from raylake.models.registry import ModelRegistry
from raylake.models.spec import FeatureSpec
from raylake.serve.ab import Arm, Assigner, bucket, resolve_arms

SPEC = FeatureSpec(["wind", "noise"], ["carrier"], {"carrier": ["AA", "BB", "CC"]}, "delayed")
WEIGHTS = {"control": 0.7, "treatment": 0.3}


def register_toys(lake) -> list:
    """Three versions of `toy`, trained here without Ray (depths 2, 3, 4)."""
    table = training_table(2000, seed=5)
    d = xgboost.DMatrix(SPEC.matrix(table), label=SPEC.labels(table),
                        feature_types=SPEC.feature_types(), enable_categorical=True)
    reg, boosters = ModelRegistry(lake), []
    for depth in (2, 3, 4):
        booster = xgboost.train({"objective": "binary:logistic", "max_depth": depth}, d, 8)
        reg.register("toy", booster, flavor="xgboost",
                     features=[{"name": "wind", "type": "float64"},
                               {"name": "noise", "type": "float64"},
                               {"name": "carrier", "type": "string"}],
                     training={"table": "rows", "version": 0}, config={}, metrics={},
                     run_id=None, preprocessing=SPEC.to_dict())
        boosters.append(booster)
    reg.promote("toy", 1)
    return boosters


@pytest.fixture(scope="module")
def server(ray_session, tmp_path_factory):
    from ray import serve

    from raylake.lake import Lake
    from raylake.serve.app import build_app

    root = str(tmp_path_factory.mktemp("ms") / "lake")
    port = free_port()
    conf = to_config(compose_config([f"lake.root={root}", "model_server.max_replicas=1",
                                     "model_server.max_rows=50", "model_server.log_flush_rows=20",
                                     "model_server.log_flush_s=0.5"], job="serve"))
    conf.model_server.arms = {
        "control": ArmConfig(model="toy:champion", weight=WEIGHTS["control"]),
        "treatment": ArmConfig(model="toy:2", weight=WEIGHTS["treatment"]),
        "challenger": ArmConfig(model="toy:latest", shadow=True),
    }
    # Entity-key requests: the toy's features by flight number, from the online store.
    conf.features = FeaturesConfig(
        name="toy", entities={"flight": EntityConfig(join_keys=["flight"], value_type="int64")},
        feature_views={"toy_view": FeatureViewConfig(
            source="toy_features", entities=["flight"],
            features={"wind": FeatureConfig("float64"), "noise": FeatureConfig("float64"),
                      "carrier": FeatureConfig("string")})},
        feature_services={"toy": ["toy_view"]})
    conf.model_server.feature_service = "toy"
    lake = Lake.from_config(conf.lake)
    boosters = register_toys(lake)
    write_online_rows(conf, lake)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(conf, lake), name="model", route_prefix="/")
    session = requests.Session()
    yield {"url": f"http://127.0.0.1:{port}", "lake": lake, "boosters": boosters, "conf": conf,
           "http": session}
    serve.delete("model")
    serve.shutdown()


STORED = {1: {"wind": 3.0, "noise": 0.1, "carrier": "AA"},
          2: {"wind": 25.0, "noise": -1.0, "carrier": "BB"}}


def write_online_rows(conf, lake) -> None:
    from raylake.features.online import open_store
    from raylake.features.online.base import entity_key
    from raylake.features.online.settings import store_settings

    kind, options = store_settings(conf, lake)
    store = open_store(kind, **options)
    store.write([(entity_key("toy_view", ["flight"], [k]), 0.0, 0.0, v)
                 for k, v in STORED.items()])


def post(server, body) -> requests.Response:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return server["http"].post(server["url"] + "/predict", data=data, timeout=30,
                               headers={"Content-Type": "application/json"})


ROWS = {"wind": [3.0, 25.0, None], "noise": [0.1, -1.0, 0.0], "carrier": ["AA", "BB", "ZZ"]}


def expected(server, version: int, rows: dict) -> np.ndarray:
    import pyarrow as pa

    table = pa.table({"wind": pa.array(rows["wind"], pa.float64()),
                      "noise": pa.array(rows["noise"], pa.float64()),
                      "carrier": pa.array(rows["carrier"], pa.string())})
    return get_flavor("xgboost").predict(server["boosters"][version - 1], SPEC, table)


def test_predict_by_raw_features(server):
    r = post(server, {"unit_id": "user-1", "features": ROWS})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "toy" and body["arm"] in WEIGHTS and body["unit_id"] == "user-1"
    assert body["version"] == {"control": 1, "treatment": 2}[body["arm"]]
    np.testing.assert_allclose(body["predictions"], expected(server, body["version"], ROWS),
                               rtol=1e-5)
    # One row as scalars; no unit id is a fair draw.
    one = post(server, {"features": {"wind": 3.0, "noise": 0.1, "carrier": "AA"}})
    assert one.status_code == 200, one.text
    assert len(one.json()["predictions"]) == 1 and one.json()["unit_id"] is None
    health = server["http"].get(server["url"] + "/health", timeout=10).json()
    assert health["status"] == "ok"
    assert health["arms"]["challenger"] == {"model": "toy", "version": 3, "weight": 1.0,
                                            "shadow": True}


def test_predict_by_entity_key(server):
    r = post(server, {"unit_id": "user-1", "entities": {"flight": [1, 2, 999]}})
    assert r.status_code == 200, r.text
    body = r.json()
    rows = {k: [STORED[1][k], STORED[2][k], None] for k in ("wind", "noise", "carrier")}
    np.testing.assert_allclose(body["predictions"], expected(server, body["version"], rows),
                               rtol=1e-5)
    # A value in the request wins over the stored one.
    r = post(server, {"unit_id": "user-1", "entities": {"flight": [1]},
                      "features": {"wind": [40.0]}})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["predictions"], expected(
        server, body["version"], {"wind": [40.0], "noise": [0.1], "carrier": ["AA"]}), rtol=1e-5)


@pytest.mark.parametrize(
    ("body", "status", "text"),
    [
        (b"{not json", 400, "not JSON"),
        ([1, 2], 400, "JSON object"),
        ({"unit_id": "u"}, 400, "Give 'features'"),
        ({"featurs": ROWS}, 422, "Did you mean 'features'"),
        ({"features": {**ROWS, "wnd": [1, 2, 3]}}, 422, "features.wnd"),
        ({"features": {"wind": [1.0], "noise": [0.0]}}, 422, "features.carrier is missing"),
        ({"features": {**ROWS, "wind": [1.0, "fast", 2.0]}}, 422, "features.wind[1]"),
        ({"features": {**ROWS, "carrier": ["AA", 5.5, "BB"]}}, 422, "features.carrier[1]"),
        ({"features": {**ROWS, "wind": [1.0]}}, 422, "same number of values"),
        ({"features": {**ROWS, "wind": 1.0}}, 422, "not both"),
        ({"features": {k: [] for k in ROWS}}, 422, "no rows"),
        ({"features": {k: v * 20 for k, v in ROWS.items()}}, 413, "over the limit"),
        ({"features": ROWS, "unit_id": {"id": 1}}, 422, "unit_id"),
        ({"features": ROWS, "entities": {"origin": ["JFK"] * 3}}, 422, "entities.origin"),
        ({"entities": {"flight": 7}}, 422, "entities must be"),
        ({"features": [1, 2]}, 422, "features must be"),
    ],
)
def test_bad_requests_get_4xx_and_the_server_stays_healthy(server, body, status, text):
    r = post(server, body)
    assert r.status_code == status, r.text
    assert text in r.json()["error"], r.json()
    assert server["http"].get(server["url"] + "/health", timeout=10).json()["status"] == "ok"


def test_assignment_is_sticky(server):
    arms = {post(server, {"unit_id": "sticky-7", "features": ROWS}).json()["arm"]
            for _ in range(8)}
    assert len(arms) == 1
    assigner = Assigner([Arm(n, "toy", i + 1, w) for i, (n, w) in enumerate(WEIGHTS.items())],
                        server["conf"].model_server.salt)
    assert arms == {assigner.assign("sticky-7").name}


def test_split_follows_the_weights():
    arms = [Arm("a", "m", 1, 0.7), Arm("b", "m", 2, 0.2), Arm("c", "m", 3, 0.1),
            Arm("s", "m", 4, 5.0, shadow=True)]
    assigner = Assigner(arms, "exp-1")
    n = 20_000
    counts = Counter(assigner.assign(f"user-{i}").name for i in range(n))
    assert set(counts) == {"a", "b", "c"}  # the shadow gets no slice
    for name, share in {"a": 0.7, "b": 0.2, "c": 0.1}.items():
        # 4 standard deviations of a binomial share
        assert abs(counts[name] / n - share) < 4 * (share * (1 - share) / n) ** 0.5, counts
    # Another salt reshuffles units but keeps the shares.
    other = Assigner(arms, "exp-2")
    moved = sum(assigner.assign(f"user-{i}").name != other.assign(f"user-{i}").name
                for i in range(2000))
    assert moved > 500
    assert 0 <= bucket("x") < 1 and bucket("x", "s") == bucket("x", "s")


def test_split_over_http(server):
    n = 300
    counts = Counter(post(server, {"unit_id": f"http-{i}", "features": {
        "wind": 5.0, "noise": 0.0, "carrier": "AA"}}).json()["arm"] for i in range(n))
    share = WEIGHTS["control"]
    assert set(counts) <= set(WEIGHTS)
    assert abs(counts["control"] / n - share) < 4 * (share * (1 - share) / n) ** 0.5, counts


def wait_for_log(lake, predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        rows = lake.read("serving/requests").to_pylist()
        if predicate(rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.5)


def test_shadow_answers_are_logged_not_returned_and_requests_land_in_the_lake(server):
    r = post(server, {"unit_id": "unit-s1", "features": ROWS})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"request_id", "unit_id", "arm", "model", "version", "predictions"}
    assert body["arm"] != "challenger" and body["version"] != 3
    bad = post(server, {"unit_id": "unit-s1", "features": {**ROWS, "wnd": [1, 2, 3]}})
    rid, bad_rid = body["request_id"], bad.json()["request_id"]

    def mine(rows):
        got = [x for x in rows if x["request_id"] in (rid, bad_rid)]
        return got if len(got) >= 3 else None

    rows = mine(wait_for_log(server["lake"], mine))
    assert rows, "the request log did not reach the lake"
    by = {(x["request_id"], x["arm"]): x for x in rows}
    live, shadow = by[(rid, body["arm"])], by[(rid, "challenger")]
    assert live["status"] == 200 and not live["shadow"] and live["unit_id"] == "unit-s1"
    assert live["predictions"] == pytest.approx(body["predictions"])
    assert json.loads(live["features"]) == ROWS and live["latency_ms"] > 0
    assert shadow["shadow"] and shadow["model_version"] == 3
    np.testing.assert_allclose(shadow["predictions"], expected(server, 3, ROWS), rtol=1e-5)
    err = by[(bad_rid, None)]  # refused before an arm was drawn
    assert err["status"] == 422 and err["error_kind"] == "unknown_feature"
    assert "wnd" in err["error"] and err["predictions"] is None


def test_arms_resolve_to_pinned_versions(lake):
    register_toys(lake)
    reg = ModelRegistry(lake)
    (main,) = resolve_arms("toy", {}, reg)
    assert (main.name, main.version, main.weight) == ("main", 1, 1.0)  # the champion
    with pytest.raises(ConfigError, match="needs model="):
        resolve_arms(None, {}, reg)
    with pytest.raises(ConfigError, match="arms.b: .*no version 9"):
        resolve_arms(None, {"a": ArmConfig("toy:1"), "b": ArmConfig("toy:9")}, reg)
    with pytest.raises(ConfigError, match="not a shadow"):
        resolve_arms(None, {"a": ArmConfig("toy:1", shadow=True)}, reg)
    with pytest.raises(ConfigError, match="weight=0.0 must be > 0"):
        resolve_arms(None, {"a": ArmConfig("toy:1", weight=0)}, reg)


def test_serve_config_file_is_a_valid_serve_deploy_config(lake, tmp_path):
    import yaml
    from ray.serve.schema import ServeDeploySchema

    from raylake.serve.deploy import serve_config, write_serve_config

    register_toys(lake)
    conf = to_config(compose_config([f"lake.root={lake.root}", "model=toy:champion",
                                     "model_server.min_replicas=2",
                                     "model_server.max_replicas=5"], job="serve"))
    arms = resolve_arms(conf.model, conf.model_server.arms, ModelRegistry(lake))
    path = str(tmp_path / "serve.yaml")
    write_serve_config(path, serve_config(conf, arms))
    config = yaml.safe_load(open(path))
    schema = ServeDeploySchema(**config)
    (app,) = schema.applications
    assert app.import_path == "raylake.serve.app:app_builder"
    dep = app.deployments[0]
    assert dep.name == "ModelServer" and dep.ray_actor_options.num_cpus == 0.25
    assert dep.autoscaling_config["min_replicas"] == 2
    assert dep.autoscaling_config["max_replicas"] == 5
    assert app.args["config"]["model_server"]["arms"] == {
        "main": {"model": "toy:1", "weight": 1.0, "shadow": False}}
    # The builder reads those args back into a checked config.
    from raylake.serve.app import config_from_args

    back = config_from_args(app.args["config"])
    assert back.model_server.arms["main"].model == "toy:1" and back.lake.root == lake.root


def test_looked_up_columns_answer_to_full_and_bare_names():
    from raylake.serve.app import with_bare_names

    cols = with_bare_names({"weather__temp": [1.0], "plane__year": [2004], "a__x": [1],
                            "b__x": [2], "origin": ["JFK"]})
    assert cols["temp"] == [1.0] and cols["year"] == [2004] and cols["weather__temp"] == [1.0]
    assert "x" not in cols and cols["origin"] == ["JFK"]  # ambiguous: only full names
