"""Declarative cleansing during ingestion: each step on real rows, counted, nothing lost."""

from __future__ import annotations

import pytest
from helpers import table_config, write_events_csv

from raylake.config.schema import CleanseStepConfig
from raylake.errors import ConfigError
from raylake.ingest import ingest_table

COLUMNS = {"id": ("int64", False), "user": ("string", False), "amount": "float64",
           "ts": ("timestamp", False)}


def run(lake, tmp_path, rows, steps, **kw):
    src = write_events_csv(tmp_path / "in.csv", rows)
    cfg = table_config(src, COLUMNS, primary_key=("id",), **kw)
    cfg.cleanse = [CleanseStepConfig(**s) for s in steps]
    return ingest_table(lake, "events", cfg, run_id="clean")


def by_id(lake):
    return {r["id"]: r for r in lake.read("events").to_pylist()}


def test_string_steps_impute_clip_scale(ray_session, lake, tmp_path):
    rows = [(1, "  Alice ", 10.0, "2024-01-01T00:00:00Z"), (2, "BOB", None, "2024-01-01T00:00:00Z"),
            (3, "carol", 1000.0, "2024-01-01T00:00:00Z"), (4, "dave", 20.0, "2024-01-01T00:00:00Z")]
    res = run(lake, tmp_path, rows, [
        {"op": "trim", "columns": ["user"]},
        {"op": "lower", "columns": ["user"]},
        {"op": "impute", "columns": ["amount"], "value": 0},
        {"op": "clip", "columns": ["amount"], "lower": "5", "upper": "100"},
        {"op": "scale", "columns": ["amount"], "factor": 2.0, "offset": 1.0},
    ])
    got = by_id(lake)
    assert [got[i]["user"] for i in (1, 2, 3, 4)] == ["alice", "bob", "carol", "dave"]
    assert [got[i]["amount"] for i in (1, 2, 3, 4)] == [21.0, 11.0, 201.0, 41.0]
    changed = res.cleansing["changed"]
    assert changed == {"trim(user)": 1, "lower(user)": 2, "impute(amount)": 1,
                       "clip(amount)": 2, "scale(amount)": 4}
    assert res.rows_read == res.rows_written == 4


def test_median_and_mode_from_the_profile_and_quantile_clip(ray_session, lake, tmp_path):
    rows = [(i, "a" if i % 3 else "b", float(i), "2024-01-01T00:00:00Z") for i in range(1, 101)]
    rows += [(101, "c", None, "2024-01-01T00:00:00Z"), (102, "d", 10_000.0, "2024-01-01T00:00:00Z")]
    run(lake, tmp_path, rows, [
        {"op": "impute", "columns": ["amount"], "strategy": "median"},
        {"op": "clip", "columns": ["amount"], "upper": "q99"},
    ])
    got = by_id(lake)
    assert 49.0 <= got[101]["amount"] <= 53.0  # the median of 1..100 and 10000
    assert got[102]["amount"] < 10_000.0 and got[102]["amount"] >= 99.0


def test_dedup_latest_keeps_the_latest_event_and_quarantines_the_rest(ray_session, lake, tmp_path):
    rows = [(1, "old", 1.0, "2024-01-01T00:00:00Z"), (1, "newest", 2.0, "2024-01-03T00:00:00Z"),
            (1, "middle", 3.0, "2024-01-02T00:00:00Z"), (2, "only", 4.0, "2024-01-01T00:00:00Z")]
    res = run(lake, tmp_path, rows, [{"op": "dedup_latest", "order_by": "ts"}])
    assert {i: r["user"] for i, r in by_id(lake).items()} == {1: "newest", 2: "only"}
    bad = lake.read("events__quarantine").to_pylist()
    assert sorted(r["source_row"] for r in bad) == [1, 3]
    assert all(r["reason"].startswith("superseded by a later ts (dedup_latest; kept") and
               r["reason"].endswith("record 2)") for r in bad)
    assert res.rows_read == res.rows_written + res.rows_quarantined


@pytest.mark.parametrize(
    ("step", "message"),
    [({"op": "trimm", "columns": ["user"]}, "Did you mean 'trim'"),
     ({"op": "impute", "columns": ["amount"]}, "give a value"),
     ({"op": "clip", "columns": ["amont"], "upper": "1"}, "Did you mean 'amount'"),
     ({"op": "dedup_latest", "order_by": "when"}, "order_by 'when'")],
)
def test_bad_steps_are_clear_errors(ray_session, lake, tmp_path, step, message):
    with pytest.raises(ConfigError, match=message):
        run(lake, tmp_path, [(1, "a", 1.0, "2024-01-01T00:00:00Z")], [step])
    assert not lake.exists("events")
