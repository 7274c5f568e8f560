"""What continuous training decides, without Ray or the lake: the time window of a
retraining, whether a run is triggered, and whether the challenger replaces the champion.

The rule that matters: a challenger is promoted only when its business cost on the
holdout, at its own decision threshold, is lower than the champion's by ``ct.margin``
(a share): ``challenger_cost < champion_cost * (1 - margin)``. A tie keeps the champion.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

# Every decision a `ct` run records (metrics.decision).
PROMOTED = "promoted"  # the challenger is the champion now
KEPT = "kept_champion"  # the challenger is not better by the margin
NOT_PROMOTED = "not_promoted"  # better, but ct.promote=false (a dry run)
SHADOW = "shadow"  # better, left as a candidate for a shadow arm (ct.shadow=true)
NOT_TRIGGERED = "not_triggered"  # nothing to retrain on, or no fair holdout to judge on

# Fewer labelled holdout rows than this (or monitor.min_rows, when higher) judge nothing.
MIN_HOLDOUT_ROWS = 100


@dataclass(frozen=True)
class Window:
    """A retraining's time window: the training set covers [start, end); train is before
    ``valid_start``, valid is [valid_start, test_start), and the holdout both models are
    judged on is [test_start, end)."""

    start: dt.datetime
    valid_start: dt.datetime
    test_start: dt.datetime
    end: dt.datetime

    def iso(self) -> dict[str, str]:
        """The four bounds as ISO strings (the run record's and the jobs' overrides)."""
        return {k: getattr(self, k).isoformat()
                for k in ("start", "valid_start", "test_start", "end")}


def window(now: dt.datetime, train_window: dt.timedelta, holdout: dt.timedelta) -> Window:
    """The last ``train_window`` up to ``now``, its last ``holdout`` held out. Validation
    (where the trainer picks its threshold) is as long as the holdout, or half of what is
    left before it when the window is short, so training keeps rows."""
    start, test_start = now - train_window, now - holdout
    valid = min(holdout, (test_start - start) / 2)
    return Window(start, test_start - valid, test_start, now)


def holdout_after(win: Window, seen_until: dt.datetime | None,
                  holdout: dt.timedelta) -> Window:
    """``win`` with its holdout starting no earlier than ``seen_until``, the end of the
    rows a judged model was trained or validated on: both models are then judged on the
    same rows, which neither learned from. Validation (the challenger's, before the
    holdout) follows :func:`window`'s rule from the moved start; ``seen_until`` at or past
    ``win.end`` leaves an empty holdout."""
    if seen_until is None or seen_until <= win.test_start:
        return win
    test_start = min(seen_until, win.end)
    valid = min(holdout, (test_start - win.start) / 2)
    return Window(win.start, test_start - valid, test_start, win.end)


def too_few_rows(rows: int, minimum: int, used: Window, configured: Window, holdout: str,
                 seen: dict[str, tuple[int, dt.datetime | None, str]]) -> str:
    """Why a run with fewer than ``minimum`` labelled rows in its holdout ``used`` judged
    nothing. ``seen``: role -> (version, the end of the rows it learned from, where that
    was found); when one of them moved the holdout past the ``configured`` start, the
    schedule is the cause (ct runs more often than ``ct.holdout``)."""
    span = f"[{used.test_start.isoformat()}, {used.end.isoformat()})"
    head = (f"only {rows} labelled holdout row(s) in {span}, fewer than the {minimum} "
            "needed to judge; nothing was judged")
    movers = [f"the {role} v{v} learned from rows up to {until.isoformat()} ({source})"
              for role, (v, until, source) in sorted(seen.items())
              if until is not None and until > configured.test_start]
    if used.test_start > configured.test_start:
        return (f"{head}: {' and '.join(movers)}, inside ct.holdout={holdout} (from "
                f"{configured.test_start.isoformat()}), so the holdout starts there and no "
                "model is judged on rows it learned from. ct runs more often than "
                f"ct.holdout: schedule it at most every {holdout} (or lengthen ct.holdout), "
                "or wait until enough labelled rows follow the champion's training")
    return (f"{head}: the outcomes of that period have not reached the lake yet, or "
            f"ct.holdout={holdout} is too short; wait for the labels or lengthen ct.holdout")


def champion_changed(expected: int | None, current: int | None) -> str:
    """The reason a better challenger was not promoted: another run moved the champion
    after this one judged against ``expected`` (None: there was none)."""
    was = f"v{expected}" if expected is not None else "no champion"
    now = f"v{current}" if current is not None else "no champion"
    return (f"kept the champion: the champion changed to {now} during this run (it judged "
            f"against {was}); re-run ct")


def new_data(table: str, latest: int, trained: int | None,
             judged: int | None) -> tuple[bool, str]:
    """Triggered when ``table`` has a version newer than both the one the champion was
    trained from (``trained``) and the one the last triggered ct run built from
    (``judged``): a challenger that lost is not retrained on the same data."""
    if trained is None and judged is None:
        return True, f"{table}@{latest}: no version of it was trained on before"
    seen = max(v for v in (trained, judged) if v is not None)
    if latest > seen:
        basis = "the champion's training set" if judged is None or (
            trained is not None and trained >= judged) else "the last ct run"
        return True, f"{table}@{latest} is newer than {table}@{seen} ({basis})"
    return False, (f"no new data: {table}@{latest} is the version the "
                   + ("champion was trained from" if trained == latest else "last ct run built from")
                   + "; ct.trigger=new_data waits for a newer one")


def alerts_since(alerts: list[dict[str, Any]], since: dt.datetime | None) -> tuple[bool, str]:
    """Triggered by alerts (``_alerts`` rows of the model: ``alert_id``, ``rule``,
    ``created_at``) raised after ``since``, the last triggered ct run of the model (None:
    every alert counts). An alert is the rows of one ``alert_id``; it was raised when its
    first row was written (later rows are delivery attempts)."""
    first: dict[str, dict[str, Any]] = {}
    for a in alerts:
        known = first.get(a["alert_id"])
        if known is None or a["created_at"] < known["created_at"]:
            first[a["alert_id"]] = a
    new = sorted((a for a in first.values() if since is None or a["created_at"] > since),
                 key=lambda a: a["created_at"])
    if not new:
        after = f" since the last ct run ({since.isoformat()})" if since else ""
        return False, f"no alert for the model{after}; ct.trigger=alert waits for one"
    rules = sorted({str(a.get("rule")) for a in new})
    return True, (f"{len(new)} alert(s) since "
                  + (f"the last ct run ({since.isoformat()})" if since else "the start")
                  + f": {', '.join(rules)}")


@dataclass(frozen=True)
class Verdict:
    decision: str
    reason: str
    better: bool  # the challenger beat the champion by the margin (or there is none)

    @property
    def promote(self) -> bool:
        """Whether the registry moves the challenger to champion."""
        return self.decision == PROMOTED


def judge(champion: dict[str, Any] | None, challenger: dict[str, Any], *, margin: float,
          promote: bool, shadow: bool) -> Verdict:
    """The decision on a challenger's holdout score against the champion's (each with
    ``cost`` and ``auc``; lower cost is better); None: there is no champion yet."""
    cost = challenger["cost"]
    if champion is None:
        better, why = True, "no champion yet: the challenger becomes the first"
    else:
        bar = champion["cost"] * (1 - margin)
        better = math.isfinite(cost) and cost < bar
        share = (1 - cost / champion["cost"]) if champion["cost"] else 0.0
        why = (f"challenger cost {cost:.1f} vs champion {champion['cost']:.1f} "
               f"({abs(share):.1%} {'lower' if share >= 0 else 'higher'}; promotion needs "
               f"below {bar:.1f}, margin {margin:.1%}), "
               f"AUC {challenger['auc']:.4f} vs {champion['auc']:.4f}")
    if not better:
        return Verdict(KEPT, f"kept the champion: {why}", False)
    if shadow and champion is not None:
        return Verdict(SHADOW, f"{why}; ct.shadow=true: the challenger stays a candidate "
                               "for a shadow arm, to be decided from the A/B report", True)
    if not promote:
        return Verdict(NOT_PROMOTED, f"{why}; not promoted: ct.promote=false", True)
    return Verdict(PROMOTED, f"promoted: {why}", True)
