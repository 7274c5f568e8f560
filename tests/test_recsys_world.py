"""The generated recommendation world (raylake.datasets.recsys_world): the same seed
gives the same tables, clicks follow the hidden affinity, a page never shows an item
twice, and `raylake ingest dataset=recsys_world` takes every event exactly once."""

from __future__ import annotations

import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest

from raylake.config.loader import compose_config
from raylake.datasets.recsys_world import WorldSpec, generate, write

SMALL = WorldSpec(users=2_000, items=500, requests=20_000)


@pytest.fixture(scope="module")
def world():
    return generate(SMALL)


def test_the_same_seed_gives_the_same_world_and_another_seed_another(world):
    assert generate(SMALL).events.equals(world.events)
    other = generate(WorldSpec(users=2_000, items=500, requests=20_000, seed=8))
    assert not other.events.equals(world.events)


def test_clicks_follow_the_hidden_affinity_at_the_asked_rates(world):
    e = world.events.to_pandas()
    counts = e["event"].value_counts()
    assert counts["impression"] == SMALL.requests * SMALL.slate
    assert counts["click"] / counts["impression"] == pytest.approx(SMALL.click_rate, rel=0.1)
    assert counts["purchase"] / counts["click"] == pytest.approx(SMALL.purchase_rate, rel=0.2)

    imp = e[e["event"] == "impression"]
    clicks = e[e["event"] == "click"]
    clicked = imp.set_index(["request_id", "position"]).index.isin(
        clicks.set_index(["request_id", "position"]).index)
    aff = world.affinity(imp["user_id"].to_numpy(), imp["item_id"].to_numpy())
    # AUC of the true affinity for click vs no click, by ranks (Mann-Whitney).
    ranks = aff.argsort().argsort() + 1
    n1, n0 = clicked.sum(), (~clicked).sum()
    auc = (ranks[clicked].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)
    assert 0.7 < auc < 0.95, auc  # informative, not a lookup table

    # Exposure is biased towards popular items: the top 1% get far more than 1%.
    shown = imp["item_id"].value_counts()
    assert shown.iloc[: SMALL.items // 100].sum() / len(imp) > 0.05


def test_a_page_never_shows_an_item_twice_and_events_follow_their_impression(world):
    e = world.events.to_pandas()
    imp = e[e["event"] == "impression"]
    assert not imp.duplicated(["request_id", "item_id"]).any()
    assert e["ts"].is_monotonic_increasing and e["event_id"].is_unique
    first = imp.set_index(["request_id", "position"])["ts"]
    for kind in ("click", "purchase"):
        later = e[e["event"] == kind].set_index(["request_id", "position"])["ts"]
        assert (later > first.reindex(later.index)).all(), kind


def test_bad_specs_say_what_to_change():
    with pytest.raises(ValueError, match="users"):
        generate(WorldSpec(users=0))
    with pytest.raises(ValueError, match="slate"):
        generate(WorldSpec(items=5, slate=10))


@pytest.mark.slow
def test_ingest_takes_every_event_once(ray_session, world, tmp_path):
    from raylake.ingest.jobs import ingest
    from raylake.lake import Lake, Storage

    data = tmp_path / "world"
    counts = write(world, data)
    assert ds.dataset(data / "events").count_rows() == counts["events"]
    root = str(tmp_path / "lake")
    cfg = compose_config([f"lake.root={root}", "dataset=recsys_world",
                          f"dataset.root={data}"])
    ingest(cfg, echo=lambda *_: None)
    lake = Lake(Storage.from_config(root))
    assert lake.count("recsys/events") == counts["events"]
    assert lake.count("recsys/users") == SMALL.users
    assert lake.count("recsys/items") == SMALL.items
    table = lake.read("recsys/events", columns=["event"])
    assert set(pc.unique(table["event"]).to_pylist()) == {"impression", "click", "purchase"}

    ingest(cfg, echo=lambda *_: None)  # the same files again: nothing added
    assert lake.count("recsys/events") == counts["events"]
    assert lake.count("recsys/users") == SMALL.users
