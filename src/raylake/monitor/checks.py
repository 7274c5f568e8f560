"""Drift and data-quality checks of live traffic, per window and arm, against a reference.

A window's traffic is the merge of its ``_live_profiles`` rows (replicas and partial
flushes each write one, per ``model_server.profile_window``); where a profile window has
rows of a replica (``live``), rows made from the request log (``log``, ``raylake
profile-requests``) are left out, so traffic is never counted twice. Each window then gives monitoring rows (``monitor/store.py``'s schema):

- ``volume`` (feature ``_model``): the rows in the window, with a state: ``ok``,
  ``too_few_rows`` (under ``monitor.min_rows``: no test is run, one row only) or
  ``no_traffic`` (nothing in the window: value 0);
- ``drift`` per feature and for ``_prediction`` (``raylake.quality.drift.compare``, the
  column's ``monitor.thresholds`` entry or its kind's default test): value the metric
  (a p-value drifts below its threshold, a statistic above);
- ``null_share``: the window's null share, flagged when it rose more than
  ``monitor.null_share_jump`` above the reference's (``detail.reference``);
- ``unseen_categories``: the share of a categorical feature's values outside the
  model's vocabulary (counted from the frequent-items sketch: a lower bound when the
  sketch does not list every value), flagged when it exceeds the reference's own share
  by more than ``monitor.unseen_share``;
- ``out_of_range``: the share of a numeric feature's values below the reference's min or
  above its max (from the window's quantile sketch), flagged over
  ``monitor.out_of_range_share``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow.dataset as pads

from raylake.errors import MonitorError
from raylake.lake.clock import as_utc, window_start
from raylake.lake.tables import Lake
from raylake.monitor.reference import PREDICTION, Reference
from raylake.quality.drift import compare
from raylake.quality.profile import Profile

MODEL = "_model"  # the feature of model-level rows


@dataclass
class Window:
    """One arm's traffic in one window: its merged profile and row count."""

    arm: str
    start: dt.datetime
    end: dt.datetime
    rows: int
    profile: Profile
    source: str = ""  # live | log | mixed | "" (no traffic)


def profile_system(table: str) -> bool:
    """Whether ``table`` is a system table (``_``-names: ``_live_profiles``)."""
    return table.startswith("_")


def traffic(lake: Lake, table: str, model: str, version: int, since: dt.datetime,
            until: dt.datetime, width: dt.timedelta
            ) -> dict[tuple[str, dt.datetime], Window]:
    """The traffic of ``model`` version ``version`` in the windows of ``width`` starting in
    [since, until), by (arm, window start). Profile rows are cut by the server's
    ``profile_window`` (1 hour by default): each monitoring window merges the rows of the
    profile windows it holds, per profile window those of one source (live before log).
    MonitorError when a profile window does not fit in a monitoring window, or a profile
    row cannot be read (:func:`_profile`)."""
    system = profile_system(table)
    if not lake.exists(table, system=system):
        return {}
    expr = ((pads.field("model") == model) & (pads.field("model_version") == version)
            & (pads.field("window_start") >= since) & (pads.field("window_start") < until))
    data = lake.dataset(table, system=system)
    # First the rows' keys only, to choose each profile window's source; then the
    # profiles, a batch at a time (a year of hourly rows need not sit in memory at once).
    meta = data.to_table(columns=["arm", "window_start", "window_end", "source"],
                         filter=expr).to_pylist()
    chosen: dict[tuple[str, dt.datetime], str] = {}
    for r in meta:
        part = as_utc(r["window_end"]) - as_utc(r["window_start"])
        if part > width or width % part:
            raise MonitorError(
                f"{table} holds {model}:{version} profiles of {part} windows, which do not "
                f"divide monitor.window ({width}): set monitor.window to a multiple of "
                "model_server.profile_window (e.g. monitor.window=1d for 1h profiles).")
        key = (r["arm"], as_utc(r["window_start"]))
        chosen[key] = "live" if r["source"] == "live" else chosen.get(key, "log")
    merged: dict[tuple[str, dt.datetime], Window] = {}
    columns = ["arm", "window_start", "source", "writer", "seq", "rows", "profile"]
    for batch in data.to_batches(columns=columns, filter=expr, batch_size=256):
        for r in batch.to_pylist():
            start = as_utc(r["window_start"])
            source = chosen[(r["arm"], start)]
            if r["source"] != source:
                continue  # the replicas' rows of this profile window are there
            ws = window_start(start, width)
            w = merged.setdefault((r["arm"], ws), Window(r["arm"], ws, ws + width, 0,
                                                         Profile.empty(), source))
            w.profile = w.profile.merge(_profile(table, model, version, r))
            w.rows += int(r["rows"])
            w.source = w.source if w.source == source else "mixed"
    return merged


def _profile(table: str, model: str, version: int, row: dict[str, Any]) -> Profile:
    """The profile of a ``_live_profiles`` row. A row that does not deserialize stops the
    run with a MonitorError naming it (not skipped: the window's drift and volume would
    silently be judged on part of its traffic)."""
    try:
        return Profile.from_bytes(row["profile"])
    except Exception as exc:  # noqa: BLE001 (whylogs raises its own errors, protobuf others)
        start = as_utc(row["window_start"]).isoformat()
        raise MonitorError(
            f"{table} holds a profile of {model}:{version} that cannot be read (writer "
            f"{row['writer']!r}, seq {row['seq']}, arm {row['arm']!r}, window_start {start}): "
            f"{type(exc).__name__}: {str(exc)[:200]}. Delete that row (a Delta delete "
            "matching those four values), or set monitor.since after that window to "
            "monitor the windows after it.") from exc


def traffic_span(lake: Lake, table: str, model: str, version: int
                 ) -> tuple[dt.datetime | None, list[str]]:
    """The first window start of the version's traffic (None: none yet) and its arms."""
    system = profile_system(table)
    if not lake.exists(table, system=system):
        return None, []
    expr = (pads.field("model") == model) & (pads.field("model_version") == version)
    t = lake.dataset(table, system=system).to_table(columns=["arm", "window_start"],
                                                    filter=expr)
    if t.num_rows == 0:
        return None, []
    starts = t.column("window_start").to_pylist()
    return as_utc(min(starts)), sorted(set(t.column("arm").to_pylist()))


def _row(base: dict[str, Any], w: Window, feature: str, check: str, value: float | None,
         threshold: float | None, flagged: bool, rows: int, **detail: Any) -> dict[str, Any]:
    if value is not None and not math.isfinite(value):
        value = None
    return {**base, "arm": w.arm, "window_start": w.start, "window_end": w.end,
            "feature": feature, "check": check, "segment": "", "value": value,
            "threshold": threshold, "flagged": bool(flagged), "estimated": False,
            "rows": int(rows), "detail": json.dumps(detail, sort_keys=True, default=str)}


def window_rows(ref: Reference, w: Window, m: Any, base: dict[str, Any]) -> list[dict[str, Any]]:
    """The monitoring rows of window ``w`` against ``ref`` under ``m`` (monitor config);
    ``base``: the fields every row shares (model, model_version, reference, run_id,
    created_at)."""
    if w.rows == 0:
        return [_row(base, w, MODEL, "volume", 0.0, None, False, 0, state="no_traffic")]
    if w.rows < m.min_rows:
        return [_row(base, w, MODEL, "volume", float(w.rows), None, False, w.rows,
                     state="too_few_rows", min_rows=m.min_rows, source=w.source)]
    present = [f for f in ref.features if f in w.profile.columns]
    out = [_row(base, w, MODEL, "volume", float(w.rows), None, False, w.rows, state="ok",
                source=w.source, not_profiled=[f for f in ref.features if f not in present])]
    out += _drift_rows(ref, w, m, base, present)
    for f in present:
        out.append(_null_share(ref, w, m, base, f))
        if f in ref.vocab:
            out.append(_unseen(ref, w, m, base, f))
        if _kind(ref.profile, f) == "numeric" and _kind(w.profile, f) == "numeric":
            out.append(_out_of_range(ref, w, m, base, f))
    return out


def _kind(profile: Profile, column: str) -> str:
    return profile.summary(column).kind if column in profile.columns else "absent"


def _drift_rows(ref: Reference, w: Window, m: Any, base: dict[str, Any],
                present: list[str]) -> list[dict[str, Any]]:
    thresholds = {c: {k: (str(v) if k == "metric" else v) for k, v in t.__dict__.items()
                      if v is not None} for c, t in m.thresholds.items()}
    sides = [(f, ref.profile) for f in present]
    if PREDICTION in w.profile.columns and PREDICTION in ref.prediction.columns:
        sides.append((PREDICTION, ref.prediction))
    out, comparable = [], []
    for f, reference in sides:
        rk, wk = _kind(reference, f), _kind(w.profile, f)
        n = w.profile.summary(f).count
        if wk == "empty":  # every value null: the null-share check says how bad
            out.append(_row(base, w, f, "drift", None, None, False, n, state="no_values"))
        elif rk == "empty":
            out.append(_row(base, w, f, "drift", None, None, False, n,
                            state="no_reference_values"))
        elif rk != wk:  # numbers where the model was trained on text, or the reverse
            out.append(_row(base, w, f, "drift", None, None, True, n, state="kind_mismatch",
                            reference_kind=rk, window_kind=wk))
        else:
            comparable.append((f, reference))
    for f, reference in comparable:
        report = compare(reference, w.profile, columns=[f], thresholds=thresholds)
        for c in report.columns:
            out.append(_row(base, w, f, "drift", c.value, c.threshold, c.drifted,
                            w.profile.summary(f).count, state="ok", metric=str(c.metric),
                            kind=c.kind, scores=c.scores))
    return out


def _null_share(ref: Reference, w: Window, m: Any, base: dict[str, Any],
                f: str) -> dict[str, Any]:
    s = w.profile.summary(f)
    before = ref.profile.summary(f).null_share if f in ref.profile.columns else 0.0
    rise = s.null_share - before
    return _row(base, w, f, "null_share", s.null_share, m.null_share_jump,
                rise > m.null_share_jump, s.count, reference=round(before, 6),
                rise=round(rise, 6), nulls=s.nulls)


def unseen_share(profile: Profile, column: str, vocab: set[str]) -> tuple[float, dict[str, Any]]:
    """The share of ``column``'s non-null values outside ``vocab`` counted from the
    frequent-items sketch, and what it is made of (a lower bound when the sketch does not
    list every value: ``exact`` False)."""
    s = profile.summary(column)
    values = s.count - s.nulls
    if values <= 0:
        return 0.0, {"exact": True, "values": 0}
    freq = dict(s.frequent)
    unseen = {k: v for k, v in freq.items() if k not in vocab}
    listed = sum(freq.values())
    top = sorted(unseen.items(), key=lambda kv: -kv[1])[:5]
    return sum(unseen.values()) / values, {"exact": listed >= values, "values": values,
                                           "listed_share": round(min(1.0, listed / values), 4),
                                           "examples": top}


def _unseen(ref: Reference, w: Window, m: Any, base: dict[str, Any], f: str) -> dict[str, Any]:
    share, detail = unseen_share(w.profile, f, ref.vocab[f])
    # The reference's later splits hold values the training split never saw (new tail
    # numbers in March): only a rise above that baseline is news.
    before = unseen_share(ref.profile, f, ref.vocab[f])[0] if f in ref.profile.columns else 0.0
    return _row(base, w, f, "unseen_categories", share, m.unseen_share,
                share - before > m.unseen_share, w.profile.summary(f).count,
                reference=round(before, 6), **detail)


def out_of_range(reference: Profile, window: Profile, column: str
                 ) -> tuple[float, dict[str, Any]]:
    """The share of ``column``'s non-null window values below the reference's min or above
    its max (the window's quantile sketch: exact while it holds every value)."""
    lo, hi = reference.summary(column).bounds()
    s = window.summary(column)
    w_lo, w_hi = s.bounds()
    below = above = 0.0
    if w_lo < lo or w_hi > hi:
        # The sketch's CDF counts values strictly below a point.
        below, at_or_below_hi = window.cdf(column, [lo, float(np.nextafter(hi, np.inf))])
        below, above = float(below), float(1.0 - at_or_below_hi)
    below, above = max(0.0, below), max(0.0, above)
    return below + above, {"below": round(below, 6), "above": round(above, 6), "min": lo,
                           "max": hi, "window_min": w_lo, "window_max": w_hi}


def _out_of_range(ref: Reference, w: Window, m: Any, base: dict[str, Any],
                  f: str) -> dict[str, Any]:
    share, detail = out_of_range(ref.profile, w.profile, f)
    s = w.profile.summary(f)
    return _row(base, w, f, "out_of_range", share, m.out_of_range_share,
                share > m.out_of_range_share, s.count - s.nulls, **detail)
