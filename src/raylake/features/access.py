"""Which features a server refuses: those whose lake column is classified ``restricted``.

A feature view's features are columns of its source table; ``_classification`` (written at
ingestion, lake/classification.py) holds each column's class. A server resolves the
refused set once when its replica starts (``refused_features``) and every lookup checks
the request's plan against it (``check_access``): a request that names a refused feature,
or an on-demand feature whose source view has one (the function gets every feature of its
sources, and what it does with them is not known), gets a 403 naming the feature and
``feature_server.allow_restricted``, the list of "view:feature" or "view" names a
deployment may serve all the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from raylake.errors import ConfigError, FeatureRequestError, did_you_mean
from raylake.features.definitions import Registry

RESTRICTED = "restricted"
ALLOW_KEY = "feature_server.allow_restricted"

# view -> {feature: its source table}: what a server refuses.
Refused = Mapping[str, Mapping[str, str]]


def check_allowed(registry: Registry, allow: Sequence[str]) -> None:
    """ConfigError for an ``allow_restricted`` entry naming no view or feature."""
    for i, name in enumerate(allow):
        view, _, feature = str(name).partition(":")
        if view not in registry.views:
            raise ConfigError(f"{ALLOW_KEY}[{i}]={name!r}: no feature view {view!r}."
                              f"{did_you_mean(view, registry.views)} Views: "
                              f"{', '.join(registry.views) or 'none'}.")
        names = registry.views[view].feature_names
        if feature and feature not in names:
            raise ConfigError(f"{ALLOW_KEY}[{i}]={name!r}: view {view!r} has no feature "
                              f"{feature!r}.{did_you_mean(feature, names)} Its features: "
                              f"{', '.join(names)}.")


def refused_features(registry: Registry, classes: Mapping[str, Mapping[str, Any]],
                     allow: Iterable[str] = ()) -> dict[str, dict[str, str]]:
    """view -> {feature: table} of the stored features whose column is classified
    restricted in ``classes`` (``lake.classification.classification(lake)``) and that
    ``allow`` does not list (as "view:feature" or "view")."""
    allowed = set(allow)
    out: dict[str, dict[str, str]] = {}
    for name, view in registry.views.items():
        if name in allowed:
            continue
        columns = classes.get(view.source, {})
        for f in view.feature_names:
            row = columns.get(f)
            if row is not None and row.get("class") == RESTRICTED and f"{name}:{f}" not in allowed:
                out.setdefault(name, {})[f] = view.source
    return out


def check_access(plan: Any, refused: Refused) -> None:
    """FeatureRequestError (403) when ``plan`` (``on_demand.Plan``) reads a refused feature:
    asked for by name, or as the input of an on-demand feature asked for."""
    for view, feats in plan.fetch.items():
        denied = refused.get(view)
        if not denied:
            continue
        for f in feats:
            if f not in denied:
                continue
            readers = [o.name for o, _ in plan.on_demand if view in o.sources]
            how = "" if f in plan.requested.get(view, ()) else (
                f" (an input of on-demand view {', '.join(readers)}, which reads every "
                f"feature of {view!r})")
            raise FeatureRequestError(
                403, f"Feature {view}:{f}{how} is classified restricted (column {f!r} of "
                     f"table {denied[f]!r}) and is not served. To serve it, list "
                     f"'{view}:{f}' (or '{view}') in {ALLOW_KEY}.")
