"""The online store interface: write the latest rows, read them back with a status."""

from __future__ import annotations

import datetime as dt
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

PRESENT, NULL, NOT_FOUND, OUTSIDE_TTL = "PRESENT", "NULL_VALUE", "NOT_FOUND", "OUTSIDE_MAX_AGE"


@dataclass
class Read:
    value: Any
    status: str  # PRESENT, NULL_VALUE, NOT_FOUND, OUTSIDE_MAX_AGE (Feast's names)
    event_ts: dt.datetime | None


def entity_key(view: str, keys: Sequence[str], values: Sequence[Any]) -> str:
    """One string per (view, key values): stable across writers and readers."""
    return view + "|" + json.dumps([[k, _plain(v)] for k, v in zip(keys, values)])


def _plain(v: Any) -> Any:
    if hasattr(v, "item"):  # numpy scalars
        v = v.item()
    return v


class OnlineStore(ABC):
    """Rows are (entity key, event time, created time, feature values); a write keeps the
    row with the larger (event time, created time), so writers need no order."""

    @abstractmethod
    def write(self, rows: Sequence[tuple[str, float, float, dict[str, Any]]]) -> int:
        """Upsert rows where newer than what is stored; return how many were sent."""

    @abstractmethod
    def get(self, keys: Sequence[str]) -> list[tuple[float, dict[str, Any]] | None]:
        """For each entity key, (event time as epoch seconds, values) or None."""

    @abstractmethod
    def teardown(self, view: str | None = None) -> None:
        """Remove a view's rows (all rows when None)."""

    def read(self, view: str, keys: Sequence[str], key_values: Sequence[Sequence[Any]],
             features: Sequence[str], ttl: dt.timedelta | None,
             now: dt.datetime | None = None) -> list[dict[str, Read]]:
        now = now or dt.datetime.now(dt.timezone.utc)
        stored = self.get([entity_key(view, keys, v) for v in key_values])
        out = []
        for row in stored:
            if row is None:
                out.append({f: Read(None, NOT_FOUND, None) for f in features})
                continue
            ts, values = row
            when = dt.datetime.fromtimestamp(ts, dt.timezone.utc)
            stale = ttl is not None and when < now - ttl
            out.append({
                f: Read(None if stale else values.get(f),
                        OUTSIDE_TTL if stale else (NULL if values.get(f) is None else PRESENT),
                        when)
                for f in features
            })
        return out
