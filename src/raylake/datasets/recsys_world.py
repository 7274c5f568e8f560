"""A generated recommendation world whose ground truth is known: who likes what.

No public recommendation dataset may be redistributed with raylake, so the
recommendation pipeline (docs/recommendations.md) runs on a world drawn here with a
fixed seed. Users and items live in one latent space: an item is its category's
centre plus noise, a user a blend of one to three favourite categories plus noise,
and how much a user likes an item is the dot product of the two plus the item's
popularity. A deployed recommender's traffic is simulated over ``days`` days:
requests (pages of ``slate`` impressions) from users in proportion to a power-law
activity, filled half from global popularity and half from the user's favourite
categories (so exposure is biased, as in real logs); each impression is clicked
with a probability that grows with the true affinity and falls with the position on
the page, and a click becomes a purchase more often for liked and cheaper items.

    python -m raylake.datasets.recsys_world --out data/recsys_world
    raylake ingest dataset=recsys_world dataset.root=data/recsys_world

The files written: ``users/users.parquet``, ``items/items.parquet``,
``events/part-NNN.parquet`` (impressions, clicks and purchases in time order, one
file per ``days_per_file`` days) and ``truth/{users,items}.parquet`` with the latent
vectors, which the offline evaluation reads and no model may (a model that saw them
would be scored against its own input).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

EVENTS = ("impression", "click", "purchase")
_DAY_US = 86_400 * 1_000_000


@dataclass(frozen=True)
class WorldSpec:
    """The size and shape of the world; the defaults make about 10 million events."""

    users: int = 50_000
    items: int = 10_000
    categories: int = 24
    dim: int = 16
    days: int = 90
    start: str = "2026-01-01"
    requests: int = 940_000  # pages shown; x slate = impressions
    slate: int = 10
    popularity_exponent: float = 1.1  # Zipf: the item of rank r is shown ~ r**-exponent
    activity_shape: float = 1.5  # Pareto shape of how often each user comes back
    click_rate: float = 0.08  # the mean click-through rate the intercept is fitted to
    purchase_rate: float = 0.12  # purchases per click, likewise
    days_per_file: int = 10
    seed: int = 7

    def check(self) -> None:
        """Raise ValueError naming the sizes that cannot make a world."""
        small = {k: v for k, v in asdict(self).items()
                 if k in ("users", "items", "categories", "dim", "days", "requests", "slate",
                          "days_per_file") and v < 1}
        if small:
            raise ValueError(f"recsys world: {small} must be at least 1")
        if self.items < self.slate:
            raise ValueError(f"recsys world: items={self.items} is fewer than one page "
                             f"(slate={self.slate}): raise items or lower slate")


@dataclass
class World:
    """The latent truth, the catalogue and the traffic, as Arrow tables."""

    spec: WorldSpec
    user_vectors: np.ndarray  # (users, dim) float32
    item_vectors: np.ndarray  # (items, dim) float32
    item_bias: np.ndarray  # (items,) float32: the popularity part of the affinity
    users: pa.Table
    items: pa.Table
    events: pa.Table

    def affinity(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        """The true affinity of each (user, item) pair (ids as in the tables)."""
        u = self.user_vectors[np.asarray(user_ids) - 1]
        i = np.asarray(item_ids) - 1
        return np.einsum("nd,nd->n", u, self.item_vectors[i]) + self.item_bias[i]


def generate(spec: WorldSpec = WorldSpec()) -> World:
    """Draw the world; the same spec gives the same tables, byte for byte."""
    spec.check()
    rng = np.random.default_rng(spec.seed)
    n_u, n_i, n_c, d = spec.users, spec.items, spec.categories, spec.dim

    # Items: a category (some categories bigger than others), a vector near its centre,
    # a price whose level depends on the category, a popularity that follows a power law.
    centres = rng.normal(size=(n_c, d)).astype(np.float32) / np.sqrt(d) * 2.0
    category_share = rng.dirichlet(np.full(n_c, 2.0))
    item_cat = rng.choice(n_c, size=n_i, p=category_share)
    item_vec = centres[item_cat] + rng.normal(scale=0.5 / np.sqrt(d), size=(n_i, d))
    item_vec = item_vec.astype(np.float32)
    rank = rng.permutation(n_i) + 1
    popularity = rank.astype(np.float64) ** -spec.popularity_exponent
    popularity /= popularity.sum()
    item_bias = (0.3 * np.log(popularity * n_i)).astype(np.float32)
    price_level = rng.uniform(np.log(5), np.log(200), size=n_c)
    price = np.round(np.exp(price_level[item_cat] + rng.normal(scale=0.4, size=n_i)), 2)

    # Users: one to three favourite categories, a vector that blends them, an activity.
    n_fav = rng.integers(1, 4, size=n_u)
    favs = rng.choice(n_c, size=(n_u, 3), p=category_share)
    weights = (np.arange(3)[None, :] < n_fav[:, None]).astype(np.float32)
    weights /= weights.sum(axis=1, keepdims=True)
    user_vec = np.einsum("uk,ukd->ud", weights, centres[favs])
    user_vec = (user_vec + rng.normal(scale=0.6 / np.sqrt(d), size=(n_u, d))).astype(np.float32)
    activity = rng.pareto(spec.activity_shape, size=n_u) + 1.0
    activity /= activity.sum()

    start_us = int(np.datetime64(spec.start, "us").astype(np.int64))
    users = pa.table({
        "user_id": pa.array(np.arange(1, n_u + 1), pa.int64()),
        "signup_ts": pa.array(start_us - rng.integers(0, 365 * _DAY_US, size=n_u),
                              pa.timestamp("us")),
        "region": pa.array(rng.choice(np.array(["north", "south", "east", "west"]), size=n_u)),
    })
    items = pa.table({
        "item_id": pa.array(np.arange(1, n_i + 1), pa.int64()),
        "category": pa.array(np.char.add("c", np.char.zfill(item_cat.astype(str), 2))),
        "price": pa.array(price, pa.float64()),
        "created_ts": pa.array(start_us - rng.integers(0, 365 * _DAY_US, size=n_i),
                               pa.timestamp("us")),
    })

    # Traffic: requests in time order; each page's slots filled half from global
    # popularity, half from one of the user's favourite categories by popularity within it.
    n_r, slate = spec.requests, spec.slate
    req_ts = np.sort(rng.integers(0, spec.days * _DAY_US, size=n_r)) + start_us
    req_user = rng.choice(n_u, size=n_r, p=activity)
    user_of = np.repeat(req_user, slate)
    n_imp = n_r * slate
    by_cat = np.argsort(item_cat, kind="stable")  # item indices, category by category
    cat_sorted, pop_sorted = item_cat[by_cat], popularity[by_cat]
    within = np.empty(n_i)  # each category's cumulative popularity, in (c, c + 1]
    for c in range(n_c):
        seg = np.flatnonzero(cat_sorted == c)
        if len(seg):
            cum = np.cumsum(pop_sorted[seg])
            within[seg] = c + cum / cum[-1]
    global_cdf = np.cumsum(popularity)
    global_cdf /= global_cdf[-1]
    from_pop = rng.random(n_imp) < 0.5
    slot_fav = favs[user_of, rng.integers(0, 3, size=n_imp) % n_fav[user_of]]
    draw = rng.random(n_imp)
    item_idx = np.where(
        from_pop,
        np.minimum(np.searchsorted(global_cdf, draw), n_i - 1),
        by_cat[np.minimum(np.searchsorted(within, slot_fav + draw), n_i - 1)],
    )
    page = np.repeat(np.arange(n_r, dtype=np.int64), slate)
    for attempt in range(1000):  # a page shows an item once: redraw the repeats
        key = page * n_i + item_idx
        order = np.argsort(key, kind="stable")
        repeat = np.zeros(n_imp, dtype=bool)
        repeat[order[1:]] = key[order[1:]] == key[order[:-1]]
        if not repeat.any():
            break
        # From popularity first, then uniformly: a small catalogue's head item comes
        # back too often to ever leave a page by popularity alone.
        n_rep = int(repeat.sum())
        item_idx[repeat] = (np.minimum(np.searchsorted(global_cdf, rng.random(n_rep)), n_i - 1)
                            if attempt < 10 else rng.integers(0, n_i, size=n_rep))
    position = np.tile(np.arange(slate, dtype=np.int8), n_r)

    # Clicks and purchases: the true affinity, a position bias, intercepts fitted by
    # bisection so the mean rates are the spec's (the world stays readable at any size).
    aff = np.empty(n_imp, dtype=np.float32)
    for lo in range(0, n_imp, 1 << 20):
        hi = min(lo + (1 << 20), n_imp)
        aff[lo:hi] = np.einsum("nd,nd->n", user_vec[user_of[lo:hi]],
                               item_vec[item_idx[lo:hi]]) + item_bias[item_idx[lo:hi]]
    score = 1.2 * (aff - aff.mean()) / (aff.std() + 1e-9) - 0.15 * position
    clicked = rng.random(n_imp) < _sigmoid(score + _intercept(score, spec.click_rate))
    buy_score = score[clicked] - 0.5 * np.log(price[item_idx[clicked]])
    bought = rng.random(int(clicked.sum())) < _sigmoid(
        buy_score + _intercept(buy_score, spec.purchase_rate))

    # The event log: every impression, then a click a few seconds after it, a purchase a
    # few minutes after the click; sorted by time, ids in that order.
    imp_ts = np.repeat(req_ts, slate)
    click_ts = imp_ts[clicked] + rng.integers(1, 30, size=int(clicked.sum())) * 1_000_000
    buy_ts = click_ts[bought] + rng.integers(60, 1800, size=int(bought.sum())) * 1_000_000
    request_id = np.repeat(np.arange(1, n_r + 1), slate)
    parts = [
        (imp_ts, user_of, item_idx, request_id, position, 0),
        (click_ts, user_of[clicked], item_idx[clicked], request_id[clicked],
         position[clicked], 1),
        (buy_ts, user_of[clicked][bought], item_idx[clicked][bought],
         request_id[clicked][bought], position[clicked][bought], 2),
    ]
    ts = np.concatenate([p[0] for p in parts])
    order = np.argsort(ts, kind="stable")
    kind = np.concatenate([np.full(len(p[0]), p[5], dtype=np.int8) for p in parts])[order]
    events = pa.table({
        "event_id": pa.array(np.arange(1, len(ts) + 1), pa.int64()),
        "ts": pa.array(ts[order], pa.timestamp("us")),
        "user_id": pa.array(np.concatenate([p[1] for p in parts])[order] + 1, pa.int64()),
        "item_id": pa.array(np.concatenate([p[2] for p in parts])[order] + 1, pa.int64()),
        "event": pa.DictionaryArray.from_arrays(pa.array(kind), pa.array(EVENTS)).cast(
            pa.string()),
        "request_id": pa.array(np.concatenate([p[3] for p in parts])[order], pa.int64()),
        "position": pa.array(np.concatenate([p[4] for p in parts])[order], pa.int8()),
    })
    return World(spec, user_vec, item_vec, item_bias, users, items, events)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _intercept(score: np.ndarray, rate: float) -> float:
    """The shift b with mean(sigmoid(score + b)) == rate (bisection: monotone in b)."""
    lo, hi = -30.0, 30.0
    sample = score[:: max(1, len(score) // 200_000)]
    for _ in range(50):
        mid = (lo + hi) / 2
        if _sigmoid(sample + mid).mean() < rate:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def write(world: World, out: str | Path) -> dict[str, int]:
    """Write the world as Parquet files under ``out``; the row count of each table."""
    out = Path(out)
    spec = world.spec
    for sub in ("users", "items", "events", "truth"):
        (out / sub).mkdir(parents=True, exist_ok=True)
        for old in (out / sub).glob("*.parquet"):
            old.unlink()  # a smaller world written over a bigger one leaves no strays
    pq.write_table(world.users, out / "users" / "users.parquet")
    pq.write_table(world.items, out / "items" / "items.parquet")
    day = (world.events["ts"].cast(pa.int64()).to_numpy() - int(
        np.datetime64(spec.start, "us").astype(np.int64))) // _DAY_US
    bounds = np.searchsorted(day, np.arange(0, spec.days, spec.days_per_file))
    # The last file also takes the clicks and purchases after the last day's pages.
    bounds = np.append(bounds, len(day))
    for n, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=False)):
        if hi > lo:
            pq.write_table(world.events.slice(lo, hi - lo),
                           out / "events" / f"part-{n:03d}.parquet", row_group_size=1 << 20)
    pq.write_table(pa.table({
        "user_id": world.users["user_id"],
        "vector": pa.FixedSizeListArray.from_arrays(world.user_vectors.ravel(), spec.dim),
    }), out / "truth" / "users.parquet")
    pq.write_table(pa.table({
        "item_id": world.items["item_id"],
        "vector": pa.FixedSizeListArray.from_arrays(world.item_vectors.ravel(), spec.dim),
        "bias": pa.array(world.item_bias),
    }), out / "truth" / "items.parquet")
    (out / "spec.json").write_text(json.dumps(asdict(spec), indent=2) + "\n")
    return {"users": world.users.num_rows, "items": world.items.num_rows,
            "events": world.events.num_rows}


def main(argv: list[str] | None = None) -> int:
    """``python -m raylake.datasets.recsys_world --out DIR [--users N ...]``."""
    p = argparse.ArgumentParser(prog="python -m raylake.datasets.recsys_world",
                                description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="folder to write the Parquet files into")
    for name, default in asdict(WorldSpec()).items():
        p.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    ns = vars(p.parse_args(argv))
    out = ns.pop("out")
    counts = write(generate(WorldSpec(**ns)), out)
    print(f"recsys world: {counts['users']:,} users, {counts['items']:,} items, "
          f"{counts['events']:,} events -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
