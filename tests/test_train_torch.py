"""Torch DDP on Ray Train: learning, standardisation, resume after a killed worker, registry."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from raylake.config.loader import compose_config
from raylake.errors import ConfigError
from raylake.lake.commit import write_table
from raylake.lake.runs import get_run
from raylake.models.flavors import get_flavor
from raylake.models.registry import ModelRegistry
from raylake.models.spec import FeatureSpec
from raylake.train import torch_ddp
from raylake.train.jobs import train

T0 = dt.datetime(2013, 1, 1, tzinfo=dt.timezone.utc)


def training_table(n: int = 4000, seed: int = 0) -> pa.Table:
    """A planted signal: delay odds rise with `wind` (large values, some missing) and for
    carrier 'BB'; `origin` and `noise` carry none."""
    rng = np.random.default_rng(seed)
    wind = rng.gamma(2.0, 50.0, n)  # far from unit scale: learns only if standardised
    carrier = rng.choice(["AA", "BB", "CC", "DD"], n)
    logit = -2.0 + 0.015 * wind + np.where(carrier == "BB", 1.5, 0.0)
    label = rng.random(n) < 1 / (1 + np.exp(-logit))
    wind[rng.random(n) < 0.05] = np.nan
    return pa.Table.from_pandas(pd.DataFrame({
        "time_hour": T0 + pd.to_timedelta(np.sort(rng.integers(0, 300 * 24, n)), unit="h"),
        "carrier": carrier,
        "origin": rng.choice(["EWR", "JFK", "LGA"], n),
        "wind": wind,
        "noise": rng.normal(size=n),
        "weekend": rng.random(n) < 0.3,
        "flight": rng.integers(1, 5000, n),
        "delayed": label,
    }), preserve_index=False)


def overrides(root: str, *extra: str) -> list[str]:
    return [f"lake.root={root}", "train=torch", "train.table=train_set", "train.label=delayed",
            "train.exclude=[flight]", "train.categorical=[carrier,origin]",
            "train.split.valid_start=2013-08-01", "train.split.test_start=2013-09-15",
            "train.torch.epochs=4", "train.torch.batch_size=256", "train.torch.lr=0.01",
            "train.checkpoint_every=1", "train.model_name=toy_mlp", *extra]


@pytest.fixture
def toy_lake(lake):
    write_table(lake, "train_set", training_table())
    return lake


def quiet(*_a, **_k) -> None:
    pass


def test_standardized_inputs_and_architecture():
    spec = FeatureSpec(["wind", "weekend"], ["carrier"], {"carrier": ["AA", "BB"]}, "delayed",
                       means={"wind": 10.0, "weekend": 0.5}, stds={"wind": 5.0, "weekend": 0.5},
                       missing=["wind"])
    t = pa.table({"wind": [20.0, None, float("nan")], "weekend": [True, False, None],
                  "carrier": ["BB", "ZZ", None], "delayed": [True, False, True]})
    num, cat = spec.standardized(t)
    assert num.dtype == np.float32 and cat.dtype == np.int64
    # wind standardised, weekend standardised (null -> 0), then wind's missing indicator.
    np.testing.assert_array_equal(num, [[2.0, 1.0, 0.0], [0.0, -1.0, 1.0], [0.0, 0.0, 1.0]])
    np.testing.assert_array_equal(cat, [[2], [0], [0]])
    # A spec stored before standardisation existed still loads, and encodes as before.
    old = FeatureSpec.from_dict({"numeric": ["wind"], "categorical": [], "vocab": {},
                                 "label": "delayed"})
    assert old.means == {} and old.missing == []
    settings = SimpleNamespace(embedding_dim=4, hidden=[8], dropout=0.0)
    assert torch_ddp.architecture(spec, settings) == {
        "num_numeric": 3, "cardinalities": [2], "embedding_dim": 4, "hidden": [8],
        "dropout": 0.0}


def test_backend_must_fit_the_devices():
    tcfg = SimpleNamespace(torch=SimpleNamespace(epochs=1, batch_size=8),
                           scaling=SimpleNamespace(backend="nccl", use_gpu=False))
    with pytest.raises(ConfigError, match="nccl needs GPUs"):
        torch_ddp._check(tcfg)
    tcfg.scaling.backend = "mpi"
    with pytest.raises(ConfigError, match="not a DDP backend"):
        torch_ddp._check(tcfg)
    tcfg.scaling.backend = None
    assert torch_ddp._check(tcfg) == "gloo"


def test_torch_two_workers_learns_records_and_registers(ray_session, toy_lake):
    out = train(compose_config(overrides(toy_lake.root), job="train"), echo=quiet)
    m = out["metrics"]
    assert m["trainer"] == "torch"
    assert m["test"]["auc"] > 0.7 and m["valid"]["auc"] > 0.7
    assert m["features"] == ["wind", "noise", "weekend", "carrier", "origin"]
    rep = m["reported"]
    assert rep["epoch"] == 4 and rep["resumed_from"] == 0 and rep["device"] == "cpu"
    # Per-epoch validation is all-gathered over both workers' shards: the whole split
    # (up to one row per worker that the equal split drops).
    assert m["valid"]["rows"] - 2 <= rep["valid_rows"] <= m["valid"]["rows"]
    assert rep["valid_auc"] > 0.7
    run = get_run(toy_lake, out["run_id"])
    assert run["status"] == "succeeded"
    assert run["outputs"] == [{"model": "toy_mlp", "version": 1, "stage": "candidate"}]

    mv, net = ModelRegistry(toy_lake).load("toy_mlp", 1)
    assert mv.flavor == "torch" and type(net).__name__ == "TabularMLP"
    spec = FeatureSpec.from_dict(mv.preprocessing)
    # Standardisation from the training split travels with the model.
    assert spec.missing == ["wind"] and spec.stds["wind"] > 10 and spec.means["wind"] > 10
    sample = training_table(300, seed=5)
    flavor = get_flavor("torch")
    want = flavor.predict(out["model"], spec, sample)
    np.testing.assert_array_equal(flavor.predict(net, spec, sample), want)
    assert want.shape == (300,) and ((want > 0) & (want < 1)).all()


def test_killed_worker_resumes_from_checkpoint(ray_session, toy_lake, tmp_path):
    marker = tmp_path / "killed"
    cfg = overrides(toy_lake.root, "train.max_failures=1", "train.register=false")
    out = train(compose_config(cfg, job="train"), echo=quiet,
                kill_at={"round": 2, "rank": 1, "marker": str(marker)})
    assert marker.read_text() == "2"  # the worker did die, after the epoch-1 checkpoint
    rep = out["metrics"]["reported"]
    # The retry started from the epoch-1 checkpoint, not from scratch, and finished.
    assert rep["epoch"] == 4 and rep["resumed_from"] == 1
    assert out["metrics"]["test"]["auc"] > 0.7
    assert get_run(toy_lake, out["run_id"])["metrics"]["reported"]["resumed_from"] == 1
    # Nothing of the run still holds CPUs (a restarted worker group's placement group
    # was seen left reserved by Ray Train, and the next run waited for CPUs forever).
    from raylake.train.placement import _reserved_by_this_job
    assert not _reserved_by_this_job()
