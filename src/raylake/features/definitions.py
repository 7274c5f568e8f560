"""Feature definitions (Feast's concepts): entities, feature views, feature services.

Definitions come from config (``conf/features/``); :func:`resolve` checks them
against each other and, given a lake, against the source tables (missing
column, wrong type) with errors that say what to fix.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from raylake.config.values import parse_duration
from raylake.errors import ConfigError, FeatureNotFoundError, did_you_mean
from raylake.features.on_demand import OnDemandFeatureView
from raylake.lake.types import arrow_type, type_name


@dataclass(frozen=True)
class Entity:
    """An entity (a flight, an airport): the join keys that identify it."""

    name: str
    join_keys: tuple[str, ...]
    value_type: str = "string"
    description: str = ""


@dataclass(frozen=True)
class FeatureView:
    """Features of a lake table, joined on an entity's keys as of an event time."""

    name: str
    source: str
    join_keys: tuple[str, ...]
    features: tuple[tuple[str, pa.DataType], ...]
    timestamp_field: str | None = None
    created_timestamp_column: str | None = None
    ttl: dt.timedelta | None = None
    source_version: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    owner: str = ""
    description: str = ""

    @property
    def feature_names(self) -> list[str]:
        """The view's feature names, in declared order."""
        return [f for f, _ in self.features]


@dataclass
class Registry:
    """Resolved definitions: entities, feature views, services and on-demand views by name."""

    entities: dict[str, Entity] = field(default_factory=dict)
    views: dict[str, FeatureView] = field(default_factory=dict)
    services: dict[str, list[str]] = field(default_factory=dict)
    on_demand: dict[str, OnDemandFeatureView] = field(default_factory=dict)

    def request_types(self, views: Sequence[str] | None = None) -> dict[str, str]:
        """Request field -> type name, over the named (or all) on-demand views."""
        out = {}
        for name, odfv in self.on_demand.items():
            if views is None or name in views:
                out.update({f: type_name(t) for f, t in odfv.request})
        return out

    def key_types(self) -> dict[str, str]:
        """Join key -> declared value type, over all entities."""
        return {k: e.value_type for e in self.entities.values() for k in e.join_keys}

    def view(self, name: str) -> FeatureView:
        """The stored view ``name``; a clear error for an unknown or on-demand name."""
        if name not in self.views:
            known = [*self.views, *self.on_demand]
            kind = " (an on-demand view: it has no stored rows)" if name in self.on_demand else ""
            raise FeatureNotFoundError(
                f"No feature view {name!r}{kind}.{did_you_mean(name, known)} "
                f"Views: {', '.join(known) or 'none'} (conf/features/)."
            )
        return self.views[name]

    def _feature_names(self, name: str) -> list[str]:
        if name in self.on_demand:
            return self.on_demand[name].feature_names
        return self.view(name).feature_names

    def select(self, features: Sequence[str] | str) -> dict[str, list[str]]:
        """``["view:feature", "view", ...]`` or a feature service name -> {view: [features]}."""
        if isinstance(features, str):
            if features not in self.services:
                raise FeatureNotFoundError(
                    f"No feature service {features!r}.{did_you_mean(features, self.services)} "
                    f"Services: {', '.join(self.services) or 'none'}."
                )
            features = self.services[features]
        out: dict[str, list[str]] = {}
        for ref in features:
            view_name, _, feat = ref.partition(":")
            names = self._feature_names(view_name)
            wanted = [feat] if feat else names
            for f in wanted:
                if f not in names:
                    raise FeatureNotFoundError(
                        f"Feature view {view_name!r} has no feature {f!r}."
                        f"{did_you_mean(f, names)} Its features: {', '.join(names)}."
                    )
                out.setdefault(view_name, [])
                if f not in out[view_name]:
                    out[view_name].append(f)
        return out


def resolve(cfg: Any) -> Registry:
    """Definitions from a ``FeaturesConfig``, checked against each other."""
    reg = Registry()
    for name, e in cfg.entities.items():
        if not e.join_keys:
            raise ConfigError(f"Entity {name!r} needs join_keys.")
        arrow_type(e.value_type, f"entity {name}")
        reg.entities[name] = Entity(name, tuple(e.join_keys), e.value_type, e.description)
    for name, v in cfg.feature_views.items():
        keys: list[str] = []
        for ent in v.entities:
            if ent not in reg.entities:
                raise ConfigError(
                    f"Feature view {name!r} names entity {ent!r}, which is not defined."
                    f"{did_you_mean(ent, reg.entities)}"
                )
            keys += list(reg.entities[ent].join_keys)
        if not v.features:
            raise ConfigError(f"Feature view {name!r} declares no features.")
        feats = tuple((f, arrow_type(c.type, f"{name}.{f}")) for f, c in v.features.items())
        reg.views[name] = FeatureView(
            name=name, source=v.source, join_keys=tuple(keys), features=feats,
            timestamp_field=v.timestamp_field, created_timestamp_column=v.created_timestamp_column,
            ttl=_ttl(v.ttl, name), source_version=v.source_version,
            tags=tuple(sorted(v.tags.items())), owner=v.owner, description=v.description,
        )
    for name, o in getattr(cfg, "on_demand_feature_views", {}).items():
        if name in reg.views:
            raise ConfigError(f"On-demand view {name!r} has the name of a feature view; rename one.")
        for src in o.sources:
            reg.view(src)  # must be a stored view
        if not o.features:
            raise ConfigError(f"On-demand view {name!r} declares no features.")
        reg.on_demand[name] = OnDemandFeatureView(
            name=name, function=o.function, sources=tuple(o.sources),
            request=tuple((f, arrow_type(t, f"{name}.{f}")) for f, t in o.request.items()),
            features=tuple((f, arrow_type(c.type, f"{name}.{f}")) for f, c in o.features.items()),
            description=o.description,
        )
        reg.on_demand[name].load()  # the function path must import
    for name, refs in cfg.feature_services.items():
        reg.services[name] = list(refs)
        reg.select(name)  # every reference must resolve
    return reg


def _ttl(text: str | None, view: str) -> dt.timedelta | None:
    # A bad ttl names its own key, not a quality constraint's max_age.
    return parse_duration(text, f"features.feature_views.{view}.ttl") if text else None


def check_against_lake(reg: Registry, lake: Any) -> list[dict[str, Any]]:
    """Each view's source exists and has its keys, times and features with the declared
    types; returns what was checked (table and version per view)."""
    checked = []
    for view in reg.views.values():
        dtab = lake.table(view.source, view.source_version)
        schema = pa.schema(dtab.schema().to_arrow())
        types = {f.name: f.type for f in schema}
        problems = []
        for col in [*view.join_keys, view.timestamp_field, view.created_timestamp_column]:
            if col and col not in types:
                problems.append(f"column {col!r} is missing{did_you_mean(col, types)}")
        for col in (view.timestamp_field, view.created_timestamp_column):
            if col and col in types and not pa.types.is_timestamp(types[col]):
                problems.append(f"column {col!r} is {types[col]}, not a timestamp")
        for f, t in view.features:
            if f not in types:
                problems.append(f"feature {f!r} is missing{did_you_mean(f, types)}")
            elif types[f] != t:
                problems.append(f"feature {f!r} is {types[f]} in {view.source!r}, declared {t}")
        if problems:
            raise ConfigError(
                f"Feature view {view.name!r} does not match table {view.source!r}: "
                f"{'; '.join(problems)}. Fix conf/features/ or the table."
            )
        checked.append({"view": view.name, "table": view.source, "version": dtab.version()})
    from raylake.features.on_demand import check

    for odfv in reg.on_demand.values():
        check(odfv, reg)
    return checked
