"""The time split every recommendation step agrees on: events before the holdout start
train the models, events from it on are the holdout the offline evaluation scores.

Nothing learns from the holdout: the two-tower reads clicks before it, the ranker's
training set is split at it (``train=xgboost_recsys``'s ``test_start``), and the online
store the evaluation reads is materialized as of it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow.compute as pc

from raylake.errors import ConfigError, TableNotFoundError
from raylake.lake.tables import Lake


def holdout_start(lake: Lake, conf: Any, table: str | None = None,
                  version: int | None = None) -> dt.datetime:
    """``recsys.holdout_start`` (UTC), else midnight ``recsys.holdout_days`` days before
    the day after the last event of ``table`` (the impressions table by default)."""
    r = conf.recsys
    if r.holdout_start:
        t = dt.datetime.fromisoformat(str(r.holdout_start).replace("Z", "+00:00"))
        return t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t
    name = table or r.impressions_table
    try:
        ts = lake.read(name, version, columns=["ts"]).column("ts")
    except TableNotFoundError:
        raise ConfigError(f"The lake at {lake.root} has no table {name!r}: ingest the world "
                          "(`raylake ingest experiment=recsys dataset.root=DIR`) and run "
                          "`raylake recsys-impressions experiment=recsys` first "
                          "(docs/recommendations.md).") from None
    if len(ts) == 0:
        raise ConfigError(f"Table {name!r} has no events to split; run `raylake "
                          "recsys-impressions` after ingesting the world, or set "
                          "recsys.holdout_start.")
    last = pc.max(ts).as_py()
    last = last.replace(tzinfo=dt.timezone.utc) if last.tzinfo is None else last
    day_after = dt.datetime.combine(last.date(), dt.time(), dt.timezone.utc) + dt.timedelta(days=1)
    return day_after - dt.timedelta(days=int(r.holdout_days))
