"""Training data: a lake table at a pinned version, split by time, encoded the same
way in every worker, at evaluation and at serving.

The driver only plans: it reads the schema, the time range, the categorical
vocabularies and, for networks, the numeric columns' means and standard deviations
(small aggregations run by Ray Data), never the rows. Rows reach
the workers as Ray Data shards; each worker encodes its batches with the
:class:`FeatureSpec`, which is stored with the model so serving encodes alike.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

from raylake.errors import ConfigError, RaylakeError, did_you_mean
from raylake.models.spec import FeatureSpec


@dataclass
class Splits:
    train: ray.data.Dataset
    valid: ray.data.Dataset
    test: ray.data.Dataset
    spec: FeatureSpec
    table: str
    version: int
    bounds: dict[str, str]  # valid_start, test_start (ISO)
    source: dict[str, Any]  # the training set's own lineage (feature tables and versions)
    feature_types: dict[str, str] = field(default_factory=dict)  # column -> Arrow type


def load_splits(lake: Any, tcfg: Any) -> Splits:
    """The table at ``tcfg.table_version`` (latest if unset) as lazy train, validation and
    test datasets split by time at ``valid_start`` and ``test_start`` (given, or from the
    split fractions), with the :class:`FeatureSpec` planned on the training split
    (vocabularies; standardisation for torch). ConfigError for a column the config names
    that the table lacks, or a feature neither numeric nor categorical."""
    dtab = lake.table(tcfg.table, tcfg.table_version)
    version = dtab.version()
    schema = pa.schema(dtab.schema().to_arrow())
    types = {f.name: f.type for f in schema}
    tcol, label = tcfg.split.time_column, tcfg.label
    for col, what in ((label, "train.label"), (tcol, "train.split.time_column")):
        if col not in types:
            raise ConfigError(f"{what}={col!r} is not a column of {tcfg.table!r}."
                              f"{did_you_mean(col, types)} Columns: {', '.join(types)}.")
    wanted = list(tcfg.features) or [c for c in types if c not in {label, tcol, *tcfg.exclude}]
    unknown = [c for c in [*wanted, *tcfg.categorical] if c not in types]
    if unknown:
        raise ConfigError(f"train.features/categorical name {unknown}, not columns of "
                          f"{tcfg.table!r}.{did_you_mean(unknown[0], types)}")
    categorical = [c for c in wanted if c in tcfg.categorical or pa.types.is_string(types[c])
                   or pa.types.is_large_string(types[c])]
    numeric = [c for c in wanted if c not in categorical]
    bad = [c for c in numeric if not (pa.types.is_integer(types[c]) or pa.types.is_floating(
        types[c]) or pa.types.is_boolean(types[c]))]
    if bad:
        raise ConfigError(f"Column(s) {bad} of {tcfg.table!r} are neither numbers nor listed in "
                          "train.categorical; list them there or in train.exclude.")
    columns = [*numeric, *categorical, label, tcol]
    if tcfg.split.valid_start and tcfg.split.test_start:
        valid_start, test_start = _bounds(None, tcfg.split)
    else:
        times = ray.data.read_delta(dtab.table_uri, version=version, columns=[tcol],
                                    storage_options=lake.storage.delta_options())
        valid_start, test_start = _bounds(times, tcfg.split)
    train, valid, test = _read_splits(lake, tcfg.table, version, columns, tcol,
                                      valid_start, test_start)
    vocab = _vocabularies(train, categorical)
    spec = FeatureSpec(numeric, categorical, vocab, label)
    if tcfg.trainer == "torch":  # networks need standardised inputs, trees do not
        fit_standardisation(train, spec)
    return Splits(train, valid, test, spec, tcfg.table, version,
                  {"valid_start": valid_start.isoformat(), "test_start": test_start.isoformat()},
                  _lineage(lake, tcfg.table, version), {c: str(types[c]) for c in spec.names})


def worker_shards(splits: Splits, workers: int) -> dict[str, list[ray.data.Dataset]]:
    """The train and valid splits cut into one Ray Data shard per Train worker, equal in
    rows and in row order (the same inputs give the same model).

    The splits' blocks are already in the object store, so the shards are cut here
    rather than by Ray Train's streaming split: that starts a coordinator actor per
    dataset, about 5 s each on a 2-core machine before the first row moves, and
    streams every epoch through it. Here each worker reads its own blocks.
    """
    return {name: getattr(splits, name).split(workers, equal=True)
            for name in ("train", "valid")}


def my_shard(config: dict[str, Any], name: str) -> ray.data.Dataset:
    """In a Train worker: its shard of split ``name`` (see :func:`worker_shards`)."""
    import ray.train

    return config["shards"][name][ray.train.get_context().get_world_rank()]


def fit_standardisation(ds: ray.data.Dataset, spec: FeatureSpec) -> None:
    """Sets ``spec``'s means, standard deviations and missing-indicator columns from
    ``ds`` (the train split) in one Ray Data aggregation; no rows reach the driver."""
    from ray.data.aggregate import AggregateFn, Count, Mean, Std

    if not spec.numeric:
        return
    # Ray's stubs type map_batches' fn as taking the batch alone, without its fn_args.
    clean = ds.select_columns(spec.numeric).map_batches(
        _finite_or_null,  # type: ignore[arg-type]
        fn_args=(spec.numeric,), batch_format="pyarrow", batch_size=None, num_cpus=0.25)
    aggs: list[AggregateFn] = [Count(alias_name="rows")]
    for c in spec.numeric:
        aggs += [Mean(c, alias_name=f"mean:{c}"), Std(c, ddof=0, alias_name=f"std:{c}"),
                 Count(c, ignore_nulls=True, alias_name=f"present:{c}")]
    r = clean.aggregate(*aggs) or {}
    rows = int(r.get("rows") or 0)
    means, stds, missing = {}, {}, []
    for c in spec.numeric:
        mean, std = r.get(f"mean:{c}"), r.get(f"std:{c}")
        # A column with no values, or a constant one, has no scale: it is only centred.
        means[c] = float(mean) if mean is not None and np.isfinite(mean) else 0.0
        stds[c] = float(std) if std is not None and np.isfinite(std) and std > 0 else 1.0
        if int(r.get(f"present:{c}") or 0) < rows:
            missing.append(c)
    spec.means, spec.stds, spec.missing = means, stds, missing


def _finite_or_null(block: pa.Table, columns: list[str]) -> pa.Table:
    # NaN and infinities are missing values too, but Ray Data's Mean and Std skip only nulls.
    cols = {}
    for name in columns:
        if block.num_rows == 0:  # an empty block may come without its columns
            cols[name] = pa.array([], pa.float64())
            continue
        col = block.column(name)
        if pa.types.is_boolean(col.type):
            col = pc.cast(col, pa.int8())
        col = pc.cast(col, pa.float64())
        cols[name] = pc.if_else(pc.is_finite(col), col, pa.scalar(None, pa.float64()))
    return pa.table(cols)


def _read_splits(lake: Any, table: str, version: int, columns: list[str], tcol: str,
                 valid_start: dt.datetime, test_start: dt.datetime) -> list[ray.data.Dataset]:
    """Train, valid and test as Ray Datasets over blocks in the object store.

    One Ray task per group of files reads the version's Parquet files with pyarrow
    and splits them by time at once: one read of the table for all three splits, large
    blocks, few tasks. (Ray Data's read_delta, one small block per row group and one
    read per split, cost most of a training run's time on small machines.) Rows never
    reach the driver; the Ray Train workers get these datasets as shards.
    """
    files = len(lake.dataset(table, version).files)
    parts = max(1, min(files, 2 * int(ray.cluster_resources().get("CPU", 2))))
    # num_returns=3: each call gives a list of three refs (Ray's stubs say one ref).
    refs = [cast(list[ray.ObjectRef], _read_part.options(num_returns=3).remote(
        lake, table, version, k, parts, columns, tcol, valid_start, test_start))
        for k in range(parts)]
    # Ray types from_arrow_refs with its documentation-only ray.types.ObjectRef.
    return [ray.data.from_arrow_refs([r[i] for r in refs])  # type: ignore[misc]
            for i in range(3)]


@ray.remote(num_cpus=0.5)
def _read_part(lake: Any, table: str, version: int, k: int, n: int, columns: list[str],
               tcol: str, valid_start: dt.datetime, test_start: dt.datetime):
    dataset = lake.dataset(table, version)
    mine = [f for i, f in enumerate(dataset.get_fragments()) if i % n == k]
    tables = [f.to_table(columns=columns, schema=dataset.schema) for f in mine]
    block = pa.concat_tables(tables) if tables else dataset.schema.empty_table().select(columns)
    return (_between(block, tcol, None, valid_start),
            _between(block, tcol, valid_start, test_start),
            _between(block, tcol, test_start, None))


def _between(block: pa.Table, col: str, start: dt.datetime | None, end: dt.datetime | None):
    mask = None
    t = block.column(col)
    if start is not None:
        mask = pc.greater_equal(t, pa.scalar(start, t.type))
    if end is not None:
        m = pc.less(t, pa.scalar(end, t.type))
        mask = m if mask is None else pc.and_(mask, m)
    return block.filter(pc.fill_null(mask, False)) if mask is not None else block


def _bounds(ds: ray.data.Dataset | None, split: Any) -> tuple[dt.datetime, dt.datetime]:
    def parse(s: str) -> dt.datetime:
        """``s`` as an ISO datetime, in UTC when it has no time zone."""
        t = dt.datetime.fromisoformat(s)
        return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)

    if split.valid_start and split.test_start:
        vs, ts = parse(split.valid_start), parse(split.test_start)
    else:
        if ds is None:  # load_splits reads the times unless both starts are set
            raise RaylakeError("train.split: without both valid_start and test_start the split "
                               "needs the table's times, and none were read.")
        # One column: Ray returns that column's value, not a dict of columns.
        lo = cast(dt.datetime, ds.min(split.time_column))
        hi = cast(dt.datetime, ds.max(split.time_column))
        lo, hi = (x if x.tzinfo else x.replace(tzinfo=dt.timezone.utc) for x in (lo, hi))
        span = hi - lo
        ts = parse(split.test_start) if split.test_start else hi - span * split.test_fraction
        vs = parse(split.valid_start) if split.valid_start else \
            ts - span * split.valid_fraction
    if not vs < ts:
        raise ConfigError(f"train.split: valid_start ({vs}) must come before test_start ({ts}).")
    return vs, ts


def _vocabularies(ds: ray.data.Dataset, columns: list[str]) -> dict[str, list[str]]:
    """Distinct values per column, sorted so the same training data always gives the
    same codes. One pass: each block returns its distinct values, the driver unions
    them (a few thousand strings, where a group-by would shuffle every row)."""
    if not columns:
        return {}
    parts = ds.select_columns(columns).map_batches(
        _distinct, batch_format="pyarrow", batch_size=None, num_cpus=0.25)
    seen: dict[str, set[str]] = {c: set() for c in columns}
    for block in ray.get(parts.to_arrow_refs()):
        if block.num_rows == 0:  # an empty input block comes back empty, without columns
            continue
        for c in columns:
            for values in block.column(c).to_pylist():  # one row per input block
                seen[c].update(v for v in values or [] if v is not None)
    return {c: sorted(v) for c, v in seen.items()}


def _distinct(block: pa.Table) -> pa.Table:
    cols = {c: pa.array([pc.unique(pc.cast(block.column(c), pa.string())).to_pylist()],
                        pa.list_(pa.string())) for c in block.column_names}
    return pa.table(cols)


def _lineage(lake: Any, table: str, version: int) -> dict[str, Any]:
    """The run that wrote this training-set version, with its inputs (feature tables)."""
    from raylake.lake.runs import get_run

    run_id = None
    for h in lake.history(table):
        if h.get("version") == version:
            run_id = h.get("run_id")
            break
    if not run_id:
        return {}
    try:
        run = get_run(lake, run_id)
    except Exception:  # a training set written outside raylake has no run record
        return {"run_id": run_id}
    return {"run_id": run_id, "inputs": run.get("inputs", [])}
