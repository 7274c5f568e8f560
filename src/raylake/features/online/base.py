"""The online store interface: write the latest rows, read them back with a status."""

from __future__ import annotations

import datetime as dt
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _quote  # json.dumps of a str
from operator import itemgetter
from typing import Any, cast

PRESENT, NULL, NOT_FOUND, OUTSIDE_TTL = "PRESENT", "NULL_VALUE", "NOT_FOUND", "OUTSIDE_MAX_AGE"


@dataclass
class Read:
    value: Any
    status: str  # PRESENT, NULL_VALUE, NOT_FOUND, OUTSIDE_MAX_AGE (Feast's names)
    event_ts: dt.datetime | None


@dataclass
class Columns:
    """One view's features for a batch of entity rows, column by column (Feast's
    response shape). Columns with equal statuses share one list, and every feature
    shares ``event_timestamps``: an encoder can write each distinct list once."""

    values: dict[str, list[Any]]
    statuses: dict[str, list[str]]
    event_timestamps: list[str]  # ISO 8601 with Z; the epoch where there is no row


EPOCH_ISO = "1970-01-01T00:00:00Z"


def entity_key(view: str, keys: Sequence[str], values: Sequence[Any]) -> str:
    """One string per (view, key values): stable across writers and readers."""
    return view + "|" + json.dumps([[k, _plain(v)] for k, v in zip(keys, values)])


def entity_keys(view: str, keys: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """:func:`entity_key` of many rows, the same strings: ints and strings, the usual
    key values, are written without a ``json.dumps`` call per row."""
    heads = [f"[{_quote(k)}, " for k in keys]
    prefix = view + "|["
    out = []
    for row in rows:
        parts = []
        for head, v in zip(heads, row):
            kind = type(v)
            text = str(v) if kind is int else _quote(v) if kind is str else json.dumps(_plain(v))
            parts.append(head + text + "]")
        out.append(prefix + ", ".join(parts) + "]")
    return out


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

    @abstractmethod
    def delete(self, keys: Sequence[str]) -> int:
        """Remove the rows of these entity keys (:func:`entity_key` strings, of any views);
        return how many were stored. Erasure (``raylake governance erase``) calls it."""

    def read(self, view: str, keys: Sequence[str], key_values: Sequence[Sequence[Any]],
             features: Sequence[str], ttl: dt.timedelta | None,
             now: dt.datetime | None = None) -> list[dict[str, Read]]:
        """For each row of ``key_values`` (values of ``keys``), a :class:`Read` per feature:
        NOT_FOUND without a stored row, OUTSIDE_MAX_AGE (value None) when its event time is
        more than ``ttl`` before ``now`` (default: the current UTC time), else NULL_VALUE or
        PRESENT."""
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

    def read_columns(self, view: str, keys: Sequence[str], key_values: Sequence[Sequence[Any]],
                     features: Sequence[str], ttl: dt.timedelta | None,
                     now: dt.datetime | None = None) -> Columns:
        """What :meth:`read` returns, as columns: the serving path. Per-row work
        (time, staleness) is done once per row, not once per value."""
        stored = self.get(entity_keys(view, keys, key_values))
        n = len(stored)
        cutoff = None if ttl is None else (now or dt.datetime.now(dt.timezone.utc)) - ttl
        stamps: list[str] = []
        payloads: list[dict[str, Any] | None] = []
        row_status: list[str | None] = []  # None: the row is valid, its values decide
        iso: dict[float, tuple[str, bool]] = {}
        for row in stored:
            if row is None:
                stamps.append(EPOCH_ISO)
                payloads.append(None)
                row_status.append(NOT_FOUND)
                continue
            ts, values = row
            seen = iso.get(ts)
            if seen is None:
                when = dt.datetime.fromtimestamp(ts, dt.timezone.utc)
                seen = iso[ts] = (when.isoformat().replace("+00:00", "Z"),
                                  cutoff is not None and when < cutoff)
            stamps.append(seen[0])
            payloads.append(None if seen[1] else values)
            row_status.append(OUTSIDE_TTL if seen[1] else None)
        if n and all(s is None for s in row_status):
            found = cast(list[dict[str, Any]], payloads)  # no row status: every row has a payload
            try:  # every row holds every feature: one C-level transpose
                get = itemgetter(*features)
                cols = [get(p) for p in found]
                columns = list(zip(*cols)) if len(features) > 1 else [tuple(cols)]
                values = {f: list(c) for f, c in zip(features, columns)}
            except KeyError:  # rows written before a feature was added to the view
                values = {f: [p.get(f) for p in found] for f in features}
        else:
            values = {f: [None if p is None else p.get(f) for p in payloads] for f in features}
        all_present = [PRESENT] * n
        statuses = {}
        for f, col in values.items():
            if None not in col:
                statuses[f] = all_present
            else:
                statuses[f] = [s or (NULL if v is None else PRESENT) for s, v in zip(row_status, col)]
        return Columns(values, statuses, stamps)
