"""Real Ray clusters on this machine: a head started with `ray start --head` taking a
job through the Ray Jobs API, and a two-node cluster running an ingestion on both nodes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
from conftest import PYTHON, REPO, subprocess_env
from helpers import events, write_events_csv

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

RAY_CLI = str(Path(PYTHON).parent / "ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cluster_env() -> dict[str, str]:
    env = subprocess_env()
    # Ray 2.60 clients send the token only in token mode; the head and this
    # test's client use the same token file (~/.ray/auth_token).
    env["RAY_AUTH_MODE"] = "token"
    env["PATH"] = f"{Path(PYTHON).parent}{os.pathsep}{env.get('PATH', '')}"
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return env


@pytest.fixture(scope="module")
def ray_head():
    """A real head node (`ray start --head --block`), stopped after the module."""
    env = cluster_env()
    subprocess.run([RAY_CLI, "get-auth-token", "--generate"], env=env, capture_output=True,
                   timeout=60)
    gcs, dash = free_port(), free_port()
    proc = subprocess.Popen(
        [RAY_CLI, "start", "--head", "--block", f"--port={gcs}", "--num-cpus=2",
         "--include-dashboard=true", f"--dashboard-port={dash}", "--dashboard-host=127.0.0.1",
         f"--ray-client-server-port={free_port()}", "--disable-usage-stats"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    url = f"http://127.0.0.1:{dash}"
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "token"
    try:
        from ray.job_submission import JobSubmissionClient

        deadline = time.time() + 120
        client = None
        while time.time() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"ray start failed: {proc.stderr.read().decode()[-2000:]}")
            try:
                client = JobSubmissionClient(url)
                client.list_jobs()
                break
            except Exception:  # noqa: BLE001 - the dashboard is still starting
                time.sleep(1)
        assert client is not None, "the head's Jobs API did not come up in 120 s"
        yield client
    finally:
        if saved is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def test_ray_job_submit_to_a_real_head(ray_head, tmp_path):
    from ray.job_submission import JobStatus

    root = tmp_path / "lake"
    job_id = ray_head.submit_job(
        entrypoint=f"python jobs/ingest.py dataset=nycflights13_airlines lake.root={root}",
        runtime_env={"working_dir": str(REPO),
                     "excludes": [".venv", ".git", "lake", "*.parquet", "__pycache__"]},
    )
    deadline = time.time() + 300
    status = ray_head.get_job_status(job_id)
    while status not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED} and time.time() < deadline:
        time.sleep(1)
        status = ray_head.get_job_status(job_id)
    logs = ray_head.get_job_logs(job_id)
    assert status == JobStatus.SUCCEEDED, logs[-3000:]
    assert "airlines: read 16 = written 16 + quarantined 0" in logs

    from raylake.lake import Lake, Storage, list_runs

    lake = Lake(Storage.from_config(str(root)))
    assert lake.count("airlines") == 16
    assert list_runs(lake)[0]["status"] == "succeeded"


TWO_NODE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        ray.init(address=cluster.address)
        from raylake.config.loader import compose_config
        from raylake.ingest.job import run
        out = run(compose_config(sys.argv[1:]), echo=print)
        nodes = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
        print("RESULT " + json.dumps({"cluster_nodes": nodes,
                                      "used": out["tables"][0].nodes,
                                      "written": out["tables"][0].rows_written}))
    finally:
        ray.shutdown()
        cluster.shutdown()
    """
)


def test_two_node_cluster_ingests_on_both_nodes(tmp_path):
    for i in range(8):
        write_events_csv(tmp_path / "src" / f"part-{i}.csv", events(i * 500, 500))
    conf = tmp_path / "conf" / "dataset"
    conf.mkdir(parents=True)
    (conf / "events.yaml").write_text(textwrap.dedent(f"""
        name: events
        tables:
          events:
            source: {{path: "{tmp_path / 'src'}/*.csv"}}
            primary_key: [id]
            columns:
              id: {{type: int64, nullable: false}}
              user: {{type: string, nullable: false}}
              amount: {{type: float64}}
              ts: {{type: timestamp, nullable: false}}
    """))
    script = tmp_path / "two_node.py"
    script.write_text(TWO_NODE_SCRIPT)
    res = subprocess.run(
        [PYTHON, str(script), f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "dataset=events",
         f"lake.root={tmp_path / 'lake'}", "ray.data_task_cpus=0.5"],
        capture_output=True, text=True, env=cluster_env(), timeout=400,
    )
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")]
    assert res.returncode == 0 and line, (res.stdout[-2000:], res.stderr[-4000:])
    result = json.loads(line[0][len("RESULT "):])
    assert len(result["cluster_nodes"]) == 2
    assert sorted(result["used"]) == result["cluster_nodes"], "work ran on one node only"
    assert result["written"] == 4000
