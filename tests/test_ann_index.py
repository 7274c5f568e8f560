"""The nearest-neighbour index (raylake.models.ann) and its ``ann_index`` flavor: HNSW agrees
with exact search, a save/load round trip answers byte for byte alike, the artifact holds
no pickle, and bad input says what is wrong. No Ray."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from raylake.errors import ArtifactError, ModelError, RaylakeError
from raylake.models import ModelRegistry
from raylake.models.ann import AnnIndex
from raylake.models.flavors import get_flavor

DIM = 16


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def items():
    """Clustered unit vectors (like item-tower output) with sparse, shuffled ids."""
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(20, DIM))
    vectors = _unit(centres[rng.integers(0, 20, 3000)] + 0.5 * rng.normal(size=(3000, DIM)))
    ids = rng.permutation(np.arange(10, 100_000, 7))[:3000].astype(np.int64)
    queries = _unit(vectors[rng.integers(0, 3000, 100)] + 0.1 * rng.normal(size=(100, DIM)))
    return ids, vectors, queries


@pytest.fixture(scope="module")
def hnsw(items):
    ids, vectors, _ = items
    return AnnIndex.build(ids, vectors, "hnsw")


def test_exact_search_is_the_numpy_top_k(items):
    ids, vectors, queries = items
    got, scores = AnnIndex.build(ids, vectors).search(queries, 50)
    s = queries @ vectors.T
    want = ids[np.argsort(-s, axis=1, kind="stable")[:, :50]]
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(scores, np.sort(s, axis=1)[:, ::-1][:, :50], rtol=1e-5)
    assert got.dtype == np.int64 and scores.dtype == np.float32


def test_exact_ties_go_by_position(items):
    ids, vectors, queries = items
    same = vectors.copy()
    same[100:400] = same[0]  # 301 items share one vector (unknown to the towers)
    index = AnnIndex.build(ids, same)
    q = np.vstack([same[0], queries[:3]])
    got, _ = index.search(q, 20)
    want = ids[np.argsort(-(q @ same.T), axis=1, kind="stable")[:, :20]]
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(index.search(same[0], 20)[0][0], got[0])


def test_hnsw_agrees_with_exact(items, hnsw):
    ids, vectors, queries = items
    exact = AnnIndex.build(ids, vectors)
    for k in (10, 500):
        a, sa = hnsw.search(queries, k)
        b, _ = exact.search(queries, k)
        recall = np.mean([len(np.intersect1d(x, y)) / k for x, y in zip(a, b)])
        assert recall >= 0.95, (k, recall)
        assert (np.diff(sa, axis=1) <= 1e-6).all()  # best first


def test_one_query_a_batch_and_k_above_the_items(items, hnsw):
    ids, vectors, queries = items
    one, _ = hnsw.search(queries[0], 5)
    batch, _ = hnsw.search(queries[:3], 5)
    assert one.shape == (1, 5) and batch.shape == (3, 5)
    np.testing.assert_array_equal(one[0], batch[0])
    small = AnnIndex.build(ids[:40], vectors[:40], "hnsw")
    for index in (small, AnnIndex.build(ids[:40], vectors[:40])):
        got, scores = index.search(queries[:4], 500)  # clipped to the 40 items
        assert got.shape == (4, 40) and np.isfinite(scores).all()
        assert all(sorted(row) == sorted(ids[:40]) for row in got)


def test_exclude_fills_from_further_down(items):
    ids, vectors, queries = items
    index = AnnIndex.build(ids, vectors)
    top, _ = index.search(queries[:2], 10)
    got, _ = index.search(queries[:2], 10, exclude=[top[0, :3], []])
    np.testing.assert_array_equal(got[0, :7], top[0, 3:])
    assert not np.isin(got[0], top[0, :3]).any()
    np.testing.assert_array_equal(got[1], top[1])


@pytest.mark.parametrize("kind", ["exact", "hnsw"])
def test_round_trip_answers_alike_and_holds_no_pickle(items, hnsw, kind):
    ids, vectors, queries = items
    index = hnsw if kind == "hnsw" else AnnIndex.build(ids, vectors)
    flavor = get_flavor("ann_index")
    saved = flavor.save(index)
    assert saved.data == flavor.save(index).data  # the same index, the same bytes
    loaded = flavor.load(saved.data, saved.info)
    assert (loaded.kind, len(loaded), loaded.dim) == (kind, len(ids), DIM)
    for a, b in zip(index.search(queries, 100), loaded.search(queries, 100)):
        assert a.tobytes() == b.tobytes()
    with zipfile.ZipFile(io.BytesIO(saved.data)) as zf:
        names = set(zf.namelist())
        assert names == {"manifest.json", "ids.npy", "vectors.npy"} | (
            {"graph.faiss"} if kind == "hnsw" else set())
        for name in ("ids.npy", "vectors.npy"):
            arr = np.load(io.BytesIO(zf.read(name)), allow_pickle=False)
            assert arr.dtype in (np.int64, np.float32)
        assert json.loads(zf.read("manifest.json"))["kind"] == kind
        assert not any(zf.read(n).startswith(b"\x80") for n in names)  # no pickle stream


def test_registry_round_trip(lake, hnsw, items):
    _, _, queries = items
    reg = ModelRegistry(lake)
    mv = reg.register("items_index", hnsw, flavor="ann_index",
                      features=[{"name": "query_vector", "type": "fixed_size_list<float>[16]"}],
                      training={"table": "recsys/item_vectors", "version": 0},
                      config={"kind": "hnsw"}, metrics={}, run_id=None)
    assert mv.artifact.endswith(".zip") and mv.flavor_info["kind"] == "hnsw"
    _, loaded = reg.load("items_index")
    np.testing.assert_array_equal(loaded.search(queries, 20)[0], hnsw.search(queries, 20)[0])


def test_bad_input_says_what_is_wrong(items, hnsw):
    ids, vectors, queries = items
    with pytest.raises(ModelError, match=r"dimension 16"):
        hnsw.search(np.ones((2, 8), np.float32), 5)
    with pytest.raises(ModelError, match=r"k=0 must be an integer >= 1"):
        hnsw.search(queries, 0)
    with pytest.raises(ModelError, match=r"k=-3"):
        AnnIndex.build(ids, vectors).search(queries, -3)
    with pytest.raises(ModelError, match=r"NaN"):
        hnsw.search(np.full(DIM, np.nan, np.float32), 5)
    for kind in ("exact", "hnsw"):
        with pytest.raises(ModelError, match="at least one item"):
            AnnIndex.build(np.zeros(0, np.int64), np.zeros((0, DIM), np.float32), kind)
    with pytest.raises(ModelError, match="not unit vectors"):
        AnnIndex.build(ids, vectors * 2)
    with pytest.raises(ModelError, match="repeat"):
        AnnIndex.build(np.zeros(len(ids), np.int64), vectors)
    with pytest.raises(ModelError, match="'ivf' is not one of exact, hnsw"):
        AnnIndex.build(ids, vectors, "ivf")
    with pytest.raises(ModelError, match="one list of item ids per query"):
        hnsw.search(queries[:2], 5, exclude=[[1]])
    with pytest.raises(ModelError, match="not a row scorer"):
        get_flavor("ann_index").predict(hnsw, None, None)
    with pytest.raises(ModelError, match="must be a raylake.models.ann.AnnIndex"):
        get_flavor("ann_index").save(vectors)
    assert issubclass(ModelError, RaylakeError)


def test_damaged_or_pickled_artifacts_are_refused(items):
    ids, vectors, _ = items
    flavor = get_flavor("ann_index")
    saved = flavor.save(AnnIndex.build(ids[:50], vectors[:50]))
    with pytest.raises(ArtifactError, match="not a zip"):
        flavor.load(b"not a zip", saved.info)

    def rewrite(**members: bytes) -> bytes:
        src, buf = zipfile.ZipFile(io.BytesIO(saved.data)), io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for n in src.namelist():
                zf.writestr(n, members.get(n.replace(".", "_"), src.read(n)))
        return buf.getvalue()

    obj = io.BytesIO()
    np.save(obj, np.array([1, "x"], dtype=object), allow_pickle=True)
    with pytest.raises(ArtifactError, match="without pickle"):
        flavor.load(rewrite(ids_npy=obj.getvalue()), saved.info)
    with pytest.raises(ArtifactError, match="not a raylake.ann_index manifest"):
        flavor.load(rewrite(manifest_json=b'{"format": "other"}'), saved.info)
    other = io.BytesIO()
    np.save(other, ids[:49])
    with pytest.raises(ArtifactError, match="manifest says 50 items"):
        flavor.load(rewrite(ids_npy=other.getvalue()), saved.info)


def test_import_raylake_starts_no_faiss():
    code = ("import sys, raylake, raylake.models, raylake.models.flavors, raylake.models.ann; "
            "print('faiss' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"], out
