"""Image ingestion of bad input, on a real lake (no Ray needed): a corrupt PNG, an image
of the wrong size or mode, a label outside the declared classes, a file outside any class
folder, a bad CSV pixel row, a null or garbage Parquet cell are quarantined with their
reason and original bytes (read = written + quarantined); an empty class folder is an
error naming it; a re-run adds nothing."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from raylake.config.vision import ImageTableConfig
from raylake.errors import ImageError, VisionError
from raylake.ingest.images import ingest_images
from raylake.lake.image_codec import decode, encode


def png(w: int = 8, h: int = 8, mode: str = "L", seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    shape = (h, w) if mode == "L" else (h, w, 3)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(buf, "PNG")
    return buf.getvalue()


def cfg(path, **kw) -> ImageTableConfig:
    return ImageTableConfig(**{"kind": "folder", "path": str(path), "classes": ["a", "b"],
                               "width": 8, "height": 8, "mode": "L", **kw})


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "imgs"
    files = {"a/ok1.png": png(seed=1), "a/ok2.png": png(seed=2), "b/ok3.png": png(seed=3),
             "a/corrupt.png": png(seed=4)[:40], "b/wide.png": png(w=9, seed=5),
             "b/rgb.png": png(mode="RGB", seed=6), "c/other.png": png(seed=7),
             "notes.png": png(seed=8), "b/readme.txt": b"not an image"}
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root, files


def test_bad_images_are_quarantined_with_their_reason_and_nothing_is_lost(lake, folder):
    root, files = folder
    res = ingest_images(lake, "images/t", cfg(root), run_id="r1")
    assert res.rows_read == len(files) == res.rows_written + res.rows_quarantined
    assert res.rows_written == 3 and res.rows_quarantined == 6
    table = lake.read("images/t")
    assert sorted(table.column("label").to_pylist()) == ["a", "a", "b"]
    for row in table.to_pylist():  # the stored bytes are the file's, hash and all
        assert row["image"] == files[row["source_path"].split("imgs/")[1]]
        assert (row["width"], row["height"], row["mode"], row["format"]) == (8, 8, "L", "png")
    q = {r["source_path"].split("imgs/")[1]: r for r in lake.read("images/t__quarantine").to_pylist()}
    assert set(q) == {"a/corrupt.png", "b/wide.png", "b/rgb.png", "c/other.png", "notes.png",
                      "b/readme.txt"}
    assert "undecodable" in q["a/corrupt.png"]["reason"]
    assert q["b/wide.png"]["reason"] == "size 9x8, declared 8x8"
    assert q["b/rgb.png"]["reason"] == "mode 'RGB', declared L"
    assert "label 'c' is not one of the declared classes" in q["c/other.png"]["reason"]
    assert "not in a class folder" in q["notes.png"]["reason"]
    assert "not a PNG or JPEG" in q["b/readme.txt"]["reason"]
    assert all(q[k]["data"] == files[k] for k in q)  # originals kept: nothing lost
    # The same folder again: everything is already held, no new version anywhere.
    versions = (lake.version("images/t"), lake.version("images/t__quarantine"))
    again = ingest_images(lake, "images/t", cfg(root), run_id="r2")
    assert again.already_held == len(files) and again.rows_written == again.rows_quarantined == 0
    assert (lake.version("images/t"), lake.version("images/t__quarantine")) == versions
    # A new image is added alone.
    (root / "b" / "ok4.png").write_bytes(png(seed=9))
    more = ingest_images(lake, "images/t", cfg(root), run_id="r3")
    assert (more.rows_written, more.already_held) == (1, len(files))
    assert lake.count("images/t") == 4


def test_an_empty_or_missing_class_folder_is_an_error_naming_it(lake, folder):
    root, _ = folder
    (root / "d").mkdir()
    with pytest.raises(VisionError, match=r"Class 'd' has no images.*empty"):
        ingest_images(lake, "images/t", cfg(root, classes=["a", "b", "d"]), run_id="r")
    with pytest.raises(VisionError, match=r"Class 'e' has no images"):
        ingest_images(lake, "images/t", cfg(root, classes=["a", "e"]), run_id="r")
    assert not lake.exists("images/t")  # nothing committed


def test_csv_pixels_and_parquet_bytes(lake, tmp_path):
    good = np.arange(64).reshape(8, 8)
    lines = ["label," + ",".join(f"p{i}" for i in range(64)),
             "a," + ",".join(str(v) for v in good.ravel()),
             "b," + ",".join("1" for _ in range(63)),  # a pixel short
             "a," + ",".join("300" for _ in range(64)),  # out of range
             "z," + ",".join("0" for _ in range(64))]  # label outside the classes
    (tmp_path / "px.csv").write_text("\n".join(lines) + "\n")
    res = ingest_images(lake, "images/csv", cfg(tmp_path / "px.csv", kind="csv"), run_id="r")
    assert (res.rows_read, res.rows_written, res.rows_quarantined) == (4, 1, 3)
    row = lake.read("images/csv").to_pylist()[0]
    assert (decode(row["image"]).pixels[0] == good).all() and row["label"] == "a"
    reasons = sorted(lake.read("images/csv__quarantine").column("reason").to_pylist())
    assert "63 pixel values" in reasons[0] and "outside 0-255" in reasons[1]
    assert "'z'" in reasons[2]
    pq.write_table(pa.table({"image": pa.array([png(seed=1), b"\x89PNG garbage", None],
                                               pa.binary()), "label": ["a", "b", "a"]}),
                   tmp_path / "b.parquet")
    res = ingest_images(lake, "images/pq", cfg(tmp_path / "b.parquet", kind="parquet"),
                        run_id="r")
    assert (res.rows_read, res.rows_written, res.rows_quarantined) == (3, 1, 2)


def test_codec_round_trip_and_refusals():
    px = np.random.default_rng(0).integers(0, 256, (1, 5, 7), dtype=np.uint8)
    d = decode(encode(px))
    assert (d.pixels == px).all() and (d.width, d.height, d.mode) == (7, 5, "L")
    with pytest.raises(ImageError, match="undecodable"):
        decode(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    buf = io.BytesIO()
    Image.new("CMYK", (4, 4)).save(buf, "JPEG")
    with pytest.raises(ImageError, match="mode 'CMYK'"):
        decode(buf.getvalue())


def test_the_kuberay_gpu_example_is_a_valid_rayjob_with_gpu_workers():
    import yaml
    from ray.runtime_env import RuntimeEnv
    from test_cluster_configs import RAYJOB_SPEC_FIELDS, REPO, check_cluster_spec

    job = yaml.safe_load((REPO / "cluster" / "kuberay" / "rayjob-vision-gpu.yaml").read_text())
    spec = job["spec"]
    assert job["kind"] == "RayJob" and set(spec) <= RAYJOB_SPEC_FIELDS
    check_cluster_spec(spec["rayClusterSpec"], want_gpu=True)
    env = yaml.safe_load(spec["runtimeEnvYAML"])
    RuntimeEnv(**env)  # Ray's own validation
    names = [p.split("=")[0].split(">")[0] for p in env["pip"]["packages"]]
    assert names[0] == "torch" and {"pillow", "mlxtend", "deltalake"} <= set(names)
    for script in ("jobs/vision_ingest.py", "jobs/vision_train.py"):
        assert script in spec["entrypoint"] and (REPO / script).is_file()
    assert "train=cnn_gpu" in spec["entrypoint"]


def test_crops_are_seeded_by_epoch_and_image_not_by_batch():
    from raylake.vision.transforms import random_crop

    px = np.random.default_rng(1).integers(0, 256, (6, 1, 28, 28), dtype=np.uint8)
    hashes = [f"{i:064x}" for i in range(6)]
    one = random_crop(px, 2, hashes, seed=0, epoch=1)
    # The same image in another batch (order, neighbours) gets the same crop that epoch.
    assert (random_crop(px[::-1], 2, hashes[::-1], seed=0, epoch=1)[::-1] == one).all()
    assert not (random_crop(px, 2, hashes, seed=0, epoch=2) == one).all()
    assert (random_crop(px, 0, hashes, seed=0, epoch=1) == px).all()
    # A crop is a shift of the padded image: the pixel sum never grows.
    assert (one.reshape(6, -1).sum(1) <= px.reshape(6, -1).sum(1)).all()
