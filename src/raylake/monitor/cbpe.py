"""Confidence-based performance estimation (CBPE, as NannyML does it).

Before outcomes arrive, a model's performance on a window can be estimated from its own
scores, provided they are calibrated: if a row's probability of being positive is p, it
adds p to the expected true positives when the model acts on it and 1 - p to the
expected false positives, and so on. The model's raw scores are made calibrated by an
isotonic regression fitted on a labelled reference (the model's scores and labels on its
training set's test split): the estimate holds as long as P(y | score) stays as it was
on the reference (covariate shift: yes; concept drift: no, which is why the estimate
is later compared with the realised value).

The estimate is pure numpy (the isotonic fit is the pool-adjacent-violators algorithm);
:func:`reference_scores` reads and scores the reference.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raylake.errors import MonitorError
from raylake.lake.clock import as_utc

Calibrate = Callable[[np.ndarray], np.ndarray]


def isotonic(x: np.ndarray, y: np.ndarray,
             w: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The weighted least-squares non-decreasing fit of ``y`` on ``x`` by pool adjacent
    violators: the distinct sorted ``x`` and the fitted value at each. Equal ``x`` share
    one value (their weighted mean goes in as one point)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    w = np.ones_like(x) if w is None else np.asarray(w, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y) & (w > 0)
    x, y, w = x[keep], y[keep], w[keep]
    if x.size == 0:
        return np.empty(0), np.empty(0)
    xs, inverse = np.unique(x, return_inverse=True)
    ws = np.bincount(inverse, weights=w, minlength=xs.size)
    ys = np.bincount(inverse, weights=w * y, minlength=xs.size) / ws
    # One stack of blocks (mean, weight, points); a new point merges backwards while it
    # is below the block before it. Every point is pushed and popped at most once.
    means: list[float] = []
    weights: list[float] = []
    sizes: list[int] = []
    for m, wt in zip(ys.tolist(), ws.tolist()):
        n = 1
        while means and means[-1] >= m:
            pw = weights.pop()
            m = (means.pop() * pw + m * wt) / (pw + wt)
            wt += pw
            n += sizes.pop()
        means.append(m)
        weights.append(wt)
        sizes.append(n)
    return xs, np.repeat(np.asarray(means), sizes)


def calibrator(y: np.ndarray, p: np.ndarray, reference: str = "the reference") -> Calibrate:
    """A function mapping raw scores to calibrated probabilities: the isotonic fit of the
    labels ``y`` on the scores ``p`` of a labelled reference (``reference``: its name, for
    the error), interpolated linearly between the reference's distinct scores and held
    flat beyond them. MonitorError when no row has both a finite score and a label."""
    xs, fitted = isotonic(p, np.asarray(y, dtype=np.float64))
    if xs.size == 0:
        raise MonitorError(
            f"CBPE cannot calibrate on {reference}: none of its {len(p)} rows has both a "
            "finite score and a label; set monitor.reference=TABLE@VERSION to labelled "
            "rows the model can score.")

    def calibrate(scores: np.ndarray) -> np.ndarray:
        s = np.asarray(scores, dtype=np.float64)
        return np.clip(np.interp(s, xs, fitted), 0.0, 1.0)

    return calibrate


def expected_auc(scores: np.ndarray, p: np.ndarray) -> float:
    """The AUC expected when each row is positive with probability ``p`` independently:
    the ROC from expected true and false positive counts over every threshold at the
    sorted ``scores``, i.e. E[concordant pairs] / E[positive-negative pairs], where a pair
    (i, j), i != j, is positive-negative with probability p_i (1 - p_j) and ties count
    one half. A row cannot pair with itself, so its p_i (1 - p_i) is left out of both."""
    s = np.asarray(scores, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if s.size < 2:
        return float("nan")
    values, inverse = np.unique(s, return_inverse=True)
    pos = np.bincount(inverse, weights=p, minlength=values.size)  # expected positives
    neg = np.bincount(inverse, weights=1.0 - p, minlength=values.size)
    own = np.bincount(inverse, weights=p * (1.0 - p), minlength=values.size)
    below = np.cumsum(neg) - neg  # expected negatives scored strictly lower
    concordant = float(np.sum(pos * below) + 0.5 * np.sum(pos * neg - own))
    pairs = float(pos.sum() * neg.sum() - own.sum())
    return concordant / pairs if pairs > 0 else float("nan")


def estimate(scores: np.ndarray, calibrate: Calibrate, threshold: float,
             cost: Any) -> dict[str, float]:
    """The performance expected on a window from its raw ``scores`` alone: the expected
    confusion matrix where the model acts (score >= ``threshold``, the model's own
    threshold, chosen on raw scores), the expected cost per ``cost.per`` rows
    (missed positives x ``cost.missed`` + false alarms x ``cost.false_alarm``), the
    expected positive rate (share of rows whose outcome will be positive) and the
    expected AUC."""
    s = np.asarray(scores, dtype=np.float64)
    s = s[np.isfinite(s)]
    n = int(s.size)
    if n == 0:
        return {"rows": 0, "tp": 0.0, "fp": 0.0, "fn": 0.0, "tn": 0.0, "auc": float("nan"),
                "cost": float("nan"), "positive_rate": float("nan")}
    p = calibrate(s)
    act = s >= threshold
    tp, fp = float(p[act].sum()), float((1.0 - p[act]).sum())
    fn, tn = float(p[~act].sum()), float((1.0 - p[~act]).sum())
    return {"rows": n, "tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "auc": expected_auc(s, p),
            "cost": (fn * cost.missed + fp * cost.false_alarm) / n * cost.per,
            "positive_rate": float(p.mean())}


def reference_scores(lake: Any, conf: Any, mv: Any) -> tuple[np.ndarray, np.ndarray, str]:
    """Labels and raw scores of ``mv`` on its reference, and its name: ``monitor.reference``
    (TABLE@VERSION, every row) or the training set at the version it was trained on,
    test split only (rows the model never fitted: its scores on training rows are
    overconfident and would miscalibrate CBPE). MonitorError saying what to set when
    there is no lineage, split or label."""
    from raylake.errors import RaylakeError
    from raylake.lake.runs import get_run
    from raylake.models.flavors import get_flavor
    from raylake.models.registry import ModelRegistry
    from raylake.models.spec import FeatureSpec
    from raylake.monitor.reference import reference_source

    spec = FeatureSpec.from_dict(mv.preprocessing)
    table, version = reference_source(lake, conf.monitor.reference, mv)
    name, tcol, test_start = f"{table}@{version}", None, None
    if not conf.monitor.reference:
        tcol = ((mv.config.get("train") or {}).get("split") or {}).get("time_column")
        run = get_run(lake, mv.run_id) if mv.run_id else {}
        test_start = ((run.get("metrics") or {}).get("split") or {}).get("test_start")
        if not (tcol and test_start):
            raise MonitorError(f"The training run of {mv.ref} recorded no test split to "
                               f"calibrate CBPE on; set monitor.reference=TABLE@VERSION to "
                               f"labelled rows it was not trained on.")
    ds = lake.dataset(table, version)
    wanted = list(dict.fromkeys([*spec.names, spec.label, *([tcol] if tcol else [])]))
    absent = [c for c in wanted if c not in ds.schema.names]
    if absent:
        raise MonitorError(f"The reference {name} lacks {absent} ({mv.ref}'s inputs and "
                           "label); set monitor.reference=TABLE@VERSION to a training set.")
    data = ds.to_table(columns=wanted)
    if tcol and test_start:
        start = as_utc(dt.datetime.fromisoformat(str(test_start)))
        typ = data.schema.field(tcol).type
        if pa.types.is_timestamp(typ) and typ.tz is None:  # naive times are UTC
            start = start.replace(tzinfo=None)
        data = data.filter(pc.greater_equal(data[tcol], pa.scalar(start, typ)))
    data = data.filter(pc.is_valid(data[spec.label]))
    if data.num_rows == 0:
        raise MonitorError(f"The reference {name} has no labelled rows for {mv.ref}; set "
                           "monitor.reference=TABLE@VERSION.")
    try:
        _, model = ModelRegistry(lake).load(mv.name, mv.version)
        p = np.asarray(get_flavor(mv.flavor).predict(model, spec, data), dtype=np.float64)
    except RaylakeError:
        raise
    except Exception as exc:  # a flavor's own error: say which model and reference
        raise MonitorError(f"Scoring the reference {name} with {mv.ref} failed: {exc}") from exc
    return data[spec.label].cast(pa.float64()).to_numpy(zero_copy_only=False), p, name
