"""``raylake replay``: a backtest of monitoring and continuous training on a replayed
clock (the ``replay`` section)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Optional

from raylake.config.values import at_least, check_duration
from raylake.errors import ConfigValueError


def _date(key: str, value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ConfigValueError(f"{key}={value!r} is not a date; write e.g. 2013-04-01.") from None


@dataclass
class ReplayConfig:
    # The first model is trained on entity rows in [train_start, train_end) (its last two
    # weeks are its test split, the two before its validation split).
    train_start: str = "2013-01-01"
    train_end: str = "2013-04-01"
    # Traffic replayed day by day over [start, end): each day's rows as requests at their
    # own hour, on the replayed clock.
    start: str = "2013-04-01"
    end: str = "2014-01-01"
    # Only the first N days of each month (None: every day) and at most M rows a day
    # (None: all, sampled with `seed`): a short slice of the same replay, for tests.
    days_per_month: Optional[int] = None
    rows_per_day: Optional[int] = None
    seed: int = 13
    # Outcomes of a day's rows arrive this many days later (POST /outcomes).
    outcome_delay_days: int = 1
    # After each month: `raylake monitor` over the month, then (ct: true) `raylake ct`
    # with the clock at the month's end; a promotion redeploys the server.
    ct: bool = True
    # `raylake monitor`'s window in the replay. One day of weather is not a sample of a
    # quarter's: judged day by day, every weather feature "drifts" every day.
    monitor_window: str = "7d"
    # Numeric features are judged by the KS statistic above this (an effect size) instead
    # of the default p-value test; None: the p-value test.
    drift_ks: Optional[float] = 0.3
    # After the replay, the last day's rows are sent again this many days later without
    # materializing (the online store stopped being fed): lookups fall outside the TTL and
    # serve nulls, which the monitor's null-share check must flag (0: not done).
    stale_days: int = 1
    # Where the replay's summary (JSON) is written; None: not written.
    summary_file: Optional[str] = None

    def __post_init__(self) -> None:
        a, b = _date("replay.train_start", self.train_start), _date("replay.train_end", self.train_end)
        s, e = _date("replay.start", self.start), _date("replay.end", self.end)
        if not a < b <= s < e:
            raise ConfigValueError(
                f"replay: need train_start < train_end <= start < end, got {a} < {b} <= {s} < "
                f"{e}; e.g. replay.train_end=2013-04-01 replay.start=2013-04-01 "
                "replay.end=2014-01-01.")
        at_least("replay.days_per_month", self.days_per_month, 1, "3")
        at_least("replay.rows_per_day", self.rows_per_day, 1, "200")
        at_least("replay.outcome_delay_days", self.outcome_delay_days, 0, "1")
        at_least("replay.stale_days", self.stale_days, 0, "1")
        check_duration(self.monitor_window, "replay.monitor_window")
        if self.drift_ks is not None and not 0 < self.drift_ks < 1:
            raise ConfigValueError(f"replay.drift_ks={self.drift_ks!r} must be in (0, 1), "
                                   "e.g. 0.3, or null for the p-value tests.")
