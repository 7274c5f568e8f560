"""Which online store to open, and with what: read once from ``online`` in config.

The materialize job, the feature server and the model server's feature lookups
all open the same store; they take its settings from :func:`store_settings`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from raylake.errors import ConfigError
from raylake.features.online.base import OnlineStore


class StoreSettings(NamedTuple):
    """A backend name (``sqlite``, ``redis``) and the keyword arguments that open it.

    A tuple, so it pickles small into Ray tasks and Serve replicas, and code that
    unpacks ``kind, options`` keeps working."""

    kind: str
    options: dict[str, Any]

    def open(self) -> OnlineStore:
        """A connection to the store (each process opens its own)."""
        from raylake.features.online import open_store

        return open_store(self.kind, **self.options)


def store_settings(conf: Any, lake: Any) -> StoreSettings:
    """The online store of ``conf.online`` for ``lake``: a sqlite file defaults to
    ``<lake.root>/_online/online.db``, which needs a local lake."""
    o = conf.online
    kind = str(o.type)  # a plain name, whether the config holds a str or a Choice
    if kind == "sqlite":
        if not lake.storage.local and not o.path:
            raise ConfigError("The sqlite online store needs a local online.path when the lake is remote.")
        return StoreSettings("sqlite", {"path": o.path or f"{lake.root}/_online/online.db"})
    return StoreSettings(kind, {"host": o.host, "port": o.port, "db": o.db, "prefix": o.prefix})
