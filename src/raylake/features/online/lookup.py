"""Online lookups with Feast's request and response shape.

Request:  {"features": ["view:feature", ...] | "feature_service": name,
           "entities": {"join_key": [v1, v2, ...], ...}}
Response: {"metadata": {"feature_names": [join keys..., features...]},
           "results": [{"values": [...], "statuses": [...], "event_timestamps": [...]}, ...]}
One result per column (join keys first), one entry per entity row.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from raylake.errors import ConfigError
from raylake.features.definitions import Registry
from raylake.features.online.base import PRESENT, OnlineStore

_EPOCH = "1970-01-01T00:00:00Z"


def get_online_features(store: OnlineStore, registry: Registry, features: list[str] | str,
                        entities: dict[str, list[Any]], *, full_feature_names: bool = False,
                        now: dt.datetime | None = None) -> dict[str, Any]:
    wanted = registry.select(features)
    sizes = {len(v) for v in entities.values()}
    if len(sizes) != 1:
        raise ConfigError(f"Every entity key needs the same number of values; got {sorted(sizes)}.")
    n = sizes.pop() if sizes else 0
    names = list(entities)
    results = [{"values": list(entities[k]), "statuses": [PRESENT] * n,
                "event_timestamps": [_EPOCH] * n} for k in names]
    for view_name, feats in wanted.items():
        view = registry.view(view_name)
        missing = [k for k in view.join_keys if k not in entities]
        if missing:
            raise ConfigError(
                f"Feature view {view_name!r} needs entity key(s) {missing}; the request has "
                f"{list(entities)}."
            )
        rows = list(zip(*[entities[k] for k in view.join_keys]))
        reads = store.read(view_name, view.join_keys, rows, feats, view.ttl, now)
        for f in feats:
            names.append(f"{view_name}__{f}" if full_feature_names else f)
            results.append({
                "values": [r[f].value for r in reads],
                "statuses": [r[f].status for r in reads],
                "event_timestamps": [r[f].event_ts.isoformat().replace("+00:00", "Z")
                                     if r[f].event_ts else _EPOCH for r in reads],
            })
    return {"metadata": {"feature_names": names}, "results": results}
