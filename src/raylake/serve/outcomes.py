"""Outcomes: what happened after an answer (the flight left late, the user rebooked),
recorded in a lake table that the A/B report and ``raylake monitor`` join with the
request log.

Two ways in: ``raylake outcomes add FILE`` (CSV, Parquet, JSON Lines; job
``outcomes-add``) and ``POST /outcomes`` on the model server. Both check every row
(:func:`check_rows`) and call :func:`add_outcomes`.

An outcome is keyed by ``(request_id, row)`` when it carries a request id, else by
``(unit_id, row)``; ``row`` is the row's position within its request (0 for one-row
requests). Adding is idempotent per key: the first outcome of a key wins, the same
value again is a ``duplicate`` (nothing written), a different value is ``conflicting``
(kept out, counted and reported, never overwriting). All writers of the table commit
under one Delta application id at increasing transaction versions (``transact``), so
two concurrent adds of the same keys cannot both append them: the second one's commit
fails, re-reads the table and finds the keys there. Ids the request log does not hold
are stored all the same (an outcome can arrive before its request's log batch is
flushed) but counted ``unknown`` and reported.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, NoReturn

import pyarrow as pa
import pyarrow.compute as pc

from raylake.errors import MonitorError, did_you_mean
from raylake.features.checks import check_string, parse_time, show, value_error
from raylake.lake.commit import transact
from raylake.lake.tables import Lake

SCHEMA = pa.schema([
    pa.field("request_id", pa.string()),  # the answer's id (every /predict answer has one)
    pa.field("unit_id", pa.string()),  # the randomised unit (A/B tests per unit)
    pa.field("row", pa.int32(), nullable=False),  # the row's position within its request
    pa.field("outcome", pa.float64(), nullable=False),  # 0/1 or a number
    pa.field("outcome_at", pa.timestamp("us", tz="UTC"), nullable=False),  # when it happened
    pa.field("arrived_at", pa.timestamp("us", tz="UTC"), nullable=False),  # when it was added
    pa.field("source", pa.string(), nullable=False),  # "cli" | "http"
])
FIELDS = ("request_id", "unit_id", "row", "outcome", "outcome_at")
IDS = ("request_id", "unit_id")
APP_ID = "raylake.outcomes"  # every writer of an outcomes table: serialised by txn version
SHOWN = 5  # ids quoted per kind in a report
_INT32_MAX = 2 ** 31 - 1
_TS = pa.timestamp("us", tz="UTC")

# (status, message, kind) -> the exception to raise (HTTP: ModelRequestError).
Fail = Callable[[int, str, str], Exception]
# (record index, field) -> how a message names it: "outcomes[3].row",
# "f.csv record 4, column row".
Where = Callable[[int, str], str]


def monitor_fail(status: int, message: str, kind: str) -> Exception:
    """The CLI's failure: a MonitorError (the job prints it, no traceback)."""
    return MonitorError(message)


def _raise(fail: Fail, message: str, kind: str = "wrong_type", status: int = 422) -> NoReturn:
    raise fail(status, message, kind)


def _item_where(i: int, name: str) -> str:
    return f"outcomes[{i}].{name}"


# -- checking ----------------------------------------------------------------------


def check_items(items: Any, *, max_rows: int, max_string: int, fail: Fail) -> pa.Table:
    """The ``outcomes`` list of a ``POST /outcomes`` body as a checked table; 4xx naming
    ``outcomes[i].field`` for a bad item (413 over ``max_rows``)."""
    if not isinstance(items, list) or not items:
        _raise(fail, "outcomes must be a non-empty list of objects {\"request_id\": ..., "
                     "\"row\": 0, \"outcome\": 1}.", "invalid_request")
    if len(items) > max_rows:
        _raise(fail, f"{len(items)} outcomes is over the limit of {max_rows} per request "
                     "(outcomes.max_rows_per_request); send them in parts.", "too_large", 413)
    cols: dict[str, list[Any]] = {f: [] for f in FIELDS}
    for i, item in enumerate(items):
        if type(item) is not dict:
            _raise(fail, f"outcomes[{i}] is {show(item)}; it must be an object "
                         "{\"request_id\": ..., \"row\": 0, \"outcome\": 1}.")
        for name in item:
            if name not in FIELDS:
                text = name if check_string(name, 100) else show(name)
                near = did_you_mean(text, FIELDS) if len(text) <= 100 else ""
                _raise(fail, f"outcomes[{i}].{text} is not a field of an outcome.{near} "
                             f"Fields: {', '.join(FIELDS)}.", "unknown_field")
        for key in IDS:
            v = item.get(key)
            if v is not None and not (type(v) is int or check_string(v, max_string)):
                _raise(fail, f"outcomes[{i}].{key} is {show(v)}; it must be text of at most "
                             f"{max_string} characters.")
            cols[key].append(None if v is None else str(v))
        row, at = item.get("row", 0), item.get("outcome_at")
        outcome: Any = item.get("outcome")
        if type(row) is not int or not 0 <= row <= _INT32_MAX:
            _raise(fail, f"outcomes[{i}].row is {show(row)}; it must be an integer >= 0 "
                         "(the row's position within its request; 0 for one-row requests).")
        if type(outcome) is bool:
            outcome = int(outcome)
        # value_error compares huge integers as integers (float() of one overflows).
        if value_error(outcome, "float64", max_string) is not None:
            _raise(fail, f"outcomes[{i}].outcome is {show(outcome)}; it must be a finite "
                         "number (0/1 for a rate).")
        when = None if at is None else parse_time(at)
        if at is not None and (when is None or type(at) is not str):
            _raise(fail, f"outcomes[{i}].outcome_at is {show(at)}; it must be an ISO time "
                         "text, e.g. 2013-07-01T18:00:00Z.")
        cols["row"].append(row)
        cols["outcome"].append(float(outcome))
        cols["outcome_at"].append(when)
    table = pa.table({
        "request_id": pa.array(cols["request_id"], pa.string()),
        "unit_id": pa.array(cols["unit_id"], pa.string()),
        "row": pa.array(cols["row"], pa.int32()),
        "outcome": pa.array(cols["outcome"], pa.float64()),
        "outcome_at": pa.array(cols["outcome_at"], _TS)})
    return check_rows(table, where=_item_where, max_string=max_string, fail=fail)


def check_rows(table: pa.Table, *, where: Where = _item_where, what: str = "outcomes",
               max_string: int = 1024, fail: Fail = monitor_fail) -> pa.Table:
    """``table`` (columns ``request_id`` and/or ``unit_id``, ``outcome``, optionally
    ``row`` and ``outcome_at``; others ignored) as checked outcomes in :data:`FIELDS`
    order and types: every row has a request id or a unit id (text, or integers made
    text), ``row`` an integer >= 0 (absent: 0), ``outcome`` a finite number (booleans
    are 0/1), ``outcome_at`` a time or ISO text (null: on arrival). The first bad row
    raises ``fail``'s exception, naming it with ``where(index, field)`` (``what``: the
    whole input, for a missing column)."""
    n = table.num_rows
    names = table.column_names
    if not any(k in names for k in IDS):
        _raise(fail, f"{what}: no request_id or "
                     f"unit_id column (columns: {', '.join(names)}); outcomes are keyed by "
                     "the answer's request_id or by the unit_id.", "missing_field")
    if "outcome" not in names:
        _raise(fail, f"{what}: no outcome column "
                     f"(columns: {', '.join(names)}).{did_you_mean('outcome', names)}",
               "missing_field")
    ids = {k: _id_column(table, k, where, max_string, fail) if k in names
           else pa.nulls(n, pa.string()) for k in IDS}
    present = pc.or_(pc.fill_null(pc.greater(pc.utf8_length(ids["request_id"]), 0), False),
                     pc.fill_null(pc.greater(pc.utf8_length(ids["unit_id"]), 0), False))
    if n and not pc.all(present).as_py():
        i = _first(pc.invert(present))
        _raise(fail, f"{where(i, 'request_id')}: the outcome has neither a request_id nor a "
                     "unit_id; give the answer's request_id (or the unit_id).",
               "missing_field")
    row = _row_column(table, where, fail) if "row" in names else pa.array([0] * n, pa.int32())
    outcome = _outcome_column(table["outcome"], where, fail)
    at = (_time_column(table["outcome_at"], where, fail) if "outcome_at" in names
          else pa.nulls(n, _TS))
    return pa.table({"request_id": ids["request_id"], "unit_id": ids["unit_id"], "row": row,
                     "outcome": outcome, "outcome_at": at})


def _first(mask: Any) -> int:
    """Index of the first true value of a boolean array."""
    return int(pc.index(mask, True).as_py())


def _id_column(table: pa.Table, key: str, where: Where, max_string: int, fail: Fail) -> Any:
    col = pc.cast(table[key].combine_chunks(), pa.string()) if (
        pa.types.is_integer(table[key].type) or pa.types.is_null(table[key].type)
        or pa.types.is_large_string(table[key].type)) else table[key].combine_chunks()
    if not pa.types.is_string(col.type):
        _raise(fail, f"{where(0, key)} is {col.type}; it must be text (or integers).")
    # An empty id is no id: the row is keyed by its other id (or refused).
    col = pc.if_else(pc.equal(col, ""), pa.scalar(None, pa.string()), col)
    too_long = pc.fill_null(pc.greater(pc.utf8_length(col), max_string), False)
    if pc.any(too_long).as_py():
        i = _first(too_long)
        _raise(fail, f"{where(i, key)} is {show(col[i].as_py())}; it must be text of at most "
                     f"{max_string} characters.")
    return col


def _row_column(table: pa.Table, where: Where, fail: Fail) -> Any:
    col = table["row"].combine_chunks()
    if pa.types.is_null(col.type):
        col = col.cast(pa.int32())
    bad = None
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        as_float = pc.cast(col, pa.float64())
        ok = pc.and_(pc.and_(pc.greater_equal(as_float, 0), pc.less_equal(as_float, _INT32_MAX)),
                     pc.equal(as_float, pc.floor(as_float)))
        ok = pc.fill_null(ok, True)
        if not pc.all(ok).as_py():
            bad = _first(pc.invert(ok))
    else:
        bad = 0
    if bad is not None:
        _raise(fail, f"{where(bad, 'row')} is {show(col[bad].as_py())}; it must be an "
                     "integer >= 0 (the row's position within its request; 0 for one-row "
                     "requests).")
    # No row (absent, or null) is row 0: a one-row request.
    return pc.fill_null(pc.cast(col, pa.int32()), 0)


def _outcome_column(column: Any, where: Where, fail: Fail) -> Any:
    col = column.combine_chunks()
    if pa.types.is_boolean(col.type):
        col = pc.cast(col, pa.int8())
    values = None
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        values = pc.cast(col, pa.float64())
    elif pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        try:
            values = pc.cast(col, pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            values = None
    if values is None:  # text that is not a number: find the row that says so
        for i, v in enumerate(col.to_pylist()):
            try:
                float(v)
            except (TypeError, ValueError):
                _raise(fail, f"{where(i, 'outcome')} is {show(v)}; it must be a finite "
                             "number (0/1 for a rate).")
        _raise(fail, f"{where(0, 'outcome')} is {col.type}; it must be numbers.")
    ok = pc.fill_null(pc.is_finite(values), False)
    if len(values) and not pc.all(ok).as_py():
        i = _first(pc.invert(ok))
        _raise(fail, f"{where(i, 'outcome')} is {show(values[i].as_py())}; it must be a "
                     "finite number (0/1 for a rate).")
    return values


def _time_column(column: Any, where: Where, fail: Fail) -> Any:
    col = column.combine_chunks()
    if pa.types.is_null(col.type):
        return pa.nulls(len(col), _TS)
    if pa.types.is_timestamp(col.type):
        # A time without a zone is UTC (as everywhere in raylake).
        return pc.cast(col if col.type.tz else pc.assume_timezone(col, "UTC"), _TS)
    if pa.types.is_date(col.type):
        return pc.assume_timezone(pc.cast(col, pa.timestamp("us")), "UTC")
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        out = []
        for i, v in enumerate(col.to_pylist()):
            when = None if v is None else parse_time(v)
            if v is not None and when is None:
                _raise(fail, f"{where(i, 'outcome_at')} is {show(v)}; it must be an ISO "
                             "time, e.g. 2013-07-01T18:00:00Z.")
            out.append(when)
        return pa.array(out, _TS)
    _raise(fail, f"{where(0, 'outcome_at')} is {col.type}; it must be times or ISO text.")


# -- adding ----------------------------------------------------------------------


def add_outcomes(lake: Lake, table: str, rows: pa.Table, source: str,
                 log_table: str | None, *, now: dt.datetime | None = None,
                 run_id: str | None = None, job: str | None = None,
                 fail: Fail = monitor_fail) -> dict[str, Any]:
    """Append the outcomes of ``rows`` (checked with :func:`check_rows`) that table
    ``table`` does not hold yet, in one commit (the table is created on first use).
    Returns the counts ``added``, ``duplicate`` (key already there with the same value,
    or repeated in ``rows``), ``conflicting`` (key there with another value: kept out)
    and ``unknown`` (id not in request log ``log_table``, stored all the same; none when
    ``log_table`` is None), the first few ids of the last two (``conflicting_ids``,
    ``unknown_ids``), ``log_table`` and ``log_version`` (the log version read; None
    when there is no log table)."""
    rows = check_rows(rows, fail=fail)
    result: dict[str, Any] = {"added": 0, "duplicate": 0, "conflicting": 0, "unknown": 0,
                              "conflicting_ids": [], "unknown_ids": [],
                              "log_table": log_table, "log_version": None}
    if not rows.num_rows:
        return result
    arrived = now or dt.datetime.now(dt.timezone.utc)
    keyed = _keys(rows)
    known, result["log_version"], units = _in_log(lake, log_table, rows, keyed)
    # An outcome sent by request id gets the answer's unit from the log, so that
    # per-unit analysis (the A/B report's join_on=unit_id) finds it too.
    unit = [u if u is not None or r is None else units.get(r)
            for r, u in zip(rows["request_id"].to_pylist(), rows["unit_id"].to_pylist())]
    arrived_col = pa.array([arrived] * rows.num_rows, _TS)
    full = pa.table({
        "request_id": rows["request_id"], "unit_id": pa.array(unit, pa.string()),
        "row": rows["row"], "outcome": rows["outcome"],
        "outcome_at": pc.coalesce(rows["outcome_at"], arrived_col), "arrived_at": arrived_col,
        "source": pa.array([source] * rows.num_rows, pa.string())}, schema=SCHEMA)
    values = rows["outcome"].to_pylist()

    def build(dtab: Any, conflicts: int) -> pa.Table | None:
        # Runs again on a newer snapshot when a concurrent add committed first.
        existing = _existing(lake, table, dtab, rows)
        take, dup, conflicting = [], 0, []
        seen: dict[tuple, float] = {}
        for i, key in enumerate(keyed):
            have = existing.get(key, seen.get(key))
            if have is None:
                seen[key] = values[i]
                take.append(i)
            elif have == values[i]:
                dup += 1
            else:
                conflicting.append(_show_key(key))
        result.update(added=len(take), duplicate=dup, conflicting=len(conflicting),
                      conflicting_ids=conflicting[:SHOWN])
        return full.take(pa.array(take, pa.int64())) if take else None

    transact(lake, table, SCHEMA, build, app_id=APP_ID, run_id=run_id, job=job)
    if known is not None:
        unknown = [_show_key(k) for k, ok in zip(keyed, known) if not ok]
        result.update(unknown=len(unknown), unknown_ids=unknown[:SHOWN])
    return result


def _keys(rows: pa.Table) -> list[tuple[str, str, int]]:
    """Each row's key: ("request_id", id, row) when it has a request id, else
    ("unit_id", id, row)."""
    rid, uid, row = (rows[c].to_pylist() for c in ("request_id", "unit_id", "row"))
    return [("request_id", r, n) if r else ("unit_id", u, n) for r, u, n in zip(rid, uid, row)]


def _show_key(key: tuple[str, str, int]) -> str:
    kind, ident, row = key
    text = ident if len(ident) <= 64 else ident[:64] + "..."
    return f"{kind}={text}" + (f" row {row}" if row else "")


def _id_filter(rows: pa.Table, request_col: str = "request_id", unit_col: str = "unit_id"):
    """A dataset filter on the request ids and unit ids of ``rows``."""
    import pyarrow.dataset as pads

    req = rows["request_id"].drop_null().unique()
    unit = rows["unit_id"].drop_null().unique()
    f = None
    if len(req):
        f = pads.field(request_col).isin(req)
    if len(unit):
        g = pads.field(unit_col).isin(unit)
        f = g if f is None else f | g
    return f


def _existing(lake: Lake, table: str, dtab: Any, rows: pa.Table) -> dict[tuple, float]:
    """The outcomes ``dtab`` (a snapshot of ``table``) holds for the ids of ``rows``: key ->
    value. Only the key columns and the outcome are read, filtered to those ids."""
    ds = dtab.to_pyarrow_dataset(filesystem=lake.arrow_filesystem(table))
    got = ds.to_table(columns=["request_id", "unit_id", "row", "outcome"],
                      filter=_id_filter(rows))
    return dict(zip(_keys(got), got["outcome"].to_pylist()))


def _in_log(lake: Lake, log_table: str | None, rows: pa.Table, keyed: list[tuple]
            ) -> tuple[list[bool] | None, int | None, dict[str, str]]:
    """Per row, whether its id is in request log ``log_table`` (None: no log to check);
    the log version read (None: no such table yet, so no id is in it); and the unit of
    each request id found (for outcomes sent without one)."""
    if not log_table:
        return None, None, {}
    if not lake.exists(log_table):
        return [False] * rows.num_rows, None, {}
    version = lake.version(log_table)
    # Only the id columns, filtered to this batch's ids (file statistics skip the rest).
    got = lake.dataset(log_table, version).to_table(columns=["request_id", "unit_id"],
                                                    filter=_id_filter(rows))
    requests = set(got["request_id"].to_pylist())
    units_seen = set(got["unit_id"].drop_null().to_pylist())
    units = {r: u for r, u in zip(got["request_id"].to_pylist(), got["unit_id"].to_pylist())
             if u is not None}
    known = [(ident in requests) if kind == "request_id" else (ident in units_seen)
             for kind, ident, _ in keyed]
    return known, version, units


# -- files -------------------------------------------------------------------------

SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl",
            ".ndjson": "jsonl", ".json": "jsonl"}


def file_format(path: str, fmt: str | None) -> str:
    """``fmt`` when given, else the format of ``path``'s suffix; MonitorError when the
    suffix says nothing."""
    if fmt:
        return str(fmt)
    import os

    suffix = os.path.splitext(path.removesuffix(".gz"))[1].lower()
    if suffix not in SUFFIXES:
        raise MonitorError(f"Cannot tell the format of {path!r} from its suffix; name it "
                           "*.csv, *.parquet or *.jsonl, or set outcomes.format=csv|parquet|"
                           "jsonl.")
    return SUFFIXES[suffix]


def read_file(path: str, fmt: str, *, key: str, outcome: str,
              max_string: int = 1024) -> pa.Table:
    """The outcomes of file ``path`` (format ``fmt``), checked: column ``outcome`` is the
    outcome, ``key`` (request_id or unit_id) must be a column. MonitorError naming the
    file, the record and the column for a bad one."""
    import pyarrow.csv as pcsv
    import pyarrow.json as pjson
    import pyarrow.parquet as pq

    try:
        if fmt == "csv":
            # Ids stay text even when they look like numbers ("007" is not 7).
            opts = pcsv.ConvertOptions(column_types={k: pa.string() for k in IDS})
            data = pcsv.read_csv(path, convert_options=opts)
        elif fmt == "parquet":
            data = pq.read_table(path)
        else:
            data = pjson.read_json(path)
    except FileNotFoundError:
        raise MonitorError(f"No outcomes file {path!r}; give an existing file: raylake "
                           "outcomes add FILE.") from None
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise MonitorError(f"Cannot read {path!r} as {fmt}: {exc}. Fix the file, or set "
                           "outcomes.format if the suffix misleads.") from exc
    names = data.column_names
    if key not in names:
        other = "unit_id" if key == "request_id" else "request_id"
        hint = (f" It has {other}: set outcomes.join_on={other}." if other in names else
                f"{did_you_mean(key, names)}")
        raise MonitorError(f"{path!r} has no {key} column (columns: {', '.join(names)}); "
                           f"outcomes.join_on={key} needs one.{hint}")
    if outcome not in names:
        raise MonitorError(f"{path!r} has no {outcome!r} column for the outcome (columns: "
                           f"{', '.join(names)}).{did_you_mean(outcome, names)} Set "
                           "outcomes.outcome=COLUMN.")
    cols = {c: data[c] for c in FIELDS if c in names and c != "outcome"}
    cols["outcome"] = data[outcome]

    def where(i: int, field: str) -> str:
        # Record numbers count from 1 (the first data row; a CSV's header is line 1).
        name = outcome if field == "outcome" else field
        return f"{path} record {i + 1}, column {name}"

    return check_rows(pa.table(cols), where=where, what=path, max_string=max_string)


def sha256_file(path: str) -> str:
    """The hex SHA-256 of the file's bytes (recorded with the run)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_config(conf: Any) -> None:
    """``raylake outcomes add`` needs a file: MonitorError naming how to give one."""
    if not conf.outcomes.path:
        raise MonitorError("No outcomes file: give one, `raylake outcomes add FILE` (or "
                           "outcomes.path=FILE); CSV, Parquet or JSON Lines with a "
                           f"{conf.outcomes.join_on} column and an {conf.outcomes.outcome!r} "
                           "column.")


def run_add(lake: Lake, conf: Any, run: Any) -> dict[str, Any]:
    """Job ``outcomes-add``: read, check and add ``outcomes.path``; the file (with its
    sha256), the request log version and the outcomes version go in the run record."""
    o = conf.outcomes
    path = str(o.path)
    rows = read_file(path, file_format(path, o.format), key=str(o.join_on), outcome=o.outcome,
                     max_string=conf.model_server.max_string_length)
    log_table = conf.model_server.request_log_table
    counts = add_outcomes(lake, o.table, rows, "cli", log_table, run_id=run.run_id,
                          job="outcomes-add")
    digest = sha256_file(path)
    # kind "files" with the table: `raylake lineage` shows the file under the table.
    run.add_input(kind="files", table=o.table, files=[path], sha256=digest,
                  fingerprint=digest, rows=rows.num_rows, role="outcomes")
    if counts["log_version"] is not None:
        run.add_input(table=log_table, version=counts["log_version"], role="request-log")
    version = lake.version(o.table)
    run.add_output(table=o.table, version=version, rows=counts["added"])
    run.metrics.update({k: counts[k] for k in ("added", "duplicate", "conflicting",
                                               "unknown")})
    return {**counts, "table": o.table, "version": version,
            "summary": summary(counts, o.table)}


def summary(counts: dict[str, Any], table: str) -> list[str]:
    """Printable lines of :func:`add_outcomes`'s counts."""
    lines = [f"outcomes into {table}: added {counts['added']}, duplicate "
             f"{counts['duplicate']}, conflicting {counts['conflicting']}, unknown "
             f"{counts['unknown']}"]
    if counts["conflicting"]:
        lines.append("  conflicting (a different outcome is already recorded; the first "
                     f"one stands): {', '.join(counts['conflicting_ids'])}"
                     + (" ..." if counts["conflicting"] > SHOWN else ""))
    if counts["unknown"]:
        lines.append("  unknown (not in the request log; stored, check the ids or wait for "
                     f"the log's flush): {', '.join(counts['unknown_ids'])}"
                     + (" ..." if counts["unknown"] > SHOWN else ""))
    if not counts.get("log_table"):
        lines.append("  ids not checked: no request log (model_server.request_log_table)")
    elif counts.get("log_version") is None:
        lines.append(f"  the request log {counts['log_table']} does not exist yet: every id "
                     "is unknown")
    return lines


def to_response(counts: dict[str, Any]) -> dict[str, Any]:
    """The JSON answer of ``POST /outcomes``."""
    return {k: counts[k] for k in ("added", "duplicate", "conflicting", "unknown",
                                   "conflicting_ids", "unknown_ids")}

