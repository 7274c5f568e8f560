"""The model server's request log: one lake row per answer, appended in batches.

Each replica buffers rows in memory and a background thread appends them to the lake
table (`write_table`, one Delta commit per batch) when `flush_rows` rows are waiting
or `flush_s` seconds have passed, and once more when the replica shuts down. The
request path only appends to a list. A replica that dies without shutting down
(killed, out of memory, node lost) loses the rows it had not flushed yet: at most one
batch, i.e. `flush_rows` rows or `flush_s` seconds of traffic. A failed append keeps
its rows for the next try, up to `max_buffer` rows; beyond that the oldest are dropped
and counted, so a broken lake cannot exhaust the replica's memory.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any

import pyarrow as pa

log = logging.getLogger("raylake.serve")

SCHEMA = pa.schema([
    pa.field("request_id", pa.string(), nullable=False),
    pa.field("at", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("unit_id", pa.string()),
    pa.field("experiment", pa.string()),  # model_server.salt: what `raylake ab report` reads
    pa.field("arm", pa.string()),
    pa.field("model_name", pa.string()),
    pa.field("model_version", pa.int32()),
    pa.field("shadow", pa.bool_(), nullable=False),
    pa.field("status", pa.int32(), nullable=False),  # the HTTP status answered
    pa.field("error_kind", pa.string()),
    pa.field("error", pa.string()),
    pa.field("rows", pa.int32(), nullable=False),
    pa.field("features", pa.string()),  # JSON: {name: [values]} as the model saw them
    pa.field("predictions", pa.list_(pa.float64())),
    pa.field("latency_ms", pa.float64(), nullable=False),
    pa.field("replica", pa.string()),
])


def ensure_table(lake: Any, table: str) -> None:
    """Create the (empty) table once, before replicas start: concurrent appends to an
    existing table are retried by delta-rs, concurrent creations are not."""
    from raylake.lake.commit import write_table

    if not lake.exists(table):
        write_table(lake, table, SCHEMA.empty_table(), job="serve")
    elif set(SCHEMA.names) - set(lake.dataset(table).schema.names):
        _add_columns(lake, table)


def _add_columns(lake: Any, table: str) -> None:
    """A log written by an older raylake gains the new (nullable) columns."""
    from deltalake import write_deltalake

    from raylake.errors import LakeError

    try:
        write_deltalake(lake.uri(table), SCHEMA.empty_table(), mode="append",
                        schema_mode="merge", storage_options=lake.storage.delta_options())
    except Exception as exc:  # deltalake raises several kinds; all mean the same here
        raise LakeError(f"Cannot add the request log's new columns to {table!r}: {exc}. "
                        "Point model_server.request_log_table at a new table.") from exc


class RequestLog:
    def __init__(self, lake: Any, table: str, *, flush_rows: int = 500, flush_s: float = 5.0,
                 max_buffer: int = 100_000) -> None:
        self.lake, self.table = lake, table
        self.flush_rows, self.flush_s, self.max_buffer = flush_rows, flush_s, max_buffer
        self.dropped = 0
        self.written = 0
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="raylake-request-log", daemon=True)
        self._thread.start()

    def add(self, **row: Any) -> None:
        """Buffer one request row (``at`` defaults to now, UTC) and wake the writer thread
        once ``flush_rows`` rows wait; never writes to the lake itself."""
        row.setdefault("at", dt.datetime.now(dt.timezone.utc))
        with self._lock:
            self._rows.append(row)
            n = len(self._rows)
        if n >= self.flush_rows:
            self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_s)
            self._wake.clear()
            self.flush()

    def flush(self) -> int:
        """Append what is buffered now; returns the rows written."""
        with self._lock:
            rows, self._rows = self._rows, []
        if not rows:
            return 0
        try:
            from raylake.lake.commit import write_table

            data = pa.Table.from_pylist(rows, schema=SCHEMA)
            write_table(self.lake, self.table, data, job="serve")
        except Exception as exc:  # the lake is down or the table is broken: keep, retry later
            with self._lock:
                self._rows = rows + self._rows
                over = len(self._rows) - self.max_buffer
                if over > 0:
                    del self._rows[:over]
                    self.dropped += over
            log.warning("request log: cannot append %d rows to %s (%s); will retry",
                        len(rows), self.table, exc)
            return 0
        self.written += len(rows)
        return len(rows)

    @property
    def writer_died(self) -> bool:
        """The background writer stopped although nobody closed the log (a bug or a crash
        in the thread): the replica is unhealthy, Serve should replace it."""
        return not self._thread.is_alive() and not self._stop.is_set()

    def close(self, timeout: float = 30.0) -> None:
        """Stop the thread and write what is left (called when the replica shuts down)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        self.flush()
