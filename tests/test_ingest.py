"""Ingestion on real Ray and real Delta tables: modes, quarantine, atomicity, idempotency."""

from __future__ import annotations

import json
import threading

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from helpers import EVENTS_COLUMNS, events, table_config, write_events_csv

from raylake.config.schema import IngestConfig
from raylake.errors import IngestError, SourceError
from raylake.ingest import ingest_table


def ids(lake, name="events", version=None):
    return sorted(lake.read(name, version).column("id").to_pylist())


def quarantine(lake, name="events"):
    return lake.read(f"{name}__quarantine").sort_by("source_row").to_pylist()


def test_append_csv_types_and_counts(ray_session, lake, tmp_path):
    src = write_events_csv(tmp_path / "in" / "a.csv", events(0, 50))
    res = ingest_table(lake, "events", table_config(src, EVENTS_COLUMNS, primary_key=("id",)),
                       run_id="r1")
    assert (res.rows_read, res.rows_written, res.rows_quarantined) == (50, 50, 0)
    assert res.version == 0
    table = lake.read("events")
    assert table.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("id").type == pa.int64()
    assert ids(lake) == list(range(50))
    assert lake.history("events")[0]["run_id"] == "r1"


def test_quarantine_each_kind_of_bad_row(ray_session, lake, tmp_path):
    src = tmp_path / "bad.csv"
    src.write_text(
        "id,user,amount,ts\n"
        "1,alice,10.5,2024-01-01T00:00:00Z\n"        # good
        "2,bob,not-a-number,2024-01-02T00:00:00Z\n"  # wrong type
        "3,carol,1.0\n"                              # malformed: too few fields
        "4,,2.0,2024-01-04T00:00:00Z\n"              # null in non-nullable column
        "5,dave,3.0,2024-01-05T00:00:00Z,extra\n"    # malformed: too many fields
        "1,erin,4.0,2024-01-06T00:00:00Z\n"          # repeats primary key 1
        ",frank,5.0,2024-01-07T00:00:00Z\n"          # null primary key
        "8,gina,6.0,yesterday\n"                     # unparsable timestamp
        "9,hank,7.0,2024-01-09 00:00:00\n"           # no offset: read as UTC, good
    )
    cfg = table_config(src, EVENTS_COLUMNS, primary_key=("id",))
    # Most rows are bad on purpose: over the default 10% limit, so lift it.
    res = ingest_table(lake, "events", cfg, run_id="run-q",
                       ingest_cfg=IngestConfig(max_quarantine_fraction=1.0))
    assert res.rows_read == 9
    assert res.rows_written + res.rows_quarantined == res.rows_read
    assert ids(lake) == [1, 9]
    bad = {row["source_row"]: row for row in quarantine(lake)}
    assert set(bad) == {2, 3, 4, 5, 6, 7, 8}
    assert "cannot cast 'not-a-number' to double" in bad[2]["reason"] and bad[2]["column"] == "amount"
    assert json.loads(bad[2]["raw"])["amount"] == "not-a-number"
    assert "malformed CSV line" in bad[3]["reason"] and bad[3]["raw"] == "3,carol,1.0"
    assert bad[4]["reason"] == "null in non-nullable column 'user'" and bad[4]["column"] == "user"
    assert "malformed CSV line" in bad[5]["reason"]
    assert bad[6]["reason"].startswith("duplicate primary key (first seen at ")
    assert bad[6]["reason"].endswith("bad.csv record 1)") and bad[6]["column"] == "id"
    assert json.loads(bad[6]["raw"])["user"] == "erin"
    assert bad[7]["reason"] == "null in primary-key column 'id'"
    assert bad[8]["column"] == "ts"
    assert all(r["run_id"] == "run-q" and r["source_file"].endswith("bad.csv") for r in bad.values())
    # The kept row for key 1 is the first one, not the repeat.
    assert lake.read("events").filter(pc.equal(pc.field("id"), 1)).column("user").to_pylist() == ["alice"]


def test_parquet_and_jsonl_sources_with_glob_and_folder(ray_session, lake, tmp_path):
    folder = tmp_path / "pq"
    folder.mkdir()
    for part in range(3):
        rows = events(part * 10, 10)
        pq.write_table(pa.table({"id": [r[0] for r in rows], "user": [r[1] for r in rows],
                                 "amount": [r[2] for r in rows],
                                 "ts": pa.array([r[3] for r in rows]).cast(pa.timestamp("s", tz="UTC"))}),
                       folder / f"part-{part}.parquet")
    res = ingest_table(lake, "events", table_config(folder, EVENTS_COLUMNS, primary_key=("id",)),
                       run_id="pq")
    assert (res.rows_written, len(res.files)) == (30, 3)

    jl = tmp_path / "json"
    jl.mkdir()
    (jl / "a.jsonl").write_text(
        '{"id": 100, "user": "x", "amount": 1.5, "ts": "2024-02-01T00:00:00Z"}\n'
        '{"id": 101, "user": "y", "amount": "oops", "ts": "2024-02-01T00:00:00Z"}\n'
        "{not json}\n"
    )
    (jl / "b.txt").write_text("ignored: does not match the glob\n")
    # 2 of 3 rows are bad on purpose: over the default 10% limit, so lift it.
    res = ingest_table(lake, "events", table_config(str(jl / "*.jsonl"), EVENTS_COLUMNS),
                       run_id="jl", ingest_cfg=IngestConfig(max_quarantine_fraction=1.0))
    assert (res.rows_read, res.rows_written, res.rows_quarantined) == (3, 1, 2)
    assert 100 in ids(lake)


def test_missing_source_is_a_clear_error(ray_session, lake, tmp_path):
    with pytest.raises(SourceError, match="does not exist; check source.path"):
        ingest_table(lake, "events", table_config(tmp_path / "nope.csv", EVENTS_COLUMNS), run_id="x")
    assert not lake.exists("events")


def test_overwrite_replaces_rows(ray_session, lake, tmp_path):
    a = write_events_csv(tmp_path / "a.csv", events(0, 20))
    b = write_events_csv(tmp_path / "b.csv", events(100, 5))
    ingest_table(lake, "events", table_config(a, EVENTS_COLUMNS, mode="overwrite"), run_id="1")
    res = ingest_table(lake, "events", table_config(b, EVENTS_COLUMNS, mode="overwrite"), run_id="2")
    assert res.version == 1
    assert ids(lake) == list(range(100, 105))
    assert ids(lake, version=0) == list(range(20))


def test_merge_upserts_on_primary_key(ray_session, lake, tmp_path):
    cfg = dict(primary_key=("id",), mode="merge")
    a = write_events_csv(tmp_path / "a.csv", [(1, "a", 1.0, "2024-01-01T00:00:00Z"),
                                              (2, "b", 2.0, "2024-01-01T00:00:00Z")])
    b = write_events_csv(tmp_path / "b.csv", [(2, "b2", 20.0, "2024-01-02T00:00:00Z"),
                                              (3, "c", 3.0, "2024-01-02T00:00:00Z"),
                                              (3, "c-dup", 3.5, "2024-01-02T00:00:00Z")])
    ingest_table(lake, "events", table_config(a, EVENTS_COLUMNS, **cfg), run_id="1")
    res = ingest_table(lake, "events", table_config(b, EVENTS_COLUMNS, **cfg), run_id="2")
    assert (res.rows_read, res.rows_written, res.rows_quarantined) == (3, 2, 1)
    assert res.merge_metrics["num_target_rows_updated"] == 1
    assert res.merge_metrics["num_target_rows_inserted"] == 1
    rows = {r["id"]: r["user"] for r in lake.read("events").to_pylist()}
    assert rows == {1: "a", 2: "b2", 3: "c"}


def test_rerun_adds_nothing_and_new_input_appends(ray_session, lake, tmp_path):
    src = write_events_csv(tmp_path / "in" / "a.csv", events(0, 30))
    cfg = table_config(tmp_path / "in", EVENTS_COLUMNS, primary_key=("id",))
    first = ingest_table(lake, "events", cfg, run_id="1")
    again = ingest_table(lake, "events", cfg, run_id="2")
    assert again.skipped and again.version == first.version
    assert lake.count("events") == 30
    write_events_csv(tmp_path / "in" / "b.csv", events(30, 10))
    more = ingest_table(lake, "events", cfg, run_id="3")
    assert not more.skipped and lake.count("events") == 70  # new fingerprint: both files again
    assert src.exists()


@pytest.mark.parametrize("stage", ["write", "commit"])
def test_injected_failure_leaves_version_unchanged(ray_session, lake, tmp_path, stage):
    a = write_events_csv(tmp_path / "a.csv", events(0, 10))
    b = write_events_csv(tmp_path / "b.csv", events(10, 10) + [(99, "z", "bad", "2024-01-01T00:00:00Z")])
    ingest_table(lake, "events", table_config(a, EVENTS_COLUMNS), run_id="ok")
    before = lake.version("events")
    cfg = table_config(b, EVENTS_COLUMNS)
    with pytest.raises(IngestError, match="[Nn]othing was committed|nothing was committed"):
        ingest_table(lake, "events", cfg, run_id="boom", ingest_cfg=IngestConfig(inject_failure=stage))
    assert lake.version("events") == before
    assert ids(lake) == list(range(10))
    # The re-run completes the work once: no row twice, quarantine not doubled.
    res = ingest_table(lake, "events", cfg, run_id="retry")
    assert res.version == before + 1
    assert ids(lake) == list(range(20))
    assert len(quarantine(lake)) == 1


def test_quarantine_share_over_limit_fails_and_commits_nothing(ray_session, lake, tmp_path):
    src = write_events_csv(tmp_path / "a.csv", [(1, "a", "x", "2024-01-01T00:00:00Z"),
                                                (2, "b", 1.0, "2024-01-01T00:00:00Z")])
    with pytest.raises(IngestError, match="max_quarantine_fraction"):
        ingest_table(lake, "events", table_config(src, EVENTS_COLUMNS), run_id="x",
                     ingest_cfg=IngestConfig(max_quarantine_fraction=0.1))
    assert not lake.exists("events") and not lake.exists("events__quarantine")


def test_concurrent_appends_both_land(ray_session, lake, tmp_path):
    a = write_events_csv(tmp_path / "a.csv", events(0, 40))
    ingest_table(lake, "events", table_config(a, EVENTS_COLUMNS), run_id="seed")
    sources = [write_events_csv(tmp_path / f"c{i}.csv", events(1000 * (i + 1), 25)) for i in range(3)]
    errors: list[BaseException] = []

    def go(i: int) -> None:
        try:
            ingest_table(lake, "events", table_config(sources[i], EVENTS_COLUMNS), run_id=f"c{i}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert lake.count("events") == 40 + 75
    assert lake.version("events") == 3


def test_partitioned_table_and_file_stats(ray_session, lake, tmp_path):
    src = write_events_csv(tmp_path / "a.csv", events(0, 60))
    ingest_table(lake, "events", table_config(src, EVENTS_COLUMNS, partition_by=("user",)), run_id="p")
    dtab = lake.table("events")
    assert dtab.metadata().partition_columns == ["user"]
    actions = dtab.get_add_actions(flatten=True)
    assert sorted(set(actions.column("partition.user").to_pylist())) == [f"u{i}" for i in range(7)]
    assert sum(actions.column("num_records").to_pylist()) == 60
    # Statistics let Delta skip files; a filter on them still returns every match.
    got = lake.read("events", filters=[("id", ">=", 50)])
    assert sorted(got.column("id").to_pylist()) == list(range(50, 60))
    assert set(got.column("user").to_pylist()) <= {f"u{i}" for i in range(7)}


def test_repeated_keys_across_files_in_a_partitioned_table(ray_session, lake, tmp_path):
    folder = tmp_path / "src"
    write_events_csv(folder / "a.csv", events(0, 40))
    # b repeats ids 10..19 (same user partitions) with other amounts, plus new ids.
    repeats = [(i, f"u{i % 7}", 999.0, "2024-03-01T00:00:00Z") for i in range(10, 20)]
    write_events_csv(folder / "b.csv", repeats + events(40, 5))
    cfg = table_config(folder, EVENTS_COLUMNS, primary_key=("id", "user"), partition_by=("user",))
    res = ingest_table(lake, "events", cfg, run_id="dups")
    assert (res.rows_read, res.rows_written, res.rows_quarantined, res.duplicates) == (55, 45, 10, 10)
    table = lake.read("events")
    assert sorted(table.column("id").to_pylist()) == list(range(45))
    assert 999.0 not in table.column("amount").to_pylist()  # the first occurrence wins
    bad = quarantine(lake)
    assert {r["source_row"] for r in bad} == set(range(1, 11))
    assert all(r["source_file"].endswith("b.csv") and "a.csv record" in r["reason"] for r in bad)
    raw = json.loads(bad[0]["raw"])
    assert raw["amount"] == 999.0 and raw["user"] == "u3"
    # The rewritten files still carry correct statistics and partition values.
    actions = lake.table("events").get_add_actions(flatten=True)
    assert sum(actions.column("num_records").to_pylist()) == 45
