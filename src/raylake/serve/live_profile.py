"""Live-traffic profiles: what a model server replica answers, profiled per arm and window.

The request path only appends: :meth:`LiveProfiler.add` extends in-memory column lists
of the request's key (model, version, arm, shadow, window start), a few microseconds. A
background thread turns those lists into an Arrow table every ``profile_s`` seconds (or
sooner once ``profile_rows`` rows wait) and merges ``Profile.of(table)`` into the
window's running profile (``raylake.quality.profile``: the bulk path, whylogs sketches).
Profile columns are the model's input features by their registered names, typed as
registered, and ``_prediction`` (float64).

A window is flushed once it has ended: its end, plus ``grace``, is before the newest
request time seen (with the replayed clock, ``X-Raylake-Clock``) or before the wall
clock; or when it has had no request for ``idle_flush_s`` (a replay that stopped). A
flush appends one row per window to the system table ``_live_profiles`` (schema
below) in one Delta commit under the replica's application transaction
(``raylake.live_profiles.<replica>``, version = the flush's ``seq``): a commit that
failed keeps its rows and is retried with the same ``seq`` on the next flush, and one
that landed in spite of an error is not appended twice. Rows of a window arriving after
its flush start a new partial profile: several rows per window are normal (replicas,
partial flushes, ``close``) and readers merge them. Nothing on the request path waits
for profiling or the lake; beyond ``max_rows`` buffered rows new rows are dropped and
counted (a stuck thread cannot exhaust the replica's memory).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import pyarrow as pa

from raylake.lake.clock import UTC, window_start
from raylake.lake.types import TYPES

if TYPE_CHECKING:  # imported where used: raylake.quality takes seconds to import
    from raylake.quality.profile import Profile

log = logging.getLogger("raylake.serve")

PREDICTION = "_prediction"  # the profile column of the scores
APP_PREFIX = "raylake.live_profiles."  # + writer: the Delta application transaction id
TS = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema([
    pa.field("model", pa.string(), nullable=False),
    pa.field("model_version", pa.int32(), nullable=False),
    pa.field("arm", pa.string(), nullable=False),
    pa.field("shadow", pa.bool_(), nullable=False),
    pa.field("window_start", TS, nullable=False),
    pa.field("window_end", TS, nullable=False),
    pa.field("source", pa.string(), nullable=False),  # "live" (a replica) | "log" (batch job)
    pa.field("writer", pa.string(), nullable=False),  # replica id, or "log"
    pa.field("seq", pa.int64(), nullable=False),  # the writer's flush number
    pa.field("rows", pa.int64(), nullable=False),
    pa.field("profile", pa.binary(), nullable=False),  # Profile.to_bytes()
    pa.field("created_at", TS, nullable=False),
])


class Key(NamedTuple):
    """What one profile row is about."""

    model: str
    version: int
    arm: str
    shadow: bool
    start: dt.datetime  # the window's start (UTC, epoch-aligned)


def ensure_table(lake: Any, table: str) -> None:
    """Create the (empty) profile table once, before replicas start: concurrent appends
    are retried, concurrent creations are not."""
    from raylake.lake.commit import write_table

    if not lake.exists(table, system=True):
        write_table(lake, table, SCHEMA.empty_table(), system=True, job="serve")


def app_id(writer: str) -> str:
    """The Delta application transaction id of one writer's profile rows."""
    return APP_PREFIX + writer


def column(values: list[Any], type_name: str | None) -> pa.Array:
    """``values`` as an Arrow array of the registered type ``type_name`` where they fit it
    (numbers with fractions stay float64 under an integer type: what the model saw);
    otherwise as Arrow infers them, or as text."""
    typ = TYPES.get(type_name or "")
    try:
        if typ is not None and pa.types.is_integer(typ):
            floats = pa.array(values, pa.float64())
            try:
                return floats.cast(typ)  # a safe cast: refuses fractions and overflow
            except pa.ArrowInvalid:
                return floats
        if typ is not None:
            return pa.array(values, typ)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
        pass
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
        return pa.array([None if v is None else str(v) for v in values], pa.string())


def profile_table(features: Mapping[str, list[Any]], predictions: list[Any],
                  types: Mapping[str, str] | None = None) -> pa.Table:
    """The table a window's profile is made of: each feature typed as registered
    (``types``: name -> type name) and ``_prediction`` as float64."""
    types = types or {}
    cols = {name: column(values, types.get(name)) for name, values in features.items()}
    cols[PREDICTION] = pa.array(predictions, pa.float64())
    return pa.table(cols)


def profile_row(key: Key, width: dt.timedelta, profile: Profile, rows: int, *, source: str,
                writer: str, seq: int) -> dict[str, Any]:
    """One row of the profile table (see ``SCHEMA``)."""
    return {"model": key.model, "model_version": key.version, "arm": key.arm,
            "shadow": key.shadow, "window_start": key.start, "window_end": key.start + width,
            "source": source, "writer": writer, "seq": seq, "rows": rows,
            "profile": profile.to_bytes(), "created_at": dt.datetime.now(UTC)}


@dataclasses.dataclass
class _Buffer:
    """Columns of one key waiting to be profiled."""

    columns: dict[str, list[Any]]
    predictions: list[Any]
    rows: int = 0


@dataclasses.dataclass
class _Window:
    """A window's running profile, not yet flushed."""

    profile: Profile
    rows: int
    last: float  # time.monotonic() of its newest rows


@dataclasses.dataclass
class _Flush:
    """Profile rows of one commit, kept until it is in the lake."""

    seq: int
    rows: list[dict[str, Any]]


class LiveProfiler:
    """One replica's running profiles; see the module docstring."""

    def __init__(self, lake: Any, table: str, *, writer: str, window: dt.timedelta,
                 types: Mapping[tuple[str, int], Mapping[str, str]] | None = None,
                 replay: bool = False, profile_s: float = 2.0, profile_rows: int = 20_000,
                 grace: dt.timedelta | None = None, idle_flush_s: float = 60.0,
                 max_rows: int = 200_000, start: bool = True) -> None:
        self.lake, self.table, self.writer, self.width = lake, table, writer, window
        self.types = {k: dict(v) for k, v in (types or {}).items()}
        self.replay, self.profile_s, self.profile_rows = replay, profile_s, profile_rows
        # Requests of one moment reach the replica slightly out of order.
        self.grace = grace if grace is not None else min(window / 10, dt.timedelta(minutes=1))
        self.idle_flush_s, self.max_rows = idle_flush_s, max_rows
        self.app_id = app_id(writer)
        self.dropped = 0  # rows refused: over max_rows, or not fitting a table
        self.written = 0  # profile rows appended to the lake
        self._lock = threading.Lock()  # the buffers (request path vs the thread)
        self._step_lock = threading.Lock()  # one profiling/flush step at a time
        # Keyed by plain tuples of Key's fields: a NamedTuple costs more per request.
        self._buffers: dict[tuple[Any, ...], _Buffer] = {}
        self._buffered = 0
        self._windows: dict[Key, _Window] = {}
        self._pending: list[_Flush] = []
        self._newest: dt.datetime | None = None  # the newest request time given (replays)
        # The window of the last request: (start, end) of a given time; (start as epoch
        # seconds, end, start) of the wall clock.
        self._span = (dt.datetime.max.replace(tzinfo=UTC), dt.datetime.min.replace(tzinfo=UTC))
        self._wall: tuple[float, float, dt.datetime] = (0.0, 0.0, self._span[1])
        self._seq = self._committed() + 1
        self._warned = False
        self._reported = 0  # drops already logged
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, name="raylake-live-profile",
                                        daemon=True)
        # Imported now, at replica start, not in the first profiling step.
        from raylake.quality.profile import Profile

        self._of = Profile.of
        if start:
            self._thread.start()

    # -- the request path ----------------------------------------------------------------

    def add(self, model: str, version: int, arm: str, shadow: bool,
            features: Mapping[str, list[Any]], predictions: list[Any],
            at: dt.datetime | None = None) -> None:
        """Buffer one answer's rows (``at``: the request's time, aware UTC; None: now).
        Only list appends under a lock: never profiles, never touches the lake."""
        # The window of the last request is usually this one's: computed on a change only.
        if at is None:
            now = time.time()
            lo_s, hi_s, start = self._wall
            if not lo_s <= now < hi_s:
                start = window_start(dt.datetime.fromtimestamp(now, UTC), self.width)
                lo_s = start.timestamp()
                self._wall = (lo_s, lo_s + self.width.total_seconds(), start)
        else:
            start, end = self._span
            if not start <= at < end:
                start = window_start(at, self.width)
                self._span = (start, start + self.width)
        n = len(predictions)
        key = (model, version, arm, shadow, start)
        with self._lock:
            if self._buffered + n > self.max_rows:
                self.dropped += n
                return
            buf = self._buffers.get(key)
            if buf is None:
                buf = self._buffers[key] = _Buffer({name: [] for name in features}, [])
            cols = buf.columns
            if cols.keys() == features.keys():
                for name, values in features.items():
                    cols[name].extend(values)
            else:  # another set of names than this key's earlier rows: keep columns aligned
                for name in features.keys() - cols.keys():
                    cols[name] = [None] * buf.rows
                for name, values in cols.items():
                    values.extend(features.get(name) or [None] * n)
            buf.predictions.extend(predictions)
            buf.rows += n
            self._buffered += n
            if at is not None and (self._newest is None or at > self._newest):
                self._newest = at
            wake = self._buffered >= self.profile_rows
        if wake:
            self._wake.set()

    # -- the background thread -----------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.profile_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.step()
            except Exception:  # a bug here must not stop profiling for good
                log.exception("live profiles: profiling step failed")

    def step(self, *, flush_all: bool = False) -> int:
        """Profile the buffered rows, then flush the windows that have ended (every
        window with ``flush_all``); returns the profile rows appended."""
        with self._step_lock:
            self._profile_buffers()
            if self.dropped > self._reported:  # logged here, never on the request path
                log.warning("live profiles: %d rows dropped so far (more than %d rows waited "
                            "to be profiled, or rows fit no table)", self.dropped, self.max_rows)
                self._reported = self.dropped
            self._close_windows(flush_all)
            return self._commit_pending()

    def _profile_buffers(self) -> None:
        with self._lock:
            buffers, self._buffers, self._buffered = self._buffers, {}, 0
        now = time.monotonic()
        for fields, buf in buffers.items():
            key = Key(*fields)
            try:
                data = profile_table(buf.columns, buf.predictions,
                                     self.types.get((key.model, key.version)))
                part = self._of(data)
            except Exception as exc:  # values that fit no table: counted, never raised
                with self._lock:  # the request path adds to it too
                    self.dropped += buf.rows
                log.warning("live profiles: %d rows of %s:%s arm %s could not be profiled "
                            "(%s); dropped", buf.rows, key.model, key.version, key.arm, exc)
                continue
            win = self._windows.get(key)
            if win is None:
                self._windows[key] = _Window(part, buf.rows, now)
            else:
                win.profile, win.rows, win.last = win.profile.merge(part), win.rows + buf.rows, now

    def _close_windows(self, flush_all: bool) -> None:
        newest = self._newest
        clock = newest if self.replay and newest is not None else dt.datetime.now(UTC)
        if newest is not None and newest > clock:
            clock = newest
        idle = time.monotonic() - self.idle_flush_s
        due = [k for k, w in self._windows.items()
               if flush_all or k.start + self.width + self.grace <= clock or w.last <= idle]
        if not due:
            return
        rows = [profile_row(k, self.width, self._windows[k].profile, self._windows[k].rows,
                            source="live", writer=self.writer, seq=self._seq) for k in due]
        for k in due:
            del self._windows[k]
        self._pending.append(_Flush(self._seq, rows))
        self._seq += 1

    def _commit_pending(self) -> int:
        from raylake.lake.commit import write_table

        written = 0
        while self._pending:
            batch = self._pending[0]
            try:
                # A retried seq that already landed is skipped by its transaction version.
                write_table(self.lake, self.table, pa.Table.from_pylist(batch.rows, SCHEMA),
                            system=True, app_id=self.app_id, txn_version=batch.seq,
                            job="serve")
            except Exception as exc:  # the lake is down: keep the rows, retry next step
                if not self._warned:
                    log.warning("live profiles: cannot append %d window profiles to %s (%s); "
                                "will retry", len(batch.rows), self.table, exc)
                    self._warned = True
                break
            self._pending.pop(0)
            self._warned = False
            written += len(batch.rows)
        self.written += written
        return written

    def _committed(self) -> int:
        """The last flush number the table holds for this writer (0: none): a writer id
        seen before goes on after it."""
        try:
            if not self.lake.exists(self.table, system=True):
                return 0
            return int(self.lake.table(self.table, system=True)
                       .transaction_version(self.app_id) or 0)
        except Exception as exc:  # the lake is unreachable now: the flush will say so
            log.warning("live profiles: cannot read %s (%s)", self.table, exc)
            return 0

    # -- health and shutdown -------------------------------------------------------------

    @property
    def thread_died(self) -> bool:
        """The background thread stopped although nobody closed the profiler."""
        return self._thread.ident is not None and not self._thread.is_alive() \
            and not self._stop.is_set()

    @property
    def waiting(self) -> int:
        """Window profiles not yet in the lake (open windows and failed flushes)."""
        return len(self._windows) + sum(len(b.rows) for b in self._pending)

    def close(self, timeout: float = 10.0) -> bool:
        """Stop the thread and flush every window, partial ones too (the replica is
        stopping); True when all are in the lake."""
        deadline = time.monotonic() + timeout
        self._stop.set()
        self._wake.set()
        if self._thread.ident is not None:
            self._thread.join(timeout)
        if not self._step_lock.acquire(timeout=max(0.1, deadline - time.monotonic())):
            log.error("live profiles: a flush is still running at shutdown; %d window "
                      "profiles may be lost", self.waiting)
            return False
        self._step_lock.release()
        self.step(flush_all=True)
        if self.waiting or self._buffers:
            log.error("live profiles: %d window profiles of %s not appended at shutdown",
                      self.waiting, self.table)
            return False
        return True
