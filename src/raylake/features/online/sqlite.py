"""SQLite online store: the embedded default, one file, safe for concurrent writers."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from raylake.features.online.base import OnlineStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS features (
    key TEXT PRIMARY KEY,
    view TEXT NOT NULL,
    event_ts REAL NOT NULL,
    created REAL NOT NULL,
    payload TEXT NOT NULL
)
"""
_UPSERT = """
INSERT INTO features (key, view, event_ts, created, payload) VALUES (?, ?, ?, ?, ?)
ON CONFLICT(key) DO UPDATE SET event_ts = excluded.event_ts, created = excluded.created,
    payload = excluded.payload
WHERE (excluded.event_ts, excluded.created) >= (features.event_ts, features.created)
"""


class SqliteStore(OnlineStore):
    def __init__(self, path: str = "online.db", **_: Any) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._local = threading.local()
        with self._conn() as conn:
            conn.execute(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            self._local.conn = conn
        return conn

    def write(self, rows: Sequence[tuple[str, float, float, dict[str, Any]]]) -> int:
        """Upsert ``rows`` in one transaction, each kept only where its (event time, created
        time) is not older than the stored row's; returns ``len(rows)``, the rows sent, not
        those that replaced a row."""
        conn = self._conn()
        with conn:
            conn.executemany(_UPSERT, [(k, k.split("|", 1)[0], ts, created, json.dumps(v, default=str))
                                       for k, ts, created, v in rows])
        return len(rows)

    def get(self, keys: Sequence[str]) -> list[tuple[float, dict[str, Any]] | None]:
        """For each key, (event time in epoch seconds, values) or None where nothing is
        stored; queried 500 keys at a time."""
        rows: list[tuple[str, float, str]] = []
        conn = self._conn()
        for i in range(0, len(keys), 500):
            chunk = list(keys[i : i + 500])
            marks = ",".join("?" * len(chunk))
            rows.extend(conn.execute(
                f"SELECT key, event_ts, payload FROM features WHERE key IN ({marks})", chunk))
        # The payloads (each a JSON object this store wrote) parsed as one array: one
        # json.loads per row was half the read's time for a batch of thousands of keys.
        values = json.loads("[" + ",".join(p for _, _, p in rows) + "]") if rows else []
        found = {key: (ts, v) for (key, ts, _), v in zip(rows, values, strict=True)}
        return [found.get(k) for k in keys]

    def teardown(self, view: str | None = None) -> None:
        """Delete the rows of ``view`` (every row when None)."""
        conn = self._conn()
        with conn:
            if view is None:
                conn.execute("DELETE FROM features")
            else:
                conn.execute("DELETE FROM features WHERE view = ?", (view,))

    def delete(self, keys: Sequence[str]) -> int:
        """Delete the rows of ``keys`` in one transaction, 500 keys a statement; returns
        how many rows were deleted. The freed pages are zeroed (``secure_delete``) and the
        write-ahead log truncated, so no copy of the rows stays in the file (erasure)."""
        conn = self._conn()
        deleted = 0
        conn.execute("PRAGMA secure_delete = ON")
        with conn:
            for i in range(0, len(keys), 500):
                chunk = list(keys[i : i + 500])
                marks = ",".join("?" * len(chunk))
                deleted += conn.execute(f"DELETE FROM features WHERE key IN ({marks})",
                                        chunk).rowcount
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # best effort while others read
        return deleted
