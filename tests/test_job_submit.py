"""raylake reaches a cluster that does not have it: `ray job submit --working-dir .` to a
real head (`ray start --head`, token auth on) whose Python environment has Ray and every
dependency but not raylake. jobs/_tree.py puts the uploaded src/ on the driver's path;
the driver puts it on the job's workers' PYTHONPATH (runtime.package_env).

The environment is built offline in a second: a new venv whose site-packages holds one
.pth line naming the test environment's site-packages. Python adds that folder to the
path but does not process the .pth files inside it, so the editable raylake install's
finder (``__editable__*.pth``) never runs there and ``import raylake`` fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import uuid
from pathlib import Path

import pytest
from conftest import REPO
from ray_head import ray_head

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

EXCLUDES = [".venv", ".git", "/lake", "__pycache__", ".bench", "reports", ".raylake",
            ".pytest_cache", ".mypy_cache", ".ruff_cache"]


@pytest.fixture(scope="module")
def bare_env(tmp_path_factory) -> dict:
    """A venv with Ray and raylake's dependencies but without raylake: its python, its
    `ray` command and the environment variables to run them with."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                                "['purelib'])"], capture_output=True, text=True, check=True,
                               timeout=60).stdout.strip())
    (site / "raylake_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    ray_cli = venv / "bin" / "ray"
    ray_cli.write_text(f"#!{python}\nimport sys\nfrom ray.scripts.scripts import main\n"
                       "sys.exit(main())\n")
    ray_cli.chmod(0o755)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "RAY_ADDRESS", "VIRTUAL_ENV", "PYTEST_CURRENT_TEST")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", RAY_AUTH_MODE="token",
               RAY_USAGE_STATS_ENABLED="0")
    return {"python": str(python), "ray": str(ray_cli), "env": env}


def test_the_bare_environment_has_ray_but_not_raylake(bare_env):
    run = subprocess.run([bare_env["python"], "-c", "import ray, xgboost, deltalake; "
                          "print(ray.__version__); import raylake"],
                         env=bare_env["env"], capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "No module named 'raylake'" in run.stderr, run.stderr[-2000:]
    assert run.stdout.strip().startswith("2.")


@pytest.fixture(scope="module")
def bare_head(bare_env):
    """A head started with the bare environment's `ray start --head --block`."""
    with ray_head(bare_env["ray"], bare_env["env"]) as (url, _):
        yield url


def test_ray_job_submit_ingest_to_a_head_without_raylake(bare_env, bare_head, tmp_path):
    root = tmp_path / "lake"
    env, ray_cli = bare_env["env"], bare_env["ray"]
    job_id = f"raylake-bare-{uuid.uuid4().hex[:8]}"
    submit = subprocess.run(
        [ray_cli, "job", "submit", "--address", bare_head, "--submission-id", job_id,
         "--working-dir", ".", "--runtime-env-json", json.dumps({"excludes": EXCLUDES}),
         "--", "python", "jobs/ingest.py", "dataset=nycflights13_airlines", f"lake.root={root}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=400,
    )
    status = subprocess.run([ray_cli, "job", "status", "--address", bare_head, job_id], env=env,
                            capture_output=True, text=True, timeout=60)
    if submit.returncode != 0:
        pytest.fail(f"ray job submit failed:\n{submit.stdout[-6000:]}\n{submit.stderr[-3000:]}",
                    pytrace=False)
    assert "succeeded" in status.stdout.lower(), status.stdout
    assert "airlines: read 16 = written 16 + quarantined 0" in submit.stdout
    # Quiet: Ray's own lines went to the job's log file, not the job's output.
    assert "TrainController" not in submit.stdout and "Started a local Ray" not in submit.stdout
    assert list((root / "_logs").glob("ingest-*.log"))

    from raylake.lake import Lake, Storage, list_runs

    lake = Lake(Storage.from_config(str(root)))
    assert lake.count("airlines") == 16
    assert list_runs(lake)[0]["status"] == "succeeded"
