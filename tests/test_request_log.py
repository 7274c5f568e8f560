"""The model server's request log: rows spooled before the answer, batches committed
exactly once under Delta application transactions, a killed writer's spool adopted by
another, and the final flush when Serve stops a replica gracefully."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter

import pytest
import requests
from conftest import free_port, subprocess_env

from raylake.errors import ConfigError, LakeError
from raylake.serve.request_log import (
    RequestLog,
    app_id,
    ensure_table,
    read_segment,
    spool_path,
    to_table,
)

TABLE = "serving/requests"
NEVER = 3600.0  # flush_s / adopt_s: only explicit flushes, adoptions and closes


def row(i: int, **extra) -> dict:
    return {"request_id": f"req-{i}", "unit_id": f"u{i}", "experiment": "x", "arm": "main",
            "model_name": "toy", "model_version": 1, "shadow": False, "status": 200,
            "rows": 1, "features": '{"wind": [1.0]}', "predictions": [0.5],
            "latency_ms": 1.5, "replica": "r", **extra}


def open_log(lake, spool, replica: str, **kw) -> RequestLog:
    kw = {"flush_rows": 10**6, "flush_s": NEVER, "adopt_s": NEVER, **kw}
    return RequestLog(lake, TABLE, replica=replica, spool_dir=str(spool), **kw)


def logged(lake) -> Counter:
    return Counter(lake.read(TABLE).column("request_id").to_pylist())


def spool_files(lake, spool) -> list[str]:
    folder = spool_path(lake, TABLE, str(spool))
    return sorted(os.listdir(folder)) if folder.exists() else []


def test_rows_are_spooled_before_the_lake_and_batches_carry_their_number(lake, tmp_path):
    ensure_table(lake, TABLE)
    log = open_log(lake, tmp_path, "r1")
    try:
        for i in range(3):
            log.add(**row(i))
        # On disk at once (what survives a kill), not yet in the lake.
        (spooled,) = [f for f in spool_files(lake, tmp_path) if f.endswith(".jsonl")]
        rows, bad = read_segment(spool_path(lake, TABLE, str(tmp_path)) / spooled)
        assert [r["request_id"] for r in rows] == ["req-0", "req-1", "req-2"] and bad == 0
        assert sum(logged(lake).values()) == 0
        assert log.flush() == 3
        assert lake.table(TABLE).transaction_version(app_id("r1")) == 1
        log.add(**row(3))
        log.add(**row(4))
        assert log.flush() == 2 and log.flush() == 0  # nothing new: no empty commit
        assert lake.table(TABLE).transaction_version(app_id("r1")) == 2
    finally:
        assert log.close()
    assert logged(lake) == Counter(f"req-{i}" for i in range(5))
    got = lake.read(TABLE).to_pylist()[0]
    assert got["at"].tzinfo is not None and got["predictions"] == [0.5]
    assert spool_files(lake, tmp_path) == []  # a clean stop leaves nothing behind


def test_a_retried_batch_whose_commit_landed_is_not_written_twice(lake, tmp_path, monkeypatch):
    import raylake.lake.commit as commit

    ensure_table(lake, TABLE)
    real = commit.write_table
    calls = []

    def landed_but_failed(*args, **kw):  # the storage took the commit, the answer got lost
        calls.append(kw["txn_version"])
        real(*args, **kw)
        if len(calls) == 1:
            raise LakeError("connection reset")

    monkeypatch.setattr(commit, "write_table", landed_but_failed)
    log = open_log(lake, tmp_path, "r2")
    try:
        for i in range(4):
            log.add(**row(i))
        assert log.flush() == 0 and log.waiting == 4  # outcome unknown: kept
        log.add(**row(4))
        # The retry reads transaction_version: batch 1 is in; only batch 2 is written.
        assert log.flush() == 1 and log.waiting == 0
        assert calls == [1, 2]
    finally:
        log.close()
    assert logged(lake) == Counter(f"req-{i}" for i in range(5))


def test_a_broken_lake_keeps_batches_on_disk_up_to_max_buffer(lake, tmp_path, monkeypatch):
    import raylake.lake.commit as commit

    ensure_table(lake, TABLE)
    real = commit.write_table
    down = {"on": True}

    def maybe(*args, **kw):
        if down["on"]:
            raise LakeError("lake down")
        return real(*args, **kw)

    monkeypatch.setattr(commit, "write_table", maybe)
    log = open_log(lake, tmp_path, "r3", max_buffer=5)
    try:
        for batch in range(3):  # 3 batches of 2 rows: the oldest goes over the cap
            log.add(**row(2 * batch))
            log.add(**row(2 * batch + 1))
            assert log.flush() == 0
        assert log.dropped == 2 and log.waiting == 4
        down["on"] = False
        assert log.flush() == 4
    finally:
        log.close()
    assert logged(lake) == Counter(f"req-{i}" for i in range(2, 6))


def test_rows_the_disk_refuses_are_kept_in_memory_for_the_next_batch(lake, tmp_path):
    ensure_table(lake, TABLE)
    log = open_log(lake, tmp_path, "r4")
    try:
        log.add(**row(0))
        os.close(log._fd)  # the spool file is gone from under the writer (disk full, ...)
        log.add(**row(1))
        assert log.flush() == 2
        log.add(**row(2))  # the rotation opened a new file
        assert log.flush() == 1
    finally:
        log.close()
    assert logged(lake) == Counter(f"req-{i}" for i in range(3))


def test_torn_lines_and_rows_not_fitting_the_schema_are_left_out(tmp_path):
    path = tmp_path / "x.000000000001.jsonl"
    path.write_bytes(b'{"request_id": "a"}\nnot json\n{"request_id": "b"}\n{"request_')
    rows, bad = read_segment(path)
    assert [r["request_id"] for r in rows] == ["a", "b"] and bad == 2
    good = {**row(1), "at": 1_700_000_000_000_000}
    data, misfit = to_table([good, {**good, "status": "two hundred"}, {**good, "request_id": None}])
    assert data.num_rows == 1 and misfit == 2


def test_an_unwritable_spool_folder_is_a_config_error(lake, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="log_spool_dir"):
        RequestLog(lake, TABLE, replica="r5", spool_dir=str(blocker))


# A writer in its own process: spools rows, commits a first batch, "dies" between that
# commit and deleting the batch's file (the file is put back), spools more, tears a
# last line and waits to be killed with SIGKILL.
WRITER = textwrap.dedent("""
    import os, shutil, sys, time
    from raylake.lake import Lake, Storage
    from raylake.serve.request_log import RequestLog
    sys.path.insert(0, {tests!r})
    from test_request_log import row

    lake = Lake(Storage.from_config({root!r}))
    log = RequestLog(lake, "serving/requests", replica="dead", spool_dir={spool!r},
                     flush_rows=10**6, flush_s=3600, adopt_s=3600)
    for i in range(5):
        log.add(**row(i))
    first = log._file("dead", 1)
    shutil.copy(first, str(first) + ".keep")
    assert log.flush() == 5
    os.rename(str(first) + ".keep", first)
    for i in range(5, 12):
        log.add(**row(i))
    os.write(log._fd, b'{{"request_id": "req-torn", "unit')
    print("ready", flush=True)
    time.sleep(600)
""")


def test_a_killed_writers_spool_is_adopted_once(lake, tmp_path):
    ensure_table(lake, TABLE)
    spool = tmp_path / "spool"
    script = WRITER.format(tests=os.path.dirname(__file__), root=lake.root, spool=str(spool))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            env=subprocess_env(), text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        # Alive: its lock is held, nobody takes its rows.
        first = open_log(lake, spool, "a")
        assert first.adopt() == 0
        assert logged(lake) == Counter(f"req-{i}" for i in range(5))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    try:
        # Two survivors race for the dead writer's files: each row lands once.
        second = open_log(lake, spool, "b")  # its thread adopts as it starts, too
        threads = [threading.Thread(target=lg.adopt) for lg in (first, second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        wait_until(lambda: first.adopted + second.adopted >= 7, 30, "the adoption")
        # Batch 1 was committed before the "death": found by its number, deleted only.
        assert first.adopted + second.adopted == 7
        assert lake.table(TABLE).transaction_version(app_id("dead")) == 2
        assert logged(lake) == Counter(f"req-{i}" for i in range(12))
        assert not [f for f in spool_files(lake, spool) if f.startswith("dead")]
        assert (first.dropped + second.dropped) == 1  # the torn line: never answered
    finally:
        first.close()
        second.close()
    assert spool_files(lake, spool) == []


def test_a_writer_adopts_dead_spools_when_it_starts(lake, tmp_path):
    ensure_table(lake, TABLE)
    spool = tmp_path / "spool"
    folder = spool_path(lake, TABLE, str(spool))
    folder.mkdir(parents=True)
    # What a killed replica leaves: a free lock and a batch.
    (folder / "gone.lock").write_text("")
    (folder / "gone.000000000003.jsonl").write_text(
        "".join(__import__("json").dumps({**row(i), "at": 1_700_000_000_000_000}) + "\n"
                for i in range(3)))
    log = RequestLog(lake, TABLE, replica="new", spool_dir=str(spool), flush_s=NEVER)
    try:
        deadline = time.monotonic() + 30
        while sum(logged(lake).values()) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert logged(lake) == Counter(f"req-{i}" for i in range(3))
        assert lake.table(TABLE).transaction_version(app_id("gone")) == 3
    finally:
        log.close()
    assert spool_files(lake, spool) == []


# -- Serve: the final flush when a replica is stopped gracefully ----------------------

APP = "reqlog-shutdown"


def running_replicas(app: str) -> set[str]:
    """The unique ids of the app's running ModelServer replicas (from their actor names)."""
    import ray

    prefix = f"SERVE_REPLICA::{app}#ModelServer#"
    return {a["name"][len(prefix):] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == "serve" and a["name"].startswith(prefix)}


def serve_conf(root: str, spool: str, replicas: int, *extra: str):
    from raylake.config.loader import compose_config, to_config

    # Batches only at shutdown: whatever reaches the lake was written by the final flush.
    return to_config(compose_config([
        f"lake.root={root}", "model=toy:1", f"model_server.min_replicas={replicas}",
        f"model_server.max_replicas={replicas}", "model_server.log_flush_s=3600",
        "model_server.log_flush_rows=1000000", f"model_server.log_spool_dir={spool}",
        "model_server.upscale_delay_s=0", "model_server.downscale_delay_s=0", *extra,
    ], job="serve"))


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


@pytest.mark.slow
def test_scale_down_and_delete_flush_every_row_into_the_lake(ray_session, tmp_path):
    from ray import serve
    from test_model_server import register_toys

    from raylake.lake import Lake
    from raylake.serve.app import build_app

    root, spool = str(tmp_path / "lake"), str(tmp_path / "spool")
    conf = serve_conf(root, spool, 2)
    lake = Lake.from_config(conf.lake)
    register_toys(lake)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(build_app(conf, lake), name=APP, route_prefix="/")
        wait_until(lambda: len(running_replicas(APP)) == 2, 60, "2 replicas")
        url = f"http://127.0.0.1:{port}/predict"
        answered: list[str] = []

        def client(n: int) -> None:
            http = requests.Session()
            for _ in range(n):
                r = http.post(url, json={"features": {"wind": 5.0, "noise": 0.1,
                                                      "carrier": "AA"}}, timeout=30)
                assert r.status_code == 200, r.text
                answered.append(r.json()["request_id"])

        threads = [threading.Thread(target=client, args=(15,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert len(answered) == 60
        assert sum(logged(lake).values()) == 0  # nothing flushed yet
        before = running_replicas(APP)

        # Scale down to one replica: the stopped one's rows reach the lake as it stops.
        serve.run(build_app(serve_conf(root, spool, 1), lake), name=APP, route_prefix="/")
        wait_until(lambda: len(running_replicas(APP)) == 1, 90, "the scale-down")
        stopped = before - running_replicas(APP)
        wait_until(lambda: sum(logged(lake).values()) > 0, 30, "the stopped replica's rows")
        rows = lake.read(TABLE).to_pylist()
        assert {r["replica"] for r in rows} <= stopped, (stopped, {r["replica"] for r in rows})

        serve.delete(APP)  # the last replica's rows, with nobody left to adopt them
        counts = logged(lake)
        assert all(counts[rid] == 1 for rid in answered), counts
        assert set(counts) == set(answered)
        assert spool_files(lake, spool) == []
    finally:
        if APP in serve.status().applications:
            serve.delete(APP)
        serve.shutdown()
