"""``raylake profile-requests``: live-traffic profiles made from the request log.

For traffic served before live profiling was on (``model_server.live_profile``), or by
a server that had it off: the answers (status 200, main and shadow arms) of ``model``
in the request log are profiled per model version, arm and window
(``model_server.profile_window``, the windows replicas write) and appended to
``model_server.profile_table`` as rows of source ``log``, writer ``log``, ``seq`` = the
request log version read. Profile columns are those of the live rows: the features as
the model saw them (the log's ``features``), typed as registered, and ``_prediction``.

Only whole, ended windows are profiled: from the window holding ``monitor.since`` to
the one holding ``monitor.until``, each ending by now (``monitor.now``, the replayed
clock, else the wall clock). A window of a version and arm that already has ``log``
rows is skipped, so a re-run adds nothing twice; the check and the append are one
transaction (``raylake.live_profiles.log/<model>``), so two concurrent runs cannot both
add a window.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from raylake.config.values import parse_duration
from raylake.errors import ConfigError, ModelNotFoundError, TableNotFoundError
from raylake.lake import clock
from raylake.lake.commit import transact
from raylake.serve.live_profile import SCHEMA, Key, profile_row, profile_table

WRITER = "log"
_COLUMNS = ["model_version", "arm", "shadow", "at", "features", "predictions"]


def check_config(conf: Any) -> None:
    """Refuse a run without a model or a request log, naming the key to set."""
    if not conf.model:
        raise ConfigError("profile-requests needs model=NAME[:VERSION|champion|latest] (a "
                          "name alone: every version in the request log), e.g. "
                          "raylake profile-requests model=delay_model.")
    if not _log_table(conf):
        raise ConfigError("No request log table: set model_server.request_log_table (or "
                          "monitor.request_log_table) to the table the model server logged to.")


def _log_table(conf: Any) -> str | None:
    return conf.monitor.request_log_table or conf.model_server.request_log_table


def profile_requests(lake: Any, conf: Any, run: Any) -> dict[str, Any]:
    """Profile the request log's answers of ``conf.model`` into ``log`` rows of the profile
    table; returns counts of windows and rows written and skipped."""
    from raylake.models.registry import ModelRegistry, parse_model_ref
    from raylake.quality.profile import Profile

    ms, monitor = conf.model_server, conf.monitor
    log_table = _log_table(conf)
    assert log_table is not None  # check_config
    name, ref = parse_model_ref(conf.model)
    registry = ModelRegistry(lake)
    version = None if ref is None else registry.get(name, ref).version
    width = parse_duration(ms.profile_window, "model_server.profile_window")
    lo, hi = _bounds(monitor, width)
    if not lake.exists(log_table):
        raise TableNotFoundError(f"Request log table {log_table!r} does not exist: serve with "
                                 "model_server.request_log_table set, or point it (or "
                                 "monitor.request_log_table) at the log.")
    log_version = lake.version(log_table)
    answers = _answers(lake, log_table, log_version, name, version, lo, hi)
    run.add_input(table=log_table, version=log_version, role="request-log")
    groups = _group(answers, name, width)
    types = {v: _types(registry, name, v) for v in {k.version for k in groups}}
    rows = [profile_row(key, width, Profile.of(profile_table(cols, preds, types[key.version])),
                        len(preds), source="log", writer=WRITER, seq=log_version)
            for key, (cols, preds) in sorted(groups.items())]
    table = ms.profile_table
    written = _append_new(lake, table, name, rows, run.run_id) if rows else []
    if written:
        run.add_output(table=table, version=lake.version(table, system=True),
                       rows=len(written), profiled_rows=sum(r["rows"] for r in written))
    result = {"model": name, "version": version, "request_log": log_table,
              "request_log_version": log_version, "profile_table": table,
              "windows": len(rows), "written": len(written), "skipped": len(rows) - len(written),
              "rows": sum(r["rows"] for r in written),
              "first_window": rows[0]["window_start"].isoformat() if rows else None,
              "last_window": rows[-1]["window_start"].isoformat() if rows else None}
    run.metrics.update({k: result[k] for k in ("windows", "written", "skipped", "rows")})
    result["summary"] = (f"profile-requests {name}: {len(rows)} windows of answers in "
                         f"{log_table}@{log_version}; {len(written)} written to {table} "
                         f"({result['rows']} rows), {result['skipped']} already there")
    return result


def _bounds(monitor: Any, width: dt.timedelta) -> tuple[dt.datetime | None, dt.datetime]:
    """[lo, hi): whole windows from the one holding monitor.since to the one holding
    monitor.until, none ending after now."""
    now = clock.now(monitor.now, "monitor.now")
    hi = clock.window_start(now, width)
    if monitor.until:
        t = clock.parse_time(monitor.until, "monitor.until")
        end = clock.window_start(t, width)
        hi = min(hi, end if end == t else end + width)
    lo = (clock.window_start(clock.parse_time(monitor.since, "monitor.since"), width)
          if monitor.since else None)
    return lo, hi


def _answers(lake: Any, table: str, version: int, name: str, model_version: int | None,
             lo: dt.datetime | None, hi: dt.datetime) -> pa.Table:
    ts = pa.timestamp("us", tz="UTC")
    f = ((pads.field("model_name") == name) & (pads.field("status") == 200)
         & pads.field("features").is_valid() & (pads.field("at") < pa.scalar(hi, ts)))
    if model_version is not None:
        f &= pads.field("model_version") == model_version
    if lo is not None:
        f &= pads.field("at") >= pa.scalar(lo, ts)
    return lake.dataset(table, version).to_table(columns=_COLUMNS, filter=f)


def _group(answers: pa.Table, name: str, width: dt.timedelta
           ) -> dict[Key, tuple[dict[str, list[Any]], list[Any]]]:
    """Each answer's features and predictions appended to its (version, arm, shadow,
    window)'s columns."""
    step = int(width.total_seconds() * 1_000_000)
    micros = pc.cast(answers["at"], pa.int64()).to_numpy()
    starts = (micros - micros % step).tolist()
    epoch = dt.datetime(1970, 1, 1, tzinfo=clock.UTC)
    groups: dict[Key, tuple[dict[str, list[Any]], list[Any]]] = {}
    for ver, arm, shadow, start, feats, preds in zip(
            answers["model_version"].to_pylist(), answers["arm"].to_pylist(),
            answers["shadow"].to_pylist(), starts, answers["features"].to_pylist(),
            answers["predictions"].to_pylist()):
        columns = json.loads(feats)
        preds = preds or []
        key = Key(name, int(ver), arm, bool(shadow),
                  epoch + dt.timedelta(microseconds=start))
        cols, scores = groups.setdefault(key, ({}, []))
        for c in columns.keys() - cols.keys():  # a column first seen now: earlier rows null
            cols[c] = [None] * len(scores)
        for c, values in cols.items():
            values.extend(columns.get(c) or [None] * len(preds))
        scores.extend(preds)
    return groups


def _types(registry: Any, name: str, version: int) -> dict[str, str]:
    try:
        return {f["name"]: str(f.get("type", "")) for f in registry.get(name, version).features}
    except ModelNotFoundError:  # a version no longer registered: types as Arrow infers them
        return {}


def _append_new(lake: Any, table: str, name: str, rows: list[dict[str, Any]],
                run_id: str) -> list[dict[str, Any]]:
    """Append the rows whose window has no ``log`` row yet, checked and committed in one
    transaction; returns the rows written."""
    written: list[dict[str, Any]] = []

    def build(dtab: Any, conflicts: int) -> pa.Table | None:
        ds = dtab.to_pyarrow_dataset(filesystem=lake.arrow_filesystem(table, system=True))
        have = ds.to_table(columns=["model_version", "arm", "shadow", "window_start"],
                           filter=(pads.field("model") == name)
                           & (pads.field("source") == "log"))
        done = set(zip(have["model_version"].to_pylist(), have["arm"].to_pylist(),
                       have["shadow"].to_pylist(), have["window_start"].to_pylist()))
        written[:] = [r for r in rows if (r["model_version"], r["arm"], r["shadow"],
                                          r["window_start"]) not in done]
        return pa.Table.from_pylist(written, SCHEMA) if written else None

    transact(lake, table, SCHEMA, build, system=True, app_id=f"raylake.live_profiles.log/{name}",
             run_id=run_id, job="profile-requests")
    return written
