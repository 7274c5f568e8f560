"""On-demand feature functions shipped with the nycflights13 definitions.

Each takes a DataFrame of inputs (source view features and request fields,
by plain name) and returns a DataFrame of its declared features. They run
in Ray tasks for training sets and in the feature server for lookups, so
they must be pure, vectorised and tolerant of nulls.
"""

from __future__ import annotations

import pandas as pd


def weather_derived(df: pd.DataFrame) -> pd.DataFrame:
    """``temp_dewp_spread`` (temperature minus dew point, in °F) and ``low_visibility``
    (visibility under 3 miles) from ``temp``, ``dewp`` and ``visib``; null where an input is
    null or not a number."""
    temp = pd.to_numeric(df["temp"], errors="coerce")
    dewp = pd.to_numeric(df["dewp"], errors="coerce")
    visib = pd.to_numeric(df["visib"], errors="coerce")
    # A small temperature/dew point spread means saturated air: fog and low ceilings.
    spread = temp - dewp
    low_vis = (visib < 3).astype("boolean").mask(visib.isna())
    return pd.DataFrame({"temp_dewp_spread": spread, "low_visibility": low_vis})


def departure_time(df: pd.DataFrame) -> pd.DataFrame:
    """``dep_minute_of_day`` (minutes after midnight) and ``evening`` (scheduled at 17:00 or
    later) from ``sched_dep_time`` (HHMM as an integer, e.g. 1545); null where it is null."""
    # sched_dep_time is HHMM as an integer (e.g. 1545 for 15:45).
    hhmm = pd.to_numeric(df["sched_dep_time"], errors="coerce")
    minute = (hhmm // 100) * 60 + hhmm % 100
    return pd.DataFrame({"dep_minute_of_day": minute.astype("Int64"),
                         "evening": (minute >= 17 * 60).astype("boolean").mask(minute.isna())})
