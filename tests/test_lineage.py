"""`raylake lineage`: upstream from an answer to the source files, downstream from a
table version to models, predictions and answers, over real run records."""

from __future__ import annotations

import datetime as dt
import json
import subprocess

import numpy as np
import pyarrow as pa
import pytest
import xgboost as xgb
from conftest import PYTHON, REPO, subprocess_env

from raylake.errors import ConfigError, TableNotFoundError
from raylake.lake.commit import write_table
from raylake.lake.runs import RunRecorder
from raylake.lineage import Lineage, Node, parse_ref, render
from raylake.models.registry import ModelRegistry
from raylake.serve.request_log import SCHEMA


@pytest.fixture
def chain(lake):
    """ingest (two tables) -> training set -> train + register -> batch predict, answers."""
    with RunRecorder(lake, "ingest", {}) as run:
        for name, source in (("flights", "/data/flights.csv"), ("weather", "/data/weather.csv")):
            v = write_table(lake, name, pa.table({"x": [1.0, 2.0, 3.0, 4.0]}))
            run.add_input(kind="files", table=name, files=[source], fingerprint="f-" + name)
            run.add_output(table=name, version=v, rows=4)
    write_table(lake, "flights", pa.table({"x": [5.0]}))  # v1, read by nobody
    with RunRecorder(lake, "training-set", {}) as ts:
        ts.add_input(table="flights", version=0, view="flights")
        ts.add_input(table="weather", version=0, view="weather")
        v = write_table(lake, "training/set", pa.table({"x": [1.0, 2.0], "y": [0, 1]}))
        ts.add_output(table="training/set", version=v, rows=2)
    booster = xgb.train({"objective": "binary:logistic", "nthread": 1},
                        xgb.DMatrix(np.array([[1.0], [2.0]]), label=[0, 1]), 2)
    with RunRecorder(lake, "train", {}) as tr:
        tr.add_input(table="training/set", version=0, role="training-set", run_id=ts.run_id)
        tr.add_input(table="flights", version=0, via="training/set")
        mv = ModelRegistry(lake).register(
            "m", booster, flavor="xgboost", features=[("x", "float")],
            training={"table": "training/set", "version": 0}, config={}, metrics={},
            run_id=tr.run_id)
        tr.add_output(model="m", version=mv.version, stage=mv.stage)
    with RunRecorder(lake, "batch-predict", {}) as bp:
        bp.add_input(table="flights", version=1, role="rows")
        bp.add_input(model="m", version=1, role="model")
        v = write_table(lake, "predictions/m", pa.table({"prediction": [0.5]}))
        bp.add_output(table="predictions/m", version=v, rows=1)
    at = dt.datetime(2026, 11, 27, tzinfo=dt.timezone.utc)
    rows = [{"request_id": "req-1", "at": at, "arm": "main", "model_name": "m",
             "model_version": 1, "shadow": False, "status": 200, "rows": 1, "latency_ms": 1.0}]
    write_table(lake, "serving/requests", pa.Table.from_pylist(rows, schema=SCHEMA))
    return {"ingest": run.run_id, "training_set": ts.run_id, "train": tr.run_id,
            "batch": bp.run_id}


def flatten(tree) -> list[tuple[str, str | None]]:
    out = [(str(tree.node), tree.run["run_id"] if tree.run else None)]
    for c in tree.children:
        out += flatten(c)
    return out


def test_upstream_from_an_answer_to_the_source_files(lake, chain):
    g = Lineage(lake)
    tree = g.upstream(parse_ref(lake, "request:req-1"))
    nodes = flatten(tree)
    assert nodes == [
        ("request req-1", None),
        ("model m:1", chain["train"]),
        ("training/set@0", chain["training_set"]),
        ("flights@0", chain["ingest"]),
        ("source files /data/flights.csv", None),  # only flights' files, not weather's
        ("weather@0", chain["ingest"]),
        ("source files /data/weather.csv", None),
    ]
    # A version no recorded run wrote: nearest earlier writer, said so by the run shown.
    assert g.producer(Node("table", "flights", 1))["run_id"] == chain["ingest"]
    assert g.upstream(Node("table", "flights", 1)).note == (
        "v1 was written outside a raylake run; shown: the run that wrote v0")
    assert parse_ref(lake, "flights") == Node("table", "flights", 1)
    assert parse_ref(lake, "model:m") == Node("model", "m", 1)


def test_downstream_from_a_table_version_to_models_predictions_and_answers(lake, chain):
    g = Lineage(lake)
    tree = g.downstream(parse_ref(lake, "flights@0"))
    nodes = [n for n, _ in flatten(tree)]
    assert nodes[:4] == ["flights@0", f"run {chain['training_set']}", "training/set@0",
                         f"run {chain['train']}"]
    assert nodes[4] == "model m:1" and nodes[5:] == [f"run {chain['batch']}", "predictions/m@0"]
    model = tree.children[0].children[0].children[0].children[0]
    assert model.note == "answered 1 requests (serving/requests)"
    text = "\n".join(render(tree, downstream=True))
    assert "-> train run" in text and "predictions/m@0" in text
    # flights@1 was read by the batch prediction only.
    assert [n for n, _ in flatten(g.downstream(Node("table", "flights", 1)))] == [
        "flights@1", f"run {chain['batch']}", "predictions/m@0"]


def test_bad_references_say_what_to_write(lake, chain):
    with pytest.raises(TableNotFoundError, match="model:NAME"):
        parse_ref(lake, "flihgts@0")
    with pytest.raises(ConfigError, match="version number"):
        parse_ref(lake, "flights@latest")
    with pytest.raises(ConfigError, match="'flights' has no version 7; its latest is 1"):
        parse_ref(lake, "flights@7")
    with pytest.raises(ConfigError, match="No request 'nope'"):
        Lineage(lake).upstream(parse_ref(lake, "request:nope"))


def test_cli(lake, chain):
    res = subprocess.run([PYTHON, "-m", "raylake", "lineage", "model:m:1", "--json",
                          f"lake.root={lake.root}"], capture_output=True, text=True,
                         env=subprocess_env(), cwd=REPO, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    tree = json.loads(res.stdout)
    assert tree["node"] == "model m:1" and tree["run"]["run_id"] == chain["train"]
    assert tree["children"][0]["node"] == "training/set@0"
