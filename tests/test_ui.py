"""`raylake ui` over a small lake written through the lake layer (no Ray): every page
renders what the lake holds; a URL naming a table, version, run, model or branch that
does not exist gets a 404 that lists what exists; a root that is not a lake is refused
before a server starts; a 50,000-version history renders one page without reading the
rest of the log; the same pages over an s3:// lake."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import threading
import time
import urllib.error
import urllib.request

import pyarrow as pa
import pytest
from conftest import free_port

from raylake.errors import LakeError
from raylake.lake import Lake, Storage, TagStore
from raylake.lake.commit import write_table
from raylake.lake.runs import RunRecorder
from raylake.ui.app import check_lake, make_app


def build_small(lake: Lake) -> dict[str, str]:
    """A table of three versions (two by recorded runs), its quarantine, a tag, a
    derived table, and a model's monitoring windows."""
    with RunRecorder(lake, "ingest", {"dataset": "toy"}) as run:
        v = write_table(lake, "toy", pa.table({"x": [1, 2, 3], "name": ["a", "b", "c"]}),
                        run_id=run.run_id, job="ingest")
        run.add_input(kind="files", table="toy", files=["/data/toy.csv"], fingerprint="f1")
        run.add_output(table="toy", version=v, rows=3)
        q = write_table(lake, "toy__quarantine", pa.table({
            "run_id": [run.run_id] * 3, "reason": ["not a number", "not a number", "null"],
            "column": ["x", "x", "name"], "raw": ["x1", "x2", None]}))
        run.add_output(table="toy__quarantine", version=q, rows=3)
    with RunRecorder(lake, "ingest", {"dataset": "toy"}) as run2:
        v = write_table(lake, "toy", pa.table({"x": [4, 5], "name": ["d", "e"]}),
                        run_id=run2.run_id, job="ingest")
        run2.add_output(table="toy", version=v, rows=2)
    write_table(lake, "toy", pa.table({"x": [6], "name": ["f"]}))  # v2: no raylake run
    TagStore(lake).set("toy", "first", 0, note="as ingested")
    with RunRecorder(lake, "training-set", {}) as ts:
        ts.add_input(table="toy", version=1, view="toy")
        out = write_table(lake, "training/toy", pa.table({"x": [1.0], "y": [1]}),
                          run_id=ts.run_id, job="training-set")
        ts.add_output(table="training/toy", version=out, rows=1)
    try:
        with RunRecorder(lake, "train", {}):
            raise ValueError("planted failure")
    except ValueError:
        pass
    from raylake.monitor.store import to_table

    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    rows = []
    for i in range(4):
        start, end = t0 + dt.timedelta(days=i), t0 + dt.timedelta(days=i + 1)
        common = {"model": "m", "model_version": 1, "arm": "main", "window_start": start,
                  "window_end": end, "rows": 100}
        rows.append({**common, "feature": "x", "check": "drift", "value": 0.05 * i,
                     "threshold": 0.1, "flagged": 0.05 * i > 0.1,
                     "detail": json.dumps({"metric": "psi"})})
        rows.append({**common, "feature": "_model", "check": "auc", "value": 0.8 - 0.02 * i})
        rows.append({**common, "feature": "_model", "check": "auc_estimated",
                     "value": 0.79 - 0.02 * i, "estimated": True})
    write_table(lake, "monitoring/m", to_table(rows))
    return {"run": run.run_id, "run2": run2.run_id, "training_set": ts.run_id}


class Served:
    """The UI of a lake served by uvicorn in a thread."""

    def __init__(self, lake: Lake) -> None:
        import uvicorn

        self.app = make_app(lake, fresh_s=0.0)
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1",
                                                    port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            assert time.time() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        self.base = f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=60) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def serve(lake: Lake):
    s = Served(lake)
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def small(lake):
    runs = build_small(lake)
    yield from ((s, runs) for s in serve(lake))


def text(body: str) -> str:
    """The page's text, tags removed and spaces collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body))


def test_pages_show_what_the_lake_holds(small):
    ui, runs = small
    status, body = ui.get("/tables")
    assert status == 200
    row = re.search(r"<tr><td><a class=\"table-link\" href=\"/table/toy\">toy</a>.*?</tr>", body,
                    re.S).group(0)
    assert re.search(r">3<", row) and ">6<" in row  # 3 versions, 6 rows
    assert "training/toy" in body and "toy__quarantine" in body and "_runs" not in body
    assert "_runs" in ui.get("/tables?all=1")[1]

    status, body = ui.get("/table/toy?version=0")
    page = text(body)
    assert status == 200 and "toy @ version 0" in page
    assert "x int64" in page and "name string" in page  # the schema at that version
    assert re.search(r"first 0 [\d-]+ [\d:]+ as ingested", page)  # tags
    assert "not a number x 2" in page and "null name 1" in page  # quarantine reasons
    assert f"/runs/{runs['run']}" in body  # version 0's writer, linked
    status, body = ui.get("/history/toy")
    assert status == 200 and f"ingest {runs['run2']}" in text(body)
    assert body.count("class=\"version-row\"") == 3

    status, body = ui.get("/diff/toy?from=0&to=2")
    assert status == 200
    assert re.search(r'id="rows-added">3<', body) and re.search(r'id="rows-removed">0<', body)

    status, body = ui.get("/rows/toy?version=2&page=1&per=2")
    assert status == 200 and "page 2 of 3" in text(body)
    assert ">c<" in body and ">d<" in body and ">a<" not in body

    status, body = ui.get("/runs?job=train")
    assert status == 200 and "planted" not in body and "failed" in body
    assert runs["run"] not in body
    assert runs["run"] in ui.get("/runs?status=succeeded")[1]
    assert runs["run"] not in ui.get("/runs?since=2999-01-01")[1]
    status, body = ui.get(f"/runs/{runs['training_set']}")
    assert status == 200 and 'href="/table/toy?version=1">toy@1</a>' in body
    assert 'href="/table/training/toy?version=0"' in body
    failed = next(r for r in small[0].app.state.ui.view(None).facts.runs()
                  if r["job"] == "train")
    assert "ValueError: planted failure" in ui.get(f"/runs/{failed['run_id']}")[1]

    status, body = ui.get("/lineage?ref=training/toy@0")
    assert status == 200 and "<svg id='lineage-graph'" in body
    assert "data-key='table:toy@1'" in body and f"data-key='run:{runs['run2']}'" in body
    assert "data-key='files:/data/toy.csv'" in ui.get("/lineage?ref=toy@0")[1]
    status, body = ui.get("/lineage?ref=toy@1")
    assert "data-key='table:training/toy@0'" in body  # downstream

    status, body = ui.get("/monitoring/m")
    assert status == 200 and body.count("<svg role='img'") >= 2  # drift and AUC charts
    assert "drift of x (psi)" in body
    status, body = ui.get("/monitoring-report/m")
    assert status == 200 and "Monitoring: m" in body
    for path in ("/models", "/quality", "/monitoring", "/branches", "/lineage",
                 "/static/lineage.js"):
        assert ui.get(path)[0] == 200, path


def test_a_url_naming_what_does_not_exist_gets_a_404_listing_what_does(small):
    ui, runs = small
    cases = {
        "/table/toys": ["No table 'toys'", "monitoring/m, toy, toy__quarantine, training/toy"],
        "/table/toy?version=9": ["has no version 9", "versions are 0..2", "toy@0"],
        "/history/toy?page=4": ["no page 4"],
        "/diff/toy?from=0&to=5": ["has no version 5"],
        "/runs/ingest-nope": ["No run 'ingest-nope'", runs["run"]],
        "/models/m/3": ["No model version m:3"],
        "/tables?branch=exp9": ["No branch 'exp9'"],
        "/monitoring/other": ["No monitoring table 'monitoring/other'", "Monitored: m"],
        "/quality/toy?version=0": ["No quality report or stored profile of toy@0"],
        "/lineage?ref=nope@1": ["No table 'nope'", "model:NAME:VERSION"],
        "/no/such/page": ["No page at /no/such/page", "tables"],
    }
    for path, says in cases.items():
        status, body = ui.get(path)
        assert status == 404, (path, status)
        page = text(body).replace("&#39;", "'")
        for s in says:
            assert s in page, (path, s, page[:600])
        assert "What there is" in page, path


def test_a_root_that_is_not_a_lake_is_refused_before_a_server_starts(tmp_path, capsys):
    from raylake.cli import main

    (tmp_path / "empty").mkdir()
    with pytest.raises(LakeError, match=r"is not a raylake lake.*raylake ingest lake\.root="):
        check_lake(Lake(Storage.from_config(str(tmp_path / "empty"))))
    missing = tmp_path / "nowhere"
    assert main(["ui", f"lake.root={missing}", "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert f"The lake root {missing} does not exist" in err and "lake.root=" in err
    assert main(["ui", f"lake.root={tmp_path / 'empty'}"]) == 2
    assert f"{tmp_path / 'empty'} is not a raylake lake" in capsys.readouterr().err


def versions_table(lake: Lake, name: str, n: int) -> None:
    """Table ``name`` with ``n`` versions: version 0 by deltalake, then commits with only
    a commitInfo (one run per ten versions) and a checkpoint at the last, as delta-rs
    would leave one (the state never changed after version 0, so version 0's is it)."""
    from deltalake import DeltaTable

    write_table(lake, name, pa.table({"x": [0]}), run_id="bench-0", job="bench")
    DeltaTable(lake.uri(name)).create_checkpoint()
    log = os.path.join(lake.uri(name), "_delta_log")
    ts = int(time.time() * 1000) - n
    for v in range(1, n):
        info = {"timestamp": ts + v, "operation": "WRITE",
                "operationParameters": {"mode": "Append"},
                "operationMetrics": {"num_added_rows": v % 7}, "raylake.run_id":
                f"bench-{v // 10}", "raylake.job": "bench"}
        with open(os.path.join(log, f"{v:020d}.json"), "w") as f:
            f.write(json.dumps({"commitInfo": info}) + "\n")
    last = n - 1
    os.replace(os.path.join(log, f"{0:020d}.checkpoint.parquet"),
               os.path.join(log, f"{last:020d}.checkpoint.parquet"))
    with open(os.path.join(log, "_last_checkpoint")) as f:
        meta = json.load(f)
    with open(os.path.join(log, "_last_checkpoint"), "w") as f:
        json.dump({**meta, "version": last}, f)


@pytest.mark.slow
def test_a_history_of_50000_versions_renders_a_page_without_reading_the_rest(lake):
    versions_table(lake, "events", 50_000)
    assert Lake(lake.storage).version("events") == 49_999
    for ui in serve(lake):
        status, body = ui.get("/history/events")
        assert status == 200 and "page 1 of 1,000" in text(body)
        shown = [int(v) for v in re.findall(r'data-version="(\d+)"', body)]
        assert shown == list(range(49_999, 49_949, -1))
        assert "bench bench-4999" in text(body)  # the run that wrote it, linked
        status, body = ui.get("/history/events?version=7")  # the page that holds it
        shown = [int(v) for v in re.findall(r'data-version="(\d+)"', body)]
        assert status == 200 and 7 in shown and len(shown) == 50 and min(shown) == 0
        assert "page 1,000 of 1,000" in text(body)
        reader = ui.app.state.ui.view(None).reader
        assert reader.commits.misses <= 2 * 50 + 1  # two pages read, not 50,000 versions
        assert ui.get("/table/events")[0] == 200
        assert ui.get("/tables")[0] == 200


@pytest.mark.slow
def test_the_pages_over_an_s3_lake(s3_server):  # noqa: F811
    lake = Lake(Storage.from_config(f"s3://{s3_server.bucket}/ui-lake",
                                    s3_server.storage_options))
    runs = build_small(lake)
    check_lake(lake)
    for ui in serve(lake):
        status, body = ui.get("/tables")
        assert status == 200 and 'href="/table/toy"' in body and "training/toy" in body
        status, body = ui.get("/table/toy?version=1")
        assert status == 200 and "not a number" in body and runs["run2"] in body
        assert ui.get("/history/toy")[0] == 200
        assert re.search(r'id="rows-added">2<', ui.get("/diff/toy?from=0&to=1")[1])
        assert ui.get(f"/runs/{runs['training_set']}")[0] == 200
        assert ui.get("/lineage?ref=training/toy@0")[0] == 200
        assert ui.get("/table/nope")[0] == 404


from s3server import s3_server  # noqa: E402, F401  (the fixture)
