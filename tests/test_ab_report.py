"""`raylake ab report`: logged answers joined with later outcomes, per-arm statistics,
significance and sample sizes, checked against simulations with known answers."""

from __future__ import annotations

import datetime as dt
import json
import subprocess

import numpy as np
import pyarrow as pa
import pytest
from conftest import PYTHON, REPO, subprocess_env
from scipy import stats

from raylake.config.loader import compose_config
from raylake.errors import ConfigError
from raylake.lake.commit import write_table
from raylake.lake.runs import get_run
from raylake.serve.ab import Arm, Assigner
from raylake.serve.ab_report import format_report
from raylake.serve.jobs import ab_report
from raylake.serve.request_log import SCHEMA
from raylake.serve.significance import compare, sample_size, summarize

SALT = "delay-ab-2026-11"


def quiet(*_a, **_k) -> None:
    pass


def test_z_test_false_positives_stay_near_alpha_and_a_real_difference_is_found():
    rng = np.random.default_rng(7)
    sims = 400
    null_hits = sum(compare(rng.random(2000) < 0.2, rng.random(2000) < 0.2, rate=True).significant
                    for _ in range(sims))
    assert null_hits / sims < 0.08  # alpha 0.05, with simulation noise
    # 0.20 vs 0.25 with 2,000 per arm: power above 0.95.
    hits = sum(compare(rng.random(2000) < 0.2, rng.random(2000) < 0.25, rate=True).significant
               for _ in range(100))
    assert hits >= 90


def test_welch_matches_scipy_and_holds_its_level():
    rng = np.random.default_rng(3)
    a, b = rng.normal(10, 2, 300), rng.normal(10.6, 5, 120)
    c = compare(a, b, rate=False)
    ref = stats.ttest_ind(b, a, equal_var=False)
    assert c.test == "welch t" and c.statistic == pytest.approx(ref.statistic)
    assert c.p_value == pytest.approx(ref.pvalue) and c.low < c.difference < c.high
    null_hits = sum(compare(rng.normal(0, 1, 200), rng.normal(0, 3, 50), rate=False).significant
                    for _ in range(400))
    assert null_hits / 400 < 0.08


def test_sample_sizes_match_the_textbook():
    # 20% vs 25%, alpha 0.05 two-sided, power 0.8: 1,094 per arm (Fleiss, no continuity).
    assert sample_size(0.20, 0.05, rate=True) == 1094
    # Means: sd 1 in both arms, difference 0.5: 2 * (1.96 + 0.84)^2 / 0.25 = 63 per arm.
    assert sample_size(0.0, 0.5, rate=False, sd1=1, sd2=1) == 63
    assert sample_size(0.2, 0.0, rate=True) is None
    c = compare(np.r_[np.ones(20), np.zeros(80)], np.r_[np.ones(25), np.zeros(75)], rate=True,
                mde=0.05)
    assert c.n_needed_per_arm == 1094 and c.n_more_per_arm == 994 and not c.significant
    # A falling rate: 90% -> 85% needs 686 per arm (its variance is that of 85%, not 95%).
    assert sample_size(0.90, -0.05, rate=True) == 686
    c = compare(np.r_[np.ones(90), np.zeros(10)], np.r_[np.ones(85), np.zeros(15)], rate=True)
    assert c.n_needed_per_arm == 686


def test_degenerate_arms_give_sound_answers():
    # No spread in either arm, different means: certainly different, not "p = 1".
    c = compare(np.full(5, 1.0), np.full(5, 2.0), rate=False)
    assert c.p_value == 0.0 and c.significant and c.low == c.high == 1.0
    assert not compare(np.full(5, 1.0), np.full(5, 1.0), rate=False).significant
    # A rate of 0 in 10 still has an interval above 0 (Wilson; Wald would give [0, 0]).
    s = summarize(np.zeros(10), rate=True)
    assert s.low == 0.0 and s.high == pytest.approx(0.2775, abs=1e-3)
    s = summarize(np.r_[np.ones(20), np.zeros(80)], rate=True)
    assert s.low == pytest.approx(0.1334, abs=1e-3) and s.high == pytest.approx(0.2888, abs=1e-3)


def answers_and_outcomes(lake, rates: dict[str, float], units: int = 6000, seed: int = 0,
                         table: str = "serving/requests") -> None:
    """Request-log rows as the model server writes them (3 requests per unit, the arm
    drawn by the server's assigner) and one 0/1 outcome per unit, at the arm's rate."""
    rng = np.random.default_rng(seed)
    assigner = Assigner([Arm("control", "m", 1, 0.5), Arm("treatment", "m", 2, 0.5),
                         Arm("challenger", "m", 3, 0.0, shadow=True)], SALT)
    t0 = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
    rows, outcomes = [], []
    for u in range(units):
        unit = f"user-{u}"
        arm = assigner.assign(unit)
        for k in range(3):
            base = {"request_id": f"{unit}-{k}", "at": t0 + dt.timedelta(seconds=u),
                    "unit_id": unit, "experiment": SALT, "rows": 1, "latency_ms": 2.0,
                    "model_name": "m", "status": 200}
            rows.append({**base, "arm": arm.name, "model_version": arm.version, "shadow": False})
            # Shadow answers carry the same request id; no client saw them.
            rows.append({**base, "arm": "challenger", "model_version": 3, "shadow": True})
        if u % 50 == 0:
            continue  # outcome not arrived yet
        outcomes.append({"unit_id": unit, "rebooked": bool(rng.random() < rates[arm.name])})
    # Errors and other experiments are not answers of this test.
    rows.append({**rows[0], "request_id": "bad", "unit_id": "user-0", "arm": "treatment",
                 "status": 422, "shadow": False})
    rows.append({**rows[0], "request_id": "old", "experiment": "an-older-test"})
    write_table(lake, table, pa.Table.from_pylist(rows, schema=SCHEMA))
    write_table(lake, "serving/delay_ab_outcomes", pa.Table.from_pylist(outcomes))


def report_config(root: str, *extra: str):
    return compose_config([f"lake.root={root}", "experiment=delay_ab", *extra], job="ab-report")


def test_report_finds_a_planted_difference_and_records_its_run(lake):
    answers_and_outcomes(lake, {"control": 0.20, "treatment": 0.26})
    out = ab_report(report_config(lake.root), echo=quiet)
    arms = {a["arm"]: a for a in out["arms"]}
    assert set(arms) == {"control", "treatment"}  # the shadow arm answered no client
    assert out["metric"] == "rate" and out["control"] == "control"
    c, t = arms["control"], arms["treatment"]
    assert c["n"] + t["n"] + c["awaiting"] + t["awaiting"] == 6000
    assert c["awaiting"] + t["awaiting"] == 120 and out["mixed_keys"] == 0
    assert abs(c["n"] - t["n"]) < 300  # a 50/50 split
    assert 0.18 < c["value"] < 0.22 and c["low"] < c["value"] < c["high"]
    cmp = t["comparison"]
    assert cmp["test"] == "two-proportion z" and cmp["significant"] and cmp["p_value"] < 0.001
    assert cmp["low"] < 0.06 < cmp["high"] and cmp["n_more_per_arm"] == 0

    report = lake.read("ab/reports").to_pylist()
    assert [r["arm"] for r in report] == ["control", "treatment"]
    assert json.loads(report[1]["comparison"])["significant"] is True
    run = get_run(lake, out["run_id"])
    assert run["job"] == "ab-report" and run["status"] == "succeeded"
    assert {r["table"] for r in run["inputs"]} == {"serving/requests",
                                                   "serving/delay_ab_outcomes"}


def test_report_on_no_difference_is_not_significant_and_says_how_many_more(lake):
    answers_and_outcomes(lake, {"control": 0.20, "treatment": 0.20}, seed=1)
    out = ab_report(report_config(lake.root, "ab_report.mde=0.02"), echo=quiet)
    cmp = out["arms"][1]["comparison"]
    assert not cmp["significant"] and cmp["low"] < 0 < cmp["high"]
    signed = 0.02 if cmp["difference"] >= 0 else -0.02  # in the observed direction
    assert cmp["n_needed_per_arm"] == sample_size(out["arms"][0]["value"], signed, rate=True)
    assert cmp["n_more_per_arm"] > 0


def test_per_request_join_and_means(lake):
    answers_and_outcomes(lake, {"control": 0.2, "treatment": 0.2}, units=300)
    rng = np.random.default_rng(0)
    ids = [f"user-{u}-{k}" for u in range(300) for k in range(3)]
    write_table(lake, "spend", pa.table({"request_id": ids,
                                         "amount": rng.gamma(2.0, 10.0, len(ids))}))
    out = ab_report(report_config(lake.root, "ab_report.join_on=request_id",
                                  "ab_report.outcomes_table=spend", "ab_report.outcome=amount"),
                    echo=quiet)
    assert out["metric"] == "mean" and sum(a["n"] for a in out["arms"]) == 900
    assert out["arms"][1]["comparison"]["test"] == "welch t"
    # Three requests per unit, arms drawn per unit: the report says to analyse per unit.
    assert out["repeat_requests"] == 600 and "join_on=unit_id" in format_report(out)


def test_units_with_several_outcomes_numeric_keys_and_failed_requests(lake):
    answers_and_outcomes(lake, {"control": 0.2, "treatment": 0.2}, units=400)
    # A unit with outcomes 0 and 1 counts once as 1 (a rate stays a rate), and
    # outcome keys stored as numbers still meet the log's string ids.
    write_table(lake, "rebooked", pa.table({"unit_id": pa.array([1, 1, 2], pa.int64()),
                                            "rebooked": [0, 1, 0]}))
    log = lake.read("serving/requests").to_pylist()
    numbered = [{**r, "unit_id": r["unit_id"].removeprefix("user-")} for r in log]
    write_table(lake, "serving/requests", pa.Table.from_pylist(numbered, schema=SCHEMA),
                mode="overwrite")
    out = ab_report(report_config(lake.root, "ab_report.outcomes_table=rebooked"), echo=quiet)
    assert out["metric"] == "rate" and sum(a["n"] for a in out["arms"]) == 2
    arms = {a["arm"]: a for a in out["arms"]}
    # Unit 1 (0 then 1) counts as one unit with outcome 1, unit 2 as one with 0.
    assert sum(a["value"] * a["n"] for a in out["arms"] if a["n"]) == 1.0
    # The one failed request (status 422) is counted for its arm, not analysed.
    assert arms["treatment"]["errors"] == 1 and arms["control"]["errors"] == 0
    assert "failed requests: 1" in format_report(out)


def test_answers_without_the_join_key_say_what_to_send(lake):
    answers_and_outcomes(lake, {"control": 0.2, "treatment": 0.2}, units=50)
    log = [{**r, "unit_id": None} for r in lake.read("serving/requests").to_pylist()]
    write_table(lake, "serving/requests", pa.Table.from_pylist(log, schema=SCHEMA),
                mode="overwrite")
    with pytest.raises(ConfigError, match="has a unit_id: clients must send it"):
        ab_report(report_config(lake.root), echo=quiet)


def test_errors_name_the_fix(lake):
    answers_and_outcomes(lake, {"control": 0.2, "treatment": 0.2}, units=100)
    with pytest.raises(ConfigError, match="Did you mean 'rebooked'"):
        ab_report(report_config(lake.root, "ab_report.outcome=rebookd"), echo=quiet)
    with pytest.raises(ConfigError, match="arms: control, treatment"):
        ab_report(report_config(lake.root, "ab_report.control=contrl"), echo=quiet)
    with pytest.raises(ConfigError, match="No answered requests of experiment 'nope'"):
        ab_report(report_config(lake.root, "ab_report.experiment=nope"), echo=quiet)
    with pytest.raises(ConfigError, match="outcomes_table is not set"):
        ab_report(compose_config([f"lake.root={lake.root}"], job="ab-report"), echo=quiet)
    with pytest.raises(ConfigError, match="metric=mean"):
        write_table(lake, "amounts", pa.table({"unit_id": ["user-1"], "x": [2.5]}))
        ab_report(report_config(lake.root, "ab_report.outcomes_table=amounts",
                                "ab_report.outcome=x", "ab_report.metric=rate"), echo=quiet)


def test_cli(lake):
    answers_and_outcomes(lake, {"control": 0.2, "treatment": 0.3}, units=2000)
    res = subprocess.run([PYTHON, "-m", "raylake", "ab", "report", "experiment=delay_ab",
                          f"lake.root={lake.root}"], capture_output=True, text=True,
                         env=subprocess_env(), cwd=REPO, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "A/B report 'delay-ab-2026-11'" in res.stdout and ", significant" in res.stdout
