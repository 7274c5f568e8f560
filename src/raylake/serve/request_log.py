"""The model server's request log: one lake row per answer, spooled, appended in batches.

A row holds the request's entity keys (``entities``) and the model's inputs (``features``)
as ``model_server.log_keys`` says: keys classified pii or restricted are hashed by
default, before the row is spooled (serve/log_keys.py), so no raw key reaches the disk.

Each replica writes every row as a JSON line to its own spool file on local disk
before the answer is sent (one unbuffered ``os.write``: the request path never waits
for the lake). A background thread rotates that file into a *batch* every
``flush_rows`` rows or ``flush_s`` seconds, appends the batch to the lake table (one
Delta commit) and deletes the file; once more when Serve stops the replica (``close``).

Exactly once: a batch's commit carries Delta's application transaction
(``raylake.requests.<replica>``, version = the batch's sequence number; batches of one
replica commit in order). A commit that failed may still have landed (a lost answer
from the storage), so before retrying a batch the writer reads the table's
``transaction_version`` for its app id: a version at or past the batch's number means
it is in, and the file is only deleted.

Nothing answered is lost to a killed replica (``kill -9``, out of memory, ``ray.kill``):
its spool files stay. Each replica holds an exclusive ``flock`` on ``<replica>.lock``
in the spool folder for as long as its process lives; the kernel drops the lock when
the process dies. Every replica, when it starts and every ``adopt_s`` seconds, tries
the other replicas' locks: a lock it can take belongs to a dead replica, whose files
it commits under the dead replica's app id and numbers (the transaction check makes a
second adopter, or a commit the dead replica made just before dying, harmless).
Limits: the spool is local, so a dead replica's rows wait for the next replica
*on the same node* (or any raylake request log opened on that spool folder); a
lost node, or a power cut before the OS wrote its page cache, loses them.

The spool folder is ``model_server.log_spool_dir`` (default: the system temp folder)
``/raylake-request-log/<table>-<hash of the table's URI>``: one per lake table, so
replicas of every app logging to one table adopt each other. While the lake cannot be
written, batches stay on disk, up to ``max_buffer`` rows per replica; beyond that the
oldest are dropped and counted, so a broken lake cannot fill the disk. A row that
cannot be spooled (disk full) is kept in memory for the next batch instead.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

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
    # JSON: the request's entity keys {key: [values]}; those classified pii or restricted
    # as model_server.log_keys says (hashed by default; serve/log_keys.py).
    pa.field("entities", pa.string()),
])

APP_PREFIX = "raylake.requests."  # + replica: the Delta application transaction id
SPOOL_FOLDER = "raylake-request-log"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_SEGMENT = re.compile(r"^(?P<owner>[A-Za-z0-9_-]+)\.(?P<seq>\d+)\.jsonl$")


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


def spool_path(lake: Any, table: str, base: str | None = None) -> Path:
    """The spool folder of ``table``'s request log under ``base`` (None: the system temp
    folder): one per table and lake, whichever app or replica writes to it."""
    digest = hashlib.sha256(lake.uri(table).encode()).hexdigest()[:12]
    root = Path(base) if base else Path(tempfile.gettempdir()) / SPOOL_FOLDER
    return root / f"{re.sub(r'[^A-Za-z0-9_-]+', '_', table)}-{digest}"


def app_id(replica: str) -> str:
    """The Delta application transaction id of one replica's request-log batches."""
    return APP_PREFIX + replica


def read_segment(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The rows of one spool file and how many lines were unreadable (the last line torn
    by a kill in the middle of a write: that request was never answered)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    lines = data.split(b"\n")
    bad = 1 if lines[-1] else 0  # the file should end with a newline
    rows = []
    for line in lines[:-1]:
        if line:
            try:
                rows.append(json.loads(line))
            except ValueError:
                bad += 1
    return rows, bad


def to_table(rows: list[dict[str, Any]]) -> tuple[pa.Table, int]:
    """Spooled rows as an Arrow table of the log's schema, and how many rows did not fit
    it (left out, so one bad row cannot block its batch forever)."""
    try:
        data = pa.Table.from_pylist(rows, schema=SCHEMA)
    except (pa.ArrowException, TypeError, ValueError):
        good = []
        for row in rows:
            try:
                good.append(pa.Table.from_pylist([row], schema=SCHEMA))
            except (pa.ArrowException, TypeError, ValueError):
                pass
        data = pa.concat_tables(good) if good else SCHEMA.empty_table()
    # from_pylist lets a null into a non-nullable column; Delta would refuse the batch.
    keep = None
    for f in SCHEMA:
        if not f.nullable and data.column(f.name).null_count:
            valid = pc.is_valid(data.column(f.name))
            keep = valid if keep is None else pc.and_(keep, valid)
    if keep is not None:
        data = data.filter(keep)
    return data, len(rows) - data.num_rows


def _micros(at: Any) -> int:
    if isinstance(at, dt.datetime):
        if at.tzinfo is None:
            at = at.replace(tzinfo=dt.timezone.utc)
        return (at - _EPOCH) // dt.timedelta(microseconds=1)
    return int(at)


@dataclass
class _Batch:
    """Rows rotated out of the spool file being written, waiting for their commit."""

    seq: int  # the application transaction version its commit carries
    path: Path
    rows: int  # lines written to the file (for the max_buffer cap)
    memory: list[dict[str, Any]] = field(default_factory=list)  # rows the disk refused
    tried: bool = False  # a commit failed: it may have landed all the same


class RequestLog:
    def __init__(self, lake: Any, table: str, *, replica: str | None = None,
                 spool_dir: str | None = None, flush_rows: int = 500, flush_s: float = 5.0,
                 max_buffer: int = 100_000, adopt_s: float = 30.0) -> None:
        from raylake.errors import ConfigError

        self.lake, self.table = lake, table
        self.flush_rows, self.flush_s, self.max_buffer = flush_rows, flush_s, max_buffer
        self.adopt_s = adopt_s
        # The id names files: keep it to characters that are safe in a file name.
        self.owner = re.sub(r"[^A-Za-z0-9_-]", "_", replica or uuid.uuid4().hex)
        self.app_id = app_id(self.owner)
        self.dir = spool_path(lake, table, spool_dir)
        self.dropped = 0  # rows given up: over max_buffer, unreadable or not fitting the schema
        self.written = 0  # rows this replica appended, its own and adopted ones
        self.adopted = 0  # rows of dead replicas it appended
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._lock_fd = self._take_own_lock()
        except OSError as exc:
            raise ConfigError(f"Cannot use the request log's spool folder {self.dir}: {exc}. "
                              "Set model_server.log_spool_dir to a writable local folder."
                              ) from exc
        self._lock = threading.Lock()  # the file being written, its counters
        self._flush_lock = threading.Lock()  # one flush at a time (thread, close)
        self._pending: collections.deque[_Batch] = collections.deque()
        self._seq = self._first_seq()
        self._fd: int | None = None
        self._in_file = 0
        self._memory: list[dict[str, Any]] = []
        self._warned = False
        self._closed = False
        self._open_file()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="raylake-request-log", daemon=True)
        self._thread.start()

    # -- the request path ----------------------------------------------------------------

    def add(self, at: Any = None, **row: Any) -> None:
        """Spool one request row; ``at``: the request's time (a datetime, naive = UTC, or
        epoch microseconds; None: now, e.g. the replayed clock of ``X-Raylake-Clock``):
        one line appended to this replica's spool file, so the row survives the
        replica's death; wakes the writer thread once ``flush_rows`` rows wait. Never
        writes to the lake itself."""
        row["at"] = time.time_ns() // 1000 if at is None else _micros(at)
        line = (json.dumps(row, default=str, separators=(",", ":")) + "\n").encode()
        with self._lock:
            try:
                if self._fd is None:
                    raise OSError(errno.EBADF, "no spool file open")
                while line:  # a regular file takes the whole line unless the disk is full
                    line = line[os.write(self._fd, line):]
                self._in_file += 1
            except OSError as exc:
                self._keep_in_memory(row, exc)
            waiting = self._in_file + len(self._memory)
        if waiting >= self.flush_rows:
            self._wake.set()

    def _keep_in_memory(self, row: dict[str, Any], exc: OSError) -> None:
        if self._closed:  # after close: nobody would write it
            self.dropped += 1
            log.warning("request log: row of request %s arrived after the log closed; "
                        "dropped", row.get("request_id"))
            return
        self._memory.append(row)
        if not self._warned:
            self._warned = True
            log.warning("request log: cannot spool to %s (%s); keeping rows in memory "
                        "until the next batch (lost if the replica dies)", self.dir, exc)
        over = len(self._memory) - self.max_buffer
        if over > 0:
            del self._memory[:over]
            self.dropped += over

    # -- the writer thread ---------------------------------------------------------------

    def _run(self) -> None:
        next_adopt = 0.0  # at start: a replica that replaces a killed one commits its rows
        while not self._stop.is_set():
            if time.monotonic() >= next_adopt:
                self.adopt()
                next_adopt = time.monotonic() + self.adopt_s
            self._wake.wait(min(self.flush_s, max(0.0, next_adopt - time.monotonic())))
            self._wake.clear()
            if self._stop.is_set():
                break
            self.flush()

    def flush(self) -> int:
        """Rotate the spool file into a batch and append every waiting batch, in order;
        returns the rows written. A failed append keeps its batch for the next flush."""
        with self._flush_lock:
            self._rotate()
            written = 0
            while self._pending:
                batch = self._pending[0]
                try:
                    written += self._commit(self.app_id, batch.seq, batch.path, batch.memory,
                                            check=batch.tried)
                except Exception as exc:  # the lake is down or the table is broken: retry later
                    batch.tried = True
                    log.warning("request log: cannot append batch %d (%d rows) to %s (%s); "
                                "will retry", batch.seq, batch.rows + len(batch.memory),
                                self.table, exc)
                    self._cap()
                    break
                self._pending.popleft()
            self.written += written
            return written

    def _rotate(self) -> None:
        with self._lock:
            if not self._in_file and not self._memory:
                return
            self._close_file()
            self._pending.append(_Batch(self._seq, self._file(self.owner, self._seq),
                                        self._in_file, self._memory))
            self._seq += 1
            self._in_file, self._memory = 0, []
            if not self._stop.is_set():  # closing: the last rotation opens no new file
                self._open_file()

    def _commit(self, app: str, seq: int, path: Path, memory: list[dict[str, Any]], *,
                check: bool) -> int:
        """Append one batch under (``app``, ``seq``) unless the log already holds it; then
        delete its file. ``check``: read the table's transaction version first."""
        from raylake.lake.commit import write_table

        rows, bad = read_segment(path)
        rows += memory
        data, misfit = to_table(rows) if rows else (SCHEMA.empty_table(), 0)
        if bad or misfit:
            self.dropped += bad + misfit
            log.warning("request log: %s: %d unreadable lines and %d rows not matching the "
                        "log's schema left out", path.name, bad, misfit)
        written = 0
        if data.num_rows and not (check and self.committed(app) >= seq):
            write_table(self.lake, self.table, data, job="serve", app_id=app, txn_version=seq)
            written = data.num_rows
        path.unlink(missing_ok=True)
        return written

    def committed(self, app: str) -> int:
        """The last batch number the lake holds for ``app`` (0: none)."""
        if not self.lake.exists(self.table):
            return 0
        return self.lake.table(self.table).transaction_version(app) or 0

    def _cap(self) -> None:
        """Drop the oldest waiting batches while more than ``max_buffer`` rows wait."""
        waiting = sum(b.rows + len(b.memory) for b in self._pending)
        while waiting > self.max_buffer and len(self._pending) > 1:
            old = self._pending.popleft()
            old.path.unlink(missing_ok=True)
            n = old.rows + len(old.memory)
            waiting -= n
            self.dropped += n
            log.error("request log: %d rows dropped: more than %d wait for %s",
                      n, self.max_buffer, self.table)

    # -- dead replicas -------------------------------------------------------------------

    def adopt(self) -> int:
        """Append the spooled rows of dead replicas (their lock is free) under their own
        app ids and batch numbers; returns the rows written. Errors are logged: the
        files stay for the next try."""
        total = 0
        try:
            locks = sorted(self.dir.glob("*.lock"))
        except OSError as exc:
            log.warning("request log: cannot list %s (%s)", self.dir, exc)
            return 0
        for lock in locks:
            owner = lock.name[: -len(".lock")]
            if owner != self.owner and re.fullmatch(r"[A-Za-z0-9_-]+", owner):
                try:
                    total += self._adopt(owner, lock)
                except Exception as exc:  # the lake is down: the next round retries
                    log.warning("request log: cannot commit the spool of dead replica %s "
                                "(%s); will retry", owner, exc)
        self.adopted += total
        self.written += total
        return total

    def _adopt(self, owner: str, lock: Path) -> int:
        try:
            fd = os.open(lock, os.O_RDWR)
        except FileNotFoundError:  # another replica adopted it meanwhile
            return 0
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # its replica is alive, or another one is adopting it
                return 0
            if os.fstat(fd).st_ino != _inode(lock):  # adopted and removed meanwhile
                return 0
            files = sorted((int(m["seq"]), self.dir / name) for name in os.listdir(self.dir)
                           if (m := _SEGMENT.match(name)) and m["owner"] == owner)
            app = app_id(owner)
            done = self.committed(app) if files else 0
            written = 0
            for seq, path in files:
                if seq <= done:  # committed before its replica could delete the file
                    path.unlink(missing_ok=True)
                else:  # we hold its lock: nobody else commits under this app id now
                    written += self._commit(app, seq, path, [], check=False)
            if written:
                log.warning("request log: committed %d spooled rows of dead replica %s",
                            written, owner)
            if os.fstat(fd).st_ino == _inode(lock):  # a comeback may have renamed a new one in
                lock.unlink(missing_ok=True)
            return written
        finally:
            os.close(fd)

    # -- files ---------------------------------------------------------------------------

    def _file(self, owner: str, seq: int) -> Path:
        return self.dir / f"{owner}.{seq:012d}.jsonl"

    def _take_own_lock(self) -> int:
        """Hold ``<replica>.lock`` for the process's life. Made under a temporary name and
        renamed into place locked, so no adopter ever sees it free while we live."""
        mine = self.dir / f"{self.owner}.lock"
        if mine.exists():  # the same replica id again: refuse if its process still lives
            fd = os.open(mine, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise OSError(f"{mine} is held by a live process with replica id "
                              f"{self.owner!r}") from exc
            finally:
                os.close(fd)
        tmp = self.dir / f".{self.owner}.{uuid.uuid4().hex}.tmp"
        fd = os.open(tmp, os.O_CREAT | os.O_RDWR, 0o600)  # not inherited by child processes
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(tmp, mine)
        return fd

    def _first_seq(self) -> int:
        """After the last batch number the lake or this replica's leftover files hold (a
        replica id is new for each replica; this only matters if one comes back)."""
        last = self.committed(self.app_id)
        for name in os.listdir(self.dir):
            m = _SEGMENT.match(name)
            if m and m["owner"] == self.owner:
                seq = int(m["seq"])
                self._pending.append(_Batch(seq, self.dir / name, 0, tried=True))
                last = max(last, seq)
        self._pending = collections.deque(sorted(self._pending, key=lambda b: b.seq))
        return last + 1

    def _open_file(self) -> None:
        try:
            self._fd = os.open(self._file(self.owner, self._seq),
                               os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
        except OSError as exc:
            self._fd = None  # rows go to memory; the next rotation tries again
            log.warning("request log: cannot open a spool file in %s (%s)", self.dir, exc)

    def _close_file(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):  # a broken file is closed all the same
                os.close(self._fd)
            self._fd = None

    # -- health and shutdown -------------------------------------------------------------

    @property
    def writer_died(self) -> bool:
        """The background writer stopped although nobody closed the log (a bug or a crash
        in the thread): the replica is unhealthy, Serve should replace it."""
        return not self._thread.is_alive() and not self._stop.is_set()

    @property
    def waiting(self) -> int:
        """Rows spooled or held but not yet in the lake."""
        with self._lock:
            now = self._in_file + len(self._memory)
        return now + sum(b.rows + len(b.memory) for b in list(self._pending))

    def close(self, timeout: float = 30.0) -> bool:
        """Stop the writer thread and append every row left (the replica is stopping);
        True when all are in the lake. Rows it cannot append stay in the spool with
        the lock released, for a replica on this node to adopt."""
        if self._stop.is_set():
            return not self._pending
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        with self._lock:
            # Closed before the last rotation: a row added after it finds no file and is
            # dropped and counted (never parked in memory that no flush will see).
            self._closed = True
        self.flush()  # its rotation closes the file and opens none
        with self._lock:
            self._close_file()
        done = not self._pending
        if done:  # nothing left: remove the empty file and the lock, then release it
            self._file(self.owner, self._seq).unlink(missing_ok=True)
            (self.dir / f"{self.owner}.lock").unlink(missing_ok=True)
        else:
            log.error("request log: %d rows of %s not appended at shutdown; they stay in %s "
                      "for the next replica on this node", self.waiting, self.table, self.dir)
        os.close(self._lock_fd)
        return done


def _inode(path: Path) -> int:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return -1
