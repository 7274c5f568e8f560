"""`raylake chain lake.branch=exp1 train.xgboost.num_boost_round=50` on a branch of a lake
the chain already ran on leaves main's versions, content, registry and run records
unchanged (every table compared by version and a hash of its rows), while the branch
gets its own model version and run records."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from conftest import free_port
from test_branches import table_state

from raylake.config.loader import compose_config


def _files(root: str) -> dict[str, str]:
    """Every file under ``root`` outside ``_branches``, with a hash of its bytes; the
    online store's SQLite database by its rows (a WAL checkpoint rewrites its bytes
    whenever the last connection closes, with the same rows)."""
    out = {}
    for p in sorted(Path(root).rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not rel.startswith(("_branches/", "_online/")):
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    for db in sorted(Path(root, "_online").glob("*.db")):
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            dump = "\n".join(conn.iterdump())
        out[f"{db.relative_to(root).as_posix()} (rows)"] = hashlib.sha256(
            dump.encode()).hexdigest()
    return out


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_chain_on_a_branch_leaves_main_unchanged(ray_session, chain_lake, tmp_path):
    from ray import serve

    from raylake.chain.jobs import chain
    from raylake.lake import Lake, Storage
    from raylake.lake.branches import create_branch
    from raylake.lake.runs import list_runs
    from raylake.models import ModelRegistry

    # Main is the session's chain run (tests/conftest.py: January, 10 rounds); the branch
    # run reads the same month's files with a different number of rounds.
    root = chain_lake.root
    month = Path(root).parent
    on_branch = compose_config([
        f"lake.root={root}", "lake.branch=exp1",
        f"dataset.tables.flights.source.path={month / 'flights_2013_01.csv'}",
        f"dataset.tables.weather.source.path={month / 'weather_2013_01.csv'}",
        "train.split.valid_start=2013-01-18", "train.split.test_start=2013-01-25",
        "train.scaling.num_workers=1", "train.checkpoint_every=10",
        "model_server.max_replicas=1", "model_server.log_flush_s=0.5",
        f"model_server.port={free_port()}", "train.xgboost.num_boost_round=50",
    ], job="chain")
    lake = Lake(Storage.from_config(root))
    before, files = table_state(lake), _files(root)
    models = [v.to_dict() for v in ModelRegistry(lake).list()]
    runs = list_runs(lake)
    try:
        made = create_branch(lake, "exp1")
        print(f"branch of the chain's lake: {len(made.info.tables)} tables, "
              f"{made.files_linked} files linked, {made.bytes_copied} bytes copied, "
              f"{made.bytes_written} bytes written, {made.seconds:.3f}s")
        assert made.bytes_copied == 0 and made.seconds < 2, made
        chain(on_branch, echo=lambda *_: None)
    finally:
        serve.shutdown()

    assert table_state(lake) == before  # every table's version and rows
    assert _files(root) == files  # not one byte of main changed or was added
    assert [v.to_dict() for v in ModelRegistry(lake).list()] == models
    assert list_runs(lake) == runs
    branch = lake.on_branch("exp1")
    assert len(ModelRegistry(branch).list()) == len(models) + 1
    assert len(list_runs(branch)) > len(runs)
