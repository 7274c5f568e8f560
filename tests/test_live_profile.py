"""Live-traffic profiles: the replica's profiler (windows, flushes, retries, the cap),
the replayed clock through a real Serve app, and `raylake profile-requests` over the
request log."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from typing import Any

import pyarrow as pa
import pytest

import raylake.lake.commit as commit
from raylake.quality.profile import Profile
from raylake.serve.live_profile import PREDICTION, LiveProfiler, ensure_table

UTC = dt.timezone.utc
T = dt.datetime(2013, 7, 1, 10, 0, tzinfo=UTC)
HOUR = dt.timedelta(hours=1)
TABLE = "_live_profiles"
TYPES = {("toy", 1): {"wind": "float64", "carrier": "string", "seats": "int64"}}


def rows_of(n: int, start: float = 0.0) -> tuple[dict, list]:
    features = {"wind": [start + i for i in range(n)], "carrier": ["AA", "BB"][:1] * n,
                "seats": [100 + i for i in range(n)]}
    return features, [0.1 * (i % 10) for i in range(n)]


def profiler(lake, **kw) -> LiveProfiler:
    ensure_table(lake, TABLE)
    kw.setdefault("replay", True)
    return LiveProfiler(lake, TABLE, writer="r1", window=HOUR, types=TYPES, start=False, **kw)


def stored(lake) -> list[dict]:
    return sorted(lake.read(TABLE, system=True).to_pylist(),
                  key=lambda r: (r["window_start"], r["arm"], r["seq"]))


def test_windows_flush_when_the_clock_passes_them_and_close_flushes_the_rest(lake):
    p = profiler(lake)
    p.add("toy", 1, "main", False, *rows_of(3), at=T + dt.timedelta(minutes=5))
    p.add("toy", 1, "main", False, *rows_of(2, 10), at=T + dt.timedelta(minutes=50))
    p.add("toy", 1, "shadow", True, *rows_of(4), at=T + dt.timedelta(minutes=51))
    assert p.step() == 0  # the 10:00 window is still open on the replayed clock
    p.add("toy", 1, "main", False, *rows_of(1), at=T + HOUR + dt.timedelta(seconds=30))
    assert p.step() == 0  # 11:00:30 is within the grace (1 min) for late requests
    p.add("toy", 1, "main", False, *rows_of(1), at=T + HOUR + dt.timedelta(minutes=20))
    assert p.step() == 2  # the 10:00 window of both arms
    rows = stored(lake)
    assert [(r["arm"], r["shadow"], r["rows"], r["seq"]) for r in rows] == [
        ("main", False, 5, 1), ("shadow", True, 4, 1)]
    main = rows[0]
    assert main["window_start"] == T and main["window_end"] == T + HOUR
    assert (main["model"], main["model_version"], main["source"], main["writer"]) == (
        "toy", 1, "live", "r1")
    prof = Profile.from_bytes(main["profile"])
    assert prof.columns == sorted(["wind", "carrier", "seats", PREDICTION])
    wind = prof.summary("wind")
    assert wind.count == 5 and (wind.min, wind.max) == (0.0, 11.0)
    assert prof.summary("seats").types.get("integral") == 5  # typed as registered
    assert prof.summary("carrier").frequent == [("AA", 5)]
    assert p.close()
    rows = stored(lake)
    assert [(r["window_start"], r["rows"], r["seq"]) for r in rows][-1] == (T + HOUR, 2, 2)
    assert p.waiting == 0 and p.written == 3


def test_wall_clock_closes_past_windows_and_idle_windows_flush(lake):
    p = profiler(lake, replay=False)
    p.add("toy", 1, "main", False, *rows_of(2), at=T)  # 2013: long ended on the wall clock
    p.add("toy", 1, "main", False, *rows_of(3))  # now: its window is open
    assert p.step() == 1
    assert [r["rows"] for r in stored(lake)] == [2]
    p.idle_flush_s = 0.0  # a window with no new rows for idle_flush_s is flushed
    assert p.step() == 1
    assert sorted(r["rows"] for r in stored(lake)) == [2, 3]
    assert p.close() and p.waiting == 0


def test_rows_of_one_window_merge_into_one_profile(lake):
    p = profiler(lake)
    for i in range(4):
        p.add("toy", 1, "main", False, *rows_of(5, 100 * i), at=T)
        p.step()  # profiled in four parts
    p.close()
    (row,) = stored(lake)
    wind = Profile.from_bytes(row["profile"]).summary("wind")
    assert row["rows"] == 20 and wind.count == 20 and wind.max == 304.0


def test_a_failed_flush_is_kept_and_retried_and_lands_once(lake, monkeypatch):
    p = profiler(lake)
    real = commit.write_table
    calls = []

    def flaky(*args, **kw):
        calls.append(kw["txn_version"])
        if len(calls) == 1:
            raise OSError("lake unreachable")
        if len(calls) == 2:  # the commit lands but its answer is lost
            real(*args, **kw)
            raise OSError("connection reset")
        return real(*args, **kw)

    monkeypatch.setattr(commit, "write_table", flaky)
    p.add("toy", 1, "main", False, *rows_of(3), at=T)
    p.add("toy", 1, "main", False, *rows_of(1), at=T + 2 * HOUR)
    assert p.step() == 0 and p.waiting == 2  # kept: the window and the open one
    assert p.step() == 0  # landed, the error says otherwise
    assert p.step() == 1  # the retry finds its transaction version: not appended twice
    assert calls == [1, 1, 1]
    assert [r["rows"] for r in stored(lake)] == [3]
    assert p.close()
    assert [r["rows"] for r in stored(lake)] == [3, 1]


def test_buffered_rows_are_capped(lake):
    p = profiler(lake, max_rows=10)
    p.add("toy", 1, "main", False, *rows_of(8), at=T)
    p.add("toy", 1, "main", False, *rows_of(5), at=T)  # over the cap: dropped, counted
    p.add("toy", 1, "main", False, *rows_of(2), at=T)
    assert p.dropped == 5
    p.step()
    p.add("toy", 1, "main", False, *rows_of(5), at=T)  # profiled rows free the buffer
    p.close()
    assert sum(r["rows"] for r in stored(lake)) == 15


def test_values_that_fit_no_table_are_dropped_not_raised(lake):
    p = profiler(lake)
    p.add("toy", 1, "main", False, {"wind": [1.0, 2.0]}, [0.5], at=T)  # lengths differ
    p.add("toy", 1, "other", False, {"wind": [1.0]}, [0.5], at=T)
    p.close()
    assert p.dropped == 1 and [r["arm"] for r in stored(lake)] == ["other"]


def test_fractional_values_of_an_integer_feature_stay_what_the_model_saw():
    from raylake.serve.live_profile import column

    assert column([1.0, None, 3.0], "int64").type == pa.int64()
    assert column([1.5, 2.0], "int64").to_pylist() == [1.5, 2.0]
    assert column(["x", 1], "float64").to_pylist() == ["x", "1"]  # mixed: as text


def test_a_writer_seen_before_goes_on_after_its_last_flush(lake):
    p = profiler(lake)
    p.add("toy", 1, "main", False, *rows_of(1), at=T)
    p.close()
    again = profiler(lake)
    again.add("toy", 1, "main", False, *rows_of(1), at=T)
    again.close()
    assert [r["seq"] for r in stored(lake)] == [1, 2]  # not skipped as already committed


def test_clock_header_without_replay_clock_is_refused():
    from types import SimpleNamespace

    from raylake.errors import ModelRequestError
    from raylake.serve.app import ModelServer

    clock = ModelServer.func_or_class._clock  # type: ignore[attr-defined]  # the Deployment's class
    off, on = SimpleNamespace(replay_clock=False), SimpleNamespace(replay_clock=True)
    assert clock(off, {}) is None
    with pytest.raises(ModelRequestError, match="model_server.replay_clock") as exc:
        clock(off, {"x-raylake-clock": "2013-07-01T10:00:00"})
    assert (exc.value.status, exc.value.kind) == (400, "bad_clock")
    assert clock(on, {"x-raylake-clock": "2013-07-01T10:00:00"}) == T
    with pytest.raises(ModelRequestError, match="not an ISO time") as exc:
        clock(on, {"x-raylake-clock": "yesterday"})
    assert exc.value.kind == "bad_clock"


def log_row(at: dt.datetime, *, n: int = 2, status: int = 200, model: str = "toy",
            version: int = 1, arm: str = "main", shadow: bool = False) -> dict:
    feats = {"wind": [1.5] * n, "noise": [0.0] * n, "carrier": ["AA"] * n}
    return {"request_id": f"r{at.timestamp()}{arm}{status}", "at": at, "unit_id": None,
            "experiment": "raylake", "arm": arm, "model_name": model, "model_version": version,
            "shadow": shadow, "status": status, "error_kind": None, "error": None, "rows": n,
            "features": json.dumps(feats) if status == 200 else None,
            "predictions": [0.25] * n if status == 200 else None, "latency_ms": 1.0,
            "replica": "x"}


def test_profile_requests_profiles_whole_ended_windows_once(lake):
    from test_model_server import register_toys

    from raylake.config.loader import compose_config
    from raylake.lake.commit import write_table
    from raylake.serve.jobs import profile_requests
    from raylake.serve.request_log import SCHEMA

    register_toys(lake)
    m = dt.timedelta(minutes=1)
    rows = [log_row(T + 10 * m), log_row(T + 50 * m, n=3), log_row(T + 55 * m, status=422),
            log_row(T + 58 * m, model="other"), log_row(T + 59 * m, version=3, arm="shadow",
                                                        shadow=True),
            log_row(T + 80 * m), log_row(T + 150 * m), log_row(T - 30 * m)]
    write_table(lake, "serving/requests", pa.Table.from_pylist(rows, SCHEMA))

    def run(now: dt.datetime, model: str = "toy") -> dict:
        # since 10:30 takes the whole 10:00 window; the window holding now has not ended.
        return profile_requests(compose_config([
            f"lake.root={lake.root}", f"model={model}", "monitor.since='2013-07-01T10:30:00'",
            f"monitor.now='{now.isoformat()}'"]), echo=lambda *_: None)

    first = run(T + 150 * m)  # 12:30: the 10:00 and 11:00 windows
    got = {(r["model_version"], r["arm"], r["window_start"]): r for r in stored(lake)}
    assert {k: r["rows"] for k, r in got.items()} == {
        (1, "main", T): 5, (3, "shadow", T): 2, (1, "main", T + HOUR): 2}
    assert first["written"] == 3 and first["rows"] == 9
    row = got[(1, "main", T)]
    assert (row["source"], row["writer"], row["window_end"]) == ("log", "log", T + HOUR)
    prof = Profile.from_bytes(row["profile"])
    assert prof.summary(PREDICTION).mean == pytest.approx(0.25)
    assert prof.summary("carrier").frequent == [("AA", 5)]
    assert run(T + 150 * m)["written"] == 0  # nothing twice
    later = run(T + 200 * m)  # 13:20: the 12:00 window has ended too
    assert (later["written"], later["skipped"], later["rows"]) == (1, 3, 2)
    assert len(stored(lake)) == 4
    assert run(T + 200 * m, "toy:3")["windows"] == 1  # one version only


# -- through Serve and HTTP --------------------------------------------------------------

REQUESTS = {  # replayed time -> rows per request
    T + dt.timedelta(minutes=10): 3, T + dt.timedelta(minutes=40): 2,
    T + HOUR + dt.timedelta(minutes=5): 1, T + HOUR + dt.timedelta(minutes=30): 4,
}
STORED_AT = T  # the online rows' event time; the view's TTL is 2 h


@pytest.fixture(scope="module")
def replayed(ray_session, tmp_path_factory):
    """A server with the replayed clock and live profiles (main arm toy:1, shadow toy:3)
    and one without (at /plain); requests across two 1 h windows; both apps deleted (the
    replicas flush on the way out)."""
    import requests
    from conftest import free_port
    from ray import serve
    from test_model_server import ROWS, register_toys

    from raylake.config.loader import compose_config, to_config
    from raylake.config.schema import (
        ArmConfig,
        EntityConfig,
        FeatureConfig,
        FeaturesConfig,
        FeatureViewConfig,
    )
    from raylake.config.values import ColumnType
    from raylake.features.online import open_store
    from raylake.features.online.base import entity_key
    from raylake.features.online.settings import store_settings
    from raylake.lake import Lake
    from raylake.serve.app import build_app

    root = str(tmp_path_factory.mktemp("live") / "lake")
    conf = to_config(compose_config([
        f"lake.root={root}", "model_server.max_replicas=1", "model_server.log_flush_s=0.5",
        "model_server.replay_clock=true", "model_server.profile_window=1h"], job="serve"))
    conf.model_server.arms = {"main": ArmConfig(model="toy:1"),
                              "challenger": ArmConfig(model="toy:3", shadow=True)}
    conf.features = FeaturesConfig(
        name="toy", entities={"flight": EntityConfig(join_keys=["flight"],
                                                     value_type=ColumnType.int64)},
        feature_views={"toy_view": FeatureViewConfig(
            source="toy_features", entities=["flight"], ttl="2h",
            features={"wind": FeatureConfig(ColumnType.float64),
                      "noise": FeatureConfig(ColumnType.float64),
                      "carrier": FeatureConfig(ColumnType.string)})},
        feature_services={"toy": ["toy_view"]})
    conf.model_server.feature_service = "toy"
    lake = Lake.from_config(conf.lake)
    register_toys(lake)
    kind, options = store_settings(conf, lake)
    store = open_store(kind, **options)
    store.write([(entity_key("toy_view", ["flight"], [1]), STORED_AT.timestamp(), 0.0,
                  {"wind": 3.0, "noise": 0.1, "carrier": "AA"})])
    plain = to_config(compose_config([
        f"lake.root={root}", "model=toy:1", "model_server.max_replicas=1",
        "model_server.live_profile=false", "model_server.request_log_table=null"], job="serve"))
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(conf, lake), name="replayed", route_prefix="/")
    serve.run(build_app(plain, lake), name="plain", route_prefix="/plain")
    url, http = f"http://127.0.0.1:{port}", requests.Session()

    def post(path: str, body: dict, clock: str | None) -> requests.Response:
        headers = {"Content-Type": "application/json"}
        if clock is not None:
            headers["X-Raylake-Clock"] = clock
        return http.post(url + path, data=json.dumps(body), headers=headers, timeout=30)

    answers = {}
    rows: dict[str, Any] = ROWS
    for at, n in REQUESTS.items():
        r = post("/predict", {"features": {k: (v * 2)[:n] for k, v in rows.items()}},
                 at.isoformat())
        assert r.status_code == 200, r.text
        answers[at] = r.json()
    entity = {"entities": {"flight": [1]}}
    got = {"fresh": post("/predict", entity, (T + dt.timedelta(minutes=30)).isoformat()),
           "stale": post("/predict", entity, (T + 3 * HOUR).isoformat()),
           "bad_clock": post("/predict", entity, "yesterday"),
           "plain_clock": post("/plain/predict", {"features": ROWS}, T.isoformat()),
           "plain": post("/plain/predict", {"features": ROWS}, None)}
    serve.delete("replayed")  # the replica closes its request log and profiler
    serve.delete("plain")
    serve.shutdown()
    yield {"lake": lake, "conf": conf, "answers": answers, "got": got}


@pytest.mark.slow
def test_replayed_clock_drives_lookups_the_log_and_the_profiles(replayed):
    got = replayed["got"]
    assert got["fresh"].status_code == 200, got["fresh"].text
    assert got["stale"].status_code == 200, got["stale"].text
    # 30 min after the stored row it is within the 2 h TTL; 3 h after, it is not: the
    # model saw a null wind (the request log keeps what the model saw).
    assert got["fresh"].json()["predictions"] != got["stale"].json()["predictions"]
    assert got["bad_clock"].status_code == 400 and got["bad_clock"].json()["kind"] == "bad_clock"
    log = replayed["lake"].read("serving/requests").to_pylist()
    by_id = {r["request_id"]: r for r in log if not r["shadow"]}
    for at, answer in replayed["answers"].items():
        assert by_id[answer["request_id"]]["at"] == at
    seen = {json.loads(r["features"])["wind"][0] for r in log
            if r["request_id"] in (got["fresh"].json()["request_id"],
                                   got["stale"].json()["request_id"])}
    assert seen == {3.0, None}


@pytest.mark.slow
def test_the_header_is_refused_without_replay_clock(replayed):
    r = replayed["got"]["plain_clock"]
    assert r.status_code == 400 and r.json()["kind"] == "bad_clock"
    assert "model_server.replay_clock" in r.json()["error"]
    assert replayed["got"]["plain"].status_code == 200


def counts(rows: list[dict]) -> Counter:
    out: Counter = Counter()
    for r in rows:
        out[(r["model_version"], r["arm"], r["shadow"], r["window_start"])] += r["rows"]
    return out


@pytest.mark.slow
def test_live_profiles_have_both_windows_per_arm(replayed):
    rows = replayed["lake"].read(TABLE, system=True).to_pylist()
    assert {r["source"] for r in rows} == {"live"}
    want: Counter = Counter()
    for at, n in REQUESTS.items():
        start = at.replace(minute=0)
        want[(1, "main", False, start)] += n
        want[(3, "challenger", True, start)] += n
    # The two entity requests: 10:00 and 13:00 windows.
    for start in (T, T + 3 * HOUR):
        want[(1, "main", False, start)] += 1
        want[(3, "challenger", True, start)] += 1
    assert counts(rows) == want
    merged: dict = {}
    for r in rows:
        key = (r["arm"], r["window_start"])
        merged[key] = merged.get(key, Profile.empty()).merge(Profile.from_bytes(r["profile"]))
    prof = merged[("main", T + HOUR)]
    assert PREDICTION in prof.columns and prof.summary(PREDICTION).count == 5
    assert prof.summary("carrier").count == 5


@pytest.mark.slow
def test_profile_requests_job_matches_the_live_rows_once(replayed):
    from raylake.config.loader import compose_config
    from raylake.serve.jobs import profile_requests

    lake = replayed["lake"]
    cfg = compose_config([f"lake.root={lake.root}", "model=toy"])
    first = profile_requests(cfg, echo=lambda *_: None)
    rows = lake.read(TABLE, system=True).to_pylist()
    live = counts([r for r in rows if r["source"] == "live"])
    logged = [r for r in rows if r["source"] == "log"]
    assert counts(logged) == live
    assert first["written"] == len(live) and first["rows"] == sum(live.values())
    assert {r["writer"] for r in logged} == {"log"}
    again = profile_requests(cfg, echo=lambda *_: None)
    assert again["written"] == 0 and again["skipped"] == len(live)
    assert lake.read(TABLE, system=True).num_rows == len(rows)
    # One version only; an ended window only.
    cfg = compose_config([f"lake.root={lake.root}", "model=toy:3"])
    assert profile_requests(cfg, echo=lambda *_: None)["windows"] == len(live) // 2
