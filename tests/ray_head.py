"""A real Ray head on this machine (`ray start --head --block`, token auth), for the tests
that submit jobs to one (test_cluster.py, test_job_submit.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator

from conftest import free_port


@contextlib.contextmanager
def ray_head(ray_cli: str, env: dict[str, str]) -> Iterator[tuple[str, int]]:
    """Start a head with ``ray_cli`` in ``env``; yields (Jobs API URL, GCS port) once the
    Jobs API answers, and stops the head's whole process group on the way out."""
    subprocess.run([ray_cli, "get-auth-token", "--generate"], env=env, capture_output=True,
                   timeout=60)
    gcs, dash = free_port(), free_port()
    proc = subprocess.Popen(
        [ray_cli, "start", "--head", "--block", f"--port={gcs}", "--num-cpus=2",
         "--include-dashboard=true", f"--dashboard-port={dash}", "--dashboard-host=127.0.0.1",
         f"--ray-client-server-port={free_port()}", "--disable-usage-stats",
         # The session's own Ray holds the default agent ports on this machine.
         f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
         f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    url = f"http://127.0.0.1:{dash}"
    try:
        deadline, last = time.time() + 120, ""
        while time.time() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"ray start failed: {proc.stderr.read().decode()[-2000:]}")
            probe = subprocess.run([ray_cli, "job", "list", "--address", url], env=env,
                                   capture_output=True, text=True, timeout=60)
            if probe.returncode == 0:
                break
            last = probe.stderr[-1000:]
            time.sleep(1)
        else:
            raise AssertionError(f"the head's Jobs API did not come up in 120 s: {last}")
        yield url, gcs
    finally:
        # A graceful stop of the head's processes took 34 s here; the tests' lakes are in
        # tmp dirs and nothing else is left to flush, so give it 5 s, then kill whatever
        # of the head's process group is still there.
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
