"""``POST /recommend`` through real HTTP against a running Ray Serve app on the shared
small recommendation lake (tests/recsys_lake.py): a known user's ranked items with
model versions and a request id in the request log, a cold user's popular items, bad
input answered 4xx with the server healthy after each, concurrent requests coalesced;
and, in process, the short-candidate fallback."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import requests
from conftest import free_port
from recsys_lake import recsys_lake, train_towers

from raylake.config.loader import to_config

pytestmark = pytest.mark.slow

UNKNOWN = 987_654_321


@pytest.fixture(scope="session")
def recsys(ray_session, tmp_path_factory):
    return recsys_lake(tmp_path_factory)


@pytest.fixture(scope="module")
def models(recsys):
    """The ranker and the towers/index (shared with the other recsys test files)."""
    train_towers(recsys)
    return recsys


@pytest.fixture(scope="module")
def server(models):
    from ray import serve

    from raylake.recsys.server import APP_NAME, build_app

    port = free_port()
    conf = to_config(models.config("model_server.log_flush_rows=1",
                                   "model_server.log_flush_s=0.2",
                                   "recsys.server.batch_wait_s=0.05", job="recsys-serve"))
    lake = models.lake()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(conf, lake), name=APP_NAME, route_prefix="/")
    http = requests.Session()
    yield {"url": f"http://127.0.0.1:{port}", "lake": lake, "conf": conf, "http": http}
    serve.delete(APP_NAME)
    serve.shutdown()


@pytest.fixture(scope="module")
def rec(models):
    from raylake.recsys.recommender import Recommender

    conf = to_config(models.config(job="recsys-serve"))
    return Recommender.open(models.lake(), conf)


def post(server, body, timeout: float = 60) -> requests.Response:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return server["http"].post(server["url"] + "/recommend", data=data, timeout=timeout,
                               headers={"Content-Type": "application/json"})


def healthy(server) -> bool:
    return server["http"].get(server["url"] + "/health", timeout=30).json()["status"] == "ok"


def logged(server, request_id: str, seconds: float = 20) -> dict | None:
    """The request log's row of ``request_id`` once the replica flushed it."""
    import pyarrow.compute as pc

    lake, table = server["lake"], server["conf"].model_server.request_log_table
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        if lake.exists(table):
            t = lake.read(table)
            rows = t.filter(pc.equal(t["request_id"], request_id)).to_pylist()
            if rows:
                return rows[0]
        time.sleep(0.3)
    return None


def test_known_user_gets_ranked_items_versions_and_a_logged_request(server, rec):
    user = int(rec.user_ids[0])
    r = post(server, {"user_id": user, "k": 10})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["items"]) == len(body["scores"]) == 10
    assert len(set(body["items"])) == 10
    assert body["scores"] == sorted(body["scores"], reverse=True)
    assert body["cold_start"] is False and "fallback" not in body
    assert set(body["models"]) >= {"towers", "index", "ranker"}
    assert body["models"]["ranker"].startswith("recsys_ranker:")
    assert body["candidates_scored"] == min(rec.candidates, len(rec.index))
    # The server answers what the in-process recommender answers.
    mine = rec.recommend([(user, 10)])[0]
    assert body["items"] == mine.items
    np.testing.assert_allclose(body["scores"], mine.scores, rtol=1e-5)
    row = logged(server, body["request_id"])
    assert row is not None, "the answer never reached the request log"
    assert row["status"] == 200 and row["arm"] == "recommend" and row["unit_id"] == str(user)
    assert row["model_name"] == "recsys_ranker"
    np.testing.assert_allclose(row["predictions"], body["scores"], rtol=1e-9)
    assert json.loads(row["entities"])["item_id"] == body["items"]
    assert json.loads(row["features"])["models"] == body["models"]
    assert healthy(server)


def test_unknown_user_gets_popular_items_as_a_cold_start(server, rec):
    r = post(server, {"user_id": UNKNOWN, "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["cold_start"] is True and body["fallback"] == "popularity"
    assert body["items"] == rec.popular[:5].tolist()
    assert body["scores"] == sorted(body["scores"], reverse=True)
    # A string id that is no known user is a cold user too.
    assert post(server, {"user_id": "someone-new"}).json()["cold_start"] is True
    assert healthy(server)


@pytest.mark.parametrize(
    ("body", "status", "text"),
    [
        ({"user_id": 1, "k": 101}, 422, "recsys.server.max_k"),
        ({"user_id": 1, "k": 0}, 422, "at least 1"),
        ({"user_id": 1, "k": "ten"}, 422, "k must be an integer"),
        (b"{not json", 400, "not JSON"),
        ([1, 2], 400, "JSON object"),
        ({"k": 5}, 422, "user_id is missing"),
        ({"user_id": [1, 2]}, 422, "user_id must be an integer or a string"),
        ({"user_id": None}, 422, "user_id must be"),
        ({"user": 1}, 422, "Unknown field"),
    ],
)
def test_bad_input_gets_4xx_and_the_server_stays_healthy(server, body, status, text):
    r = post(server, body)
    assert r.status_code == status, r.text
    assert text in r.json()["error"], r.json()
    if status == 422 and isinstance(body, dict) and body.get("k") == 101:
        assert "100" in r.json()["error"]  # the limit itself
    assert healthy(server)


def test_concurrent_requests_are_coalesced_and_both_answered(server, rec):
    users = [int(rec.user_ids[1]), int(rec.user_ids[2])]
    out: dict[int, requests.Response] = {}

    def ask(u: int) -> None:
        out[u] = requests.post(server["url"] + "/recommend", json={"user_id": u, "k": 3},
                               timeout=60)

    threads = [threading.Thread(target=ask, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(out[u].status_code == 200 for u in users), {u: out[u].text for u in users}
    bodies = [out[u].json() for u in users]
    assert [b["user_id"] for b in bodies] == users
    assert bodies[0]["request_id"] != bodies[1]["request_id"]
    assert all(len(b["items"]) == 3 for b in bodies)
    assert healthy(server)


@pytest.mark.parametrize(
    ("body", "expected"),
    [({"user_id": 7}, (7, 20)), ({"user_id": "7", "k": 100}, ("7", 100)),
     ({"user_id": 7, "k": 1}, (7, 1))],
)
def test_parse_body_defaults_and_limits(body, expected):
    from raylake.recsys.server import parse_body

    assert parse_body(body, max_k=100) == expected


def test_too_few_candidates_are_filled_with_popular_items(rec):
    """An index smaller than k: the ranked candidates first, then popular items, said so."""
    from raylake.models.ann import AnnIndex
    from raylake.recsys.recommender import Recommender

    small = AnnIndex(rec.index.ids[:3], rec.index.vectors[:3], "exact")
    tiny = Recommender(rec.user_ids, rec.user_vectors, small, rec.scorer, rec.popular,
                       rec.popular_scores, rec.candidates, rec.versions)
    a = tiny.recommend([(int(rec.user_ids[0]), 8)])[0]
    assert a.cold_start is False and a.fallback == "popularity" and a.filled == 5
    assert sorted(a.items[:3]) == sorted(rec.index.ids[:3].tolist())
    assert len(set(a.items)) == 8
    assert a.scores == sorted(a.scores, reverse=True)
