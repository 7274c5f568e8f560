"""What the model server's request log keeps of a request's entity keys
(``model_server.log_keys``).

Entity keys (an email, a customer id) identify people. The log records the request's keys
(its ``entities`` column) and the model's inputs (``features``); a key whose column is
classified ``pii`` or ``restricted`` in the source table of a feature view that joins on
it (``_classification``) is *governed*: the log holds its keyed HMAC-SHA256
(``hash``, the default: the same function and key as the ingest policies, so joins,
counts and erasure by key still work), the value as requested (``keep``), or nothing
(``drop``). Which keys are governed is resolved once, when the server is deployed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from raylake.errors import GovernanceError
from raylake.pii.policies import hash_values, key_from_env

GOVERNED_CLASSES = ("pii", "restricted")


def governed_keys(features: Any, classes: Mapping[str, Mapping[str, Mapping[str, Any]]]
                  ) -> dict[str, str]:
    """Join key -> its class, for the keys of ``features`` (a FeaturesConfig) whose column
    is classified pii or restricted in the source table of a view that joins on them
    (``classes``: ``lake.classification.classification(lake)``); the strictest wins."""
    out: dict[str, str] = {}
    for view in features.feature_views.values():
        columns = classes.get(view.source, {})
        for entity in view.entities:
            if entity not in features.entities:
                continue
            for key in features.entities[entity].join_keys:
                row = columns.get(key)
                cls = row.get("class") if row else None
                if cls in GOVERNED_CLASSES and out.get(key) != "restricted":
                    out[key] = str(cls)
    return out


@dataclass(frozen=True)
class LogKeyPolicy:
    """The log's policy for governed keys: ``apply`` gives a request's columns as logged."""

    action: str = "keep"  # hash | keep | drop
    keys: frozenset[str] = frozenset()
    key: bytes | None = field(default=None, repr=False)  # never printed

    @property
    def active(self) -> bool:
        """Anything to change in a logged row."""
        return self.action != "keep" and bool(self.keys)

    def apply(self, columns: Mapping[str, list[Any]] | None) -> dict[str, list[Any]] | None:
        """``columns`` (key or feature name -> values) with each governed key hashed or
        left out; others as they are."""
        if columns is None:
            return None
        if not self.active or not self.keys.intersection(columns):
            return dict(columns)
        out: dict[str, list[Any]] = {}
        for name, values in columns.items():
            if name not in self.keys:
                out[name] = values
            elif self.action == "hash":
                assert self.key is not None
                out[name] = _hashed(values, self.key)
        return out

    def scrub(self, text: str | None, columns: Mapping[str, list[Any]] | None) -> str | None:
        """An error message as logged: the governed keys' values it quotes (those of
        ``columns``, when the request was read) and every pattern recognizer's match in it
        replaced by ``<withheld>`` / ``<ENTITY>`` (a refused value may be a raw key)."""
        if not text or not self.active:
            return text
        for name in self.keys.intersection(columns or {}):
            for v in (columns or {})[name]:
                if v is not None and str(v):
                    text = text.replace(str(v), f"<withheld: {name}>")
        from raylake.config.governance import PATTERN_ENTITIES
        from raylake.pii.policies import redact_text

        out = redact_text(pa.array([text], pa.string()), [e.value for e in PATTERN_ENTITIES])
        return str(out[0].as_py())


def governed_log_keys(conf: Any, lake: Any) -> dict[str, str]:
    """Entity keys of ``conf.features`` classified pii or restricted, for a server's
    request log: nothing to read when the lake has no ``_classification`` table or the
    log keeps every key. /predict and /recommend both log through it."""
    from raylake.lake.classification import CLASSIFICATION_TABLE, classification

    ms = conf.model_server
    if (str(ms.log_keys) == "keep" or not ms.request_log_table
            or not conf.features.feature_views
            or not lake.exists(CLASSIFICATION_TABLE, system=True)):
        return {}
    return governed_keys(conf.features, classification(lake))


def _hashed(values: list[Any], key: bytes) -> list[Any]:
    try:
        arr = pa.array(values)
    except (pa.ArrowException, TypeError, ValueError):  # mixed types: hash each one's text
        arr = pa.array([None if v is None else str(v) for v in values], pa.string())
    if pa.types.is_null(arr.type):
        return list(values)
    return hash_values(arr, key).to_pylist()


def log_key_policy(action: str, keys: list[str], key_env: str, *, logging: bool) -> LogKeyPolicy:
    """The policy a replica applies: with governed ``keys`` to hash and a request log, the
    key is read from ``key_env`` (GovernanceError naming the variable and the way out when
    it is not set: the server does not start)."""
    action = str(action)
    if not logging or not keys or action == "keep":
        return LogKeyPolicy(action, frozenset(keys))
    if action != "hash":
        return LogKeyPolicy(action, frozenset(keys))
    try:
        key = key_from_env(key_env)
    except GovernanceError as exc:
        raise GovernanceError(
            f"The model server logs the entity keys {', '.join(sorted(keys))} (classified pii "
            f"or restricted) hashed (model_server.log_keys=hash) and has no key: {exc} Or set "
            "model_server.log_keys=drop to log no such key.") from None
    return LogKeyPolicy(action, frozenset(keys), key)
