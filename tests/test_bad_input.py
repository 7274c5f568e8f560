"""The bad-input policy on real files, real Ray and real Delta tables: the quarantine
threshold, non-finite floats, invalid text encoding in every format, root-cause errors,
and the CLI's answers to bad version refs and lake roots."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import EVENTS_COLUMNS, events, table_config, write_events_csv

from raylake.cli import main
from raylake.config.schema import ColumnConfig, IngestConfig
from raylake.errors import ConfigValueError, IngestError, SourceError
from raylake.ingest import ingest_table
from raylake.lake import Lake, Storage


def quarantine(lake, name="events"):
    return lake.read(f"{name}__quarantine").sort_by("source_row").to_pylist()


def files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()] if path.exists() else []


# -- the quarantine threshold ------------------------------------------------------


def test_every_row_failing_is_a_failed_run_that_commits_and_leaves_nothing(
        ray_session, lake, tmp_path):
    src = write_events_csv(tmp_path / "a.csv",
                           [(i, "u", "n/a", "2024-01-01T00:00:00Z") for i in range(8)])
    with pytest.raises(IngestError) as err:
        ingest_table(lake, "events", table_config(src, EVENTS_COLUMNS), run_id="all-bad")
    text = str(err.value)
    assert "8 of 8 rows (100.0%)" in text
    assert "ingest.max_quarantine_fraction=0.1" in text
    assert "cannot cast [amount] (8 rows)" in text  # the top reason, counted
    assert "a.csv record 1: cannot cast 'n/a' to double in column 'amount'" in text
    assert "Nothing was committed" in text
    assert not lake.exists("events") and not lake.exists("events__quarantine")
    assert files_under(Path(lake.root)) == []  # the written files were removed too


def test_default_threshold_and_per_table_override(ray_session, lake, tmp_path):
    assert IngestConfig().max_quarantine_fraction == 0.1
    rows = events(0, 16) + [(100 + i, "u", "bad", "2024-01-01T00:00:00Z") for i in range(4)]
    src = write_events_csv(tmp_path / "a.csv", rows)  # 4 of 20 fail: 20%
    cfg = table_config(src, EVENTS_COLUMNS)
    with pytest.raises(IngestError, match=r"4 of 20 rows \(20.0%\)"):
        ingest_table(lake, "events", cfg, run_id="r1")
    assert not lake.exists("events")
    own = dataclasses.replace(cfg, max_quarantine_fraction=0.1)
    with pytest.raises(IngestError, match=r"dataset\.tables\.events\.max_quarantine_fraction=0\.1"):
        ingest_table(lake, "events", own, run_id="r2",
                     ingest_cfg=IngestConfig(max_quarantine_fraction=1.0))
    res = ingest_table(lake, "events", dataclasses.replace(cfg, max_quarantine_fraction=0.25),
                       run_id="r3")
    assert (res.rows_read, res.rows_written, res.rows_quarantined) == (20, 16, 4)
    assert len(quarantine(lake)) == 4


def test_repeated_keys_do_not_count_toward_the_threshold(ray_session, lake, tmp_path):
    src = write_events_csv(tmp_path / "a.csv", events(0, 10) + events(0, 10))  # half repeats
    res = ingest_table(lake, "events", table_config(src, EVENTS_COLUMNS, primary_key=("id",)),
                       run_id="dups")
    assert (res.rows_written, res.rows_quarantined, res.duplicates) == (10, 10, 10)


# -- non-finite floats ---------------------------------------------------------------


NON_FINITE = ["1e999", "-1e999", "inf", "nan", "NaN"]


def _non_finite_csv(tmp_path: Path) -> Path:
    rows = events(0, 10) + [(100 + i, "u", v, "2024-01-01T00:00:00Z")
                            for i, v in enumerate(NON_FINITE)]
    return write_events_csv(tmp_path / "nf.csv", rows)


def test_non_finite_floats_are_quarantined(ray_session, lake, tmp_path):
    cfg = dataclasses.replace(table_config(_non_finite_csv(tmp_path), EVENTS_COLUMNS),
                              max_quarantine_fraction=1.0)
    res = ingest_table(lake, "events", cfg, run_id="nf")
    assert (res.rows_written, res.rows_quarantined) == (10, 5)
    amounts = lake.read("events").column("amount").to_pylist()
    assert all(a == a and abs(a) != float("inf") for a in amounts)
    bad = quarantine(lake)
    assert [json.loads(r["raw"])["amount"] for r in bad] == NON_FINITE
    assert all(r["column"] == "amount" and r["reason"].startswith("non-finite value")
               and "allow_non_finite: true" in r["reason"] for r in bad)


def test_a_column_may_allow_non_finite_floats(ray_session, lake, tmp_path):
    cfg = table_config(_non_finite_csv(tmp_path), EVENTS_COLUMNS)
    cfg.columns["amount"] = ColumnConfig(type="float64", allow_non_finite=True)
    res = ingest_table(lake, "events", cfg, run_id="nf-ok")
    assert (res.rows_written, res.rows_quarantined) == (15, 0)
    table = lake.read("events").sort_by("id")
    kept = table.column("amount").to_pylist()[10:]
    assert kept[:3] == [float("inf"), float("-inf"), float("inf")]
    assert all(v != v for v in kept[3:])  # NaN


def test_allow_non_finite_only_on_float_columns():
    with pytest.raises(ConfigValueError, match="allow_non_finite applies to float32 and float64"):
        ColumnConfig(type="int64", allow_non_finite=True)


def test_non_finite_parquet_floats_are_quarantined(ray_session, lake, tmp_path):
    src = tmp_path / "nf.parquet"
    n = 30
    pq.write_table(pa.table({
        "id": pa.array(range(n), pa.int64()), "user": [f"u{i}" for i in range(n)],
        "amount": [float("inf") if i == 3 else float("nan") if i == 7 else 1.0 for i in range(n)],
        "ts": ["2024-01-01T00:00:00Z"] * n}), src)
    res = ingest_table(lake, "events", table_config(src, EVENTS_COLUMNS), run_id="pq")
    assert (res.rows_written, res.rows_quarantined) == (28, 2)
    assert [r["source_row"] for r in quarantine(lake)] == [4, 8]


# -- invalid text encoding -------------------------------------------------------------

BAD = b"caf\xe9 \xff"  # Latin-1 bytes: not UTF-8


def _write_source(fmt: str, folder: Path) -> Path:
    good = [(i, f"u{i}", i * 1.5, "2024-01-01T00:00:00Z") for i in range(19)]
    if fmt == "csv":
        lines = [b"id,user,amount,ts"] + [f"{i},{u},{a},{t}".encode() for i, u, a, t in good]
        lines.insert(6, b"99," + BAD + b",1.0,2024-01-01T00:00:00Z")
        path = folder / "in.csv"
        path.write_bytes(b"\n".join(lines) + b"\n")
    elif fmt == "jsonl":
        lines = [json.dumps({"id": i, "user": u, "amount": a, "ts": t}).encode()
                 for i, u, a, t in good]
        lines.insert(5, b'{"id": 99, "user": "' + BAD + b'", "amount": 1.0, '
                        b'"ts": "2024-01-01T00:00:00Z"}')
        path = folder / "in.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
    else:
        users = [u.encode() for _, u, _, _ in good]
        users.insert(5, BAD)
        # pyarrow writes a string column's bytes without checking them, as other
        # writers may: view the binary column as text.
        path = folder / "in.parquet"
        pq.write_table(pa.table({
            "id": [*range(5), 99, *range(5, 19)],
            "user": pa.array(users, pa.binary()).view(pa.string()),
            "amount": [1.0] * 20, "ts": ["2024-01-01T00:00:00Z"] * 20}), path)
    return path


def test_decode_utf8_finds_every_bad_value_and_keeps_the_rest():
    import numpy as np

    from raylake.ingest.cast import decode_utf8

    values = [f"v{i}é".encode() for i in range(5000)]
    bad = set(range(3, 5000, 97))
    for i in bad:
        values[i] = b"\xff" + values[i]
    values[10] = None
    text, invalid = decode_utf8(pa.array(values, pa.binary()))
    assert invalid is not None and set(np.flatnonzero(invalid)) == bad
    got = text.to_pylist()
    assert all(got[i] is None for i in bad) and got[10] is None
    assert all(got[i] == f"v{i}é" for i in range(5000) if i not in bad and i != 10)
    clean, none = decode_utf8(pa.array([b"a", None, "é".encode()], pa.binary()))
    assert none is None and clean.to_pylist() == ["a", None, "é"]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_invalid_utf8_is_quarantined_per_row_in_every_format(ray_session, lake, tmp_path, fmt):
    src = _write_source(fmt, tmp_path)
    res = ingest_table(lake, "events", table_config(src, EVENTS_COLUMNS), run_id=fmt)
    assert (res.rows_read, res.rows_written, res.rows_quarantined) == (20, 19, 1)
    users = lake.read("events").column("user").to_pylist()
    assert len(users) == 19 and not any("\ufffd" in u for u in users)
    [bad] = quarantine(lake)
    assert bad["source_row"] == 6 and bad["column"] == "user"
    assert bad["reason"] == f"invalid UTF-8 in column 'user' (raw bytes in hex: {BAD.hex()})"
    raw = json.loads(bad["raw"])
    assert raw["user"] == {"hex": BAD.hex()} and str(raw["id"]) == "99"


# -- errors name the root cause -----------------------------------------------------------


def test_wrong_delimiter_names_the_missing_column_not_a_ray_hint(ray_session, lake, tmp_path):
    src = tmp_path / "semi.csv"
    src.write_text("id;user;amount;ts\n1;a;1.0;2024-01-01T00:00:00Z\n")
    with pytest.raises(SourceError) as err:
        ingest_table(lake, "events", table_config(src, EVENTS_COLUMNS), run_id="semi")
    text = str(err.value)
    assert text.startswith("source column 'id' (for 'id') is not in the source")
    assert "['id;user;amount;ts']" in text and "set source.csv.delimiter" in text
    assert "retry" not in text.lower() and "Traceback" not in text and "ray" not in text.lower()
    assert not lake.exists("events")


def test_a_broken_file_names_the_file_and_the_cause(ray_session, lake, tmp_path):
    src = tmp_path / "in.csv.zip"
    src.write_bytes(b"not a zip at all")
    with pytest.raises(SourceError, match=r"Cannot read source file .*in\.csv\.zip.*not a zip"):
        ingest_table(lake, "events", table_config(src, EVENTS_COLUMNS, fmt="csv"), run_id="zip")


# -- the CLI: clear errors, non-zero exits ------------------------------------------------------


@pytest.fixture
def small_lake(tmp_path) -> Path:
    """A lake with table t at versions 0 and 1 (written with deltalake: no Ray)."""
    from deltalake import write_deltalake

    root = tmp_path / "cli-lake"
    write_deltalake(str(root / "t"), pa.table({"a": [1, 2]}))
    write_deltalake(str(root / "t"), pa.table({"a": [3]}), mode="append")
    return root


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_negative_version_is_an_error(small_lake, capsys):
    for extra in ([], ["--count"]):
        rc, _, err = run_cli(capsys, "lake", "read", "t", "--version", "-1", *extra,
                             f"lake.root={small_lake}")
        assert rc != 0
        assert "has no version '-1': versions count up from 0 (latest is 1)" in err
        assert "Traceback" not in err


def test_a_time_before_the_table_existed_is_an_error(small_lake, capsys):
    rc, _, err = run_cli(capsys, "lake", "read", "t", "--version", "2001-01-01",
                         f"lake.root={small_lake}")
    assert rc != 0
    assert "Table 't' did not exist at 2001-01-01T00:00:00+00:00: its first commit (version 0)" in err
    first = Lake(Storage.from_config(str(small_lake))).history("t")[-1]["timestamp"]
    assert first.isoformat() in err
    # A time after the first commit reads the version then.
    later = (first + dt.timedelta(milliseconds=1)).isoformat()
    rc, out, _ = run_cli(capsys, "lake", "read", "t", "--count", "--version", later,
                         f"lake.root={small_lake}")
    assert rc == 0 and int(out.strip()) in (2, 3)


def test_a_missing_lake_root_is_an_error_not_no_tables(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    for args in (["lake", "list"], ["runs", "list"], ["lake", "history", "t"]):
        rc, out, err = run_cli(capsys, *args, f"lake.root={missing}")
        assert rc != 0 and out == ""
        assert f"The lake root {missing} does not exist" in err
    assert not missing.exists()  # nothing created by looking


def test_an_empty_existing_lake_lists_no_tables(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    rc, out, _ = run_cli(capsys, "lake", "list", f"lake.root={tmp_path / 'empty'}")
    assert rc == 0 and "no tables" in out


def test_an_s3_root_without_bucket_is_an_error(capsys):
    rc, _, err = run_cli(capsys, "lake", "list", "lake.root=s3://")
    assert rc != 0 and "names no bucket" in err and "Traceback" not in err


def test_ingest_creates_a_lake_root_that_does_not_exist_yet(ray_session, tmp_path):
    root = tmp_path / "fresh" / "lake"
    lake = Lake(Storage.from_config(str(root)))
    src = write_events_csv(tmp_path / "a.csv", events(0, 5))
    res = ingest_table(lake, "events", table_config(src, EVENTS_COLUMNS), run_id="fresh")
    assert res.version == 0 and lake.count("events") == 5
    lake.require_root()


def test_jsonl_objects_and_arrays_keep_their_numbers():
    # Top-level numbers stay as written (1e999 is judged as such); numbers inside an
    # object or array are stored as JSON numbers, not as strings.
    from raylake.ingest.sources import _parse_jsonl

    table = _parse_jsonl(b'{"id": 1, "m": {"a": 1.5, "b": [2.25, "x"]}, "v": 1e999}\n',
                         ["id", "m", "v"])
    assert json.loads(table.column("m")[0].as_py()) == {"a": 1.5, "b": [2.25, "x"]}
    assert table.column("v")[0].as_py() == "1e999"
