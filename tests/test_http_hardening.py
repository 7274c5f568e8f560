"""HTTP hardening of both servers: API keys and scopes, body and value limits, typed
values, offline push refused, and no input answering 500. Unit tests of the checks first;
then one Serve instance running the feature server and the model server side by side
(one startup for every server test), whose API keys are switched by rewriting the key
file, which the replicas re-read."""

from __future__ import annotations

import json
import os

import pytest
import requests

from raylake.auth import ApiKeys, parse_keys
from raylake.errors import AuthError, ConfigError, FeatureRequestError, ModelRequestError
from raylake.features.checks import Limits, label, parse_json, show, value_error
from raylake.serve.inputs import check_values, parse_request

READ_KEY = "r" * 8 + "-read-secret-0001"
PUSH_KEY = "p" * 8 + "-push-secret-0001"
KEYS = f"reader:read:{READ_KEY}\npusher:read+push:{PUSH_KEY}  # a comment\n"


def fail(status, message, kind):
    return FeatureRequestError(status, message)


# ---------------------------------------------------------------- unit: keys


def test_keys_from_env_and_scopes():
    keys = ApiKeys(env={"RAYLAKE_API_KEYS": f"reader:read:{READ_KEY}, pusher:read+push:{PUSH_KEY}"})
    assert keys.check({"authorization": f"Bearer {READ_KEY}"}, "read") == "reader"
    assert keys.check({"x-api-key": PUSH_KEY}, "push") == "pusher"
    with pytest.raises(AuthError) as err:
        keys.check({"authorization": f"Bearer {READ_KEY}"}, "push")
    assert err.value.status == 403 and "lacks the 'push' scope" in str(err.value)
    for headers in ({}, {"authorization": "Bearer nope"}, {"authorization": f"Basic {READ_KEY}"}):
        with pytest.raises(AuthError) as err:
            keys.check(headers, "read")
        assert err.value.status == 401
        assert READ_KEY not in str(err.value)


def test_no_keys_reads_open_push_off():
    keys = ApiKeys(env={})
    assert keys.check({}, "read") is None
    with pytest.raises(AuthError) as err:
        keys.check({"authorization": f"Bearer {PUSH_KEY}"}, "push")
    assert err.value.status == 403 and "RAYLAKE_API_KEYS" in str(err.value)


def test_key_file_is_reread_and_a_broken_one_closes(tmp_path):
    path = tmp_path / "keys"
    path.write_text(KEYS)
    keys = ApiKeys(str(path), env={})
    assert keys.check({"x-api-key": READ_KEY}, "read") == "reader"
    replace(path, f"other:read:{'o' * 20}\n")
    with pytest.raises(AuthError):
        keys.check({"x-api-key": READ_KEY}, "read")
    replace(path, "not a key line\n")
    with pytest.raises(AuthError) as err:  # closed, not open, while the file is broken
        keys.check({}, "read")
    assert err.value.status == 403 and "cannot be used" in str(err.value)
    with pytest.raises(ConfigError, match="entry 1"):  # at start: a config error
        ApiKeys(str(path), env={})
    with pytest.raises(ConfigError, match="cannot be used"):
        ApiKeys(str(tmp_path / "missing"), env={})


@pytest.mark.parametrize(("text", "match"), [
    ("a:read", "NAME:SCOPES:SECRET"), (f"a:write:{READ_KEY}", "scopes"),
    ("a:read:t1ny5ecret", "shorter than 16"), (f":read:{READ_KEY}", "no name")])
def test_bad_key_entries_never_show_the_secret(text, match):
    with pytest.raises(ConfigError, match=match) as err:
        parse_keys(text, "RAYLAKE_API_KEYS")
    assert READ_KEY not in str(err.value) and "t1ny5ecret" not in str(err.value)


# ---------------------------------------------------------------- unit: values


@pytest.mark.parametrize(("value", "type_name", "ok"), [
    (1.5, "float64", True), (3, "float64", True), (10 ** 400, "float64", False),
    (float("inf"), "float64", False), (1e39, "float32", False), (True, "float64", False),
    (127, "int8", True), (128, "int8", False), (2 ** 63, "int64", False), (1.0, "int64", False),
    (True, "int64", False), (True, "bool", True), (1, "bool", False), ("true", "bool", False),
    ("x" * 10, "string", True), ("x" * 11, "string", False), ("\ud800", "string", False),
    (5, "string", False), ({"a": 1}, "string", False), ("2024-01-01T00:00:00Z", "timestamp", True),
    ("yesterday", "timestamp", False), ([1], "int64", False),
])
def test_value_types(value, type_name, ok):
    assert (value_error(value, type_name, 10) is None) is ok


@pytest.mark.parametrize(("raw", "text"), [
    (b"\xff\xfe{}", "not UTF-8"), (b"[" * 100_000, "deeper"), (b"[[[[[[[[[1]]]]]]]]]", "deeper"),
    (b'{"a": NaN}', "NaN is not JSON"), (b'{"a": -Infinity}', "Infinity"),
    (b"1" * 5000, "too many digits"), (b"", "not JSON")])
def test_bodies_refused_with_400(raw, text):
    with pytest.raises(FeatureRequestError, match=text) as err:
        parse_json(raw, Limits(), fail)
    assert err.value.status == 400


def test_messages_never_echo_huge_or_unencodable_values():
    assert len(show("x" * 1_000_000)) < 80 and show({"a": [1] * 1000}) == "dict"
    assert label("\ud800").isascii() and label("origin") == "origin"


KINDS = {"wind": "number", "carrier": "category", "late": "bool"}


@pytest.mark.parametrize(("body", "status", "text"), [
    ({"features": {"wind": [10 ** 400]}}, 422, "finite number"),
    ({"features": {"late": [1]}}, 422, "true or false"),
    ({"features": {"carrier": ["x" * 2000]}}, 422, "text of at most"),
    ({"features": {"wind": [1.0]}, "unit_id": "u" * 300}, 422, "max_unit_id_length"),
    ({"features": {"wind": [1.0]}, "unit_id": True}, 422, "unit_id"),
    ({"entities": {"flight": [{"a": 1}]}}, 422, "flight is int64"),
    ({"entities": {"flight": ["7"]}}, 422, "flight is int64"),
    ({"entities": {"x" * 5000: [1]}}, 422, "not an entity key"),
    ({"features": {"wind": [1.0] * 51}}, 413, "over the limit"),
])
def test_predict_bodies(body, status, text):
    with pytest.raises(ModelRequestError, match=text) as err:
        parse_request(body, KINDS, Limits(max_items=50), {"flight": "int64"}, 256)
    assert err.value.status == status
    assert "u" * 300 not in str(err.value) and "x" * 200 not in str(err.value)


def test_predict_values_that_pass():
    req = parse_request({"unit_id": 7, "features": {"wind": [1, 2.5, None], "late": [True, False,
                         None], "carrier": ["AA", 3, None]}}, KINDS, Limits(), None)
    assert req.unit_id == "7" and req.rows == 3
    check_values("late", [True, None], "bool")


# ---------------------------------------------------------------- real servers


def replace(path, text: str) -> None:
    """Rewrite the key file as an operator would: atomically (a new file moved in)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


@pytest.fixture(scope="module")
def servers(ray_session, tmp_path_factory):
    from conftest import free_port
    from ray import serve
    from test_model_server import register_toys, write_online_rows

    from raylake.config.loader import compose_config, to_config
    from raylake.config.schema import (
        EntityConfig,
        FeatureConfig,
        FeaturesConfig,
        FeatureViewConfig,
    )
    from raylake.features.online.settings import store_settings
    from raylake.features.server import build_app as feature_app
    from raylake.lake import Lake
    from raylake.serve.app import build_app as model_app

    work = tmp_path_factory.mktemp("http")
    keys = work / "keys"
    keys.write_text(KEYS)
    conf = to_config(compose_config([
        f"lake.root={work / 'lake'}", "model_server.max_replicas=1", "model_server.max_rows=50",
        "model=toy:champion", "model_server.request_log_table=null",
        f"model_server.api_keys_file={keys}",
        "feature_server.max_replicas=1", "feature_server.max_batch=50",
        f"feature_server.api_keys_file={keys}"], job="serve"))
    conf.features = FeaturesConfig(
        name="toy", entities={"flight": EntityConfig(join_keys=["flight"], value_type="int64")},
        feature_views={
            "toy_view": FeatureViewConfig(
                source="toy_features", entities=["flight"],
                features={"wind": FeatureConfig("float64"), "noise": FeatureConfig("float64"),
                          "carrier": FeatureConfig("string")}),
            "pushy": FeatureViewConfig(
                source="pushy_rows", entities=["flight"], timestamp_field="ts",
                features={"f": FeatureConfig("float64"), "i": FeatureConfig("int8"),
                          "b": FeatureConfig("bool"), "s": FeatureConfig("string")})},
        feature_services={"toy": ["toy_view"]})
    conf.model_server.feature_service = "toy"
    lake = Lake.from_config(conf.lake)
    register_toys(lake)
    write_online_rows(conf, lake)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(feature_app(conf, lake, store_settings(conf, lake)), name="fs", route_prefix="/fs")
    serve.run(model_app(conf, lake), name="ms", route_prefix="/ms")
    url = f"http://127.0.0.1:{port}"
    yield {"fs": url + "/fs", "ms": url + "/ms", "keys": keys, "lake": lake,
           "http": requests.Session()}
    serve.delete("fs")
    serve.delete("ms")
    serve.shutdown()


@pytest.fixture
def srv(servers):
    """The servers with the two test keys configured (tests may change the file)."""
    replace(servers["keys"], KEYS)
    yield servers
    replace(servers["keys"], KEYS)


def call(srv, where: str, path: str, body, key: str | None = READ_KEY,
         headers: dict | None = None) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    h = {"Content-Type": "application/json", **(headers or {})}
    if key:
        h["Authorization"] = f"Bearer {key}"
    r = srv["http"].post(srv[where] + path, data=data, headers=h, timeout=60)
    assert r.status_code < 500, r.text
    return r


LOOKUP = {"features": ["toy_view:wind"], "entities": {"flight": [1, 2]}}
PREDICT = {"entities": {"flight": [1]}}


def healthy(srv) -> bool:
    return all(srv["http"].get(srv[w] + "/health", timeout=30).json()["status"] == "ok"
               for w in ("fs", "ms"))


@pytest.mark.slow
def test_keys_and_scopes(srv):
    assert call(srv, "fs", "/get-online-features", LOOKUP).status_code == 200
    assert call(srv, "ms", "/predict", PREDICT, key=None,
                headers={"X-API-Key": READ_KEY}).status_code == 200
    for where, path, body in (("fs", "/get-online-features", LOOKUP), ("ms", "/predict", PREDICT)):
        missing = call(srv, where, path, body, key=None)
        assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
        assert call(srv, where, path, body, key="x" * 20).status_code == 401
    push = {"feature_view": "pushy", "df": {"flight": [1], "ts": ["2024-01-01T00:00:00Z"],
                                            "f": [1.5]}}
    refused = call(srv, "fs", "/push", push)
    assert refused.status_code == 403 and "lacks the 'push' scope" in refused.json()["error"]
    assert call(srv, "fs", "/push", push, key=PUSH_KEY).status_code == 200
    assert healthy(srv)  # /health needs no key


@pytest.mark.slow
def test_without_keys_reads_are_open_and_push_is_off(srv):
    replace(srv["keys"], "# no keys\n")
    assert call(srv, "fs", "/get-online-features", LOOKUP, key=None).status_code == 200
    assert call(srv, "ms", "/predict", PREDICT, key=None).status_code == 200
    off = call(srv, "fs", "/push", {"feature_view": "pushy", "df": {"flight": [1]}}, key=PUSH_KEY)
    assert off.status_code == 403 and "RAYLAKE_API_KEYS" in off.json()["error"]


@pytest.mark.slow
def test_push_is_typed_and_never_offline(srv):
    good = {"flight": [5], "ts": ["2024-01-01T00:00:00Z"], "f": [2.5], "i": [-3], "b": [True],
            "s": ["hé"]}
    r = call(srv, "fs", "/push", {"feature_view": "pushy", "df": good}, key=PUSH_KEY)
    assert r.status_code == 200, r.text
    for to in ("offline", "online_and_offline"):
        r = call(srv, "fs", "/push", {"feature_view": "pushy", "df": good, "to": to}, key=PUSH_KEY)
        assert r.status_code == 422 and "raylake ingest" in r.json()["error"]
    assert not srv["lake"].exists("pushy_rows")  # nothing was written into the lake
    for column, value, text in (("f", 10 ** 400, "f is"), ("i", 300, "int8"),
                                ("b", 1, "true or false"), ("s", "x" * 5000, "text of at most"),
                                ("flight", {"a": 1}, "flight is"), ("ts", "soon", "ISO time"),
                                ("flight", None, "lacks flight")):
        r = call(srv, "fs", "/push", {"feature_view": "pushy", "df": {**good, column: [value]}},
                 key=PUSH_KEY)
        assert r.status_code == 422 and text in r.json()["error"], r.text
        assert "row 0" in r.json()["error"] and "x" * 100 not in r.text
    nan = call(srv, "fs", "/push", b'{"feature_view": "pushy", "df": {"flight": [5], '
               b'"ts": ["2024-01-01T00:00:00Z"], "f": [NaN]}}', key=PUSH_KEY)
    assert nan.status_code == 400 and "NaN" in nan.json()["error"]
    inf = call(srv, "fs", "/push", b'{"feature_view": "pushy", "df": {"flight": [5], '
               b'"ts": ["2024-01-01T00:00:00Z"], "f": [1e999]}}', key=PUSH_KEY)
    assert inf.status_code == 422 and "f is inf" in inf.json()["error"], inf.text
    r = call(srv, "fs", "/get-online-features",
             {"features": ["pushy:f", "pushy:i", "pushy:b", "pushy:s"], "entities": {"flight": [5]}})
    assert [c["values"] for c in r.json()["results"][1:]] == [[2.5], [-3], [True], ["hé"]]


@pytest.mark.slow
@pytest.mark.parametrize("where", ["fs", "ms"])
def test_hostile_bodies_get_4xx(srv, where):
    path, entities = ("/get-online-features", LOOKUP) if where == "fs" else ("/predict", PREDICT)
    cases = [
        (b"x" * (2 << 20), 413), (b"[" * 50_000, 400), (b'{"a": "\xff"}', 400),
        ({**entities, "entities": {"flight": [{"a": 1}]}}, 422),
        ({**entities, "entities": {"flight": [10 ** 30]}}, 422),
        ({**entities, "entities": {"flight": ["\ud800"]}}, 422),
        ({**entities, "entities": {"\ud800" * 3: [1]}}, 422),
        ({**entities, "surprise": 1}, 422),
    ]
    if where == "ms":
        cases += [({"features": {"wind": [10 ** 400], "noise": [0.0], "carrier": ["AA"]}}, 422),
                  ({"unit_id": "u" * 10_000, **PREDICT}, 422)]
    for body, status in cases:
        r = call(srv, where, path, body)
        assert r.status_code == status, (body if len(str(body)) < 200 else "big", r.text)
        assert "u" * 300 not in r.text
    assert healthy(srv)


def test_keys_found_where_deployed_must_be_found_by_every_replica():
    # A replica (another node) without the environment or the file must not serve open.
    with pytest.raises(ConfigError, match="finds none"):
        ApiKeys(None, env={}, required=True)
    assert ApiKeys(None, env={"RAYLAKE_API_KEYS": f"r:read:{'s' * 20}"}, required=True).configured


@pytest.mark.parametrize("entry", [
    "reader:ThisIsTheSecretValue42:read",  # fields swapped: the secret where scopes go
    "ThisIsTheSecretValue42:read:short",   # the secret where the name goes
])
def test_a_bad_entry_never_shows_any_of_its_fields(entry):
    with pytest.raises(ConfigError) as err:
        parse_keys(entry, "RAYLAKE_API_KEYS")
    assert "ThisIsTheSecretValue42" not in str(err.value)
