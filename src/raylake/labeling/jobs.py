"""Weak-supervision jobs: ``label apply`` (the label matrix, Ray Data), ``label analyze``
(coverage, overlap, conflict, dev accuracy), ``label model`` (probabilistic labels) and
``label features`` (the end model's training set of hashed text features and soft labels,
for ``raylake train train=xgboost_youtube_spam``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pyarrow as pa

from raylake.config.schema import RaylakeConfig
from raylake.errors import ConfigError
from raylake.labeling import analyze as an
from raylake.labeling.errors import DevSetError, LabelingError
from raylake.labeling.label_model import LabelModel, MajorityVote
from raylake.labeling.lfs import LFSet, lf_set_from_config
from raylake.labeling.matrix import LabelMatrix, build_matrix, error_report
from raylake.lake.commit import write_table
from raylake.lake.names import validate_table_name
from raylake.runner import JobContext, job

# The end model's training set orders its splits by this column (train < valid < test).
SPLIT_COLUMN = "split_at"
SPLIT_TIMES = {s: dt.datetime(2000, 1, 1 + i, tzinfo=dt.timezone.utc)
               for i, s in enumerate(("train", "valid", "test"))}


def matrix_table(lcfg: Any) -> str:
    """Where the label matrix of LF set ``lcfg`` is stored."""
    return validate_table_name(lcfg.matrix_table or f"labels/{lcfg.name}/matrix")


def probs_table(lcfg: Any) -> str:
    """Where the probabilistic labels of ``lcfg`` are stored."""
    return validate_table_name(lcfg.output_table or f"labels/{lcfg.name}/probs")


def replace_table(lake: Any, name: str, data: pa.Table, *, app_id: str, run_id: str,
                  job: str) -> int:
    """Overwrite ``name`` with ``data`` as a new version, its columns replaced too when they
    changed (a matrix of another LF set, a training set of other hashed columns)."""
    from deltalake import write_deltalake

    from raylake.lake.commit import commit_properties

    if lake.exists(name):
        current = pa.schema(lake.table(name).schema().to_arrow())
        if current.names != data.schema.names:
            write_deltalake(lake.table(name), data, mode="overwrite", schema_mode="overwrite",
                            commit_properties=commit_properties(app_id, run_id, job,
                                                                rows=data.num_rows))
            return int(lake.table(name).version())
    return write_table(lake, name, data, mode="overwrite", app_id=app_id, run_id=run_id,
                       job=job)


def _check(conf: RaylakeConfig) -> None:
    lcfg = conf.labeling
    if not lcfg.lfs:
        raise ConfigError("labeling.lfs is empty: pick an LF set (labeling=youtube_spam) or "
                          "declare functions under labeling.lfs.")
    if not lcfg.id_columns:
        raise ConfigError("labeling.id_columns is empty: name the columns that identify a row, "
                          "e.g. labeling.id_columns=[comment_id].")
    matrix_table(lcfg)
    probs_table(lcfg)


def _read_matrix(ctx: JobContext, lfset_names: list[str] | None = None) -> tuple[LabelMatrix, int]:
    lake, lcfg = ctx.lake, ctx.conf.labeling
    name = matrix_table(lcfg)
    dtab = lake.table(name)
    version = dtab.version()
    table = lake.read(name, version)
    lfs = [c for c in table.column_names if c not in lcfg.id_columns]
    want = lfset_names or list(lcfg.lfs)
    if lfs != want:
        raise LabelingError(f"The label matrix {name}@{version} has LFs {lfs}, the config "
                            f"{want}; run `raylake label apply labeling={lcfg.name}` again.")
    ctx.record.add_input(table=name, version=version, rows=table.num_rows, role="label-matrix")
    return LabelMatrix(table, lfs), version


def _dev(ctx: JobContext, m: LabelMatrix) -> tuple[np.ndarray, np.ndarray, str]:
    """The dev set's rows of the label matrix and their gold labels."""
    lake, lcfg = ctx.lake, ctx.conf.labeling
    d = lcfg.dev
    table = d.table or lcfg.table
    version = lake.table(table, d.version if d.table else (d.version or lcfg.version)).version()
    source = lake.read(table, version, columns=[*lcfg.id_columns, d.label]) \
        if d.label in lake.table(table, version).schema().to_arrow().names \
        else lake.read(table, version)
    keys, y = an.dev_sample(source, list(lcfg.id_columns), d.label, d.rows, d.seed, lcfg.cardinality,
                            f"{table}@{version}")
    ctx.record.add_input(table=table, version=version, rows=len(y), role="dev-set",
                         label=d.label)
    return an.align(m.table, m.lfs, keys), y, f"{table}@{version}"


def _label_model(lcfg: Any) -> LabelModel | MajorityVote:
    lm = lcfg.label_model
    if str(lm.kind) == "majority":
        return MajorityVote(lcfg.cardinality, seed=lm.seed, class_balance=lm.class_balance)
    return LabelModel(lcfg.cardinality, max_iter=lm.max_iter, tol=lm.tol,
                      smoothing=lm.smoothing, class_balance=lm.class_balance,
                      abstain_informative=lm.abstain_informative, seed=lm.seed)


@job("label-apply", help="apply a labeling-function set to a table version (Ray Data) -> "
                         "label matrix table", check=_check)
def label_apply(ctx: JobContext, *, extra_lfs: tuple = ()) -> dict[str, Any]:
    """``raylake label apply labeling=youtube_spam``: one int8 column per LF, the row's key."""
    conf, lake, run = ctx.conf, ctx.lake, ctx.record
    lcfg = conf.labeling
    lfset = lf_set_from_config(lcfg, lake, extra=extra_lfs)
    m, version = build_matrix(lake, lcfg.table, lcfg.version, lfset, list(lcfg.id_columns),
                              batch_rows=lcfg.batch_rows, num_cpus=lcfg.num_cpus)
    out = matrix_table(lcfg)
    written = replace_table(lake, out, m.table,
                            app_id=f"raylake.label-apply/{lcfg.table}@{version}/{lfset.digest()}",
                            run_id=run.run_id, job="label-apply")
    run.add_input(table=lcfg.table, version=version, rows=m.table.num_rows)
    run.add_output(table=out, version=written, rows=m.table.num_rows, lf_set=lfset.digest())
    stats = an.lf_summary(m.L, m.lfs, m.errors)
    run.metrics.update({"lf_set": {"name": lfset.name, "digest": lfset.digest(),
                                   "lfs": lfset.describe()},
                        "rows": m.table.num_rows, "errors": m.errors,
                        "error_messages": m.messages, "seconds": round(m.seconds, 3),
                        "coverage": {s.name: round(s.coverage, 4) for s in stats},
                        **{f"total_{k}": v for k, v in an.totals(m.L).items()}})
    lines = [f"label matrix of {lcfg.table}@{version}: {m.table.num_rows:,} rows x "
             f"{len(m.lfs)} LFs -> {out} v{written} (LF set {lfset.name} {lfset.digest()}, "
             f"{m.table.num_rows / max(m.seconds, 1e-9):,.0f} rows/s)", *error_report(m),
             f"run {run.run_id}"]
    return {"matrix": m, "version": written, "source_version": version, "lfset": lfset,
            "summary": "\n".join(lines)}


@job("label-analyze", help="per-LF coverage, overlap, conflict and dev-set accuracy of the "
                           "label matrix", check=_check)
def label_analyze(ctx: JobContext) -> dict[str, Any]:
    """``raylake label analyze labeling=youtube_spam``: the table of LF statistics, with
    the label model's and majority vote's accuracy on the dev set."""
    conf, run = ctx.conf, ctx.record
    lcfg = conf.labeling
    m, _ = _read_matrix(ctx)
    L = m.L
    tot = an.totals(L)
    try:
        L_dev, y, source = _dev(ctx, m)
    except DevSetError:
        # The statistics that need no labels are still worth seeing before the error.
        ctx.echo(an.report_text(an.lf_summary(L, m.lfs), tot, list(lcfg.classes)))
        raise
    stats = an.lf_summary(L, m.lfs, y=y, L_dev=L_dev)
    model = _label_model(lcfg).fit(L)
    mv = MajorityVote(lcfg.cardinality, seed=lcfg.label_model.seed)
    scores = {"label_model": model.score(L_dev, y), "majority": mv.score(L_dev, y)}
    run.metrics.update({"lfs": [s.to_dict() for s in stats], **tot, "dev_rows": len(y),
                        "dev_accuracy": scores})
    text = an.report_text(stats, tot, list(lcfg.classes))
    text += (f"\ndev set {source}: {len(y)} rows; accuracy label model "
             f"{scores['label_model']:.3f}, majority vote {scores['majority']:.3f}")
    return {"stats": stats, "totals": tot, "dev_accuracy": scores,
            "summary": text + f"\nrun {run.run_id}"}


@job("label-model", help="fit the label model on the label matrix -> probabilistic labels "
                         "table", check=_check)
def label_model(ctx: JobContext) -> dict[str, Any]:
    """``raylake label model labeling=youtube_spam``: P(class) per row, the LF set and the
    label model's parameters in the run record."""
    conf, lake, run = ctx.conf, ctx.lake, ctx.record
    lcfg = conf.labeling
    m, mversion = _read_matrix(ctx)
    L = m.L
    model = _label_model(lcfg).fit(L)
    proba = model.predict_proba(L)
    pred = model.predict(L)
    names = list(lcfg.classes) or [str(k) for k in range(lcfg.cardinality)]
    cols: dict[str, Any] = {k: m.table.column(k) for k in lcfg.id_columns}
    for k, cname in enumerate(names):
        cols[f"p_{cname}"] = pa.array(proba[:, k].astype(np.float32))
    cols["label"] = pa.array(pred.astype(np.int8))
    cols["covered"] = pa.array((L != -1).any(axis=1))
    out = probs_table(lcfg)
    written = write_table(lake, out, pa.table(cols), mode="overwrite",
                          app_id=f"raylake.label-model/{run.run_id}", run_id=run.run_id,
                          job="label-model")
    run.add_output(table=out, version=written, rows=len(pred))
    params = model.params(m.lfs) if isinstance(model, LabelModel) else {"kind": "majority"}
    run.metrics.update({"label_model": params, "lfs": m.lfs, "matrix_version": mversion,
                        "class_counts": np.bincount(pred, minlength=lcfg.cardinality).tolist()})
    return {"model": model, "proba": proba, "version": written, "table": out,
            "summary": f"label model ({params['kind']}) on {matrix_table(lcfg)}@{mversion}: "
                       f"{len(pred):,} rows -> {out} v{written}; class balance "
                       f"{params.get('class_balance', '-')}; run {run.run_id}"}


@job("label-features", help="the end model's training set: hashed text features, soft "
                            "labels for the pool, gold labels for dev and test", check=_check)
def label_features(ctx: JobContext) -> dict[str, Any]:
    """``raylake label features labeling=youtube_spam``, then ``raylake train
    train=xgboost_youtube_spam``: train rows carry the label model's P(class 1), the dev rows
    (valid) and the test table's rows their gold labels; ``split_at`` orders the splits."""
    from raylake.labeling.text import featurize, fit_idf, hashed_counts

    conf, lake, run = ctx.conf, ctx.lake, ctx.record
    lcfg, ecfg = conf.labeling, conf.labeling.end_model
    if lcfg.cardinality != 2:
        raise ConfigError("label features writes a binary soft label; labeling.cardinality=2.")
    if not ecfg.test_table:
        raise ConfigError("labeling.end_model.test_table is not set: name the labelled test "
                          "table, e.g. youtube/test.")
    key, text, gold = list(lcfg.id_columns), lcfg.text_column, lcfg.dev.label
    probs_name = probs_table(lcfg)
    pv = lake.table(probs_name).version()
    probs = lake.read(probs_name, pv)
    pool_v = lake.table(lcfg.table, lcfg.version).version()
    pool = lake.read(lcfg.table, pool_v)
    test_v = lake.table(ecfg.test_table, ecfg.test_version).version()
    test = lake.read(ecfg.test_table, test_v)
    # The pool's rows in the probabilities' order (first row of a repeated key).
    index: dict[Any, int] = {}
    for i, k in enumerate(zip(*[pool.column(c).to_pylist() for c in key])):
        index.setdefault(k, i)
    pkeys = list(zip(*[probs.column(c).to_pylist() for c in key]))
    covered = np.asarray(probs.column("covered").to_numpy(zero_copy_only=False), bool)
    p1 = np.asarray(probs.column(probs.column_names[len(key) + 1]).to_numpy(), np.float32)
    keep = np.flatnonzero(covered)  # uncovered rows carry only the prior: left out
    train_rows = pool.take(pa.array([index[pkeys[i]] for i in keep]))
    dev_keys, y_dev = an.dev_sample(pool.select([*key, gold]), key, gold, lcfg.dev.rows,
                                    lcfg.dev.seed, 2, f"{lcfg.table}@{pool_v}")
    dev_rows = pool.take(pa.array([index[k] for k in zip(*[dev_keys.column(c).to_pylist()
                                                             for c in key])]))
    texts = [*train_rows.column(text).to_pylist(), *dev_rows.column(text).to_pylist(),
             *test.column(text).to_pylist()]
    n_tr, n_dev = train_rows.num_rows, dev_rows.num_rows
    counts = hashed_counts(texts[:n_tr], ecfg.dim)
    df = np.bincount(counts.indices, minlength=ecfg.dim)
    used = np.flatnonzero(df >= ecfg.min_df)
    X = featurize(texts, ecfg.dim, idf=fit_idf(counts))[:, used].toarray().astype(np.float32)
    labels = np.concatenate([p1[keep], y_dev.astype(np.float32),
                             np.asarray(test.column(gold).to_numpy(), np.float32)])
    split = ["train"] * n_tr + ["valid"] * n_dev + ["test"] * test.num_rows
    cols: dict[str, Any] = {k: pa.concat_arrays([
        pa.array(t.column(k).to_pylist(), pool.schema.field(k).type)
        for t in (train_rows, dev_rows, test)]) for k in key}
    for j, c in enumerate(used):
        # A term absent from a text is a null (XGBoost's missing), as sparse text is fed
        # to it elsewhere; Parquet stores the mostly-null columns in a few bytes.
        cols[f"h{int(c):05d}"] = pa.array(X[:, j], mask=X[:, j] == 0)
    cols["label"] = pa.array(labels)
    cols[SPLIT_COLUMN] = pa.array([SPLIT_TIMES[s] for s in split], pa.timestamp("us", "UTC"))
    out = validate_table_name(ecfg.output_table or f"labels/{lcfg.name}/train_set")
    written = replace_table(lake, out, pa.table(cols),
                            app_id=f"raylake.label-features/{run.run_id}", run_id=run.run_id,
                            job="label-features")
    run.add_input(table=probs_name, version=pv, role="soft-labels")
    run.add_input(table=lcfg.table, version=pool_v, role="pool")
    run.add_input(table=ecfg.test_table, version=test_v, role="test")
    run.add_output(table=out, version=written, rows=len(labels), features=len(used))
    run.metrics.update({"train_rows": n_tr, "valid_rows": n_dev, "test_rows": test.num_rows,
                        "features": len(used), "dim": ecfg.dim,
                        "uncovered_dropped": int((~covered).sum())})
    return {"table": out, "version": written, "features": len(used),
            "summary": f"end-model training set {out} v{written}: {n_tr:,} soft-labelled train "
                       f"rows, {n_dev} dev (valid) and {test.num_rows} test rows with gold "
                       f"labels, {len(used)} hashed text features; run {run.run_id}"}


__all__ = ["LFSet", "label_analyze", "label_apply", "label_features", "label_model"]
