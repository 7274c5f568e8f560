"""Constraints: row checks during ingestion (quarantine, warn, fail), table checks, validate."""

from __future__ import annotations

import pytest
from helpers import EVENTS_COLUMNS, events, table_config, write_events_csv

from raylake.config.loader import compose_config, to_config
from raylake.config.schema import ConstraintConfig, IngestConfig
from raylake.errors import ConfigError, IngestError, ValidationError
from raylake.ingest import ingest_table
from raylake.lake import Lake, Storage
from raylake.lake.commit import write_table
from raylake.quality.constraints import Constraint, constraints_for
from raylake.quality.jobs import validate
from raylake.quality.store import load_profile


def constraint(**kw) -> Constraint:
    kw.setdefault("name", kw["check"])
    return Constraint.from_config(ConstraintConfig(**kw), "events")


def test_row_checks_quarantine_warn_and_count(ray_session, lake, tmp_path):
    import pyarrow as pa

    write_table(lake, "users", pa.table({"user": [f"u{i}" for i in range(5)]}))
    src = write_events_csv(tmp_path / "a.csv", events(0, 70))
    checks = [
        constraint(check="range", column="amount", max=90.0, policy="quarantine", name="amount_max"),
        constraint(check="reference", column="user", ref_table="users", ref_column="user",
                   policy="warn", name="known_user"),
        constraint(check="regex", column="user", pattern="u[0-9]", policy="warn"),
        constraint(check="rule", expr="amount is None or amount >= 0", policy="quarantine"),
    ]
    # 9 of 70 rows (13%) break a quarantine check: over the default 10% limit, so lift it.
    res = ingest_table(lake, "events", table_config(src, EVENTS_COLUMNS, primary_key=("id",)),
                       run_id="c1", constraints=checks, profile=True,
                       ingest_cfg=IngestConfig(max_quarantine_fraction=1.0))
    # amount = 1.5 * id: ids 61..69 exceed 90
    assert (res.rows_read, res.rows_written, res.rows_quarantined) == (70, 61, 9)
    bad = lake.read("events__quarantine").to_pylist()
    assert {r["reason"] for r in bad} == {"constraint amount_max: amount above 90"}
    assert all('"amount": ' in r["raw"] and r["column"] == "amount" for r in bad)
    by = {c["name"]: c for c in res.checks}
    # users u5, u6 are unknown: ids with id % 7 in (5, 6) among the 61 written rows
    expected = sum(1 for i in range(61) if i % 7 in (5, 6))
    assert by["known_user"]["violations"] == expected and not by["known_user"]["passed"]
    assert by["regex"]["passed"] and by["amount_max"]["violations"] == 9
    # The same pass stored the profile of the written rows.
    assert load_profile(lake, "events", [res.version]).rows == 61


def test_fail_policy_commits_nothing(ray_session, lake, tmp_path):
    src = write_events_csv(tmp_path / "a.csv", events(0, 10) + [(3, "dup", 1.0, "2024-01-01T00:00:00Z")])
    checks = [constraint(check="unique", columns=["user"], policy="fail"),
              constraint(check="row_count", min=100, policy="warn")]
    with pytest.raises(IngestError, match=r"unique .*rows repeat a \(user\) key.*Nothing was committed"):
        ingest_table(lake, "events", table_config(src, EVENTS_COLUMNS), run_id="f", constraints=checks)
    assert not lake.exists("events")


def test_table_checks_from_the_profile(ray_session, lake, tmp_path):
    src = write_events_csv(tmp_path / "a.csv", events(0, 20) + [(99, "u1", None, "2024-01-02T00:00:00Z")])
    checks = [
        constraint(check="null_share", column="amount", max=0.01, policy="warn", name="nulls"),
        constraint(check="distribution", column="amount", stat="mean", min=0, max=20, policy="warn",
                   name="mean"),
        constraint(check="freshness", column="ts", max_age="2d", as_of="2024-01-22T00:00:00Z",
                   policy="warn", name="fresh"),
        constraint(check="freshness", column="ts", max_age="2d", as_of="2024-01-30T00:00:00Z",
                   policy="warn", name="stale"),
        constraint(check="row_count", min=1, max=100, policy="fail", name="count"),
    ]
    res = ingest_table(lake, "events", table_config(src, EVENTS_COLUMNS), run_id="t", constraints=checks)
    by = {c["name"]: c for c in res.checks}
    assert not by["nulls"]["passed"] and by["nulls"]["violations"] == 1
    assert by["mean"]["passed"] and by["mean"]["observed"] == pytest.approx(14.25)
    # the newest ts is 2024-01-20T19:00Z
    assert by["fresh"]["passed"] and not by["stale"]["passed"]
    assert by["fresh"]["observed"].startswith("2024-01-20T19:00")
    assert by["count"]["passed"] and lake.count("events") == 21


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"check": "ranges", "column": "a"}, "Did you mean 'range'"),
        ({"check": "in_set", "column": "a"}, "needs values"),
        ({"check": "unique", "columns": ["a"], "policy": "quarantine"}, "use fail or warn"),
        ({"check": "regex", "column": "a", "pattern": "("}, "is not a regex"),
        ({"check": "rule", "expr": "open('x')"}, "Cannot read the selection"),
        ({"check": "freshness", "column": "ts", "max_age": "soon"}, "is not a duration"),
        ({"check": "distribution", "column": "a", "stat": "median"}, "stat 'median'"),
    ],
)
def test_bad_constraints_are_clear_errors(kw, message):
    with pytest.raises(ConfigError, match=message):
        constraint(name="c", **kw)


def test_reference_to_a_missing_table_says_ingest_it_first(ray_session, lake, tmp_path):
    src = write_events_csv(tmp_path / "a.csv", events(0, 3))
    check = constraint(check="reference", column="user", ref_table="users", ref_column="user")
    with pytest.raises(ConfigError, match="ingest it first"):
        ingest_table(lake, "events", table_config(src, EVENTS_COLUMNS), run_id="r", constraints=[check])


def test_shipped_nycflights13_constraints_load():
    cfg = to_config(compose_config([]))
    flights = constraints_for(cfg.quality, "flights")
    assert {c.check for c in flights} >= {"not_null", "reference", "rule", "unique", "freshness",
                                          "distribution", "in_set", "range", "regex", "row_count",
                                          "null_share"}


@pytest.mark.slow
def test_validate_flights_catches_the_real_problems(flights_lake):
    root, out = flights_lake
    flights = {r.table: r for r in out["tables"]}["flights"]
    by = {c["name"]: c for c in flights.checks}
    assert by["dep_time_present"]["violations"] == 8_255  # cancelled flights
    assert by["tailnum_in_planes"]["violations"] == 52_606  # planes it does not know
    assert flights.rows_read == flights.rows_written + flights.rows_quarantined
    lake = Lake(Storage.from_config(root))
    stored = load_profile(lake, "flights", [flights.version])
    assert stored.rows == lake.count("flights") == 336_776
    assert stored.summary("dep_time").nulls == 8_255 and stored.summary("arr_time").nulls == 8_713

    result = validate(compose_config([f"lake.root={root}", "table=flights"], job="validate"),
                      echo=lambda *_: None)
    vby = {r.name: r for r in result["results"]}
    assert vby["dep_time_present"].violations == 8_255 and len(vby["dep_time_present"].sample) == 5
    assert all(s["dep_time"] is None for s in vby["dep_time_present"].sample)
    assert vby["tailnum_in_planes"].violations == 52_606
    assert vby["flight_key_unique"].passed and vby["recent_flights"].passed

    # The same constraint with policy fail, alone: the run fails and names it (the other
    # checks over 336,776 rows were validated above; once is enough).
    strict = compose_config([f"lake.root={root}", "table=flights",
                             "quality.tables.flights.constraints=[{name: dep_time_present, "
                             "check: not_null, column: dep_time, policy: fail}]"], job="validate")
    with pytest.raises(ValidationError, match="dep_time_present"):
        validate(strict, echo=lambda *_: None)
