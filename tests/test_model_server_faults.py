"""The model server loses a replica under load: Serve answers on, only the requests that
were in flight on the killed replica fail, and the replica count comes back."""

from __future__ import annotations

import threading
import time

import pytest
import requests
from conftest import free_port
from test_model_server import register_toys

from raylake.config.loader import compose_config, to_config

APP, DEPLOYMENT = "model-faults", "ModelServer"
THREADS = 4
ROW = {"wind": 5.0, "noise": 0.1, "carrier": "AA"}


def replica_names() -> set[str]:
    """The Serve replica actors of this app's model deployment (their names hold both)."""
    import ray

    return {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == "serve"
            and a["name"].startswith(f"SERVE_REPLICA::{APP}#{DEPLOYMENT}#")}


def running() -> int:
    from ray import serve

    app = serve.status().applications.get(APP)
    if app is None or DEPLOYMENT not in app.deployments:
        return 0
    return app.deployments[DEPLOYMENT].replica_states.get("RUNNING", 0)


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


@pytest.mark.slow
def test_killed_replica_is_replaced_and_only_its_in_flight_requests_fail(ray_session, tmp_path):
    import ray
    from ray import serve

    from raylake.lake import Lake
    from raylake.serve.app import build_app

    port = free_port()
    conf = to_config(compose_config([f"lake.root={tmp_path / 'lake'}", "model=toy:1",
                                     "model_server.min_replicas=2", "model_server.max_replicas=2",
                                     "model_server.log_flush_s=0.5"], job="serve"))
    lake = Lake.from_config(conf.lake)
    register_toys(lake)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(build_app(conf, lake), name=APP, route_prefix="/")
        wait_until(lambda: running() == 2 and len(replica_names()) == 2, 60, "2 running replicas")
        before = replica_names()
        url = f"http://127.0.0.1:{port}/predict"

        # Each client thread: one request at a time, (start, end, status or error) per request.
        results: list[list[tuple[float, float, object]]] = [[] for _ in range(THREADS)]
        stop = threading.Event()

        def client(out: list) -> None:
            http = requests.Session()
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    got: object = http.post(url, json={"features": ROW}, timeout=30).status_code
                except requests.RequestException as exc:
                    got = type(exc).__name__
                out.append((t0, time.monotonic(), got))

        threads = [threading.Thread(target=client, args=(r,), daemon=True) for r in results]
        for t in threads:
            t.start()
        try:
            time.sleep(2.0)
            victim = sorted(before)[0]
            killed_at = time.monotonic()
            ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
            # Serve notices the dead actor and starts a replacement; load goes on meanwhile.
            wait_until(lambda: running() == 2 and victim not in replica_names()
                       and len(replica_names()) == 2, 45, "Serve to replace the killed replica")
            replaced_at = time.monotonic()
            time.sleep(1.0)  # some load on the restored pair
        finally:
            stop.set()
            for t in threads:
                t.join(35)
        after = replica_names()
        assert len(after) == 2 and victim not in after and len(after - before) == 1, (before, after)

        done = [r for rs in results for r in rs]
        failed = [r for r in done if r[2] != 200]
        ok_after_kill = [r for r in done if r[2] == 200 and r[0] > killed_at]
        ok_one_replica = [r for r in ok_after_kill if r[1] < replaced_at]
        ok_after_replaced = [r for r in done if r[2] == 200 and r[0] > replaced_at]
        assert ok_one_replica, "no request was answered while the replica was being replaced"
        assert ok_after_replaced, "no request was answered once the replica was replaced"
        # Only requests in flight on the killed replica fail: each client thread has one
        # request in flight at a time, so at most one failure per thread, each one in flight
        # at the kill (`ray.kill` is asynchronous: sent at most a moment after the call).
        print(f"{len(done)} requests, {len(ok_after_kill)} answered after the kill "
              f"({len(ok_one_replica)} before the replacement ran), "
              f"replaced in {replaced_at - killed_at:.1f}s, failed: "
              f"{[(round(t0 - killed_at, 2), round(end - killed_at, 2), got) for t0, end, got in failed]}")
        assert len(failed) <= THREADS, failed
        per_thread = [sum(1 for r in rs if r[2] != 200) for rs in results]
        assert max(per_thread) <= 1, per_thread
        assert all(t0 < killed_at + 1.0 and end >= killed_at for t0, end, _ in failed), (
            killed_at, failed)
    finally:
        serve.delete(APP)
        serve.shutdown()
