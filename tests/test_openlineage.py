"""`raylake lineage export --format openlineage`: RunEvents from real run records in a temp
lake, checked against the vendored OpenLineage schema, written as NDJSON and POSTed to a
local HTTP receiver. The whole `raylake chain` run's events are checked by
`check_chain_export`, called from tests/test_chain.py on the lake its run made."""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pytest
from jsonschema import Draft202012Validator

from raylake.errors import GovernanceError
from raylake.governance.openlineage import (
    endpoint,
    events_of_run,
    export,
    lineage_events,
    parse_since,
    post_events,
    run_uuid,
    validate_event,
)
from raylake.governance.openlineage_schema import SCHEMAS
from raylake.lake.classification import save_classification
from raylake.lake.commit import write_table
from raylake.lake.runs import RunRecorder, get_run, list_runs
from raylake.pii.types import ColumnClass
from raylake.quality.profile import Profile
from raylake.quality.store import save_profiles

EMAILS = ["ann@example.com", "bob@example.org", None, "cy@example.net"]
SECRET = "planted-not-a-redacted-key-7f3a"

FEATURES = {
    "entities": {"airport": {"join_keys": ["origin"]}},
    "feature_views": {"weather": {"source": "weather", "entities": ["airport"],
                                  "timestamp_field": "time_hour",
                                  "features": {"temp": {"type": "float64"},
                                               "visib": {"type": "float64"}}}},
    "on_demand_feature_views": {"weather_derived": {
        "function": "raylake.features.transforms:weather_derived", "sources": ["weather"],
        "request": {}, "features": {"low_visibility": {"type": "bool"}}}},
    "aggregations": {"origin_delay": {
        "source": "flights", "entities": ["airport"], "timestamp_field": "time_hour",
        "column": "dep_delay", "functions": ["mean", "count"], "window": "7d", "step": "1d",
        "output_table": "features/origin_delay_7d"}},
}
TRAINING_SET = {"entity_table": "flights", "entity_columns": ["time_hour", "origin", "dep_delay"],
                "event_timestamp_column": "time_hour", "label_name": "delayed",
                "label": "dep_delay > 15", "drop_columns": ["dep_delay"],
                "full_feature_names": True, "output_table": "training/set",
                "start": None, "end": None}
CONSTRAINTS = {"flights": {"constraints": [
    {"name": "delay_present", "check": "not_null", "column": "dep_delay", "policy": "warn"}]}}


def _times(n: int) -> pa.Array:
    start = dt.datetime(2013, 1, 1, tzinfo=dt.timezone.utc)
    return pa.array([start + dt.timedelta(hours=i) for i in range(n)], pa.timestamp("us", "UTC"))


@pytest.fixture
def runs(lake):
    """ingest (a profile, a classification, constraint results) -> aggregate ->
    training set (entity table + a feature view + an on-demand view) -> a failed train."""
    flights = pa.table({"time_hour": _times(4), "origin": ["EWR", "JFK", "EWR", "LGA"],
                        "dep_delay": [3.0, None, 40.0, -2.0], "email": EMAILS})
    weather = pa.table({"time_hour": _times(4), "origin": ["EWR", "JFK", "LGA", "EWR"],
                        "temp": [30.0, 31.5, 29.0, 28.0], "visib": [10.0, 2.0, 10.0, 9.0]})
    config = {"quality": {"tables": CONSTRAINTS}, "note": SECRET,
              "lake": {"storage_options": {"AWS_SECRET_ACCESS_KEY": SECRET}}}
    with RunRecorder(lake, "ingest", config) as ingest:
        for name, table in (("flights", flights), ("weather", weather)):
            v = write_table(lake, name, table)
            ingest.add_input(kind="files", table=name, files=[f"/data/{name}.csv"],
                             fingerprint="f")
            ingest.add_output(table=name, version=v, rows=table.num_rows, skipped=False)
            save_profiles(lake, name, v, {"": Profile.of(table)}, run_id=ingest.run_id)
        save_classification(lake, "flights", [
            ColumnClass("email", "pii", {"EMAIL_ADDRESS": 1.0}, 3, whole=True),
            ColumnClass("dep_delay", "internal")], run_id=ingest.run_id, table_version=0)
        ingest.metrics["flights"] = {"constraints": [
            {"name": "delay_present", "check": "not_null", "policy": "warn", "passed": False,
             "violations": 1, "observed": 1, "message": "1 row where dep_delay is null",
             "sample": [{"email": EMAILS[1]}]}]}
    with RunRecorder(lake, "aggregate", {"features": FEATURES}) as agg:
        out = pa.table({"origin": ["EWR"], "window_end": _times(1),
                        "dep_delay_mean_7d": [21.5], "dep_delay_count_7d": [2]})
        v = write_table(lake, "features/origin_delay_7d", out)
        agg.add_input(table="flights", version=0, aggregation="origin_delay")
        agg.add_output(table="features/origin_delay_7d", version=v, rows=1, skipped=False)
    with RunRecorder(lake, "training-set", {"features": FEATURES,
                                            "training_set": TRAINING_SET}) as ts:
        ts.add_input(table="flights", version=0, role="entities")
        ts.add_input(table="weather", version=0, role="features", view="weather")
        built = pa.table({"time_hour": _times(3), "origin": ["EWR", "JFK", "LGA"],
                          "delayed": [False, False, True], "weather__temp": [30.0, 31.5, 29.0],
                          "weather_derived__low_visibility": [False, True, False]})
        v = write_table(lake, "training/set", built)
        ts.add_output(table="training/set", version=v, rows=3, skipped=False)
    with pytest.raises(RuntimeError), RunRecorder(lake, "train", {}) as train:
        train.add_input(table="training/set", version=0, role="training-set",
                        run_id=ts.run_id)
        train.add_input(table="flights", version=0, via="training/set")
        raise RuntimeError("xgboost ran out of trees")
    return {"ingest": ingest.run_id, "aggregate": agg.run_id, "training_set": ts.run_id,
            "train": train.run_id}


def _by_run(events):
    out = {}
    for e in events:
        out.setdefault(e["run"]["runId"], []).append(e)
    return out


def _end(events, run_id):
    (end,) = [e for e in _by_run(events)[run_uuid(run_id)] if e["eventType"] != "START"]
    return end


def _dataset(entries, suffix):
    (found,) = [d for d in entries if d["name"].endswith(suffix)]
    return found


def test_each_run_gives_start_then_its_end_and_every_event_validates(lake, runs):
    events = lineage_events(lake, namespace="acme")
    # The core schema as published: a oneOf of the three kinds of event.
    core = Draft202012Validator(json.loads((SCHEMAS / "OpenLineage.json").read_text()))
    for e in events:
        validate_event(e)
        assert not list(core.iter_errors(e))
    by_run = _by_run(events)
    assert set(by_run) == {run_uuid(r) for r in runs.values()}
    for run_id, kinds in [(runs["ingest"], ["START", "COMPLETE"]),
                          (runs["training_set"], ["START", "COMPLETE"]),
                          (runs["train"], ["START", "FAIL"])]:
        mine = by_run[run_uuid(run_id)]
        assert [e["eventType"] for e in mine] == kinds
        assert {e["job"]["namespace"] for e in mine} == {"acme"}
        tags = {t["key"]: t["value"] for t in mine[0]["run"]["facets"]["tags"]["tags"]}
        assert tags["raylake.run_id"] == run_id
    # Time order, a run's START before its end; the run id is a UUID, the same next time.
    times = [e["eventTime"] for e in events]
    assert times == sorted(times, key=lambda t: dt.datetime.fromisoformat(t.replace("Z", "+00:00")))
    assert uuid.UUID(run_uuid(runs["ingest"])).version == 5
    assert [e["run"]["runId"] for e in lineage_events(lake)] == [e["run"]["runId"] for e in events]


def test_datasets_carry_version_schema_profile_classification_and_checks(lake, runs):
    end = _end(lineage_events(lake), runs["ingest"])
    flights = _dataset(end["outputs"], "/flights")
    assert flights["namespace"] == "file" and flights["name"] == f"{lake.root}/flights"
    facets = flights["facets"]
    assert facets["version"]["datasetVersion"] == "0"
    assert [f["name"] for f in facets["schema"]["fields"]] == ["time_hour", "origin",
                                                               "dep_delay", "email"]
    assert facets["symlinks"]["identifiers"] == [
        {"namespace": Path(lake.root).as_uri(), "name": "flights", "type": "TABLE"}]
    assert {"key": "classification", "value": "pii", "source": "raylake",
            "field": "email"} in facets["tags"]["tags"]
    assert flights["outputFacets"]["outputStatistics"]["rowCount"] == 4
    # The profile ingest stored of the version it wrote: counts; no value statistics of
    # the pii column; a numeric column's range.
    dq = facets["dataQualityMetrics"]
    assert dq["rowCount"] == 4
    assert dq["columnMetrics"]["dep_delay"]["nullCount"] == 1
    assert dq["columnMetrics"]["dep_delay"]["min"] == -2.0
    assert dq["columnMetrics"]["dep_delay"]["max"] == 40.0
    assert dq["columnMetrics"]["email"] == {"nullCount": 1, "distinctCount": 3}
    # The constraint results sit on the files the checked rows came from.
    source = _dataset(end["inputs"], "/data/flights.csv")
    (check,) = source["inputFacets"]["dataQualityAssertions"]["assertions"]
    assert check["success"] is False and check["column"] == "dep_delay"
    assert check["assertion"] == "not_null" and check["severity"] == "warn"


def test_nothing_of_the_config_or_the_data_leaves_but_counts(lake, runs, tmp_path):
    text = json.dumps(lineage_events(lake))
    assert SECRET not in text  # the config is never emitted, redacted or not
    assert not any(e in text for e in EMAILS if e)  # no frequent items, no check samples


def test_column_lineage_of_a_training_set_and_an_aggregation(lake, runs):
    events = lineage_events(lake)
    built = _dataset(_end(events, runs["training_set"])["outputs"], "/training/set")
    lineage = built["facets"]["columnLineage"]
    fields = {col: [(Path(i["name"]).name, i["field"], i["transformations"][0]["subtype"])
                    for i in f["inputFields"]] for col, f in lineage["fields"].items()}
    assert fields["origin"] == [("flights", "origin", "IDENTITY")]
    assert fields["weather__temp"] == [("weather", "temp", "IDENTITY")]
    assert fields["delayed"] == [("flights", "dep_delay", "TRANSFORMATION")]
    assert set(fields["weather_derived__low_visibility"]) == {
        ("weather", "temp", "TRANSFORMATION"), ("weather", "visib", "TRANSFORMATION")}
    assert "dep_delay" not in fields  # dropped from the training set
    joins = {(Path(i["name"]).name, i["field"]) for i in lineage["dataset"]
             if i["transformations"][0]["subtype"] == "JOIN"}
    assert joins == {("flights", "origin"), ("weather", "origin")}

    agg = _dataset(_end(events, runs["aggregate"])["outputs"], "/features/origin_delay_7d")
    fields = agg["facets"]["columnLineage"]["fields"]
    (mean,) = fields["dep_delay_mean_7d"]["inputFields"]
    assert (Path(mean["name"]).name, mean["field"]) == ("flights", "dep_delay")
    assert mean["transformations"][0]["subtype"] == "AGGREGATION"


def test_a_failed_run_ends_in_fail_with_its_error(lake, runs):
    end = _end(lineage_events(lake), runs["train"])
    assert end["eventType"] == "FAIL"
    error = end["run"]["facets"]["errorMessage"]
    assert error["message"] == get_run(lake, runs["train"])["error"]
    assert "xgboost ran out of trees" in error["message"]
    assert error["programmingLanguage"] == "PYTHON"
    # What it read: the training set, not the tables behind it (those are the set's inputs).
    assert [Path(d["name"]).name for d in end["inputs"]] == ["set"]
    assert end["inputs"][0]["facets"]["version"]["datasetVersion"] == "0"


def test_a_run_still_running_gives_only_start(lake):
    RunRecorder(lake, "profile", {}).__enter__()  # started, never ended
    (record,) = list_runs(lake)
    assert [e["eventType"] for e in events_of_run(lake, record)] == ["START"]


def test_a_ct_run_is_the_parent_of_the_runs_it_started(lake, runs):
    with RunRecorder(lake, "ct", {}) as ct:
        ct.metrics.update(training_set={"table": "training/set", "version": 0,
                                        "run_id": runs["training_set"]},
                          train_run=runs["train"])
    events = lineage_events(lake)
    for child in ("training_set", "train"):
        parent = _end(events, runs[child])["run"]["facets"]["parent"]
        assert parent["run"]["runId"] == run_uuid(ct.run_id)
        assert parent["job"] == {"namespace": "raylake", "name": "ct"}
    assert "parent" not in _end(events, runs["ingest"])["run"]["facets"]


def test_since_keeps_runs_started_then_or_later(lake, runs):
    later = get_run(lake, runs["training_set"])["started_at"]
    kept = {e["run"]["runId"] for e in lineage_events(lake, since=later)}
    assert kept == {run_uuid(runs["training_set"]), run_uuid(runs["train"])}
    assert parse_since("2026-05-01") == dt.datetime(2026, 5, 1, tzinfo=dt.timezone.utc)
    with pytest.raises(Exception, match="not an ISO 8601 time"):
        parse_since("last tuesday")


def test_validate_event_names_what_is_wrong(lake, runs):
    good = _end(lineage_events(lake), runs["ingest"])

    def broken(change):
        event = json.loads(json.dumps(good))
        change(event)
        return event

    cases = [
        (lambda e: e["run"].update(runId="ingest-1"), "is not a 'uuid'"),
        (lambda e: e.update(eventType="DONE"), "'DONE' is not one of"),
        (lambda e: e["run"]["facets"].update(mine={"_producer": "urn:x", "_schemaURL": "urn:y"}),
         "run.facets.mine is not a facet of a vendored schema"),
        (lambda e: e["outputs"][0]["facets"]["version"].pop("datasetVersion"),
         "'datasetVersion' is a required property"),
        (lambda e: e["outputs"][0]["facets"]["schema"]["fields"][0].update(ordinal_position="1"),
         "outputs[0].facets.schema.fields.0.ordinal_position: '1' is not of type 'integer'"),
        (lambda e: e["job"]["facets"]["jobType"].update(_schemaURL="urn:other"),
         "the vendored schema is"),
        (lambda e: e.update(producer="raylake 0.1"), "is not a 'uri'"),
    ]
    for change, message in cases:
        with pytest.raises(GovernanceError, match="does not validate|vendored schema") as err:
            validate_event(broken(change))
        assert message in str(err.value), (message, str(err.value))


def test_vendored_schemas_name_their_source():
    readme = (SCHEMAS / "README.md").read_text()
    assert "8f02abfb7a252783b95df79f443edb13959bf52c" in readme and "Apache-2.0" in readme
    assert "Apache License" in (SCHEMAS / "LICENSE").read_text()


# -- a local OpenLineage receiver -----------------------------------------------------


class Receiver:
    """An HTTP server on a free local port that keeps each JSON body POSTed to
    /api/v1/lineage and answers ``status``."""

    def __init__(self, status: int = 201) -> None:
        received, paths, headers = [], [], []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                paths.append(self.path)
                headers.append(dict(self.headers))
                if status < 300:
                    received.append(json.loads(body))
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b'{"error": "planted"}' if status >= 300 else b"")

            def log_message(self, *args):
                pass

        self.received, self.paths, self.headers = received, paths, headers
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_events_are_posted_to_a_receiver(lake, runs, monkeypatch):
    monkeypatch.setenv("OPENLINEAGE_API_KEY", "token-1")
    with Receiver() as rx:
        done = export(lake, namespace="raylake", url=rx.url, timeout_s=5)
    assert done == {"events": 8, "runs": 4, "to": f"{rx.url}/api/v1/lineage"}
    assert rx.received == lineage_events(lake)
    assert set(rx.paths) == {"/api/v1/lineage"}
    assert {h["Authorization"] for h in rx.headers} == {"Bearer token-1"}
    assert endpoint(f"{rx.url}/api/v1/lineage/") == f"{rx.url}/api/v1/lineage"


def test_a_receiver_that_refuses_or_is_not_there_is_an_error(lake, runs):
    events = lineage_events(lake)
    with Receiver(status=500) as rx, pytest.raises(GovernanceError) as err:
        post_events(events, rx.url, timeout_s=5)
    assert f"POST {rx.url}/api/v1/lineage answered 500" in str(err.value)
    assert "0 events sent before it" in str(err.value) and "planted" in str(err.value)
    with Receiver() as gone:
        url = gone.url
    with pytest.raises(GovernanceError, match=f"Cannot POST to {url}/api/v1/lineage"):
        post_events(events, url, timeout_s=5)
    with pytest.raises(GovernanceError, match="is not an HTTP URL"):
        post_events(events, "localhost:5000")


def test_cli_writes_ndjson_and_refuses_an_unknown_format(lake, runs, tmp_path, capsys):
    from raylake.cli import main

    out = tmp_path / "out" / "events.ndjson"
    assert main(["lineage", "export", "--format", "openlineage", "--output", str(out),
                 f"lake.root={lake.root}"]) == 0
    lines = out.read_text().splitlines()
    assert [json.loads(line) for line in lines] == lineage_events(lake)
    assert f"exported 8 OpenLineage events of 4 runs to {out}" in capsys.readouterr().out

    assert main(["lineage", "export", "--format", "marquez", f"lake.root={lake.root}"]) == 2
    err = capsys.readouterr().err
    assert "Unknown lineage export format 'marquez'" in err and "openlineage" in err
    assert main(["lineage", "export", "--since", "yesterday", f"lake.root={lake.root}"]) == 2
    assert "--since 'yesterday' is not an ISO 8601 time" in capsys.readouterr().err


# -- the whole chain (called by tests/test_chain.py on its lake) -----------------------

CHAIN_JOBS = {"ingest", "profile", "aggregate", "features-apply", "training-set", "train",
              "materialize"}


def check_chain_export(lake) -> None:
    """Every run of a `raylake chain` run as OpenLineage events: each validates, a local
    receiver gets them all, and they carry the chain's lineage from source files through
    the training set (its columns from the feature tables) to the model."""
    with Receiver() as rx:
        done = export(lake, namespace="raylake", url=rx.url, timeout_s=10)
    records = list_runs(lake)
    assert {r["job"] for r in records} >= CHAIN_JOBS, {r["job"] for r in records}
    ended = [r for r in records if r["status"] != "running"]
    assert done["events"] == len(records) + len(ended) == len(rx.received)
    for event in rx.received:
        validate_event(event)
    by_run = _by_run(rx.received)
    for r in records:
        kinds = [e["eventType"] for e in by_run[run_uuid(r["run_id"])]]
        assert kinds == ["START", {"succeeded": "COMPLETE", "skipped": "COMPLETE",
                                   "failed": "FAIL"}[r["status"]]], (r["job"], kinds)

    def end_of(job):
        (record,) = [r for r in records if r["job"] == job]
        return _end(rx.received, record["run_id"])

    flights = _dataset(end_of("ingest")["outputs"], "/flights")
    assert flights["facets"]["dataQualityMetrics"]["rowCount"] == lake.count("flights")
    assert any(d["facets"]["datasetType"]["datasetType"] == "FILE"
               for d in end_of("ingest")["inputs"])
    built = _dataset(end_of("training-set")["outputs"], "/training/flights_delay")
    fields = built["facets"]["columnLineage"]["fields"]
    (temp,) = fields["weather__temp"]["inputFields"]
    assert (temp["name"], temp["field"]) == (f"{lake.root}/weather", "temp")
    trained = end_of("train")
    assert _dataset(trained["inputs"], "/training/flights_delay")["facets"]["version"]
    assert _dataset(trained["outputs"], "/_model_artifacts/delay_model")["facets"][
        "datasetType"]["datasetType"] == "MODEL"
