"""The job runner and the job registry, without Ray (jobs declared with ray=False)."""

from __future__ import annotations

import re

import pytest

from raylake.config.loader import compose_config
from raylake.errors import ConfigError, JobError, ValidationError
from raylake.lake import Lake, Storage, get_run, list_runs
from raylake.runner import JobContext, declared, get_job, job, jobs
from raylake.runner.registry import register


def _config(root: str, *overrides: str):
    return compose_config([f"lake.root={root}", *overrides], job="admin")


@job("test-runner-ok", help="a job for the runner's tests", ray=False)
def ok_job(ctx: JobContext, *, rows: int = 3) -> dict:
    ctx.record.add_output(table="nowhere", version=0, rows=rows)
    ctx.echo("working")
    return {"rows": rows, "summary": f"ok: {rows} rows (run {ctx.record.run_id})"}


@job("test-runner-crash", help="a job that hits a bug", ray=False)
def crash_job(ctx: JobContext) -> dict:
    return {"x": 1 / 0}


@job("test-runner-refuses", help="a job whose own check refuses", ray=False,
     check=lambda conf: (_ for _ in ()).throw(ConfigError("set table=<name>")))
def refusing_job(ctx: JobContext) -> dict:
    raise AssertionError("the check runs first")


@job("test-runner-norecord", help="a job that keeps no run record", ray=False, record=False)
def norecord_job(ctx: JobContext) -> dict:
    assert ctx.run is None
    return {"summary": ["line one", "line two"]}


def test_runner_records_the_run_and_prints_the_summary_after_it(tmp_path):
    printed: list[str] = []
    out = ok_job(_config(str(tmp_path / "lake"), "table=flights"), echo=printed.append, rows=7)
    assert out["rows"] == 7 and out["status"] == "succeeded" and "summary" not in out
    assert printed == ["working", f"ok: 7 rows (run {out['run_id']})"]
    lake = Lake(Storage.from_config(str(tmp_path / "lake")))
    record = get_run(lake, out["run_id"])
    assert record["job"] == "test-runner-ok" and record["status"] == "succeeded"
    assert record["outputs"] == [{"table": "nowhere", "version": 0, "rows": 7}]
    # The resolved config is recorded, interpolations resolved and Enums as names.
    assert record["config"]["table"] == "flights"
    assert record["config"]["lake"]["root"] == str(tmp_path / "lake")
    assert record["config"]["dataset"]["tables"]["flights"]["mode"] == "append"


def test_a_foreign_exception_becomes_a_job_error_naming_the_job_and_its_failed_run(tmp_path):
    with pytest.raises(JobError, match=r"job test-runner-crash failed: ZeroDivisionError: "
                                       r"division by zero\. The run is recorded as failed"):
        crash_job(_config(str(tmp_path / "lake")), echo=lambda *_: None)
    lake = Lake(Storage.from_config(str(tmp_path / "lake")))
    (record,) = list_runs(lake, "test-runner-crash")
    assert record["status"] == "failed" and "ZeroDivisionError" in record["error"]


def test_raylake_debug_reraises_the_original(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYLAKE_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        crash_job(_config(str(tmp_path / "lake")), echo=lambda *_: None)


def test_a_jobs_check_refuses_before_the_lake_is_touched(tmp_path):
    with pytest.raises(ConfigError, match="set table=<name>"):
        refusing_job(_config(str(tmp_path / "lake")), echo=lambda *_: None)
    assert not (tmp_path / "lake").exists()


def test_record_false_keeps_no_run_and_prints_summary_lines(tmp_path):
    printed: list[str] = []
    out = norecord_job(_config(str(tmp_path / "lake")), echo=printed.append)
    assert printed == ["line one", "line two"] and "run_id" not in out
    assert list_runs(Lake(Storage.from_config(str(tmp_path / "lake")))) == []


def test_raylake_errors_pass_through_unwrapped(tmp_path):
    @job("test-runner-invalid", help="raises a raylake error", ray=False)
    def invalid(ctx: JobContext) -> dict:
        raise ValidationError("flights@0 breaks 1 constraint")

    with pytest.raises(ValidationError, match="breaks 1 constraint"):
        invalid(_config(str(tmp_path / "lake")), echo=lambda *_: None)


def test_the_registry_lists_every_domains_jobs_from_source_as_the_modules_declare_them():
    listed = declared()
    loaded = jobs()
    assert list(listed) == [n for n in loaded if not n.startswith("test-")]
    assert all(loaded[n].help == listed[n].help and loaded[n].fn.__module__ == listed[n].module
               for n in listed)
    assert {"chain", "ingest", "profile", "train", "tune", "serve", "batch-predict",
            "materialize", "ab-report"} <= set(listed)
    # jobs.py, or jobs_<part>.py where a domain splits its jobs (labeling/jobs_loop.py)
    assert all(re.fullmatch(r"raylake\.\w+\.jobs(_\w+)?", d.module) for d in listed.values())
    with pytest.raises(ConfigError, match="Did you mean 'ingest'"):
        get_job("ingset")


def test_two_jobs_of_one_name_in_different_modules_are_refused():
    spec = get_job("ingest")
    clash = type(spec)(name="ingest", help="", fn=type("F", (), {"__module__": "x.jobs"}))
    with pytest.raises(ValueError, match="job 'ingest' is defined in raylake.ingest.jobs and x.jobs"):
        register(clash)
