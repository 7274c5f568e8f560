"""Model performance per window: realised from outcomes, estimated (CBPE) before them.

The request log holds every answer with its scores (one per row of the request). Here
the model version's answered requests (status 200, shadow arms too: outcomes do not
depend on who answered) are cut into one row per (request, row position) with its
score, its arm and its window (``lake.clock.window_start`` of the request's time), and
joined with the outcomes table on (request_id, row), or (unit_id, row) when
``outcomes.join_on=unit_id``, the first outcome of a key winning.

Per window and arm, and per segment (``monitor.segment_by``: ``origin=EWR``, values as
the model saw them; a segment with fewer than ``monitor.min_rows`` rows is left out),
the monitoring rows (feature ``_model``) are:

- realised, over the rows with an outcome: ``auc``, ``log_loss``,
  ``calibration_error``, ``cost`` (per ``train.cost.per`` rows at the model's own
  threshold, :func:`threshold_of`) and ``positive_rate`` (the outcomes' rate); with
  fewer than ``monitor.min_rows`` outcomes the five rows carry no value and the state
  ``too_few_outcomes``, ``no_outcomes`` when there is no outcomes table, and
  ``non_binary_outcomes`` (with examples) when an outcome is not 0 or 1: these metrics
  are of a binary outcome, and AUC would read 0.3 as positive;
- estimated (``estimated=True``), over every row: ``auc_estimated``,
  ``cost_estimated`` and ``positive_rate_estimated`` from CBPE (``monitor/cbpe.py``),
  calibrated on the reference's scores and labels.

Outcomes whose id matches no logged request are counted per window of their outcome
time in an ``unknown_outcomes`` row (arm ``""``): recorded, never an error.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.json as pajson

from raylake.config.values import parse_duration
from raylake.errors import MonitorError, RaylakeError
from raylake.lake.clock import UTC, as_utc, window_start
from raylake.monitor import cbpe
from raylake.train import metrics

REALISED = ("auc", "log_loss", "calibration_error", "cost", "positive_rate")
ESTIMATED = ("auc_estimated", "cost_estimated", "positive_rate_estimated")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)


def window_rows(lake: Any, conf: Any, mv: Any, windows: Sequence[Any], run_id: str,
                reference: tuple[np.ndarray, np.ndarray, str] | None = None
                ) -> list[dict[str, Any]]:
    """Monitoring rows of model version ``mv`` for the windows starting at ``windows``
    (datetimes, or (start, end) pairs) of width ``monitor.window``. ``reference``: the
    labels, raw scores and name (``TABLE@VERSION``) CBPE calibrates on; None: the
    model's scores on its reference (:func:`cbpe.reference_scores`)."""
    m = conf.monitor
    width = parse_duration(m.window, "monitor.window")
    starts = sorted({window_start(w[0] if isinstance(w, tuple) else w, width) for w in windows})
    if not starts:
        return []
    log_table = m.request_log_table or conf.model_server.request_log_table
    served, log_keys, _ = _served(lake, log_table, mv, starts, width, conf.outcomes.join_on,
                               list(m.segment_by))
    key = str(conf.outcomes.join_on)
    out: list[dict[str, Any]] = []
    base = {"model": mv.name, "model_version": int(mv.version), "feature": "_model",
            "threshold": None, "flagged": False, "run_id": run_id,
            "created_at": dt.datetime.now(UTC)}
    outcomes = _outcomes(lake, conf.outcomes.table, key)
    if outcomes is not None:
        unknown = outcomes.filter(pc.invert(pc.is_in(outcomes[key], value_set=log_keys)))
        out += _unknown_rows(unknown, key, starts, width, base)
        y = _join(served, outcomes, key)
    else:
        y = np.full(served.num_rows, np.nan)
    no_reference = ""
    if reference is None and served.num_rows:
        try:
            reference = cbpe.reference_scores(lake, conf, mv)
        except RaylakeError as exc:  # recorded per window; drift and outcomes go on
            no_reference = str(exc)
    base["reference"] = reference[2] if reference else ""
    calibrate = None
    if reference is not None:
        try:
            calibrate = cbpe.calibrator(reference[0], reference[1], reference[2])
        except MonitorError as exc:  # recorded per window, as a missing reference is
            no_reference = str(exc)
    ctx = {"min_rows": m.min_rows, "cost": conf.train.cost, "mv": mv,
           "threshold": threshold_of(mv, conf.train.cost)[0], "calibrate": calibrate,
           "outcomes": outcomes is not None, "no_reference": no_reference}
    score = served["score"].to_numpy(zero_copy_only=False)
    wcode = served["window"].to_numpy(zero_copy_only=False)
    arm_names, arm_code = np.unique(np.asarray(served["arm"].fill_null("").to_pylist(),
                                               dtype=object), return_inverse=True)
    segs = {c: np.asarray(served[f"seg:{c}"].to_pylist(), dtype=object) for c in m.segment_by}
    # Row indices per (window, arm) from one sort, not one scan of every row per window.
    order = np.lexsort((arm_code, wcode))
    cuts = np.flatnonzero(np.diff(wcode[order]) | np.diff(arm_code[order])) + 1
    groups = {(int(wcode[i[0]]), str(arm_names[arm_code[i[0]]])): i
              for i in np.split(order, cuts) if i.size}
    by_micros = {_micros(ws): ws for ws in starts}
    for (w, arm), sel in sorted(groups.items()):
        if w in by_micros:
            ws = by_micros[w]
            row = {**base, "arm": arm, "window_start": ws, "window_end": ws + width}
            out += _metric_rows(row, "", score[sel], y[sel], ctx)
            for col, values in segs.items():
                v_sel = values[sel]
                for v in sorted({x for x in v_sel.tolist() if x is not None}):
                    s = v_sel == v
                    out += _metric_rows(row, f"{col}={v}", score[sel][s], y[sel][s], ctx)
    return out


def _metric_rows(base: dict[str, Any], segment: str, s: np.ndarray, y: np.ndarray,
                 ctx: dict[str, Any]) -> list[dict[str, Any]]:
    n, min_rows = int(s.size), ctx["min_rows"]
    if n == 0 or (segment and n < min_rows):  # a small segment is noise, not a state
        return []
    base = {**base, "segment": segment}
    training = ctx["mv"].metrics.get("test", {})
    cost, t = ctx["cost"], ctx["threshold"]
    out: list[dict[str, Any]] = []
    est: dict[str, Any] = {}
    if ctx["calibrate"] is None:
        out += [_row(base, c, None, n, True, {"state": "no_reference",
                                               "message": ctx["no_reference"]})
                for c in ESTIMATED]
    elif n < min_rows:
        out += [_row(base, c, None, n, True, {"state": "too_few_rows", "min_rows": min_rows})
                for c in ESTIMATED]
    else:
        est = cbpe.estimate(s, ctx["calibrate"], t, cost)
        conf_matrix = {k: round(est[k], 3) for k in ("tp", "fp", "fn", "tn")}
        for c in ESTIMATED:
            out.append(_row(base, c, est[c.removesuffix("_estimated")], n, True,
                            {"expected": conf_matrix, "decision_threshold": t}))
    labelled = ~np.isnan(y)
    k = int(labelled.sum())
    if not ctx["outcomes"]:
        return out + [_row(base, c, None, 0, False, {"state": "no_outcomes"}) for c in REALISED]
    yl, sl = y[labelled], s[labelled]
    odd = yl[(yl != 0.0) & (yl != 1.0)]
    if odd.size:  # metrics.auc casts to bool: 0.3 and 2 would count as positives
        examples = sorted({float(v) for v in odd.tolist()})[:3]
        return out + [_row(base, c, None, k, False, {
            "state": "non_binary_outcomes", "labelled": k, "non_binary": int(odd.size),
            "examples": examples, "message": (
                f"{odd.size} of {k} outcomes are not 0 or 1 (e.g. {examples}); these "
                "metrics need a binary outcome: record 1 for the positive event and 0 "
                "otherwise (raylake outcomes add, POST /outcomes).")}) for c in REALISED]
    if k < min_rows:
        return out + [_row(base, c, None, k, False, {"state": "too_few_outcomes",
                                                     "labelled": k, "min_rows": min_rows})
                      for c in REALISED]
    values = {"auc": metrics.auc(yl, sl), "log_loss": metrics.log_loss(yl, sl),
              "calibration_error": metrics.calibration_error(yl, sl),
              "cost": metrics.expected_cost(yl, sl, t, cost),
              "positive_rate": float(yl.mean())}
    trained = {"cost": training.get(f"cost_per_{cost.per}"), "auc": training.get("auc")}
    for c, v in values.items():
        detail: dict[str, Any] = {"labelled": k, "unlabelled": n - k}
        if c in ("auc", "cost", "positive_rate") and est:
            detail["estimated"] = est[c]  # CBPE on the same window, to compare
        if trained.get(c) is not None:
            detail["training"] = trained[c]
        if c == "auc" and math.isnan(v):
            detail["state"] = "one_class"
        out.append(_row(base, c, v, k, False, detail))
    return out


def threshold_of(mv: Any, cost: Any) -> tuple[float, str]:
    """The model's decision threshold and where it came from: the one its training chose
    on validation (``metrics.test.threshold``, "registered"); for a model registered
    without one, where acting on it is cheaper than not, p >= false_alarm / (missed +
    false_alarm), the Bayes threshold of ``cost`` ("cost ratio"; 0.5 when both cost 0).
    Monitoring and ``raylake ct`` judge a model at the same threshold through this."""
    t = ((getattr(mv, "metrics", None) or {}).get("test") or {}).get("threshold")
    if isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t):
        return float(t), "registered"
    total = float(cost.missed) + float(cost.false_alarm)
    return (float(cost.false_alarm) / total if total else 0.5), "cost ratio"


def _row(base: dict[str, Any], check: str, value: float | None, rows: int, estimated: bool,
         detail: dict[str, Any]) -> dict[str, Any]:
    if value is not None and not math.isfinite(value):
        value = None
    return {**base, "check": check, "value": value, "estimated": estimated, "rows": rows,
            "detail": json.dumps(detail, sort_keys=True, default=str)}


def _micros(t: dt.datetime) -> int:
    return (as_utc(t) - _EPOCH) // dt.timedelta(microseconds=1)


def labelled_scores(lake: Any, conf: Any, mv: Any, start: dt.datetime, end: dt.datetime, *,
                    with_features: bool = False) -> tuple[np.ndarray, np.ndarray, pa.Table | None]:
    """The scores of ``mv``'s answers in [start, end), the outcome of each (NaN: none
    yet; joined on ``outcomes.join_on``) and, with ``with_features``, the features each
    row was scored on: three aligned views of the same read of the request log (for
    re-scoring the same rows with another model)."""
    key = conf.outcomes.join_on
    served, _, features = _served(lake, conf.model_server.request_log_table, mv, [start],
                                  end - start, key, [], with_features=with_features)
    outcomes = _outcomes(lake, conf.outcomes.table, key)
    y = (np.full(served.num_rows, np.nan) if outcomes is None
         else _join(served, outcomes, key))
    return served["score"].to_numpy(zero_copy_only=False), y, features


def _served(lake: Any, table: str, mv: Any, starts: list[dt.datetime], width: dt.timedelta,
            key: str, segment_by: list[str], *, with_features: bool = False
            ) -> tuple[pa.Table, pa.Array, pa.Table | None]:
    """One row per scored request row of ``mv`` in the windows: request_id, unit_id,
    row, arm, window (start, UTC microseconds), score and ``seg:<column>`` per segment
    column; every key (``key`` column) the whole log holds; and with ``with_features``
    the features of each row, in the same order (else None)."""
    empty = pa.schema([("request_id", pa.string()), ("unit_id", pa.string()),
                       ("arm", pa.string()), ("row", pa.int64()), ("window", pa.int64()),
                       ("score", pa.float64()),
                       *[(f"seg:{c}", pa.string()) for c in segment_by]]).empty_table()
    if not table or not lake.exists(table):
        return empty, pa.array([], pa.string()), pa.table({}) if with_features else None
    ds = lake.dataset(table)
    ts = pa.timestamp("us", tz="UTC")
    f = ((pads.field("model_name") == mv.name) & (pads.field("model_version") == int(mv.version))
         & (pads.field("status") == 200) & (pads.field("at") >= pa.scalar(starts[0], ts))
         & (pads.field("at") < pa.scalar(starts[-1] + width, ts)))
    cols = ["request_id", "unit_id", "arm", "at", "predictions"]
    t = ds.to_table(columns=cols + (["features"] if segment_by or with_features else []),
                    filter=f)
    keys = pc.unique(ds.to_table(columns=[key])[key].drop_null()).cast(pa.string())
    t = t.filter(pc.is_valid(t["predictions"])).combine_chunks()
    if t.num_rows == 0:
        return empty, keys, pa.table({}) if with_features else None
    preds = t["predictions"]
    lengths = pc.list_value_length(preds).to_numpy(zero_copy_only=False).astype(np.int64)
    parent = np.repeat(np.arange(t.num_rows), lengths)
    row = np.arange(parent.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    at = t["at"].cast(pa.int64()).to_numpy(zero_copy_only=False)
    step = int(width.total_seconds() * 1_000_000)
    req = t.select(["request_id", "unit_id", "arm"]).take(pa.array(parent))
    cols_out = {c: req[c] for c in req.column_names}
    cols_out.update(row=pa.array(row), window=pa.array((at - at % step)[parent]),
                    score=pc.list_flatten(preds).cast(pa.float64()))
    for col in segment_by:
        cols_out[f"seg:{col}"] = _segment_values(t["features"], lengths, col)
    return pa.table(cols_out), keys, _row_features(t["features"]) if with_features else None


def _row_features(features: pa.ChunkedArray) -> pa.Table:
    """The features JSON of each request (a list per column, one value per row) as one
    table row per request row, in the requests' order."""
    columns: dict[str, list[Any]] = {}
    for text in features.fill_null("{}").to_pylist():
        for k, v in json.loads(text).items():
            columns.setdefault(k, []).extend(v)
    return pa.table(columns)


def _segment_values(features: pa.ChunkedArray, lengths: np.ndarray, col: str) -> pa.Array:
    """Column ``col``'s value per request row from the log's features JSON (null where
    the request did not carry it). Arrow's JSON reader parses a string column in bulk
    (json.loads per request took most of a year's run); other types go request by
    request."""
    texts = features.fill_null("{}").to_pylist()
    try:
        got = pajson.read_json(pa.py_buffer(("\n".join(texts) + "\n").encode()),
                               parse_options=pajson.ParseOptions(
                                   explicit_schema=pa.schema([(col, pa.list_(pa.string()))]),
                                   unexpected_field_behavior="ignore"))[col].combine_chunks()
        if np.array_equal(pc.list_value_length(got).fill_null(-1).to_numpy(), lengths):
            return pc.list_flatten(got)
    except pa.ArrowInvalid:
        pass
    out: list[Any] = []
    for text, n in zip(texts, lengths.tolist()):
        values = json.loads(text).get(col)
        if not isinstance(values, list) or len(values) != n:
            values = [values] * n if values is not None and not isinstance(values, list) \
                else [None] * n
        out += [None if v is None else str(v) for v in values]
    return pa.array(out, pa.string())


def _outcomes(lake: Any, table: str, key: str) -> pa.Table | None:
    """The outcomes table's (key, row, outcome, at): the first outcome of each (key,
    row) (an outcomes table without ``row`` has row 0); None when there is no table."""
    if not table or not lake.exists(table):
        return None
    ds = lake.dataset(table)
    names = ds.schema.names
    at_col = next((c for c in ("outcome_at", "arrived_at") if c in names), None)
    cols = [key, "outcome"] + (["row"] if "row" in names else []) + ([at_col] if at_col else [])
    t = ds.to_table(columns=cols)
    t = t.filter(pc.and_(pc.is_valid(t[key]), pc.is_valid(t["outcome"])))
    at = t[at_col] if at_col else pa.nulls(t.num_rows, pa.timestamp("us", tz="UTC"))
    row = t["row"].cast(pa.int64()) if "row" in names else pa.array(np.zeros(t.num_rows,
                                                                             np.int64))
    t = pa.table({key: t[key].cast(pa.string()), "row": row,
                  "outcome": t["outcome"].cast(pa.float64()), "at": at})
    return t.group_by([key, "row"], use_threads=False).aggregate(
        [("outcome", "first"), ("at", "first")]).rename_columns([key, "row", "outcome", "at"])


def _join(served: pa.Table, outcomes: pa.Table, key: str) -> np.ndarray:
    """The outcome of every served row in its order (NaN: none yet)."""
    left = pa.table({key: served[key].cast(pa.string()), "row": served["row"],
                     "_i": pa.array(np.arange(served.num_rows))})
    j = left.join(outcomes.select([key, "row", "outcome"]), [key, "row"], join_type="inner")
    y = np.full(served.num_rows, np.nan)
    y[j["_i"].to_numpy()] = j["outcome"].to_numpy(zero_copy_only=False)
    return y


def _unknown_rows(unknown: pa.Table, key: str, starts: list[dt.datetime],
                  width: dt.timedelta, base: dict[str, Any]) -> list[dict[str, Any]]:
    """One ``unknown_outcomes`` row per window with outcomes (by their time; without a
    time: the last window) whose id no logged request has."""
    if unknown.num_rows == 0:
        return []
    step = int(width.total_seconds() * 1_000_000)
    at = unknown["at"].cast(pa.int64()).fill_null(_micros(starts[-1])).to_numpy()
    ws = at - at % step
    ids = np.asarray(unknown[key].to_pylist(), dtype=object)
    out = []
    for start in starts:
        sel = ws == _micros(start)
        if sel.any():
            out.append({**base, "arm": "", "segment": "", "window_start": start,
                        "window_end": start + width, "reference": "", "check": "unknown_outcomes",
                        "value": float(sel.sum()), "estimated": False, "rows": int(sel.sum()),
                        "flagged": True,
                        "detail": json.dumps({"state": "unknown_outcomes", "key": key,
                                              "examples": sorted(set(ids[sel].tolist()))[:3]})})
    return out
