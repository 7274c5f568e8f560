"""Orphans: files no Delta log mentions, tables whose first commit never happened,
staging left by merges; found with a minimum age, removed, listed by the CLI."""

from __future__ import annotations

import os
import subprocess
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import PYTHON, subprocess_env

from raylake.errors import UnsafeOperationError
from raylake.lake.commit import write_table
from raylake.lake.orphans import check_min_age, find_orphans, remove_orphans


def parquet(path, rows=3, age_hours=0.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"x": list(range(rows))}), path)
    if age_hours:
        then = time.time() - age_hours * 3600
        os.utime(path, (then, then))
    return path


def rows(lake, name):
    return sorted(lake.read(name).column("x").to_pylist())


def test_finds_each_kind_and_removes_only_orphans(lake, tmp_path):
    root = tmp_path / "lake"
    write_table(lake, "t", pa.table({"x": [1, 2]}))
    write_table(lake, "t", pa.table({"x": [3]}))
    write_table(lake, "t", pa.table({"x": [9]}), mode="overwrite")  # removes, not orphans
    write_table(lake, "ns/p", pa.table({"x": [1], "k": ["a"]}), partition_by=["k"])
    parquet(root / "t" / "part-dead.parquet", age_hours=2)
    parquet(root / "ns" / "p" / "k=b" / "part-dead.parquet", age_hours=2)
    parquet(root / "t" / "part-fresh.parquet")  # a running job's: too young
    parquet(root / "failed" / "k=1" / "part-a.parquet", age_hours=2)  # no _delta_log
    (root / "failed2" / "_delta_log").mkdir(parents=True)  # a creation that never committed
    parquet(root / "failed2" / "part-b.parquet", age_hours=2)
    tmp_commit = root / "t" / "_delta_log" / "_commit_0123.json.tmp"
    tmp_commit.write_text("{}")
    then = time.time() - 7200
    os.utime(tmp_commit, (then, then))
    os.utime(root / "failed2" / "_delta_log", (then, then))
    parquet(root / "_staging" / "run-1" / "t" / "part-s.parquet", age_hours=2)
    (root / "_model_artifacts").mkdir()
    (root / "_model_artifacts" / "m.ubj").write_bytes(b"model")  # not raylake's to judge

    found = {(o.path, o.kind, o.table) for o in find_orphans(lake, min_age_hours=1)}
    assert found == {
        ("t/part-dead.parquet", "file", "t"),
        ("ns/p/k=b/part-dead.parquet", "file", "ns/p"),
        ("failed/k=1/part-a.parquet", "no_table", None),
        ("failed2/part-b.parquet", "no_table", None),
        ("failed2/_delta_log", "empty_log", None),
        ("t/_delta_log/_commit_0123.json.tmp", "commit_temp", "t"),
        ("_staging/run-1", "staging", None),
    }
    assert {o.path for o in find_orphans(lake, "t", min_age_hours=1)} == {
        "t/part-dead.parquet", "t/_delta_log/_commit_0123.json.tmp"}
    young = {o.path for o in find_orphans(lake, min_age_hours=0)}
    assert "t/part-fresh.parquet" in young

    remove_orphans(lake, find_orphans(lake, min_age_hours=1))
    assert find_orphans(lake, min_age_hours=1) == []
    assert not (root / "failed").exists() and not (root / "failed2").exists()
    assert not (root / "_staging" / "run-1").exists()
    assert (root / "t" / "part-fresh.parquet").exists() and (root / "_model_artifacts" / "m.ubj").exists()
    assert rows(lake, "t") == [9] and lake.version("t") == 2
    assert lake.read("t", 1).num_rows == 3  # time travel still reads the removed files
    assert lake.names() == ["ns/p", "t"]


def test_files_named_only_by_a_checkpoint_are_kept(lake, tmp_path):
    for i in range(3):
        write_table(lake, "t", pa.table({"x": [i]}))
    lake.table("t").create_checkpoint()
    log = tmp_path / "lake" / "t" / "_delta_log"
    for f in log.glob("0000000000000000000[01].json"):
        f.unlink()  # as log cleanup does once a checkpoint covers them
    assert find_orphans(lake, min_age_hours=0) == []
    assert rows(lake, "t") == [0, 1, 2]


def test_min_age_under_default_needs_force():
    assert check_min_age(200, force=False) == 200
    assert check_min_age(2, force=True) == 2
    assert check_min_age(0, force=True) == 0
    with pytest.raises(UnsafeOperationError, match="--force"):
        check_min_age(2, force=False)  # under Delta's 168-hour retention
    with pytest.raises(UnsafeOperationError, match="--force"):
        check_min_age(0, force=False)
    with pytest.raises(UnsafeOperationError, match="negative"):
        check_min_age(-1, force=True)


def test_cli_doctor_lists_and_vacuum_orphans_removes(lake, tmp_path):
    root = tmp_path / "lake"
    write_table(lake, "t", pa.table({"x": [1]}))
    dead = parquet(root / "t" / "part-dead.parquet", age_hours=200)  # past the 168 h default

    def cli(*args):
        return subprocess.run([PYTHON, "-m", "raylake", "lake", *args, f"lake.root={root}"],
                              capture_output=True, text=True, env=subprocess_env(), timeout=120)

    doctor = cli("doctor")
    assert doctor.returncode == 0, doctor.stderr
    assert "t/part-dead.parquet" in doctor.stdout and "would delete 1 orphans" in doctor.stdout
    dry = cli("vacuum", "--orphans", "--dry-run")
    assert "would delete 1 orphans" in dry.stdout and dead.exists()
    refused = cli("vacuum", "--orphans", "--min-age-hours", "0")
    assert refused.returncode != 0 and "--force" in refused.stderr and dead.exists()
    done = cli("vacuum", "--orphans")
    assert done.returncode == 0 and "deleted 1 orphans" in done.stdout and not dead.exists()
    assert "no orphans" in cli("doctor").stdout
    assert rows(lake, "t") == [1]


def test_partition_values_with_spaces_and_colons_are_not_orphans(lake, tmp_path):
    # A partition value a writer percent-encodes in the log (or on disk) is still the
    # same file: judged by the path as written and as decoded.
    when = ["2013-01-01 05:00:00", "a b"]
    write_table(lake, "pt", pa.table({"x": [1, 2], "k": when}), partition_by=["k"])
    for f in (tmp_path / "lake" / "pt").rglob("*.parquet"):
        then = time.time() - 7200
        os.utime(f, (then, then))
    assert find_orphans(lake, min_age_hours=1) == []
    assert sorted(lake.read("pt").column("x").to_pylist()) == [1, 2]
