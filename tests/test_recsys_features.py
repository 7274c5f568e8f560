"""The ranker's data on a small generated world (tests/recsys_lake.py): the impressions
table holds every impression once with its click and purchase labels, a re-run adds
nothing, the window aggregations of `clicked` reach the training set as of each
impression's time (checked against pandas), and `raylake train experiment=recsys` learns
a ranker that tells clicks apart."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from recsys_lake import SMALL, quiet, recsys_lake, train_ranker

from raylake.errors import TableNotFoundError
from raylake.lake.runs import get_run

DAY = pd.Timedelta("1D")


@pytest.fixture(scope="session")
def recsys(ray_session, tmp_path_factory):
    return recsys_lake(tmp_path_factory)


def events_frame(lake) -> pd.DataFrame:
    return lake.read("recsys/events").to_pandas()


@pytest.mark.slow
def test_impressions_hold_every_impression_once_with_its_labels(recsys):
    lake = recsys.lake()
    events = events_frame(lake)
    imp = lake.read("recsys/impressions").to_pandas()
    shown = events[events["event"] == "impression"]
    assert len(imp) == len(shown) == SMALL.requests * SMALL.slate
    assert imp["event_id"].is_unique and set(imp["event_id"]) == set(shown["event_id"])
    assert imp["event_id"].is_monotonic_increasing
    for col, kind in (("clicked", "click"), ("purchased", "purchase")):
        pairs = set(map(tuple, events.loc[events["event"] == kind, ["request_id", "position"]]
                        .to_numpy().tolist()))
        got = set(map(tuple, imp.loc[imp[col], ["request_id", "position"]].to_numpy().tolist()))
        assert got == pairs, col
    assert imp["clicked"].mean() == pytest.approx(SMALL.click_rate, rel=0.1)
    assert not (imp["purchased"] & ~imp["clicked"]).any()  # a purchase follows a click
    items = lake.read("recsys/items").to_pandas().set_index("item_id")
    assert (imp["category"].to_numpy() == items.loc[imp["item_id"], "category"].to_numpy()).all()
    assert np.array_equal(imp["price"].to_numpy(), items.loc[imp["item_id"], "price"].to_numpy())
    # Same impression, same row: the event log's columns are carried unchanged.
    merged = imp.merge(shown, on="event_id", suffixes=("", "_e"))
    for col in ("ts", "user_id", "item_id", "request_id", "position"):
        assert (merged[col] == merged[f"{col}_e"]).all(), col

    out = recsys.results["recsys-impressions"]
    assert out["rows"] == len(imp) and out["clicks"] == int(imp["clicked"].sum())
    run = get_run(lake, out["run_id"])
    assert {"table": "recsys/events", "version": 0, "role": "events"} in run["inputs"]
    assert {"table": "recsys/items", "version": 0, "role": "items"} in run["inputs"]
    assert run["outputs"] == [{"table": "recsys/impressions", "version": 0,
                               "rows": len(imp), "skipped": False}]


@pytest.mark.slow
def test_a_rerun_over_the_same_versions_adds_nothing(recsys):
    from raylake.recsys.jobs_impressions import recsys_impressions

    lake = recsys.lake()
    lines: list[str] = []
    again = recsys_impressions(recsys.config(job="recsys-impressions"), echo=lines.append)
    assert again["skipped"] and again["version"] == 0 and again["status"] == "skipped"
    assert lake.version("recsys/impressions") == 0
    assert lake.count("recsys/impressions") == SMALL.requests * SMALL.slate
    assert "already built from recsys/events@0" in lines[-1]
    # Pinned to the version it was built from: the same answer.
    pinned = recsys_impressions(recsys.config("recsys.events_table=recsys/events@0",
                                              job="recsys-impressions"), echo=quiet)
    assert pinned["skipped"] and pinned["version"] == 0


def _reference(imp: pd.DataFrame, keys: dict, t: pd.Timestamp, window: pd.Timedelta):
    """(mean, sum, count) of `clicked` over the entity's impressions in the latest daily
    window [end - window, end) with end <= t that holds any (what an as-of join of the
    aggregation rows without a ttl gives); None when no window before t holds one."""
    mask = np.ones(len(imp), dtype=bool)
    for k, v in keys.items():
        mask &= (imp[k] == v).to_numpy()
    mine = imp[mask]
    end = t.floor("1D")
    while end > mine["ts"].min() if len(mine) else False:
        w = mine[(mine["ts"] >= end - window) & (mine["ts"] < end)]
        if len(w):
            return w["clicked"].mean(), w["clicked"].sum(), len(w)
        end -= DAY
    return None


@pytest.mark.slow
def test_window_features_are_point_in_time_correct(recsys):
    lake = recsys.lake()
    imp = lake.read("recsys/impressions").to_pandas()
    imp["clicked"] = imp["clicked"].astype(float)
    train_set = lake.read("training/recsys_impressions").to_pandas()
    assert len(train_set) == len(imp)
    assert "clicked" not in train_set and train_set["click"].dtype == bool
    item = imp["item_id"].value_counts().index[0]
    user = imp["user_id"].value_counts().index[0]
    category = imp.loc[imp["user_id"] == user, "category"].value_counts().index[0]
    checks = [
        ("item_ctr_1d", {"item_id": item}, "1d"), ("item_ctr_7d", {"item_id": item}, "7d"),
        ("item_ctr_30d", {"item_id": item}, "30d"), ("user_ctr_7d", {"user_id": user}, "7d"),
        ("user_ctr_30d", {"user_id": user}, "30d"),
        ("user_category_ctr_30d", {"user_id": user, "category": category}, "30d"),
    ]
    rng = np.random.default_rng(0)
    for view, keys, window in checks:
        mask = np.ones(len(train_set), dtype=bool)
        for k, v in keys.items():
            mask &= (train_set[k] == v).to_numpy()
        rows = train_set[mask]
        rows = rows.iloc[np.sort(rng.choice(len(rows), min(25, len(rows)), replace=False))]
        # The first day's rows have no window before them: their features are missing.
        assert len(rows) >= 10, view
        for _, row in rows.iterrows():
            want = _reference(imp, keys, row["ts"], pd.Timedelta(window))
            got = [row[f"{view}__clicked_{fn}_{window}"] for fn in ("mean", "sum", "count")]
            if want is None:
                assert all(pd.isna(g) for g in got), (view, row["ts"], got)
            else:
                assert got == pytest.approx(list(want)), (view, row["ts"], keys)
    # The static item view: the item's category and price at any time.
    items = lake.read("recsys/items").to_pandas().set_index("item_id")
    assert (train_set["item__category"].to_numpy()
            == items.loc[train_set["item_id"], "category"].to_numpy()).all()


@pytest.mark.slow
def test_the_ranker_trains_with_the_train_job_and_tells_clicks_apart(recsys):
    from raylake.models.registry import ModelRegistry

    out = train_ranker(recsys)
    m = out["metrics"]
    assert m["test"]["auc"] > 0.6, m["test"]
    assert m["split"] == {"valid_start": "2026-03-15T00:00:00+00:00",
                          "test_start": "2026-03-22T00:00:00+00:00"}
    features = set(m["features"])
    assert not features & {"user_id", "item_id", "request_id", "position", "clicked", "click"}
    assert {"category", "item__price", "item_ctr_7d__clicked_mean_7d",
            "user_category_ctr_30d__clicked_mean_30d"} <= features
    mv = ModelRegistry(recsys.lake()).get("recsys_ranker", out["version"])
    assert mv.flavor == "xgboost" and mv.run_id == out["run_id"]


@pytest.mark.slow
def test_the_online_store_holds_the_features_as_of_the_holdout_start(recsys):
    out = recsys.results["materialize"]
    assert out["end"].isoformat() == "2026-03-22T00:00:00+00:00"
    assert set(out["views"]) == {"item", "item_ctr_1d", "item_ctr_7d", "item_ctr_30d",
                                 "user_ctr_7d", "user_ctr_30d", "user_category_ctr_30d"}
    assert all(v["rows"] > 0 for v in out["views"].values())


def test_a_missing_events_table_names_the_command_that_makes_it(tmp_path):
    from raylake.config.loader import compose_config
    from raylake.recsys.jobs_impressions import recsys_impressions

    cfg = compose_config([f"lake.root={tmp_path / 'lake'}", "experiment=recsys"],
                         job="recsys-impressions")
    with pytest.raises(TableNotFoundError, match=r"No table 'recsys/events'.*raylake ingest "
                                                 r"dataset=recsys_world"):
        recsys_impressions(cfg, echo=quiet)
