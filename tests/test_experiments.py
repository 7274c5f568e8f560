"""Experiments: `raylake exp show` and `raylake exp diff` over run records (DVC's exp)."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pytest

from raylake.cli.experiments import exp_command
from raylake.errors import RunNotFoundError
from raylake.lake.commit import write_table
from raylake.lake.experiments import (
    ExperimentError,
    changed_keys,
    compare,
    diff_runs,
    experiment,
    flatten,
    resolve_run,
    select_runs,
)
from raylake.lake.runs import RUNS_SCHEMA, RUNS_TABLE, RunRecord, RunRecorder, list_runs


def record(lake, job: str, config: dict[str, Any], metrics: dict[str, Any] | None = None,
           inputs: list[dict[str, Any]] = (), outputs: list[dict[str, Any]] = (),
           fail: bool = False) -> str:
    """A run recorded through raylake's own recorder; its run id."""
    try:
        with RunRecorder(lake, job, config) as run:
            for i in inputs:
                run.add_input(**i)
            for o in outputs:
                run.add_output(**o)
            run.metrics.update(metrics or {})
            if fail:
                raise RuntimeError("boom")
    except RuntimeError:
        pass
    return run.run_id


def train_config(rounds: int, depth: int = 3, eta: float = 0.3) -> dict[str, Any]:
    return {"lake": {"root": "/tmp/lake"},
            "train": {"table": "train_set", "label": "delayed", "exclude": ["flight"],
                      "xgboost": {"num_boost_round": rounds,
                                  "params": {"max_depth": depth, "eta": eta}}}}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> tuple[Any, dict[str, str]]:
    """A lake with three train runs (differing rounds, depth; one read a newer table
    version), one failed train run and one ingest run; the tests only read it."""
    from raylake.lake import Lake, Storage

    lake = Lake(Storage.from_config(str(tmp_path_factory.mktemp("exp") / "lake")))
    ids = {}
    ids["ingest"] = record(lake, "ingest", {"lake": {"root": "/tmp/lake"}},
                           {"rows": 10}, outputs=[{"table": "flights", "version": 0}])
    ids["r20"] = record(lake, "train", train_config(20),
                        {"test": {"auc": 0.71, "log_loss": 0.5}, "valid": {"auc": 0.70},
                         "features": ["wind", "carrier"], "trainer": "xgboost"},
                        inputs=[{"table": "train_set", "version": 0, "role": "training-set"},
                                {"table": "flights", "version": 0, "via": "train_set"}],
                        outputs=[{"model": "toy", "version": 1, "stage": "candidate"}])
    ids["r50"] = record(lake, "train", train_config(50),
                        {"test": {"auc": 0.83, "log_loss": 0.4}, "valid": {"auc": 0.80},
                         "features": ["wind", "carrier"], "trainer": "xgboost"},
                        inputs=[{"table": "train_set", "version": 0, "role": "training-set"},
                                {"table": "flights", "version": 0, "via": "train_set"}],
                        outputs=[{"model": "toy", "version": 2, "stage": "candidate"}])
    ids["r30d6"] = record(lake, "train", train_config(30, depth=6),
                          {"test": {"auc": 0.77, "log_loss": 0.45}, "valid": {"auc": 0.75},
                           "features": ["wind"], "trainer": "xgboost"},
                          inputs=[{"table": "train_set", "version": 1, "role": "training-set"},
                                  {"table": "flights", "version": 1, "via": "train_set"}],
                          outputs=[{"model": "toy", "version": 3, "stage": "candidate"}])
    ids["failed"] = record(lake, "train", train_config(99), fail=True)
    return lake, ids


@pytest.fixture(autouse=True)
def quick_open(request, monkeypatch):
    """Open the lake of `lake.root=...` without composing the whole config (a second a
    call on a busy machine); the CLI test and the real training test go the real way."""
    if request.node.get_closest_marker("slow") or "through_the_cli" in request.node.name:
        return
    from raylake.lake import Lake, Storage

    def open_lake(overrides):
        (root,) = [o.split("=", 1)[1] for o in overrides if o.startswith("lake.root=")]
        return Lake(Storage.from_config(root))

    monkeypatch.setattr("raylake.cli.experiments._open_lake", open_lake)


@pytest.fixture
def lake_runs(recorded):
    return recorded


def show(lake, *args: str) -> dict[str, Any]:
    return _json(lake, "show", *args)


def _json(lake, *args: str) -> dict[str, Any]:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert exp_command([*args, "--json", f"lake.root={lake.root}"]) == 0
    return json.loads(buf.getvalue())


def text(lake, capsys, *args: str) -> str:
    capsys.readouterr()
    assert exp_command([*args, f"lake.root={lake.root}"]) == 0
    return capsys.readouterr().out


def test_flatten_and_changed_keys():
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": {}}) == \
        {"a.b": 1, "a.c.d": [1, 2], "e": {}}
    assert changed_keys([{"a": 1, "b": [1]}, {"a": 1, "b": [2]}, {"a": 1}]) == ["b"]
    assert changed_keys([{"a": 1, "b": 2}]) == []  # one run: nothing differs


def test_show_lists_differing_params_metrics_and_inputs(lake_runs):
    lake, runs = lake_runs
    out = show(lake)  # no --job: the newest run's job (train), succeeded runs only
    assert out["job"] == "train"
    assert [r["run_id"] for r in out["runs"]] == [runs["r30d6"], runs["r50"], runs["r20"]]
    assert out["params"] == ["train.xgboost.num_boost_round", "train.xgboost.params.max_depth"]
    assert out["metrics"] == ["test.auc", "test.log_loss", "valid.auc", "wall_s"]
    assert out["inputs"] == ["train_set", "flights"]
    first = out["runs"][0]
    assert first["params"] == {"train.xgboost.num_boost_round": 30,
                               "train.xgboost.params.max_depth": 6}
    assert first["inputs"] == {"train_set": 1, "flights": 1}
    assert first["outputs"] == {"model:toy": 3}
    every = show(lake, "--all-params")
    assert "train.xgboost.params.eta" in every["params"] and "lake.root" in every["params"]
    kept = show(lake, "--keep", "*.eta", "--drop", "wall_s", "--drop", "in:flights",
                "--metrics", "test.*")
    assert set(kept["params"]) == {*out["params"], "train.xgboost.params.eta"}
    assert kept["metrics"] == ["test.auc", "test.log_loss"] and kept["inputs"] == ["train_set"]


def test_show_sorts_filters_and_limits(lake_runs):
    lake, runs = lake_runs
    desc = show(lake, "--sort-by", "test.auc", "--sort-order", "desc")
    assert [r["run_id"] for r in desc["runs"]] == [runs["r50"], runs["r30d6"], runs["r20"]]
    # A unique last part names the metric; ascending is the default (DVC's).
    asc = show(lake, "--sort-by", "log_loss")
    assert asc["sort_by"] == "test.log_loss"
    assert [r["run_id"] for r in asc["runs"]] == [runs["r50"], runs["r30d6"], runs["r20"]]
    by_param = show(lake, "--sort-by", "num_boost_round")
    assert [r["run_id"] for r in by_param["runs"]] == [runs["r20"], runs["r30d6"], runs["r50"]]
    assert [r["run_id"] for r in show(lake, "--limit", "2")["runs"]] == \
        [runs["r30d6"], runs["r50"]]
    # Failed runs on request: no test metrics, so they sort last whatever the order.
    everything = show(lake, "--status", "all", "--sort-by", "test.auc", "--sort-order", "desc")
    assert everything["runs"][-1]["run_id"] == runs["failed"]
    assert everything["runs"][-1]["status"] == "failed"
    assert everything["metrics"][0] == "test.auc"  # the sort column first, then the fullest run's
    assert show(lake, "--status", "all")["metrics"][:2] == ["test.auc", "test.log_loss"]
    assert [r["run_id"] for r in show(lake, "--job", "ingest")["runs"]] == [runs["ingest"]]
    assert show(lake, "--job", "tune")["runs"] == []


def test_show_text_table(lake_runs, capsys):
    lake, runs = lake_runs
    out = text(lake, capsys, "show", "--sort-by", "test.auc", "--sort-order", "desc",
               "--metrics", "test.*")
    lines = out.splitlines()
    assert lines[0].startswith("job train: 3 succeeded runs, by test.auc desc")
    header = lines[1].split()
    assert header[:2] == ["run_id", "started_at"]
    assert header[2:] == ["train.xgboost.num_boost_round", "train.xgboost.params.max_depth",
                          "test.auc", "test.log_loss", "in:train_set", "in:flights"]
    assert lines[2].split()[0] == runs["r50"] and lines[2].split()[2:6] == ["50", "3", "0.83", "0.4"]
    assert "no succeeded runs of job 'tune'" in text(lake, capsys, "show", "--job", "tune")


def test_diff_params_metrics_with_change_and_versions(lake_runs, capsys):
    lake, runs = lake_runs
    d = _json(lake, "diff", runs["r20"], runs["r30d6"])
    assert d["a"]["run_id"] == runs["r20"] and d["b"]["run_id"] == runs["r30d6"]
    assert {p["key"]: (p["a"], p["b"]) for p in d["params"]} == {
        "train.xgboost.num_boost_round": (20, 30), "train.xgboost.params.max_depth": (3, 6)}
    metrics = {m["key"]: m for m in d["metrics"]}
    assert metrics["test.auc"]["change"] == pytest.approx(0.06)
    assert metrics["features"]["a"] == ["wind", "carrier"] and metrics["features"]["change"] is None
    assert "trainer" not in metrics  # the same in both
    assert {i["key"]: (i["a"], i["b"]) for i in d["inputs"]} == {"train_set": (0, 1),
                                                                "flights": (0, 1)}
    assert d["outputs"] == [{"key": "model:toy", "a": 1, "b": 3}]
    # Prefixes and the last hex digits name runs too; --all keeps unchanged keys.
    full = _json(lake, "diff", runs["r20"][-8:], runs["r50"], "--all")
    assert any(p["key"] == "lake.root" for p in full["params"])
    assert {m["key"] for m in full["metrics"]} >= {"trainer", "test.auc"}
    out = text(lake, capsys, "diff", runs["r20"], runs["r50"])
    assert f"a: {runs['r20']} (train, succeeded" in out
    assert "inputs: no differences" in out
    row = next(line for line in out.splitlines() if line.startswith("test.auc"))
    assert row.split() == ["test.auc", "0.71", "0.83", "+0.12"]


def test_unknown_runs_metrics_and_statuses_name_the_fix(lake_runs):
    lake, runs = lake_runs
    typo = runs["r20"][:-1] + ("0" if runs["r20"][-1] != "0" else "1")
    with pytest.raises(RunNotFoundError, match=f"Did you mean '{runs['r20']}'"):
        exp_command(["diff", typo, runs["r50"], f"lake.root={lake.root}"])
    with pytest.raises(ExperimentError, match="matches 4 runs"):
        exp_command(["diff", "train-", runs["r50"], f"lake.root={lake.root}"])
    with pytest.raises(ExperimentError, match="No metric 'test.acu'.*Did you mean 'test.auc'"):
        show(lake, "--sort-by", "test.acu")
    with pytest.raises(ExperimentError, match="Did you mean 'test.log_loss'"):
        show(lake, "--sort-by", "logloss")
    with pytest.raises(ExperimentError, match="Did you mean 'test.auc' or 'valid.auc'"):
        show(lake, "--sort-by", "acu")
    with pytest.raises(ExperimentError, match="'auc' is ambiguous: test.auc, valid.auc"):
        show(lake, "--sort-by", "auc")
    with pytest.raises(ExperimentError, match="Unknown run status 'succeded'.*'succeeded'"):
        show(lake, "--status", "succeded")


def test_raylake_exp_through_the_cli(lake_runs, capsys):
    lake, runs = lake_runs
    pytest.importorskip("raylake.cli.pipelines")  # the dispatcher of pipelines|repro|exp
    from raylake.cli import main

    assert main(["exp", "show", "--sort-by", "test.auc", f"lake.root={lake.root}"]) == 0
    assert capsys.readouterr().out.splitlines()[2].startswith(runs["r20"])
    assert main(["exp", "diff", "nope", runs["r50"], f"lake.root={lake.root}"]) == 2
    assert "No run 'nope'" in capsys.readouterr().err


def test_secrets_in_a_record_are_never_shown(lake, capsys):
    # Written without RunRecorder (which redacts): exp still redacts what it prints.
    for rounds in (1, 2):
        rec = RunRecord(job="train", status="succeeded", config={
            "lake": {"storage_options": {"AWS_SECRET_ACCESS_KEY": f"hunter{rounds}"},
                     "root": f"s3://user:pw{rounds}@bucket/lake"},
            "train": {"xgboost": {"num_boost_round": rounds}}}, metrics={"test": {"auc": 0.5}})
        write_table(lake, RUNS_TABLE, pa.Table.from_pylist([rec.to_row()], schema=RUNS_SCHEMA),
                    mode="append", system=True)
    ids = [r["run_id"] for r in list_runs(lake)]
    out = text(lake, capsys, "show", "--all-params")
    out += text(lake, capsys, "show", "--all-params", "--json")
    out += text(lake, capsys, "diff", *ids, "--all")
    assert "hunter" not in out and "pw1" not in out and "pw2" not in out
    assert "<redacted>" in out


def test_compare_and_diff_are_pure_over_records(lake_runs):
    lake, runs = lake_runs
    exps = select_runs(lake, "train")
    assert [e.run_id for e in compare(exps, sort_by="valid.auc").experiments] == \
        [runs["r20"], runs["r30d6"], runs["r50"]]
    a = resolve_run(runs["r50"], exps)
    assert diff_runs(a, a).params == [] and diff_runs(a, a).metrics == []
    assert experiment({"run_id": "x", "inputs": [
        {"kind": "files", "table": "flights", "files": ["a", "b"], "fingerprint": "f" * 40},
        {"table": "t", "version": 1, "side": "reference"},
        {"table": "t", "version": 2, "side": "current"}]}).inputs == {
        "flights": "2 files ffffffffffff", "t[reference]": 1, "t[current]": 2}


@pytest.mark.slow
def test_two_real_training_runs_compare(ray_session, lake, capsys):
    from test_train import overrides, quiet, training_table

    from raylake.config.loader import compose_config
    from raylake.train.jobs import train

    write_table(lake, "train_set", training_table(3000))
    base = ("train.scaling.num_workers=1", "train.register=false")
    few = train(compose_config(overrides(lake.root, *base, "train.xgboost.num_boost_round=2"),
                               job="train"), echo=quiet)
    many = train(compose_config(overrides(lake.root, *base, "train.xgboost.num_boost_round=20"),
                                job="train"), echo=quiet)
    out = show(lake, "--job", "train", "--sort-by", "test.log_loss")
    assert [r["run_id"] for r in out["runs"]] == sorted(
        [few["run_id"], many["run_id"]],
        key=lambda i: (few if i == few["run_id"] else many)["metrics"]["test"]["log_loss"])
    # Only the changed param differs: everything else of the two configs is the same.
    assert out["params"] == ["train.xgboost.num_boost_round"]
    assert out["inputs"][0] == "train_set"
    assert {r["inputs"]["train_set"] for r in out["runs"]} == {0}
    d = _json(lake, "diff", few["run_id"], many["run_id"])
    assert [p for p in d["params"]] == [{"key": "train.xgboost.num_boost_round", "a": 2, "b": 20}]
    auc = next(m for m in d["metrics"] if m["key"] == "test.auc")
    assert auc["change"] == pytest.approx(many["metrics"]["test"]["auc"]
                                          - few["metrics"]["test"]["auc"])
    assert d["inputs"] == []
    lines = text(lake, capsys, "show", "--metrics", "test.auc").splitlines()
    assert lines[1].split()[2:] == ["train.xgboost.num_boost_round", "test.auc", "in:train_set"]
