"""Scoring (user, candidate item) pairs with the ranker: the rows it was trained on,
rebuilt from the online store, and one model call.

The ranker (``raylake train experiment=recsys``) learned from the point-in-time training
set of impressions, whose columns are the impression's entity columns (``category``) and
the feature service's features named ``view__feature``. Here the same columns come from
the online store, read once per feature view for the distinct keys of the whole batch
(a request's candidates, or every evaluation user's candidates at once: one batched
read per view, nothing per candidate in Python), and from the catalogue for the item's
own columns. The offline evaluation and ``POST /recommend`` both score through this
class, so what is measured offline is what is served.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from raylake.errors import ConfigError, ModelNotFoundError
from raylake.lake.tables import Lake
from raylake.models.spec import FeatureSpec


@dataclass
class ViewRead:
    """One feature view the ranker reads: its join keys and (feature, column) pairs."""

    view: str
    keys: list[str]
    features: list[tuple[str, str]]


class RankerScorer:
    """A registered ranker bound to the online store and the item catalogue."""

    def __init__(self, ref: str, spec: FeatureSpec, predict: Callable[[pa.Table], np.ndarray],
                 store: Any, registry: Any, catalogue: pa.Table) -> None:
        self.ref, self.spec, self.predict, self.store = ref, spec, predict, store
        self.item_ids = catalogue["item_id"].to_numpy()
        order = self.item_ids.argsort()
        self.item_ids = self.item_ids[order]
        self.catalogue = {c: catalogue[c].take(pa.array(order)) for c in catalogue.column_names}
        self.reads = _plan(spec, registry)
        read_cols = {c for r in self.reads for _, c in r.features}
        self.direct = [c for c in spec.names if c not in read_cols]
        unknown = [c for c in self.direct if c not in self.catalogue and c != "user_id"]
        if unknown:
            raise ModelNotFoundError(
                f"Ranker {ref} needs columns {unknown} that neither a feature view of the "
                "feature service nor the item catalogue holds; train it with "
                "`raylake train experiment=recsys` on the recsys training set.")

    def rows(self, users: np.ndarray, items: np.ndarray) -> pa.Table:
        """The ranker's input columns for pairs (``users[j]``, ``items[j]``)."""
        pos = np.searchsorted(self.item_ids, items)
        pos = np.minimum(pos, len(self.item_ids) - 1)
        known = self.item_ids[pos] == items
        keyed: dict[str, Any] = {"user_id": users, "item_id": items}
        cols: dict[str, Any] = {}
        for c in {*self.direct, *(k for r in self.reads for k in r.keys)}:
            if c in keyed:
                continue
            if c in self.catalogue:
                keyed[c] = _take(self.catalogue[c], pos, known)
        for c in self.direct:
            cols[c] = keyed[c]
        for r in self.reads:
            cols.update(self._read(r, [keyed[k] for k in r.keys]))
        return pa.table({c: cols[c] for c in self.spec.names})

    def _read(self, r: ViewRead, key_cols: list[Any]) -> dict[str, Any]:
        """One batched read of view ``r`` for the distinct keys among the rows."""
        arrays = [np.asarray(k.to_numpy(zero_copy_only=False) if isinstance(k, pa.Array) else k)
                  for k in key_cols]
        if len(arrays) == 1:
            distinct, inverse = np.unique(arrays[0], return_inverse=True)
            rows = [(v,) for v in distinct.tolist()]
        else:
            stacked = np.rec.fromarrays(arrays)
            distinct, inverse = np.unique(stacked, return_inverse=True)
            rows = [tuple(v) for v in distinct.tolist()]
        got = self.store.read_columns(r.view, r.keys, rows, [f for f, _ in r.features], None,
                                      dt.datetime.now(dt.timezone.utc))
        out = {}
        for f, col in r.features:
            values = got.values[f]
            if values and isinstance(next((v for v in values if v is not None), 0.0), str):
                out[col] = pa.array(values, pa.string()).take(pa.array(inverse))
            else:
                out[col] = np.array(values, dtype=np.float64)[inverse]
        return out

    def score(self, users: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """Scores (n, c) of each row's candidates for its user."""
        n, c = candidates.shape
        flat_users = np.repeat(np.asarray(users, np.int64), c)
        return self.predict(self.rows(flat_users, candidates.reshape(-1))).reshape(n, c)


def _take(col: Any, pos: np.ndarray, known: np.ndarray) -> Any:
    taken = col.take(pa.array(pos))
    if known.all():
        return taken
    mask = pa.array(~known)
    return pa.compute.if_else(mask, pa.nulls(len(taken), taken.type), taken)


def _plan(spec: FeatureSpec, registry: Any) -> list[ViewRead]:
    """Which view each ``view__feature`` column of the spec is read from."""
    by_view: dict[str, list[tuple[str, str]]] = {}
    for col in spec.names:
        view, sep, feat = col.partition("__")
        if sep and view in registry.views:
            by_view.setdefault(view, []).append((feat, col))
    return [ViewRead(v, list(registry.views[v].join_keys), feats) for v, feats in by_view.items()]


def open_ranker(lake: Lake, conf: Any, ref: str | None = None) -> RankerScorer:
    """The ranker ``ref`` (default: ``recsys.ranker_model``'s champion, else its latest),
    with the online store of ``conf.online`` and the features of ``conf.features``."""
    from raylake.features.definitions import resolve
    from raylake.features.online.settings import store_settings
    from raylake.models.flavors import get_flavor
    from raylake.models.registry import ModelRegistry

    registry = ModelRegistry(lake)
    mv, model = registry.load(ref or conf.recsys.ranker_model)
    spec = FeatureSpec.from_dict(mv.preprocessing)
    flavor = get_flavor(mv.flavor)
    predict = (flavor.predictor(model, spec) if hasattr(flavor, "predictor")
               else lambda t: flavor.predict(model, spec, t))
    store = store_settings(conf, lake).open()
    catalogue = lake.read(conf.recsys.items_table)
    return RankerScorer(mv.ref, spec, predict, store, resolve(conf.features), catalogue)


def offline_ranker(lake: Lake, conf: Any, start: dt.datetime) -> RankerScorer | None:
    """The ranker for the offline evaluation, or None when none is registered yet (the
    quality table then has no ``pipeline`` row). ``start``: the holdout start; the
    online store must have been materialized up to it (``materialize.end``), else the
    evaluation would read features of the holdout it scores."""
    end = conf.materialize.end
    if end:
        t = dt.datetime.fromisoformat(str(end).replace("Z", "+00:00"))
        t = t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t
        if t > start:
            raise ConfigError(
                f"materialize.end={end!r} is after the holdout start {start.isoformat()}: "
                "the offline evaluation would score the holdout with features computed "
                "from it. Materialize up to the holdout start (`raylake materialize "
                f"experiment=recsys materialize.end={start.isoformat()}`) and set the "
                "same materialize.end here.")
    try:
        return open_ranker(lake, conf)
    except ModelNotFoundError:
        return None
