"""The monitoring table, ``monitoring/<model>``: one row per window x arm x feature x check
x segment, appended run after run.

A row's key is (model, model_version, arm, window_start, feature, check, segment); the
newest row of a key is its result. A run appends only the rows that say something else
than the newest stored row of their key (:func:`_same`): another flag, state or row
count, or a value beyond the sketches' error. Statistics read off merged KLL sketches
(out-of-range shares, drift tests) move by ~1e-3 from run to run, because a sketch merge
is randomised; so re-running over the same windows appends nothing, and a window that
changed (late traffic, outcomes that arrived: other row counts) gets a new row. The check and the append are one read-check-write (``lake.commit.transact``)
under the model's application id: of two concurrent runs, the second reads the first's
rows and appends only what still differs, and a run that fails commits nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from raylake.lake.clock import UTC, as_utc
from raylake.lake.commit import transact
from raylake.lake.tables import Lake

TS = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema([
    ("model", pa.string()),
    ("model_version", pa.int32()),
    ("arm", pa.string()),
    ("window_start", TS),
    ("window_end", TS),
    ("feature", pa.string()),  # a feature, `_prediction`, or `_model` (model-level checks)
    ("check", pa.string()),
    ("segment", pa.string()),  # "" = every row; else "<column>=<value>"
    ("value", pa.float64()),
    ("threshold", pa.float64()),
    ("flagged", pa.bool_()),
    ("estimated", pa.bool_()),
    ("rows", pa.int64()),
    ("detail", pa.string()),  # small JSON: state, metric, reference values, examples
    ("reference", pa.string()),  # TABLE@VERSION the window was compared with
    ("run_id", pa.string()),
    ("created_at", TS),
])
KEY = ("model", "model_version", "arm", "window_start", "feature", "check", "segment")
_DEFAULTS: dict[str, Any] = {"arm": "", "segment": "", "threshold": None, "flagged": False,
                             "estimated": False, "rows": 0, "detail": "{}", "reference": "",
                             "run_id": "", "value": None}


def table_name(conf: Any, model: str) -> str:
    """``monitor.table``, else ``monitoring/<model>``."""
    return str(conf.monitor.table or f"monitoring/{model}")


def key_of(row: dict[str, Any]) -> tuple[Any, ...]:
    """The key of a row (times as UTC)."""
    return tuple(as_utc(row[k]) if k == "window_start" else row[k] for k in KEY)


# What two runs over the same data may differ by: a KLL quantile sketch (out-of-range
# shares, the drift tests on numbers) is merged at random, and re-runs of the same
# windows differed by ~1e-3 in those values. 1% relative or 0.005 absolute is above that
# noise; a change that matters moves a flag (a crossed threshold) or a row count, both
# compared exactly.
_REL_TOL, _ABS_TOL = 1e-2, 5e-3


def _state(row: dict[str, Any]) -> Any:
    """The ``state`` a row's JSON detail carries (ok, too_few_rows, ...), or None."""
    try:
        detail = json.loads(row.get("detail") or "{}")
    except ValueError:
        return None
    return detail.get("state") if isinstance(detail, dict) else None


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two rows of a key say the same: the same flag, state and row count (all
    exact: none comes from a sketch's estimate), and values equal at the sketches' error
    (both None, or close: see ``_REL_TOL``)."""
    if bool(a["flagged"]) != bool(b["flagged"]) or _state(a) != _state(b):
        return False
    if int(a.get("rows") or 0) != int(b.get("rows") or 0):
        return False
    x, y = a["value"], b["value"]
    if x is None or y is None:
        return x is None and y is None
    return math.isclose(x, y, rel_tol=_REL_TOL, abs_tol=_ABS_TOL)


def to_table(rows: Iterable[dict[str, Any]]) -> pa.Table:
    """Rows as an Arrow table of :data:`SCHEMA` (missing optional fields defaulted)."""
    now = dt.datetime.now(UTC)
    full = [{**_DEFAULTS, "created_at": now, **r} for r in rows]
    for r in full:
        if r["value"] is not None and not math.isfinite(r["value"]):
            r["value"] = None
    return pa.Table.from_pylist([{k: r[k] for k in SCHEMA.names} for r in full], schema=SCHEMA)


def newest(table: pa.Table) -> dict[tuple[Any, ...], dict[str, Any]]:
    """The newest row of every key of ``table``."""
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in table.sort_by([("created_at", "ascending")]).to_pylist():
        out[key_of(r)] = r
    return out


def append_changed(lake: Lake, name: str, model: str, rows: list[dict[str, Any]],
                   run_id: str = "") -> tuple[int | None, int]:
    """Append the rows of ``rows`` whose key is new or that differ from the newest stored
    row of their key beyond the sketches' error (:func:`_same`); (the table's version
    after the commit, or None when nothing was written; rows written)."""
    if not rows:
        return None, 0
    incoming = {key_of(r): r for r in rows}  # the last row of a key in this run wins
    versions = sorted({int(r["model_version"]) for r in rows})

    def build(snap: Any, _conflicts: int) -> pa.Table | None:
        stored = snap.to_pyarrow_table(
            columns=[*KEY, "value", "flagged", "rows", "detail", "created_at"],
            filters=[("model", "=", model), ("model_version", "in", versions)],
            filesystem=lake.arrow_filesystem(name))
        have = newest(stored)
        changed = [r for k, r in incoming.items() if k not in have or not _same(r, have[k])]
        return to_table(changed) if changed else None

    written = transact(lake, name, SCHEMA, build, app_id=f"raylake.monitor/{model}",
                       run_id=run_id or None, job="monitor")
    if written is None:
        return None, 0
    return lake.version(name), written.num_rows


def read_latest(lake: Lake, name: str, model: str | None = None,
                model_version: int | None = None) -> pa.Table:
    """The newest row of every key (of ``model`` / ``model_version``), oldest window
    first; an empty table of :data:`SCHEMA` when there is no table yet."""
    if not lake.exists(name):
        return SCHEMA.empty_table()
    t = lake.read(name)
    if model is not None:
        t = t.filter(pc.equal(t["model"], model))
    if model_version is not None:
        t = t.filter(pc.equal(t["model_version"], model_version))
    rows = sorted(newest(t).values(), key=lambda r: (r["window_start"], r["arm"],
                                                     r["feature"], r["check"], r["segment"]))
    return pa.Table.from_pylist(rows, schema=t.schema) if rows else t.schema.empty_table()
