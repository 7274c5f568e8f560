"""Computer vision end to end on a real lake and a real Ray: MNIST 5k written out as PNG
files and ingested from the folder, the CNN trained with 2 Ray Train workers on CPU (the
accuracy printed), the same run resumed after a worker dies mid-epoch, batch inference
over the image table (one commit, idempotent) and an image served over HTTP."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import requests
from conftest import free_port

from raylake.config.loader import compose_config, to_config
from raylake.config.schema import ArmConfig
from raylake.lake import Lake, Storage
from raylake.lake.runs import list_runs
from raylake.models.registry import ModelRegistry
from raylake.runner.registry import get_job

slow = pytest.mark.slow
TABLE = "images/mnist_5k"
# The fixed small budget: 3 epochs of 32 images per worker and step (2 workers).
BUDGET = ["train=cnn", "train.cnn.epochs=3", "train.cnn.batch_size=32",
          "train.cnn.checkpoint_every_steps=20"]


def run(root: str, job: str, *overrides: str, **options):
    cfg = compose_config([f"lake.root={root}", *overrides], job=job)
    lines: list[str] = []
    out = get_job(job)(cfg, echo=lines.append, **options)
    out["text"] = "\n".join(str(line) for line in lines)
    return out


@pytest.fixture(scope="module")
def mnist(ray_session, tmp_path_factory):
    """MNIST 5k ingested by `raylake ingest dataset=mnist_5k` (PNG files, then the folder)."""
    root = str(tmp_path_factory.mktemp("vision") / "lake")
    out = run(root, "ingest", "dataset=mnist_5k")
    return root, out


@pytest.fixture(scope="module")
def trained(mnist):
    root, _ = mnist
    out = run(root, "vision-train", *BUDGET)
    print(f"\nMNIST 5k CNN, 2 Ray Train workers on CPU, {BUDGET[1:3]}: test accuracy "
          f"{out['metrics']['test_accuracy']:.4f}")
    return root, out


@slow
def test_mnist_is_written_as_png_files_then_ingested_once(mnist):
    root, out = mnist
    lake = Lake(Storage.from_config(root))
    assert "wrote 5,000 image files" in out["text"]
    assert "read 5,000 = written 5,000 + quarantined 0" in out["text"]
    t = lake.read(TABLE, columns=["label", "width", "height", "mode", "format", "source_path"])
    assert t.num_rows == 5000 and set(t.column("format").to_pylist()) == {"png"}
    assert np.bincount(np.array(t.column("label").to_pylist(), int)).tolist() == [500] * 10
    assert all(p.endswith(".png") and "/_sources/mnist_5k/" in p
               for p in t.column("source_path").to_pylist()[:10])
    # The image-only job over the same folder: every image already held, nothing added.
    again = run(root, "vision-ingest", "dataset=mnist_5k")
    assert "already held 5,000" in again["text"] and "wrote" not in again["text"]
    assert lake.version(TABLE) == 0 and again["status"] == "skipped"


@slow
def test_cnn_on_two_workers_reaches_095_and_registers_its_table_version(trained):
    root, out = trained
    m = out["metrics"]
    assert m["test_accuracy"] >= 0.95, m
    assert m["workers"] == 2 and m["resumed_from_step"] == 0 and len(m["history"]) == 3
    assert [h["epoch"] for h in m["history"]] == [1, 2, 3]  # metrics per epoch
    lake = Lake(Storage.from_config(root))
    mv = ModelRegistry(lake).get("mnist_cnn", out["version"])
    assert mv.flavor == "image_classifier"
    assert mv.training["table"] == TABLE and mv.training["version"] == lake.version(TABLE)
    assert mv.flavor_info["classes"] == [str(i) for i in range(10)]
    record = list_runs(lake, job="vision-train")[0]
    assert record["inputs"][0]["table"] == TABLE


@slow
def test_a_run_that_loses_a_worker_mid_epoch_resumes_to_the_same_accuracy(trained, tmp_path):
    root, first = trained
    marker = tmp_path / "died"
    # 63 steps an epoch: step 40 is mid-epoch 1, just after the checkpoint of step 40.
    out = run(root, "vision-train", *BUDGET, "train.model_name=mnist_resumed",
              kill_at={"step": 40, "marker": str(marker), "rank": 1})
    m = out["metrics"]
    print(f"\nresumed after a worker was killed at step {marker.read_text()}: test accuracy "
          f"{m['test_accuracy']:.4f} (unbroken run {first['metrics']['test_accuracy']:.4f})")
    assert marker.read_text() == "40" and m["resumed_from_step"] == 40
    assert m["steps"] == first["metrics"]["steps"]
    assert m["test_accuracy"] >= 0.95
    assert abs(m["test_accuracy"] - first["metrics"]["test_accuracy"]) <= 0.02


@slow
def test_batch_inference_over_the_image_table_is_one_commit_and_idempotent(trained):
    root, out = trained
    lake = Lake(Storage.from_config(root))
    ref = f"mnist_cnn:{out['version']}"
    first = run(root, "batch-predict", f"model={ref}", f"table={TABLE}")
    preds = lake.read("predictions/mnist_cnn")
    assert preds.num_rows == 5000 and lake.version("predictions/mnist_cnn") == 0
    assert set(preds.column("model_version").to_pylist()) == {out["version"]}
    assert set(preds.column("run_id").to_pylist()) == {first["run_id"]}
    correct = np.array(preds.column("prediction").to_pylist()) == \
        np.array(preds.column("label_index").to_pylist())
    assert correct.mean() >= 0.95
    again = run(root, "batch-predict", f"model={ref}", f"table={TABLE}")
    assert again["skipped"] and lake.version("predictions/mnist_cnn") == 0


@slow
def test_an_image_is_served_over_http(trained):
    from ray import serve

    from raylake.lake.image_codec import decode, encode
    from raylake.serve.app import build_app

    root, out = trained
    lake = Lake(Storage.from_config(root))
    conf = to_config(compose_config([f"lake.root={root}", "model_server.max_replicas=1"],
                                    job="serve"))
    conf.model_server.arms = {"main": ArmConfig(model=f"mnist_cnn:{out['version']}")}
    rows = lake.read(TABLE, columns=["image", "label"]).slice(0, 8).to_pylist()
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(conf, lake), name="vision", route_prefix="/")
    url = f"http://127.0.0.1:{port}/predict"
    try:
        body = {"images": [base64.b64encode(r["image"]).decode() for r in rows]}
        got = requests.post(url, data=json.dumps(body), timeout=60,
                            headers={"Content-Type": "application/json"})
        assert got.status_code == 200, got.text
        labels = got.json()["labels"]
        assert sum(a == r["label"] for a, r in zip(labels, rows)) >= 7
        raw = requests.post(url, data=rows[0]["image"], timeout=60,
                            headers={"Content-Type": "image/png"})
        assert raw.status_code == 200 and raw.json()["labels"] == labels[:1]
        bad = requests.post(url, data=b"\x89PNG broken", timeout=60,
                            headers={"Content-Type": "image/png"})
        assert bad.status_code == 422 and bad.json()["kind"] == "bad_image"
        small = encode(decode(rows[0]["image"]).pixels[:, :20, :20])
        wrong = requests.post(url, data=small, timeout=60, headers={"Content-Type": "image/png"})
        assert wrong.status_code == 422 and "(1, 28, 28)" in wrong.json()["error"]
        assert requests.post(url, data=json.dumps({"image": "***"}), timeout=60,
                             headers={"Content-Type": "application/json"}).status_code == 422
    finally:
        serve.delete("vision")
        serve.shutdown()
