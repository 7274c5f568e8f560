"""The lake on real Delta tables: names, time travel, tags, diff, restore, optimize, vacuum."""

from __future__ import annotations

import datetime as dt
import time

import pyarrow as pa
import pytest

from raylake.errors import (
    LakeError,
    TableNameError,
    TableNotFoundError,
    UnsafeOperationError,
    VersionNotFoundError,
)
from raylake.lake import Lake, Storage, TagStore, diff_versions, validate_table_name
from raylake.lake.commit import write_table


@pytest.mark.parametrize(
    "name",
    ["../etc", "a/../../b", "/abs/path", "..", "a//b", "C:\\x", "s3://bucket/t", "a\\b", "", "_runs",
     "has space", "a/./b"],
)
def test_unsafe_table_names_are_rejected(name):
    with pytest.raises(TableNameError):
        validate_table_name(name)


def test_safe_names_and_system_tables():
    assert validate_table_name("raw/flights-2013_v1") == "raw/flights-2013_v1"
    assert validate_table_name("_runs", system=True) == "_runs"
    with pytest.raises(TableNameError, match="reserved"):
        validate_table_name("_tags")


def table(ids: list[int], extra: str | None = None) -> pa.Table:
    cols = {"id": pa.array(ids, pa.int64()), "v": pa.array([f"v{i}" for i in ids])}
    if extra:
        cols[extra] = pa.array([1.0] * len(ids))
    return pa.table(cols)


def test_time_travel_by_version_timestamp_and_tag(lake: Lake, tmp_path):
    write_table(lake, "t", table([1, 2, 3]))
    time.sleep(0.05)
    between = dt.datetime.now(dt.timezone.utc)
    time.sleep(0.05)
    write_table(lake, "t", table([4, 5]))
    assert lake.count("t") == 5
    assert lake.read("t", 0).num_rows == 3
    assert lake.read("t", between).num_rows == 3
    assert lake.read("t", between.isoformat()).num_rows == 3
    TagStore(lake).set("t", "baseline", 0)
    # A new Lake object (a restart) still sees the tag.
    again = Lake(Storage.from_config(lake.root))
    assert again.read("t", "baseline").num_rows == 3
    assert TagStore(again).list("t")[0]["version"] == 0
    with pytest.raises(VersionNotFoundError, match="no tag 'baselin'.*Did you mean 'baseline'"):
        again.read("t", "baselin")
    with pytest.raises(VersionNotFoundError):
        again.read("t", 7)


def test_tags_refuse_to_move_without_force_and_reject_version_like_names(lake):
    write_table(lake, "t", table([1]))
    write_table(lake, "t", table([2]))
    tags = TagStore(lake)
    tags.set("t", "prod", 0)
    with pytest.raises(LakeError, match="--force"):
        tags.set("t", "prod", 1)
    assert tags.set("t", "prod", 1, force=True) == 1
    assert tags.get("t", "prod") == 1
    for bad in ("3", "2024-01-01"):
        with pytest.raises(LakeError, match="version or a timestamp"):
            tags.set("t", bad)
    with pytest.raises(VersionNotFoundError, match="versions 0..1"):
        tags.set("t", "future", 9)


def test_diff_rows_and_schema(lake):
    write_table(lake, "t", table([1, 2, 3, 3]))
    write_table(lake, "t", table([4]))
    d = diff_versions(lake, "t", 0, 1)
    assert (d.rows_added, d.rows_removed) == (1, 0)
    assert d.added_sample == [{"id": 4, "v": "v4"}]
    write_table(lake, "t", table([3, 9]), mode="overwrite")
    d = diff_versions(lake, "t", 1, 2)
    # Multiset: one of the two 3s stays, the other goes.
    assert (d.rows_added, d.rows_removed) == (1, 4)
    assert sorted(r["id"] for r in d.removed_sample) == [1, 2, 3, 4]
    from deltalake import write_deltalake

    write_deltalake(lake.uri("t"), table([9, 10], extra="score"), mode="overwrite",
                    schema_mode="overwrite")
    d = diff_versions(lake, "t", 2, 3)
    assert d.added_columns == ["score"] and d.removed_columns == []
    assert (d.rows_added, d.rows_removed) == (1, 1)


def test_restore_optimize_vacuum(lake):
    for i in range(4):
        write_table(lake, "t", table([i]))
    lake.restore("t", 1)
    assert sorted(lake.read("t").column("id").to_pylist()) == [0, 1]
    assert lake.version("t") == 4
    metrics = lake.optimize("t")
    assert metrics["numFilesRemoved"] == 2 and metrics["numFilesAdded"] == 1
    assert sorted(lake.read("t").column("id").to_pylist()) == [0, 1]
    with pytest.raises(UnsafeOperationError, match="under the safe default of 168 hours"):
        lake.vacuum("t", retention_hours=0)
    assert lake.vacuum("t") == []  # nothing is old enough under the default
    deleted = lake.vacuum("t", retention_hours=0, force=True)
    assert len(deleted) == 4  # the two compacted files and the two restored away
    assert sorted(lake.read("t").column("id").to_pylist()) == [0, 1]


def test_list_history_and_missing_table(lake):
    write_table(lake, "raw/a", table([1]))
    write_table(lake, "b", table([1, 2]), run_id="run-7", job="test")
    rows = {r["table"]: r for r in lake.list_tables()}
    assert set(rows) == {"raw/a", "b"}
    assert rows["b"]["rows"] == 2 and rows["b"]["version"] == 0
    hist = lake.history("b")
    assert hist[0]["run_id"] == "run-7" and hist[0]["job"] == "test"
    with pytest.raises(TableNotFoundError, match="Did you mean 'b'"):
        lake.table("bb")
