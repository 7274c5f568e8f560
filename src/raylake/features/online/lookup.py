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
from raylake.features import on_demand
from raylake.features.access import Refused, check_access
from raylake.features.definitions import Registry
from raylake.features.online.base import NULL, PRESENT, OnlineStore

_EPOCH = "1970-01-01T00:00:00Z"


def get_online_features(store: OnlineStore, registry: Registry, features: list[str] | str,
                        entities: dict[str, list[Any]], *, full_feature_names: bool = False,
                        now: dt.datetime | None = None,
                        refused: Refused | None = None) -> dict[str, Any]:
    """Feast's response for ``features`` (``"view:feature"`` names, or a feature service
    name) at the ``entities`` rows: join keys first (request fields are not echoed), then
    each feature, named ``view__feature`` with ``full_feature_names``; on-demand features
    are computed from the values read. ConfigError when the entity lists differ in length or
    lack a view's join key; FeatureNotFoundError for an unknown feature or service;
    FeatureRequestError (403) when the request reads a feature of ``refused``
    (``features.access``: restricted features a server does not serve), before any read."""
    plan = _plan(registry, features)
    if refused:
        check_access(plan, refused)
    sizes = {len(v) for v in entities.values()}
    if len(sizes) != 1:
        raise ConfigError(f"Every entity key needs the same number of values; got {sorted(sizes)}.")
    n = sizes.pop() if sizes else 0
    # Request fields feed on-demand views; like Feast, they are not echoed back.
    request_fields = {f for odfv, _ in plan.on_demand for f in odfv.request_names}
    names = [k for k in entities if k not in request_fields]
    results = [{"values": list(entities[k]), "statuses": [PRESENT] * n,
                "event_timestamps": [_EPOCH] * n} for k in names]
    inputs: dict[str, list[Any]] = {}
    for view_name, feats in plan.fetch.items():
        view = registry.view(view_name)
        missing = [k for k in view.join_keys if k not in entities]
        if missing:
            raise ConfigError(
                f"Feature view {view_name!r} needs entity key(s) {missing}; the request has "
                f"{list(entities)}."
            )
        rows = list(zip(*[entities[k] for k in view.join_keys]))
        cols = store.read_columns(view_name, view.join_keys, rows, feats, view.ttl, now)
        if plan.on_demand:
            for f in feats:
                inputs[plan.column(view_name, f, full_feature_names)] = cols.values[f]
        for f in plan.requested.get(view_name, []):
            names.append(f"{view_name}__{f}" if full_feature_names else f)
            # Lists may be shared between columns (see Columns): callers copy before changing.
            results.append({"values": cols.values[f], "statuses": cols.statuses[f],
                            "event_timestamps": cols.event_timestamps})
    if plan.on_demand:
        _add_on_demand(plan, registry, inputs, entities, n, names, results, full_feature_names, now)
    return {"metadata": {"feature_names": names}, "results": results}


_PLANS: dict[tuple[int, Any], tuple[Registry, on_demand.Plan]] = {}


def _plan(registry: Registry, features: list[str] | str) -> on_demand.Plan:
    """The registry's answer for one request shape, remembered: a server sees few shapes,
    and resolving 50 feature names costs more than looking their values up."""
    try:
        key: tuple[int, Any] | None = (id(registry), features if isinstance(features, str)
                                       else tuple(features))
        hit = _PLANS.get(key)  # type: ignore[arg-type]
    except TypeError:  # a malformed request (a list inside the list): resolve and fail below
        key, hit = None, None
    # The entry holds the registry, so its id is not reused while the entry lives.
    if hit is not None and hit[0] is registry:
        return hit[1]
    plan = on_demand.plan(registry, registry.select(features))
    if key is not None:
        if len(_PLANS) >= 256:  # request shapes come from clients: keep the memory bounded
            _PLANS.clear()
        _PLANS[key] = (registry, plan)
    return plan


def _add_on_demand(plan: on_demand.Plan, registry: Registry, inputs: dict[str, list[Any]],
                   entities: dict[str, list[Any]], n: int, names: list[str],
                   results: list[dict[str, Any]], full_feature_names: bool,
                   now: dt.datetime | None) -> None:
    stamp = (now or dt.datetime.now(dt.timezone.utc)).isoformat().replace("+00:00", "Z")
    columns = {**entities, **inputs}
    for odfv, outs in plan.on_demand:
        frame = on_demand.inputs_frame(odfv, plan, registry, columns, full_feature_names, n)
        for f, arr in on_demand.run(odfv, odfv.load(), frame, outs).items():
            values = arr.to_pylist()
            names.append(f"{odfv.name}__{f}" if full_feature_names else f)
            results.append({
                "values": values,
                "statuses": [PRESENT if v is not None else NULL for v in values],
                "event_timestamps": [stamp] * n,
            })
