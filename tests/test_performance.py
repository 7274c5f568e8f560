"""Performance over time (monitor/performance.py) and CBPE (monitor/cbpe.py): realised
metrics per window, arm and segment from a request log joined with outcomes, the CBPE
estimate against realised AUC on synthetic data, and the recorded states of bad input.
No Ray."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import types

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from raylake.config.loader import compose_config, to_config
from raylake.errors import MonitorError
from raylake.lake.commit import write_table
from raylake.monitor import cbpe
from raylake.monitor.performance import window_rows
from raylake.serve.request_log import SCHEMA as LOG_SCHEMA
from raylake.train import metrics

UTC = dt.timezone.utc
DAY0 = dt.datetime(2013, 4, 1, tzinfo=UTC)
DAYS = [DAY0 + dt.timedelta(days=i) for i in range(3)]
ORIGINS = ["EWR", "JFK", "LGA"]
OUTCOMES_SCHEMA = pa.schema([
    ("request_id", pa.string()), ("unit_id", pa.string()), ("row", pa.int32()),
    ("outcome", pa.float64()), ("outcome_at", pa.timestamp("us", tz="UTC")),
    ("arrived_at", pa.timestamp("us", tz="UTC")), ("source", pa.string())])


def true_p(s: np.ndarray) -> np.ndarray:
    """P(delayed | score): the raw score is not calibrated (CBPE must calibrate it)."""
    return np.clip(s, 0, 1) ** 1.6


def _mv(threshold: float = 0.3) -> types.SimpleNamespace:
    return types.SimpleNamespace(
        name="delay", version=2, ref="delay:2",
        metrics={"test": {"threshold": threshold, "auc": 0.74, "cost_per_1000": 61.0}})


def _conf(lake, *extra: str):
    return to_config(compose_config([f"lake.root={lake.root}", "monitor.min_rows=50",
                                     "monitor.segment_by=[origin]", *extra]))


def _served_log(lake, rng, per_day: int = 700) -> pd.DataFrame:
    """Writes the request log: three days, two arms, 1-3 rows per request, plus rows the
    monitor must leave out (other model, other version, failed requests). Returns one
    row per (request, row) of the monitored model with its score and true outcome."""
    logs, flat = [], []
    n = itertools.count()
    for day, arm in itertools.product(DAYS, ["control", "treatment"]):
        for _ in range(per_day):
            i = next(n)
            k = int(rng.integers(1, 4))
            s = rng.beta(2, 3, size=k)
            origin = rng.choice(ORIGINS, size=k, p=[0.5, 0.3, 0.2]).tolist()
            at = day + dt.timedelta(seconds=int(rng.integers(0, 86400)))
            rid = f"r{i}"
            logs.append({"request_id": rid, "at": at, "unit_id": f"u{i % 997}", "arm": arm,
                         "model_name": "delay", "model_version": 2, "shadow": False,
                         "status": 200, "rows": k, "latency_ms": 1.0,
                         "features": json.dumps({"origin": origin, "temp": [50.0] * k}),
                         "predictions": s.tolist()})
            y = (rng.random(k) < true_p(s)).astype(float)
            flat += [{"request_id": rid, "row": j, "arm": arm, "day": day, "score": s[j],
                      "origin": origin[j], "y": y[j]} for j in range(k)]
    at = DAY0 + dt.timedelta(hours=5)
    base = {"at": at, "unit_id": "x", "arm": "control", "shadow": False, "rows": 1,
            "latency_ms": 1.0, "features": "{}", "predictions": [0.99]}
    logs += [{**base, "request_id": "other-model", "model_name": "other", "model_version": 2,
              "status": 200},
             {**base, "request_id": "other-version", "model_name": "delay", "model_version": 1,
              "status": 200},
             {**base, "request_id": "failed", "model_name": "delay", "model_version": 2,
              "status": 422, "predictions": None}]
    write_table(lake, "serving/requests", pa.Table.from_pylist(logs, schema=LOG_SCHEMA))
    return pd.DataFrame(flat)


def _write_outcomes(lake, flat: pd.DataFrame, labelled: pd.DataFrame, unknown: int = 0):
    rows = [{"request_id": r.request_id, "unit_id": None, "row": int(r.row), "outcome": r.y,
             "outcome_at": r.day + dt.timedelta(hours=20),
             "arrived_at": r.day + dt.timedelta(days=1), "source": "cli"}
            for r in labelled.itertuples()]
    rows += [{"request_id": f"ghost{i}", "unit_id": None, "row": 0, "outcome": 1.0,
              "outcome_at": DAYS[1] + dt.timedelta(hours=3), "arrived_at": DAYS[2],
              "source": "http"} for i in range(unknown)]
    # An outcome for the other model's request is known (it matched a request), not used.
    rows.append({"request_id": "other-model", "unit_id": None, "row": 0, "outcome": 0.0,
                 "outcome_at": DAY0, "arrived_at": DAY0, "source": "cli"})
    write_table(lake, "serving/outcomes", pa.Table.from_pylist(rows, schema=OUTCOMES_SCHEMA))


def _reference(rng, n: int = 30_000) -> tuple[np.ndarray, np.ndarray, str]:
    s = rng.beta(2, 3, size=n)
    return (rng.random(n) < true_p(s)).astype(float), s, "training/delay@3"


def _by(rows, **match):
    return {(r["check"], r["segment"]): r for r in rows
            if all(r[k] == v for k, v in match.items())}


def test_realised_metrics_per_window_arm_and_segment(lake):
    rng = np.random.default_rng(7)
    flat = _served_log(lake, rng)
    # Day 0 fully labelled, day 1 only 30 rows per arm (< min_rows), day 2 none yet.
    labelled = pd.concat([flat[flat.day == DAYS[0]],
                          flat[flat.day == DAYS[1]].groupby("arm").head(30)])
    _write_outcomes(lake, flat, labelled, unknown=4)
    conf = _conf(lake)
    rows = window_rows(lake, conf, _mv(), DAYS, "run-1", reference=_reference(rng))
    cost = conf.train.cost
    for arm in ("control", "treatment"):
        got = _by(rows, arm=arm, window_start=DAYS[0])
        want = flat[(flat.day == DAYS[0]) & (flat.arm == arm)]
        y, s = want.y.to_numpy(), want.score.to_numpy()
        assert got[("auc", "")]["value"] == pytest.approx(metrics.auc(y, s))
        assert got[("log_loss", "")]["value"] == pytest.approx(metrics.log_loss(y, s))
        assert got[("calibration_error", "")]["value"] == pytest.approx(
            metrics.calibration_error(y, s))
        assert got[("cost", "")]["value"] == pytest.approx(metrics.expected_cost(y, s, 0.3, cost))
        assert got[("positive_rate", "")]["value"] == pytest.approx(y.mean())
        assert got[("auc", "")]["rows"] == len(want) and not got[("auc", "")]["estimated"]
        for origin in ORIGINS:  # every origin has well over min_rows rows
            seg = want[want.origin == origin]
            r = got[("auc", f"origin={origin}")]
            assert r["value"] == pytest.approx(metrics.auc(seg.y.to_numpy(), seg.score.to_numpy()))
            assert r["rows"] == len(seg)
        # The estimate sits beside the realised value; both about the same AUC.
        est = got[("auc_estimated", "")]
        assert est["estimated"] and est["reference"] == "training/delay@3"
        assert abs(est["value"] - got[("auc", "")]["value"]) < 0.05
        assert json.loads(got[("auc", "")]["detail"])["estimated"] == pytest.approx(est["value"])
        # Too few outcomes on day 1; none on day 2: a state, no value, estimates still there.
        for day, labelled_rows in ((DAYS[1], 30), (DAYS[2], 0)):
            got = _by(rows, arm=arm, window_start=day)
            assert got[("auc", "")]["value"] is None and got[("auc", "")]["rows"] == labelled_rows
            assert json.loads(got[("auc", "")]["detail"])["state"] == "too_few_outcomes"
            assert got[("auc_estimated", "")]["value"] > 0.6
    # Left out: the other model, the other version, the failed request.
    served = sum(r["rows"] for r in rows if r["check"] == "auc_estimated" and not r["segment"])
    assert served == len(flat)
    unknown = [r for r in rows if r["check"] == "unknown_outcomes"]
    assert len(unknown) == 1 and unknown[0]["value"] == 4 and unknown[0]["window_start"] == DAYS[1]
    assert json.loads(unknown[0]["detail"])["examples"] == ["ghost0", "ghost1", "ghost2"]
    assert {r["model"] for r in rows} == {"delay"} and {r["model_version"] for r in rows} == {2}
    assert all(r["feature"] == "_model" and r["run_id"] == "run-1" for r in rows)


def test_unit_key_no_outcomes_table_and_no_reference(lake):
    rng = np.random.default_rng(3)
    flat = _served_log(lake, rng, per_day=200)
    conf = _conf(lake, "monitor.segment_by=[]")
    # A numeric segment column (parsed request by request): its values as text.
    conf = _conf(lake, "monitor.segment_by=[temp]")
    rows = window_rows(lake, conf, _mv(), DAYS[:1], "run-2", reference=_reference(rng))
    got = _by(rows, arm="control")
    n = int(((flat.day == DAYS[0]) & (flat.arm == "control")).sum())
    assert got[("auc_estimated", "temp=50.0")]["rows"] == got[("auc_estimated", "")]["rows"] == n
    assert json.loads(got[("auc", "")]["detail"]) == {"state": "no_outcomes"}
    assert got[("cost_estimated", "")]["value"] > 0
    # A model without lineage and no monitor.reference: estimates say why, realised go on.
    mv = types.SimpleNamespace(**{**vars(_mv()), "preprocessing": {"numeric": ["temp"],
                                  "categorical": [], "label": "delayed"}, "training": {},
                                  "config": {}, "run_id": None})
    rows = window_rows(lake, conf, mv, DAYS[:1], "run-3")
    detail = json.loads(_by(rows, arm="control")[("auc_estimated", "")]["detail"])
    assert detail["state"] == "no_reference" and "monitor.reference" in detail["message"]
    # Keyed by unit: every request row of a unit gets the unit's outcome for that row.
    units = flat.assign(unit=[f"u{int(r[1:]) % 997}" for r in flat.request_id])
    first = units[units.day == DAYS[0]].drop_duplicates(["unit", "row"])
    write_table(lake, "serving/outcomes", pa.Table.from_pylist(
        [{"request_id": None, "unit_id": r.unit, "row": int(r.row), "outcome": r.y,
          "outcome_at": DAY0, "arrived_at": DAY0, "source": "cli"} for r in first.itertuples()],
        schema=OUTCOMES_SCHEMA))
    rows = window_rows(lake, _conf(lake, "monitor.segment_by=[]", "outcomes.join_on=unit_id"), _mv(),
                       DAYS[:1], "run-4", reference=_reference(rng))
    want = units[units.day == DAYS[0]].merge(first[["unit", "row", "y"]], on=["unit", "row"],
                                             suffixes=("", "_unit"))
    for arm in ("control", "treatment"):
        w = want[want.arm == arm]
        r = _by(rows, arm=arm)[("auc", "")]
        assert r["rows"] == len(w)
        assert r["value"] == pytest.approx(metrics.auc(w.y_unit.to_numpy(), w.score.to_numpy()))


def test_non_binary_outcomes_are_a_state_not_metrics(lake):
    """AUC and log loss are of a 0/1 outcome: a 2 or a 0.5 among the outcomes (minutes
    of delay sent as the outcome) is recorded as a state with examples, not a metric."""
    rng = np.random.default_rng(5)
    flat = _served_log(lake, rng, per_day=200)
    day = flat[flat.day == DAYS[0]].copy()
    day.loc[day.index[:7], "y"] = [2.0, 0.5, 2.0, 37.0, 2.0, 0.5, 2.0]
    _write_outcomes(lake, flat, day)
    conf = _conf(lake, "monitor.segment_by=[]")
    rows = window_rows(lake, conf, _mv(), DAYS[:1], "run-5", reference=_reference(rng))
    odd_arm = day.arm.iloc[0]
    for arm in ("control", "treatment"):
        got = _by(rows, arm=arm)
        labelled = int((day.arm == arm).sum())
        if arm != odd_arm:  # the other arm's outcomes are all 0/1: its metrics stand
            assert got[("auc", "")]["value"] is not None
            continue
        for check in ("auc", "log_loss", "calibration_error", "cost", "positive_rate"):
            r = got[(check, "")]
            detail = json.loads(r["detail"])
            assert r["value"] is None and r["rows"] == labelled
            assert detail["state"] == "non_binary_outcomes"
            assert detail["examples"] == [0.5, 2.0, 37.0] and detail["non_binary"] == 7
            assert "not 0 or 1" in detail["message"]
        assert got[("auc_estimated", "")]["value"] > 0.6  # estimates do not need outcomes


def test_a_model_without_a_threshold_is_judged_at_the_cost_ratio(lake):
    """The same fallback as `raylake ct`: false_alarm / (missed + false_alarm)."""
    from raylake.ct.retrain import evaluate
    from raylake.monitor.performance import threshold_of

    rng = np.random.default_rng(9)
    flat = _served_log(lake, rng, per_day=300)
    day = flat[flat.day == DAYS[0]]
    _write_outcomes(lake, flat, day)
    conf = _conf(lake, "monitor.segment_by=[]", "train.cost.missed=30",
                 "train.cost.false_alarm=10")
    mv = types.SimpleNamespace(**{**vars(_mv()), "metrics": {"test": {"auc": 0.7}}})
    cost = conf.train.cost
    assert threshold_of(mv, cost) == (0.25, "cost ratio")
    assert threshold_of(_mv(0.3), cost) == (0.3, "registered")
    rows = window_rows(lake, conf, mv, DAYS[:1], "run-6", reference=_reference(rng))
    want = day[day.arm == "control"]
    y, s = want.y.to_numpy(), want.score.to_numpy()
    got = _by(rows, arm="control")
    assert got[("cost", "")]["value"] == pytest.approx(metrics.expected_cost(y, s, 0.25, cost))
    assert got[("cost", "")]["value"] != pytest.approx(metrics.expected_cost(y, s, 0.5, cost))
    assert json.loads(got[("cost_estimated", "")]["detail"])["decision_threshold"] == 0.25
    judged = evaluate(y, s, mv, cost)
    assert judged["threshold_source"] == "cost ratio"
    assert judged["cost"] == pytest.approx(got[("cost", "")]["value"])


def test_a_reference_without_finite_scores_is_a_monitor_error(lake):
    y = np.array([0.0, 1.0, 1.0])
    with pytest.raises(MonitorError, match=r"cannot calibrate on training/delay@3.*"
                                           r"monitor.reference=TABLE@VERSION"):
        cbpe.calibrator(y, np.full(3, np.nan), "training/delay@3")
    # In a run: recorded per window as a missing reference is; realised metrics go on.
    rng = np.random.default_rng(2)
    _served_log(lake, rng, per_day=100)
    rows = window_rows(lake, _conf(lake, "monitor.segment_by=[]"), _mv(), DAYS[:1], "run-7",
                       reference=(y, np.full(3, np.nan), "training/delay@3"))
    detail = json.loads(_by(rows, arm="control")[("auc_estimated", "")]["detail"])
    assert detail["state"] == "no_reference" and "training/delay@3" in detail["message"]


def test_reference_scores_from_the_training_lineage(lake):
    """The default reference: the registered model's scores on its training set's test
    split (rows at or after the recorded test_start), labels from the same rows."""
    import xgboost

    from raylake.lake.runs import RunRecorder
    from raylake.models.flavors import get_flavor
    from raylake.models.registry import ModelRegistry
    from raylake.models.spec import FeatureSpec

    rng = np.random.default_rng(1)
    n = 4000
    temp = rng.normal(60, 15, n)
    t = [DAY0 - dt.timedelta(days=90) + dt.timedelta(hours=int(h)) for h in
         np.sort(rng.integers(0, 90 * 24, n))]
    delayed = (rng.random(n) < 1 / (1 + np.exp(-(temp - 60) / 10))).astype(np.int64)
    table = pa.table({"time_hour": pa.array(t, pa.timestamp("us", tz="UTC")), "temp": temp,
                      "delayed": delayed})
    write_table(lake, "training/delay", table)
    spec = FeatureSpec(["temp"], [], {}, "delayed")
    booster = xgboost.train({"objective": "binary:logistic", "max_depth": 2},
                            xgboost.DMatrix(spec.matrix(table), label=delayed), 5)
    test_start = t[3000]
    with RunRecorder(lake, "train", {}) as run:
        run.metrics["split"] = {"test_start": test_start.isoformat()}
    mv = ModelRegistry(lake).register(
        "delay", booster, flavor="xgboost", features=[{"name": "temp", "type": "double"}],
        training={"table": "training/delay", "version": 0},
        config={"train": {"split": {"time_column": "time_hour"}}},
        metrics={"test": {"threshold": 0.5, "auc": 0.7}}, run_id=run.run_id,
        preprocessing=spec.to_dict())
    y, p, name = cbpe.reference_scores(lake, _conf(lake), mv)
    test = table.filter(pa.compute.greater_equal(table["time_hour"], pa.scalar(test_start)))
    assert name == "training/delay@0" and len(y) == test.num_rows < n
    np.testing.assert_array_equal(y, test["delayed"].to_numpy())
    np.testing.assert_allclose(p, get_flavor("xgboost").predict(booster, spec, test))
    # monitor.reference: a named table, every row.
    y, p, name = cbpe.reference_scores(lake, _conf(lake, "monitor.reference=training/delay@0"), mv)
    assert name == "training/delay@0" and len(y) == n
    # A reference without the label: a MonitorError saying what to set, not a crash.
    write_table(lake, "unlabelled", table.drop_columns(["delayed"]))
    with pytest.raises(MonitorError, match=r"lacks \['delayed'\].*monitor.reference"):
        cbpe.reference_scores(lake, _conf(lake, "monitor.reference=unlabelled@0"), mv)


# -- CBPE ---------------------------------------------------------------------------------

def _brute_isotonic(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The max-min formula: f_i = max_{j<=i} min_{k>=i} weighted mean of y[j..k]."""
    n = len(y)
    mean = lambda j, k: np.sum(w[j:k + 1] * y[j:k + 1]) / np.sum(w[j:k + 1])  # noqa: E731
    return np.array([max(min(mean(j, k) for k in range(i, n)) for j in range(i + 1))
                     for i in range(n)])


def test_pool_adjacent_violators_matches_brute_force():
    rng = np.random.default_rng(0)
    for trial in range(40):
        n = int(rng.integers(1, 12))
        x = rng.integers(0, 6, n).astype(float) if trial % 2 else rng.random(n)
        y, w = rng.random(n), rng.random(n) + 0.1
        xs, fit = cbpe.isotonic(x, y, w)
        # Ties in x are one point: their weighted mean with their summed weight.
        order = np.unique(x)
        yy = np.array([np.sum((w * y)[x == v]) / np.sum(w[x == v]) for v in order])
        ww = np.array([np.sum(w[x == v]) for v in order])
        np.testing.assert_array_equal(xs, order)
        np.testing.assert_allclose(fit, _brute_isotonic(yy, ww), atol=1e-12)
        assert np.all(np.diff(fit) >= -1e-12)


def test_expected_auc_is_the_pairwise_expectation():
    rng = np.random.default_rng(1)
    s = rng.integers(0, 5, 12).astype(float)  # ties
    p = rng.random(12)
    num = den = 0.0
    for i, j in itertools.permutations(range(12), 2):
        w = p[i] * (1 - p[j])
        den += w
        num += w * (1.0 if s[i] > s[j] else 0.5 if s[i] == s[j] else 0.0)
    assert cbpe.expected_auc(s, p) == pytest.approx(num / den)


@pytest.mark.parametrize("shift", [0.0, 1.0])
def test_cbpe_tracks_realised_auc_and_cost(shift):
    """Raw scores z (a logit, not a probability); P(y|z) is the same on reference and
    window. Shifted window: covariate shift changes the AUC, CBPE must follow it."""
    rng = np.random.default_rng(11)
    p_of = lambda z: 1 / (1 + np.exp(-(1.5 * z - 1)))  # noqa: E731
    z_ref = rng.normal(size=40_000)
    calibrate = cbpe.calibrator((rng.random(z_ref.size) < p_of(z_ref)).astype(float), z_ref)
    z = rng.normal(shift, 0.7 if shift else 1.0, size=5000)
    cost = types.SimpleNamespace(missed=100.0, false_alarm=20.0, per=1000)
    est = cbpe.estimate(z, calibrate, 0.0, cost)
    draws = [(rng.random(z.size) < p_of(z)).astype(float) for _ in range(100)]
    realised_auc = np.mean([metrics.auc(y, z) for y in draws])
    realised_cost = np.mean([metrics.expected_cost(y, z, 0.0, cost) for y in draws])
    assert abs(est["auc"] - realised_auc) < 0.01
    assert abs(est["cost"] - realised_cost) / realised_cost < 0.05
    assert abs(est["positive_rate"] - np.mean(draws)) < 0.01
    if shift:  # the shift moved the AUC well away from the reference's
        ref_auc = metrics.auc((rng.random(z_ref.size) < p_of(z_ref)), z_ref)
        assert abs(realised_auc - ref_auc) > 0.03
