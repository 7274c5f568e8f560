"""`raylake recsys-train` on the shared small recommendation lake: the two-tower trains on
Ray Train from the clicks before the holdout, the offline quality table ranks the methods
as they should be ranked (random < popularity < two-tower <= the ranker's re-ranking <=
the generator's truth), and the towers, item vectors and index are registered with their
lineage."""

from __future__ import annotations

import numpy as np
import pytest
from recsys_lake import quiet, recsys_lake, train_towers

from raylake.errors import ConfigError
from raylake.models.registry import ModelRegistry

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def recsys(ray_session, tmp_path_factory):
    return recsys_lake(tmp_path_factory)


@pytest.fixture(scope="module")
def trained(recsys):
    return train_towers(recsys)


def test_quality_table_orders_the_methods(trained):
    out, lines = trained
    m = out["quality"]["methods"]
    assert set(m) == {"random", "popularity", "two_tower", "pipeline", "oracle"}
    ndcg = {k: v["ndcg@20"] for k, v in m.items()}
    # Learned retrieval beats the popular items, which beat chance by far; the ranker's
    # re-ranking of the two-tower's candidates does not lose to retrieval alone; nothing
    # beats ranking by the truth that generated the clicks.
    assert ndcg["random"] * 5 < ndcg["popularity"] < ndcg["two_tower"], ndcg
    assert ndcg["pipeline"] >= ndcg["two_tower"] - 0.01, ndcg
    assert max(ndcg.values()) == ndcg["oracle"], ndcg
    assert out["quality"]["ranker"].startswith("recsys_ranker:")
    assert any(line.startswith("offline quality on the holdout") for line in lines)
    assert any(line.lstrip().startswith("pipeline") for line in lines)
    assert [line for line in lines if line.startswith("two-tower epoch")]


def test_towers_vectors_and_index_are_registered_with_lineage(recsys, trained):
    out, _ = trained
    lake = recsys.lake()
    reg = ModelRegistry(lake)
    towers = reg.get("recsys_two_tower", out["version"])
    assert towers.training["table"] == "recsys/impressions"
    assert towers.metrics["quality"]["methods"]["two_tower"]["ndcg@20"] > 0
    table, version = out["vectors"][0], out["vectors"][1]
    vectors = lake.read(table, version)
    assert vectors.num_rows == recsys.spec.items
    assert set(vectors["model_version"].to_pylist()) == {out["version"]}
    index = out["index"]
    assert index.name == "recsys_item_index"
    _, ann = reg.load(index.name, index.version)
    ids, scores = ann.search(np.asarray(vectors["vector"][0].as_py(), np.float32)[None, :], 5)
    # An item's own vector is its nearest neighbour (unit vectors: cosine 1).
    assert ids[0, 0] == vectors["item_id"][0].as_py()
    assert np.all(np.diff(scores[0]) <= 1e-6)


def test_a_lake_without_impressions_is_refused_with_the_fix(recsys, tmp_path):
    from raylake.recsys.jobs import recsys_train

    cfg = recsys.config(f"lake.root={tmp_path / 'empty'}", job="recsys-train")
    with pytest.raises(ConfigError, match="recsys-impressions|ingest"):
        recsys_train(cfg, echo=quiet)


def test_an_online_store_materialized_past_the_holdout_is_refused(recsys, trained):
    from raylake.recsys.jobs import recsys_train

    cfg = recsys.config("materialize.end=2026-03-30T00:00:00+00:00", job="recsys-train")
    with pytest.raises(ConfigError, match="after the holdout start"):
        recsys_train(cfg, echo=quiet)
