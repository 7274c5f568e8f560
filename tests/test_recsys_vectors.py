"""Item vectors and the item index on a real lake and Ray: a tiny two-tower registered with
the torch flavor, every item's vector written by Ray Data actors in one commit (a re-run
adds nothing), then the index built from that table version, registered with the
``ann_index`` flavor, and searched like an exact numpy search."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import torch

from raylake.config.recsys import RecsysConfig
from raylake.datasets.recsys_world import WorldSpec, generate
from raylake.errors import ModelError
from raylake.lake.commit import write_table
from raylake.lake.runs import RunRecorder, get_run
from raylake.models import ModelRegistry
from raylake.models.spec import FeatureSpec
from raylake.models.two_tower import TwoTower, in_batch_loss
from raylake.recsys.index import build_index
from raylake.recsys.vectors import read_item_vectors, write_item_vectors

pytestmark = pytest.mark.slow

SPEC = WorldSpec(users=500, items=200, requests=2000, seed=5)


@pytest.fixture(scope="module")
def world():
    return generate(SPEC)


@pytest.fixture(scope="module")
def towers(world):
    """A two-tower trained for a few epochs on the world's clicks, and its FeatureSpec:
    codes are positions in the vocabulary of clicked ids, so unclicked items are unknown
    (code 0) as they would be to a real model."""
    clicks = world.events.filter(pc.equal(world.events["event"], "click"))
    user_vocab = sorted(set(clicks["user_id"].to_pylist()))
    item_vocab = sorted(set(clicks["item_id"].to_pylist()))
    spec = FeatureSpec([], ["user_id", "item_id"],
                       {"user_id": [str(i) for i in user_vocab],
                        "item_id": [str(i) for i in item_vocab]}, "clicked")
    _, codes = spec.encode(clicks.select(["user_id", "item_id"]))
    users, items = torch.from_numpy(codes[:, 0]), torch.from_numpy(codes[:, 1])
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model = TwoTower(len(user_vocab), len(item_vocab), dim=8, hidden=[16])
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(3):
        for idx in torch.randperm(len(users)).split(256):
            loss = in_batch_loss(model, users[idx], items[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    torch.set_num_threads(threads)
    assert len(item_vocab) < SPEC.items  # some items were never clicked: unknown to it
    return model.eval(), spec


def _register(lake, model, spec):
    return ModelRegistry(lake).register(
        "recsys_two_tower", model, flavor="torch",
        features=[{"name": "user_id", "type": "int64"}, {"name": "item_id", "type": "int64"}],
        training={"table": "recsys/events", "version": 0}, config={"dim": 8},
        metrics={}, run_id=None, preprocessing=spec.to_dict())


def _write(lake, conf, ref):
    with RunRecorder(lake, "recsys-vectors", {}) as run:
        out = write_item_vectors(lake, conf, ref, run)
    return out, run


def test_item_vectors_and_index(ray_session, lake, world, towers):
    model, spec = towers
    write_table(lake, "recsys/items", world.items, mode="overwrite")
    conf = SimpleNamespace(recsys=RecsysConfig())
    mv = _register(lake, model, spec)

    (table, version, rows), run = _write(lake, conf, None)
    assert (table, rows) == ("recsys/item_vectors", SPEC.items)
    got = lake.read(table, version)
    assert got.num_rows == SPEC.items and set(got["model_version"].to_pylist()) == {mv.version}
    assert got.schema.field("vector").type in (pa.list_(pa.float32(), 8), pa.list_(pa.float32()))
    ids, vectors, _ = read_item_vectors(lake, table, version)
    assert sorted(ids.tolist()) == world.items["item_id"].to_pylist()
    vocab = {int(v): i + 1 for i, v in enumerate(spec.vocab["item_id"])}
    codes = torch.tensor([vocab.get(int(i), 0) for i in ids])
    with torch.no_grad():
        want = model.item_vectors(codes).numpy()
    np.testing.assert_allclose(vectors, want, rtol=1e-5, atol=1e-6)
    assert (codes == 0).any()  # unclicked items got the unknown-item vector
    record = get_run(lake, run.run_id)
    assert {"table": "recsys/items", "version": 0, "role": "items"} in record["inputs"]
    assert {"model": "recsys_two_tower", "version": mv.version, "role": "towers"} in record["inputs"]
    assert record["outputs"] == [{"table": table, "version": version, "rows": SPEC.items,
                                  "skipped": False}]

    (_, again, rows2), _ = _write(lake, conf, "recsys_two_tower:1")
    assert (again, rows2) == (version, 0) and lake.version(table) == version

    # Index: 200 items are below recsys.index_hnsw_from, so auto is exact search.
    with RunRecorder(lake, "recsys-index", {}) as run:
        index_mv = build_index(lake, conf, run)
    assert index_mv.flavor == "ann_index" and index_mv.config["kind"] == "exact"
    assert index_mv.training["table"] == table and index_mv.training["version"] == version
    assert index_mv.training["towers"] == {"name": "recsys_two_tower", "version": mv.version}
    assert {"table": "recsys/items", "version": 0} in index_mv.training["sources"]
    assert index_mv.metrics["recall_at_500"] == 1.0 and index_mv.metrics["build_s"] >= 0
    _, index = ModelRegistry(lake).load(index_mv.ref)
    queries = vectors[:5]
    found, scores = index.search(queries, 10)
    top = ids[np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :10]]
    np.testing.assert_array_equal(found, top)
    with RunRecorder(lake, "recsys-index", {}) as run:  # same vectors, same kind: no new one
        assert build_index(lake, conf, run).version == index_mv.version

    conf.recsys.index = "hnsw"
    with RunRecorder(lake, "recsys-index", {}) as run:
        hnsw_mv = build_index(lake, conf, run)
    assert hnsw_mv.version == index_mv.version + 1 and hnsw_mv.config["kind"] == "hnsw"
    assert hnsw_mv.metrics["recall_at_500"] >= 0.95
    _, graph = ModelRegistry(lake).load(hnsw_mv.ref)
    _, got = graph.search(queries, 10)
    best = np.sort(queries @ vectors.T, axis=1)[:, ::-1][:, :10]
    np.testing.assert_allclose(got, best, rtol=1e-5, atol=1e-6)  # ties: any of the tied items

    # Another tower version replaces the vectors; the first one again is a new commit,
    # not "already written" (the table holds one version's vectors at a time).
    mv2 = _register(lake, model, spec)
    (_, v2, rows3), _ = _write(lake, conf, f"recsys_two_tower:{mv2.version}")
    assert v2 == version + 1 and rows3 == SPEC.items
    (_, v3, rows4), _ = _write(lake, conf, "recsys_two_tower:1")
    assert v3 == v2 + 1 and rows4 == SPEC.items
    assert set(lake.read(table, v3)["model_version"].to_pylist()) == {1}


def test_a_model_that_is_not_a_two_tower_is_refused(lake):
    from raylake.models import TabularMLP

    net = TabularMLP(num_numeric=2, cardinalities=[], embedding_dim=4, hidden=[4])
    ModelRegistry(lake).register(
        "recsys_two_tower", net, flavor="torch", features=[{"name": "x", "type": "float64"}],
        training={"table": "t", "version": 0}, config={}, metrics={}, run_id=None)
    with RunRecorder(lake, "recsys-vectors", {}) as run, pytest.raises(ModelError,
                                                                       match="not a two-tower"):
        write_item_vectors(lake, SimpleNamespace(recsys=RecsysConfig()), None, run)
