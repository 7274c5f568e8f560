"""Ray Tune over the Ray Train trainers: ASHA stops trailing trials, trials land in the
lake, the best trial's model is registered as a candidate."""

from __future__ import annotations

import datetime as dt
import json
import subprocess

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from conftest import PYTHON, REPO, subprocess_env

from raylake.config.loader import compose_config, to_config
from raylake.errors import ConfigError
from raylake.lake.commit import write_table
from raylake.lake.runs import get_run, list_runs
from raylake.models.registry import ModelRegistry
from raylake.train.jobs import tune
from raylake.train.tune import check_space, search_space, trial_config

T0 = dt.datetime(2013, 1, 1, tzinfo=dt.timezone.utc)
ETAS = [0.3, 0.01, 0.005]


def training_table(n: int = 4000, seed: int = 0) -> pa.Table:
    """Delay odds rise with `wind` and for carrier 'BB'."""
    rng = np.random.default_rng(seed)
    wind = rng.gamma(2.0, 5.0, n)
    carrier = rng.choice(["AA", "BB", "CC"], n)
    logit = -2.0 + 0.12 * wind + np.where(carrier == "BB", 1.0, 0.0)
    return pa.Table.from_pandas(pd.DataFrame({
        "time_hour": T0 + pd.to_timedelta(np.sort(rng.integers(0, 300 * 24, n)), unit="h"),
        "carrier": carrier,
        "wind": wind,
        "noise": rng.normal(size=n),
        "delayed": rng.random(n) < 1 / (1 + np.exp(-logit)),
    }), preserve_index=False)


def overrides(root: str, *extra: str) -> list[str]:
    return [f"lake.root={root}", "train.table=train_set", "train.label=delayed",
            "train.categorical=[carrier]", "train.split.valid_start=2013-08-01",
            "train.split.test_start=2013-09-15", "train.xgboost.num_boost_round=20",
            "train.xgboost.params.max_depth=3", "train.model_name=toy",
            "tune.num_samples=1", "tune.report_every=5",
            "tune.scheduler.grace_period=5", "tune.scheduler.reduction_factor=2", *extra]


def quiet(*_a, **_k) -> None:
    pass


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_asha_sweep_stops_trailing_trials_records_them_and_registers_the_best(ray_session, lake):
    write_table(lake, "train_set", training_table())
    cfg = compose_config(overrides(lake.root), job="tune")
    # A grid, so the trial order is known: after eta=0.3 has run, the slow learners
    # trail it at the 5-round rung and ASHA stops them there.
    cfg.tune.space = {"xgboost.params.eta": {"grid": ETAS}}
    out = tune(cfg, echo=quiet)

    trials = lake.read("tune/toy_trials").to_pylist()
    assert len(trials) == 3 and {t["run_id"] for t in trials} == {out["run_id"]}
    by_eta = {json.loads(t["params"])["xgboost.params.eta"]: t for t in trials}
    assert sorted(by_eta) == sorted(ETAS)
    assert all(t["status"] in ("completed", "stopped") and t["error"] is None for t in trials)
    stopped = [t for t in trials if t["stopped_early"]]
    assert stopped and all(t["iterations"] < 20 and t["status"] == "stopped" for t in stopped)
    assert by_eta[0.3]["iterations"] == 20 and not by_eta[0.3]["stopped_early"]
    assert by_eta[0.005]["stopped_early"] and by_eta[0.005]["iterations"] == 5
    assert all(t["metric"] == "valid_logloss" and t["metric_value"] > 0 for t in trials)

    best = [t for t in trials if t["is_best"]]
    assert len(best) == 1 and best[0]["status"] == "completed"
    finished = [t for t in trials if t["status"] == "completed"]
    assert best[0]["metric_value"] == min(t["metric_value"] for t in finished)
    best_eta = json.loads(best[0]["params"])["xgboost.params.eta"]

    mv, booster = ModelRegistry(lake).load("toy", 1)
    assert mv.stage == "candidate" and mv.run_id == out["run_id"]
    assert mv.config["train"]["xgboost"]["params"]["eta"] == best_eta
    assert mv.config["train"]["xgboost"]["params"]["max_depth"] == 3
    assert mv.metrics["test"]["auc"] > 0.7
    assert booster.num_boosted_rounds() == 20

    run = get_run(lake, out["run_id"])
    assert run["job"] == "tune" and run["status"] == "succeeded"
    assert {"table": "train_set", "version": 0, "role": "training-set", "run_id": None} \
        in run["inputs"]
    assert {"table": "tune/toy_trials", "version": 0, "rows": 3} in run["outputs"]
    assert {"model": "toy", "version": 1, "stage": "candidate"} in run["outputs"]
    assert run["metrics"]["best"]["trial_id"] == best[0]["trial_id"]
    assert run["metrics"]["stopped"] == len(stopped)


def test_space_and_config_errors_name_the_fix():
    base = to_config(compose_config(["train.model_name=toy"], job="tune")).train
    with pytest.raises(ConfigError, match="Did you mean 'loguniform'"):
        search_space({"xgboost.params.eta": {"loguniforn": [0.01, 0.3]}})
    with pytest.raises(ConfigError, match="low < high"):
        search_space({"xgboost.params.eta": {"uniform": [0.3, 0.01]}})
    with pytest.raises(ConfigError, match="nothing to tune"):
        search_space({})
    with pytest.raises(ConfigError, match="Did you mean 'xgboost'"):
        check_space(base, {"xgbost.params.eta": {"uniform": [0.1, 0.3]}})
    with pytest.raises(ConfigError, match="does not fit"):
        check_space(base, {"scaling.num_workers": {"choice": ["two"]}})
    tuned = trial_config(base, {"xgboost.params.max_depth": np.int64(4), "torch.lr": 0.01})
    assert tuned.xgboost.params["max_depth"] == 4 and tuned.torch.lr == 0.01
    assert base.xgboost.params["max_depth"] == 8  # the base is left alone
    with pytest.raises(ConfigError, match="train=torch tune=torch"):
        tune(compose_config(["train=torch"], job="tune"), echo=quiet)


@pytest.mark.slow
def test_cli_multirun_over_trainer_configs(ray_address, lake):
    """`raylake train -m` sweeps with Hydra's sweeper: one train run (and record) per config,
    here one per trainer (torch is a dependency of raylake, so both trainers always run)."""
    write_table(lake, "train_set", training_table(2000))
    trainers, depths = ["xgboost", "torch"], [3]
    args = [a for a in overrides(lake.root)
            if not a.startswith(("tune.", "train.xgboost.params.max_depth"))]
    res = subprocess.run(
        [PYTHON, "-m", "raylake", "train", "-m", f"train={','.join(trainers)}",
         f"train.xgboost.params.max_depth={','.join(map(str, depths))}",
         "train.scaling.num_workers=1",
         "train.xgboost.num_boost_round=5", "train.torch.epochs=1", "train.register=false",
         *args, f"ray.address={ray_address}"],
        capture_output=True, text=True, env=subprocess_env(), cwd=REPO, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    runs = list_runs(lake, job="train")
    assert len(runs) == 2 and all(r["status"] == "succeeded" for r in runs)
    got = sorted((r["config"]["train"]["trainer"], r["config"]["train"]["xgboost"]["params"]
                  ["max_depth"]) for r in runs)
    assert got == sorted((t, d) for t in trainers for d in depths)
