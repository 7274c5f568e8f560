"""Time for monitoring: UTC instants, the replayed clock and aligned windows.

Every part that groups by time (the model server's live profiles, ``raylake monitor``,
``raylake ct``, the request log) cuts windows the same way, aligned to the UNIX epoch, so
a window written by a replica and one computed by a batch job are the same window.
A replay (``benchmarks/replay_year.py``) runs on a *replayed* clock: an ISO time given
in config (``monitor.now``, ``ct.now``) or per request (``X-Raylake-Clock`` when the
model server allows it) stands for "now".
"""

from __future__ import annotations

import datetime as dt

from raylake.errors import ConfigValueError

UTC = dt.timezone.utc
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)


def parse_time(text: str, key: str = "time") -> dt.datetime:
    """An ISO 8601 time as an aware UTC datetime (a time without an offset is UTC);
    ConfigValueError naming ``key`` when it is not one."""
    try:
        t = dt.datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigValueError(f"{key}={text!r} is not an ISO time; write e.g. "
                               "2013-07-01 or 2013-07-01T06:00:00+00:00.") from None
    return as_utc(t)


def as_utc(t: dt.datetime) -> dt.datetime:
    """``t`` as an aware UTC datetime (naive means UTC)."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def now(override: str | None = None, key: str = "now") -> dt.datetime:
    """The replayed clock ``override`` (ISO) when given, else the current UTC time."""
    return parse_time(override, key) if override else dt.datetime.now(UTC)


def window_start(t: dt.datetime, width: dt.timedelta) -> dt.datetime:
    """The start of the window of ``width`` holding ``t``: windows are aligned to the UNIX
    epoch (a 1-day window starts at 00:00 UTC, a 1-hour window on the hour)."""
    step = int(width.total_seconds() * 1_000_000)
    us = (as_utc(t) - _EPOCH) // dt.timedelta(microseconds=1)
    return _EPOCH + dt.timedelta(microseconds=us - us % step)


def windows(start: dt.datetime, end: dt.datetime, width: dt.timedelta) -> list[dt.datetime]:
    """The starts of the aligned windows that overlap [start, end)."""
    out, t = [], window_start(start, width)
    while t < as_utc(end):
        out.append(t)
        t += width
    return out
