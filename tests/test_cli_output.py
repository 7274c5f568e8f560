"""What a person sees on the terminal (issue 20): readable run and model summaries, Ray's
own lines routed to a log file, progress only where someone watches, one line per
training round or Tune trial, Ctrl-C without a traceback, and the quality report's
pictures (axes, bounds, why there is no drift, what a drift verdict leaves out).
No Ray here: the console's routing is checked on its parts and on a Ray-named logger."""

from __future__ import annotations

import json
import logging
import re

import pytest

from raylake.cli import main
from raylake.cli.summaries import (
    flatten,
    metrics_inline,
    model_summary,
    num,
    outputs_text,
    run_summary,
)

TRAIN_METRICS = {
    "test": {"accuracy": 0.7852597797819952, "auc": 0.7031076179639757,
             "log_loss": 0.48032703763246365, "cost_per_1000": 12921.30065106328,
             "rows": 54219},
    "valid": {"auc": 0.7026632217655441, "log_loss": 0.39296314276366207},
    "timings": {"fit_s": 21.01, "plan_s": 1.2},
    "features": ["distance", "hour"],
}
MATERIALIZE_OUT = {"online_store": "sqlite", "end": "2026-12-03T09:22:54+00:00",
                   "views": {"weather": {"table": "weather", "version": 0, "rows": 3},
                             "plane": {"table": "planes", "version": 0, "rows": 3322}}}
LONG_FLOAT = re.compile(r"\d\.\d{6,}")


# -- summaries ----------------------------------------------------------------------------


def test_numbers_have_four_significant_digits():
    assert num(0.7031076179639757) == "0.7031"
    assert num(12921.30065106328) == "12,920"
    assert num(54219) == "54219" and num(None) == "None"
    assert flatten({"a": {"b": 1.5, "c": [1]}, "d": "x"}) == {"a.b": 1.5, "d": "x"}


def test_models_list_metrics_are_short_and_flat():
    text = metrics_inline(TRAIN_METRICS)
    assert text == "test: auc=0.7031 log_loss=0.4803 accuracy=0.7853 rows=54219"
    assert "{" not in text and not LONG_FLOAT.search(text)


def test_runs_list_names_what_a_materialize_run_wrote():
    text = outputs_text([MATERIALIZE_OUT])
    assert "None" not in text
    assert text == "online store sqlite: 2 views (weather, plane)"
    assert outputs_text([{"model": "delay_model", "version": 1, "stage": "candidate"},
                         {"table": "flights", "version": 3}]) == \
        "model delay_model v1 (candidate), flights@3"


def test_run_summary_puts_inputs_outputs_and_key_metrics_first():
    record = {"run_id": "train-1", "job": "train", "status": "succeeded", "duration_s": 38.551311,
              "started_at": "2026-12-03 09:22:15.5+00:00", "host": "vm",
              "config": {"train": {"seed": 1}, **{f"k{i}": i for i in range(500)}},
              "inputs": [{"table": "training/flights_delay", "version": 0,
                          "role": "training-set"}],
              "outputs": [{"model": "delay_model", "version": 1, "stage": "candidate"}],
              "metrics": TRAIN_METRICS, "error": None}
    lines = run_summary(record)
    assert lines[0] == ("run train-1 (train): succeeded in 38.55s, started 2026-12-03 "
                        "09:22:15 on vm")
    text = "\n".join(lines)
    assert len(lines) < 20 and "k499" not in text
    assert text.index("inputs") < text.index("outputs") < text.index("metrics")
    assert "training/flights_delay@0  [role=training-set]" in text
    assert "model delay_model v1 (candidate)" in text
    assert "test.auc 0.7031" in text and not LONG_FLOAT.search(text)
    assert "--full" in lines[-1]


def test_model_summary_is_short():
    mv = {"name": "delay_model", "version": 2, "stage": "champion", "flavor": "xgboost",
          "created_at": "2026-12-03 09:22:54.06+00:00", "run_id": "train-1",
          "training": {"table": "training/flights_delay", "version": 0,
                       "inputs": [{"table": "flights", "version": 0, "role": "entities"}]},
          "features": [{"name": f"f{i}"} for i in range(22)], "metrics": TRAIN_METRICS,
          "config": {f"k{i}": i for i in range(900)},
          "history": [{"stage": "candidate", "previous_stage": None, "at": "2026-12-03 09:22:54",
                       "reason": "registered"}]}
    lines = model_summary(mv)
    text = "\n".join(lines)
    assert lines[0].startswith("delay_model:2  stage champion  flavor xgboost")
    assert "training set training/flights_delay@0 (from flights@0)" in text
    assert "features (22): f0, f1" in text and "+14" in text
    assert len(lines) < 20 and "k899" not in text and not LONG_FLOAT.search(text)


@pytest.fixture
def run_lake(tmp_path):
    """A lake with two recorded runs (no Ray): a train run and a materialize run."""
    from raylake.lake import Lake, Storage
    from raylake.lake.runs import RunRecorder

    lake = Lake(Storage.from_config(str(tmp_path / "lake")))
    with RunRecorder(lake, "train", {"train": {"seed": 7}}) as run:
        run.add_input(table="training/flights_delay", version=0, role="training-set")
        run.add_output(model="delay_model", version=1, stage="candidate")
        run.metrics.update(TRAIN_METRICS)
    with RunRecorder(lake, "materialize", {"online": {"type": "sqlite"}}) as mat:
        mat.add_output(**MATERIALIZE_OUT)
    return lake, run.run_id


def test_runs_commands_on_a_lake(run_lake, capsys):
    lake, run_id = run_lake
    root = f"lake.root={lake.root}"
    assert main(["runs", "list", root]) == 0
    listing = capsys.readouterr().out
    assert "None@None" not in listing and "online store sqlite: 2 views" in listing

    assert main(["runs", "show", run_id, root]) == 0
    summary = capsys.readouterr().out
    assert summary.startswith(f"run {run_id} (train): succeeded")
    assert "seed" not in summary  # the config is behind --full

    assert main(["runs", "show", run_id, "--full", root]) == 0
    full = capsys.readouterr().out
    assert full.startswith(f"run {run_id}") and "seed: 7" in full and "timings.fit_s 21.01" in full

    assert main(["runs", "show", run_id, "--json", root]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["train"]["seed"] == 7


# -- the console: Ray's lines to a file, progress, training rounds, Tune trials -----------


def test_progress_is_off_in_tests_unless_asked():
    from raylake.runtime import wants_progress

    assert wants_progress(None) is False  # under pytest (and off a terminal)
    assert wants_progress(True) is True and wants_progress(False) is False


def test_log_file_location(tmp_path):
    from raylake.runtime import log_path

    assert log_path(None, str(tmp_path / "lake"), "chain").parent == tmp_path / "lake" / "_logs"
    assert log_path(None, "s3://bucket/lake", "ingest").parent.as_posix() == ".raylake/logs"
    assert log_path(str(tmp_path / "logs"), "lake", "train").name.startswith("train-")


def test_worker_lines_are_sorted_for_the_terminal():
    from ray.experimental.tqdm_ray import RAY_TQDM_MAGIC

    from raylake.runtime import MARK, line_level, sort_worker_lines

    lines = [
        "Reporting training result 1: TrainingReport(checkpoint=None, metrics={'round': 25})",
        "INFO 2026-12-03 09:23:02,544 proxy 192.0.2.2 -- Proxy starting on node 7aef",
        "[2026-12-03 09:22:31,986 E 11207 11244] core_worker.cc:2465: Actor with class name",
        "ERROR 2026-12-03 09:23:03 replica -- the model file is missing",
        MARK + "   round 25/100: valid AUC 0.7053, log loss 0.3928 (1.9s)",
        RAY_TQDM_MAGIC + '{"x": 1}',
    ]
    assert [line_level(line) for line in lines[:4]] == [logging.INFO, logging.INFO,
                                                        logging.INFO, logging.ERROR]
    ours, shown = sort_worker_lines(lines, logging.ERROR)
    assert ours == ["   round 25/100: valid AUC 0.7053, log loss 0.3928 (1.9s)"]
    assert shown == [lines[3]]
    ours, shown = sort_worker_lines(lines, logging.INFO)  # a worker's own bars: never
    assert len(ours) == 1 and shown == lines[:4]


def test_ray_loggers_go_to_the_file_and_only_errors_to_the_terminal(tmp_path, capsys):
    import io

    from raylake.runtime import close_console, configure_console, console

    logger = logging.getLogger("ray.raylake_test")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    log_file = tmp_path / "logs" / "x.log"
    try:
        configure_console(progress=False, level="ERROR", log_file=log_file)
        assert console().log_file == str(log_file)
        logger.info("Started training worker group of size 2")
        logger.error("the head is gone")
        assert stream.getvalue() == "the head is gone\n"
        text = log_file.read_text()
        assert "Started training worker group" in text and "the head is gone" in text
        close_console()
        logger.info("after close")
        assert "after close" in stream.getvalue() and console().log_file is None
    finally:
        close_console()
        logger.removeHandler(handler)


def test_progress_switch_reaches_ray_data():
    import ray.data

    from raylake import runtime

    ctx = ray.data.DataContext.get_current()
    saved = ctx.enable_progress_bars
    try:
        runtime._CONSOLE.progress = True
        runtime.quiet_ray_data()
        assert ctx.enable_progress_bars is True
        runtime._CONSOLE.progress = False
        runtime.quiet_ray_data()
        assert ctx.enable_progress_bars is False
    finally:
        runtime._CONSOLE.progress = False
        ctx.enable_progress_bars = saved


def test_one_line_per_round_and_per_trial(capsys, monkeypatch):
    from raylake.runtime import MARK
    from raylake.train.steps import ROUNDS_ENV, print_round, round_line
    from raylake.train.tune import trial_line

    line = round_line("round", 25, 100, {"round": 25, "valid_auc": 0.7053193049790624,
                                         "valid_logloss": 0.39277307399936634,
                                         "_placement_group": "x"}, 1.93)
    assert line == "   round 25/100: valid AUC 0.7053, log loss 0.3928 (1.9s)"
    print_round("epoch", 1, 3, {"train_loss": 0.51234, "valid_auc": 0.6}, 2.0)
    assert capsys.readouterr().out == MARK + "   epoch 1/3: valid AUC 0.6, train loss 0.5123 (2.0s)\n"
    monkeypatch.setenv(ROUNDS_ENV, "0")  # inside a Tune trial's runs: nothing
    print_round("epoch", 1, 3, {"train_loss": 0.5}, 2.0)
    assert capsys.readouterr().out == ""

    text = trial_line("abc_00001", "completed", {"valid_auc": 0.70612345, "round": 100},
                      {"xgboost.params.eta": 0.1234567}, "valid_auc", "round")
    assert text == ("   trial abc_00001 completed: valid_auc 0.7061 after 100 rounds "
                    "(xgboost.params.eta=0.1235)")
    assert "TrainingReport" not in text


def test_ctrl_c_ends_a_server_and_a_job_without_a_traceback(monkeypatch, capsys):
    import time

    from raylake import cli
    from raylake.runtime import serve_until_stopped

    def interrupted(_seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(time, "sleep", interrupted)
    serve_until_stopped()  # returns: the serve job then shuts its apps down

    class Spec:
        def __call__(self, cfg):
            raise KeyboardInterrupt

    monkeypatch.setattr(cli, "get_job", lambda name: Spec())
    monkeypatch.setattr(cli, "_console", lambda cfg, job: None)
    assert cli.run_job("serve", []) == 1
    err = capsys.readouterr().err
    assert "raylake serve: interrupted" in err and "Traceback" not in err


def test_log_level_and_progress_are_typed_config():
    from raylake.config.loader import compose_config, to_config
    from raylake.errors import RaylakeError

    conf = to_config(compose_config(["log_level=INFO", "progress=true", "log_dir=/tmp/x"]))
    assert conf.log_level.value == "INFO" and conf.progress is True and conf.log_dir == "/tmp/x"
    assert to_config(compose_config([])).log_level.value == "ERROR"
    with pytest.raises((RaylakeError, Exception)):
        to_config(compose_config(["log_level=LOUD"]))


# -- the quality report's pictures ------------------------------------------------------------


def test_bounds_print_as_words():
    from raylake.quality.constraints import bounds_text

    assert bounds_text(1.0, None) == ">= 1"
    assert bounds_text(None, 90.0) == "<= 90"
    assert bounds_text(0, 1.5) == "[0, 1.5]"


def test_drift_leaves_out_what_the_selection_is_made_on():
    from raylake.quality.report import drift_exclusions

    types = {"month": "int8", "time_hour": "timestamp[us, tz=UTC]", "temp": "double",
             "origin": "string"}
    out = drift_exclusions(["month in [1]", "month in [7]"], types)
    assert set(out) == {"month", "time_hour"}
    assert "selection is made on it" in out["month"] and "month" in out["time_hour"]
    window = drift_exclusions(["time_hour < '2013-07-01'", None], types)
    assert set(window) == {"time_hour", "month"}
    assert drift_exclusions([None, None], types) == {}


def _profile(values):
    import pyarrow as pa

    from raylake.quality.profile import Profile

    return Profile.of(pa.table(values))


def test_report_histograms_have_axes_and_version_0_says_why_no_drift():
    from raylake.quality.report import build_report, render_html, tick

    prof = _profile({"temp": [float(i % 90) for i in range(500)], "origin": ["JFK", "EWR"] * 250})
    report = build_report("weather", 0, prof, [], no_drift="version 0 is the first profiled "
                          "version of weather, so there is no earlier profile to compare it with.")
    page = render_html(report)
    assert report["drift"] is None and "No drift section: version 0 is the first" in page
    assert "axis-x" in page and ">0%<" in page  # tick values on both axes
    assert tick(1400.0) == "1400" and tick(12345.6) == "12,350" and tick(0.25) == "0.25"
    assert tick(1.357e9, "time") == "2013-01-01"


def test_report_says_which_columns_the_verdict_leaves_out():
    from raylake.quality.drift import compare
    from raylake.quality.report import build_report, render_html

    ref = _profile({"temp": [float(i % 40) for i in range(400)], "month": [1] * 400})
    cur = _profile({"temp": [float(i % 40 + 30) for i in range(400)], "month": [7] * 400})
    drift = compare(ref, cur, columns=["temp"])
    excluded = {"month": "the selection is made on it (month in [1])"}
    report = build_report("weather", 3, cur, [], drift, ref, cur,
                          {"reference": "month in [1]", "current": "month in [7]"},
                          excluded=excluded)
    assert report["drift"]["excluded"] == excluded
    assert [c["column"] for c in report["drift"]["columns"]] == ["temp"]
    page = render_html(report)
    assert "Not in the verdict (1 columns" in page and "month in [1]" in page


def test_every_job_entry_point_finds_raylake_in_its_tree():
    """jobs/*.py run on a cluster without raylake installed: each imports jobs/_tree.py
    (the submitted src/ first on sys.path) before raylake."""
    from conftest import REPO

    for path in sorted((REPO / "jobs").glob("*.py")):
        if path.name == "_tree.py":
            continue
        text = path.read_text()
        assert "import _tree" in text, path.name
        assert text.index("import _tree") < text.index("from raylake"), path.name


def test_a_submitted_driver_gives_its_workers_the_tree(monkeypatch, tmp_path):
    """runtime.package_env: inside `ray job submit` with raylake from a source tree, the
    job's workers get that tree's src/ on PYTHONPATH (relative to the working directory
    Ray starts them in), or py_modules for a tree outside it; nothing otherwise."""
    from conftest import REPO

    from raylake.runtime import JOB_CONFIG_ENV, package_env

    monkeypatch.delenv(JOB_CONFIG_ENV, raising=False)
    assert package_env() == {}  # not a submitted job
    monkeypatch.setenv(JOB_CONFIG_ENV, json.dumps(
        {"runtime_env": {"working_dir": "gcs://_ray_pkg_x.zip", "excludes": ["/lake"]}}))
    monkeypatch.chdir(REPO)
    assert package_env() == {"env_vars": {"PYTHONPATH": "src"}}
    monkeypatch.chdir(tmp_path)
    assert package_env() == {"py_modules": [str(REPO / "src" / "raylake")]}
    monkeypatch.chdir(REPO)
    monkeypatch.setenv(JOB_CONFIG_ENV, json.dumps(
        {"runtime_env": {"env_vars": {"PYTHONPATH": "lib"}}}))
    assert package_env() == {}  # the job's own PYTHONPATH wins; Ray would refuse both


def test_serve_lines_logged_before_its_handler_is_gated_stay_off_the_terminal(tmp_path):
    """Serve adds its terminal handler inside serve.start, after the console is set up:
    a filter on the logger itself keeps its INFO lines ("Started Serve ...") in the file."""
    import io

    from raylake.runtime import close_console, configure_console

    log_file = tmp_path / "serve.log"
    logger = logging.getLogger("ray.serve")
    saved = logger.propagate, logger.level
    try:
        configure_console(progress=False, level="ERROR", log_file=log_file)
        stream = io.StringIO()
        late = logging.StreamHandler(stream)  # what serve.start adds
        logger.addHandler(late)
        logger.propagate = False
        logger.setLevel(logging.INFO)
        logger.info('Started Serve in namespace "serve".')
        assert stream.getvalue() == "" and "Started Serve" in log_file.read_text()
    finally:
        close_console()
        logger.removeHandler(late)
        logger.propagate, logger.level = saved
