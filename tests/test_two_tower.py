"""The two-tower network (raylake.models.two_tower): trained with in-batch negatives on a
small generated world it learns who likes what (its scores rank pairs like the world's
hidden affinity), and the torch flavor stores and scores it like any network."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from raylake.datasets.recsys_world import WorldSpec, generate
from raylake.errors import ModelError
from raylake.models.flavors import get_flavor
from raylake.models.spec import FeatureSpec
from raylake.models.two_tower import TwoTower, in_batch_loss

SPEC = WorldSpec(users=500, items=200, requests=20_000, seed=11)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.argsort().argsort(), b.argsort().argsort())[0, 1])


@pytest.fixture(scope="module")
def trained():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: threads cost more than they give (40 s -> 9 s)
    world = generate(SPEC)
    clicks = world.events.filter(pa.compute.equal(world.events["event"], "click"))
    users = torch.tensor(clicks["user_id"].to_numpy())  # ids 1..n are the codes here
    items = torch.tensor(clicks["item_id"].to_numpy())
    share = torch.bincount(items, minlength=SPEC.items + 1).float() + 1
    log_q = torch.log(share / share.sum())
    torch.manual_seed(0)
    model = TwoTower(SPEC.users, SPEC.items, dim=16, hidden=[32])
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    losses = []
    for _ in range(20):
        for idx in torch.randperm(len(users)).split(512):
            loss = in_batch_loss(model, users[idx], items[idx], log_q[items[idx]])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    torch.set_num_threads(threads)
    return world, model.eval(), losses


@pytest.mark.slow
def test_training_learns_the_hidden_affinity(trained):
    world, model, losses = trained
    assert np.mean(losses[-20:]) < np.mean(losses[:20]) - 0.3
    rng = np.random.default_rng(0)
    u = rng.integers(1, SPEC.users + 1, size=5_000)
    i = rng.integers(1, SPEC.items + 1, size=5_000)
    with torch.no_grad():
        score = model(None, torch.tensor(np.stack([u, i], axis=1))).numpy()
    truth = world.affinity(u, i)
    assert _spearman(score, truth) > 0.25, _spearman(score, truth)  # random: about 0


def test_the_torch_flavor_stores_and_scores_it(trained):
    _, model, _ = trained
    flavor = get_flavor("torch")
    saved = flavor.save(model)
    assert saved.info["architecture"] == "TwoTower"
    loaded = flavor.load(saved.data, saved.info)
    spec = FeatureSpec([], ["user_id", "item_id"],
                       {"user_id": [str(i) for i in range(1, SPEC.users + 1)],
                        "item_id": [str(i) for i in range(1, SPEC.items + 1)]}, "clicked")
    table = pa.table({"user_id": [1, 2, 10**9], "item_id": [3, 4, 5]})  # 10**9: unknown
    scores = flavor.predict(loaded, spec, table)
    assert scores.shape == (3,) and ((scores > 0) & (scores < 1)).all()
    with torch.no_grad():
        direct = torch.sigmoid(model(None, torch.tensor([[1, 3], [2, 4]]))).numpy()
    np.testing.assert_allclose(scores[:2], direct, rtol=1e-5)


def test_bad_sizes_say_which():
    with pytest.raises(ModelError, match="num_items=0"):
        TwoTower(10, 0)
    with pytest.raises(ModelError, match="temperature"):
        TwoTower(10, 10, temperature=0)
    with pytest.raises(ModelError, match=r"\[N, 2\]"):
        TwoTower(10, 10)(None, torch.zeros(3, 1, dtype=torch.long))
