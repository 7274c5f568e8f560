"""Online stores: the latest feature values per entity, for low-latency lookups.

Backends are registered by a short name and imported only when used; each takes
its settings from ``features.online`` in config (``type: sqlite`` or ``redis``).
"""

from __future__ import annotations

import importlib
from typing import Any

from raylake.errors import ConfigError, did_you_mean
from raylake.features.online.base import OnlineStore, Read

BACKENDS = {
    "sqlite": "raylake.features.online.sqlite:SqliteStore",
    "redis": "raylake.features.online.redis_store:RedisStore",
}


def open_store(kind: str, **settings: Any) -> OnlineStore:
    """A new online store of type ``kind`` (a key of ``BACKENDS``) built with ``settings``;
    its module is imported only now. ConfigError for an unknown type."""
    if kind not in BACKENDS:
        raise ConfigError(
            f"Online store type {kind!r} is unknown.{did_you_mean(kind, BACKENDS)} "
            f"Types: {', '.join(BACKENDS)}."
        )
    module, _, cls = BACKENDS[kind].partition(":")
    return getattr(importlib.import_module(module), cls)(**settings)


__all__ = ["BACKENDS", "OnlineStore", "Read", "open_store"]
