"""Idempotency under races: an input's app id is checked on the snapshot the commit
lands on; tags and system tables hold against concurrent writers. Unit tests put the
other writer's commit between a writer's check and its commit; the slow tests race
real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import PYTHON, REPO, subprocess_env

import raylake.lake.commit as commit
from raylake.errors import ConcurrentWriteError, LakeError
from raylake.lake import TagStore
from raylake.lake.commit import add_actions, commit_once, write_table

SCHEMA = pa.schema([("x", pa.int64())])


def written(lake, name, values):
    """A Parquet file in table ``name``'s folder, as a worker writes it (uncommitted)."""
    folder = os.path.join(lake.root, name)
    os.makedirs(folder, exist_ok=True)
    path = f"part-{os.urandom(6).hex()}.parquet"
    pq.write_table(pa.table({"x": pa.array(values, pa.int64())}), os.path.join(folder, path))
    stats = json.dumps({"numRecords": len(values)})
    return add_actions([{"path": path, "size": os.path.getsize(os.path.join(folder, path)),
                         "stats": stats}])


def txn_commits(lake, name, app_id, system=False):
    """How many commits of ``name``'s log carry ``app_id``."""
    log = os.path.join(lake.uri(name, system=system), "_delta_log")
    n = 0
    for f in sorted(os.listdir(log)):
        if f.endswith(".json"):
            with open(os.path.join(log, f)) as src:
                n += any(json.loads(line).get("txn", {}).get("appId") == app_id
                         for line in src if line.strip())
    return n


def values(lake, name):
    return sorted(lake.read(name).column("x").to_pylist())


def other_writer_between_snapshot_and_commit(monkeypatch, other):
    """Make the next snapshot a writer takes stale: ``other()`` commits right after it."""
    real, state = commit.snapshot, {"done": False}

    def stale(*args, **kw):
        snap = real(*args, **kw)
        if not state["done"]:
            state["done"] = True
            other()
        return snap

    monkeypatch.setattr(commit, "snapshot", stale)
    return state


@pytest.mark.parametrize("exists", [True, False], ids=["append", "create"])
def test_an_input_committed_between_check_and_commit_is_not_committed_again(
        lake, monkeypatch, exists):
    if exists:
        write_table(lake, "t", pa.table({"x": pa.array([0], pa.int64())}))
    mine, theirs = written(lake, "t", [1, 2, 3]), written(lake, "t", [1, 2, 3])
    won = {}

    def other():
        won["v"] = commit_once(lake, "t", SCHEMA, theirs, mode="append", app_id="in-1")

    state = other_writer_between_snapshot_and_commit(monkeypatch, other)
    done = commit_once(lake, "t", SCHEMA, mine, mode="append", app_id="in-1")
    assert state["done"] and won["v"].committed
    # The loser's snapshot did not hold the id; its commit conflicted (delta-rs checks
    # the winning commit's txn), it reloaded, found the id and committed nothing.
    assert not done.committed and done.version == won["v"].version
    assert values(lake, "t") == ([0] if exists else []) + [1, 2, 3]
    assert txn_commits(lake, "t", "in-1") == 1
    assert not os.path.exists(os.path.join(lake.root, "t", mine[0].path))  # no orphan left


def test_an_app_id_already_in_the_snapshot_is_seen_and_other_appends_still_land(lake, monkeypatch):
    write_table(lake, "t", pa.table({"x": pa.array([0], pa.int64())}))
    assert commit_once(lake, "t", SCHEMA, written(lake, "t", [1]), mode="append",
                       app_id="a").committed
    # delta-rs would commit this one (the id is in the snapshot, not in a winning commit).
    again = commit_once(lake, "t", SCHEMA, written(lake, "t", [1]), mode="append", app_id="a")
    assert not again.committed and values(lake, "t") == [0, 1]

    def other():
        assert commit_once(lake, "t", SCHEMA, written(lake, "t", [7]), mode="append",
                           app_id="b").committed

    other_writer_between_snapshot_and_commit(monkeypatch, other)
    # A concurrent append of another input does not stop this one (delta-rs rebases it).
    assert commit_once(lake, "t", SCHEMA, written(lake, "t", [2]), mode="append",
                       app_id="c").committed
    assert values(lake, "t") == [0, 1, 2, 7]


def test_write_table_batches_commit_once_each(lake, monkeypatch):
    rows = pa.table({"x": pa.array([5], pa.int64())})

    def other():
        write_table(lake, "log", rows, app_id="replica-1", txn_version=1)

    other_writer_between_snapshot_and_commit(monkeypatch, other)  # both create the table
    write_table(lake, "log", rows, app_id="replica-1", txn_version=1)
    write_table(lake, "log", rows, app_id="replica-1", txn_version=1)  # a retried flush
    write_table(lake, "log", rows, app_id="replica-1", txn_version=2)
    assert values(lake, "log") == [5, 5]
    assert lake.table("log").transaction_version("replica-1") == 2


def test_concurrent_creators_of_a_table_both_land_once(lake, monkeypatch):
    def other():
        write_table(lake, "runs", pa.table({"x": pa.array([1], pa.int64())}))

    other_writer_between_snapshot_and_commit(monkeypatch, other)
    write_table(lake, "runs", pa.table({"x": pa.array([2], pa.int64())}))
    assert values(lake, "runs") == [1, 2]
    # The loser appended to the table the winner created (no second create in version 1).
    second = os.path.join(lake.uri("runs"), "_delta_log", f"{1:020d}.json")
    with open(second) as src:
        assert not any("metaData" in json.loads(line) for line in src if line.strip())


def test_a_tag_set_concurrently_has_one_winner_and_a_clear_error(lake, monkeypatch):
    for i in range(3):
        write_table(lake, "t", pa.table({"x": pa.array([i], pa.int64())}))
    tags = TagStore(lake)
    tags.set("t", "seed", 0)  # _tags exists: the other set lands between read and commit

    other_writer_between_snapshot_and_commit(monkeypatch, lambda: tags.set("t", "best", 1))
    with pytest.raises(ConcurrentWriteError, match=r"'best' of 't' was set to version 1 by "
                                                   r"another writer .* setting it to 2"):
        tags.set("t", "best", 2)
    assert tags.get("t", "best") == 1
    monkeypatch.undo()

    # The same version set concurrently: both callers get what they asked for, one row.
    other_writer_between_snapshot_and_commit(monkeypatch, lambda: tags.set("t", "same", 0))
    assert tags.set("t", "same", 0) == 0
    monkeypatch.undo()

    # Another tag's concurrent set does not conflict.
    other_writer_between_snapshot_and_commit(monkeypatch, lambda: tags.set("t", "a", 0))
    assert tags.set("t", "b", 2) == 2
    monkeypatch.undo()
    assert {t["tag"]: t["version"] for t in tags.list("t")} == {"seed": 0, "best": 1, "same": 0,
                                                                 "a": 0, "b": 2}
    assert len(lake.read("_tags", system=True)) == 5
    with pytest.raises(LakeError, match="already names version 1; pass --force"):
        tags.set("t", "best", 2)
    assert tags.set("t", "best", 2, force=True) == 2


TAGGER = """
import sys, time
from raylake.errors import ConcurrentWriteError, LakeError
from raylake.lake import Lake, Storage, TagStore
root, version, start, n = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
tags = TagStore(Lake(Storage.from_config(root)))
for i in range(n):
    time.sleep(max(0.0, start + 0.25 * i - time.time()))  # both processes set r<i> at once
    try:
        tags.set("t", f"r{i}", version)
        print(f"r{i} ok", flush=True)
    except ConcurrentWriteError:
        print(f"r{i} concurrent", flush=True)
    except LakeError as exc:
        print(f"r{i} exists" if "already names" in str(exc) else f"r{i} error {exc}", flush=True)
"""


@pytest.mark.slow
def test_two_processes_setting_the_same_tags(lake):
    for i in range(2):
        write_table(lake, "t", pa.table({"x": pa.array([i], pa.int64())}))
    n, start = 25, time.time() + 4  # both past their imports before the first set
    procs = [subprocess.Popen([PYTHON, "-c", TAGGER, lake.root, str(v), str(start), str(n)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=subprocess_env()) for v in (0, 1)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    results = [dict(line.split(" ", 1) for line in out.split("\n") if line) for out, _ in outs]
    tags = TagStore(lake)
    kinds = Counter()
    for i in range(n):
        got = (results[0][f"r{i}"], results[1][f"r{i}"])
        kinds.update(got)
        assert sorted(got) in (["concurrent", "ok"], ["exists", "ok"]), (i, got)
        assert tags.get("t", f"r{i}") == got.index("ok")  # the winner's version
    assert len(lake.read("_tags", system=True)) == n  # one row per tag: no loser landed
    print(f"tag sets: {dict(kinds)}", file=sys.stderr)


def ingest_cli(root, src, address):
    return subprocess.Popen(
        [PYTHON, "-m", "raylake", "ingest", "dataset=nycflights13_airlines",
         f"dataset.tables.airlines.source.path={src}", "dataset.tables.airlines.mode=append",
         "quality=none", "profile.on_ingest=false", f"lake.root={root}",
         f"ray.address={address}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env(),
        cwd=REPO)


@pytest.mark.slow
@pytest.mark.parametrize("seeded", [False, True], ids=["create", "append"])
def test_two_processes_ingesting_one_input_commit_it_once(ray_address, lake, tmp_path, seeded):
    src = tmp_path / "in"
    src.mkdir()
    for k in range(4):  # several files: several tasks, a window for the race
        lines = ["carrier,name"] + [f"C{k}{i:05d},Airline {k} {i}" for i in range(20_000)]
        (src / f"a{k}.csv").write_text("\n".join(lines) + "\n")
    if seeded:
        write_table(lake, "airlines", pa.table({"carrier": ["ZZ"], "name": ["Seed Air"]}))
    procs = [ingest_cli(lake.root, src, ray_address) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-3000:] for o in outs]
    committed = [o for o, _ in outs if "read 80,000 = written 80,000" in o]
    skipped = [o for o, _ in outs if "input already ingested" in o]
    assert len(committed) == 1 and len(skipped) == 1, outs
    table = lake.read("airlines")
    assert table.num_rows == 80_000 + seeded
    assert len(set(table.column("carrier").to_pylist())) == table.num_rows
    apps = Counter()
    for f in sorted((tmp_path / "lake" / "airlines" / "_delta_log").glob("*.json")):
        for line in f.read_text().splitlines():
            app = json.loads(line).get("txn", {}).get("appId")
            if app:
                apps[app] += 1
    assert list(apps.values()) == [1]  # one commit carries the input's app id
    # No file of the losing run is left in the table's folder.
    live = set(lake.table("airlines").get_add_actions(flatten=True).column("path").to_pylist())
    on_disk = {str(p.relative_to(tmp_path / "lake" / "airlines"))
               for p in (tmp_path / "lake" / "airlines").rglob("*.parquet")}
    assert on_disk == live
    from raylake.lake import list_runs

    losers = [r["metrics"]["airlines"] for r in list_runs(lake, "ingest")
              if r["metrics"].get("airlines", {}).get("skipped")]
    # rows_read > 0: the loser read and wrote the input and was stopped at its commit
    # (the race); 0: it found the winner's commit before reading (no overlap this time).
    print(f"losing ingest read {losers[0]['rows_read']} rows", file=sys.stderr)
