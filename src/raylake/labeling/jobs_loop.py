"""Jobs of the labeling loop: the page, simulated labelling, semi-supervised training and
label issues. ``raylake label serve|simulate|train|issues`` (jobs ``label-*``).

They run in the job's own process (``ray=False``): their models are numpy logistic
regressions over a few thousand rows, which train in milliseconds; starting Ray would
cost more than the work.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from raylake.config.schema import RaylakeConfig
from raylake.errors import ConfigError
from raylake.labeling.errors import LabelingError
from raylake.labeling.loop import (
    class_names,
    labelled_rows,
    load_pool,
    load_table,
    query_next,
    train_on_queue,
)
from raylake.labeling.queue import add_labels, enqueue, read_queue
from raylake.runner import JobContext, job


def _needs_pool(conf: RaylakeConfig) -> None:
    if not conf.active_labeling.pool_table:
        raise ConfigError("The labeling loop needs a pool table: add active_labeling=youtube_spam "
                          "or active_labeling.pool_table=<table> (see `raylake lake list`).")


def _needs_test(conf: RaylakeConfig) -> None:
    _needs_pool(conf)
    if not conf.active_labeling.test_table:
        raise ConfigError("This job measures test accuracy: set active_labeling.test_table=<table> "
                          "(a table with the true labels in active_labeling.label_column).")


def _needs_labels(conf: RaylakeConfig) -> None:
    if not (conf.table or conf.active_labeling.pool_table):
        raise ConfigError("label issues needs a labelled table: add table=<name> "
                          "(labels in active_labeling.label_column).")


@job("label-serve", help="the labeling page: one item at a time, the model's guess, label "
                         "with a key press (FastAPI)", ray=False, record=False, check=_needs_pool)
def label_serve(ctx: JobContext, block: bool = True) -> dict[str, Any]:
    """``raylake label serve active_labeling=youtube_spam``: serve the page until stopped
    (``block=False`` returns the app without serving it, for tests)."""
    from raylake.labeling.page import make_app

    a = ctx.conf.active_labeling
    app = make_app(ctx.lake, a)
    if not block:
        return {"app": app}
    import uvicorn

    ctx.echo(f"labeling page on http://{a.host}:{a.port}/ (queue {a.queue}); Ctrl-C stops it")
    uvicorn.run(app, host=a.host, port=a.port, log_level="warning")
    return {}


def _accuracy(model: Any, X: Any, y: np.ndarray) -> float:
    return float((model.predict(X) == y).mean())


@job("label-simulate", help="answer the active-learning queries from the true labels: the "
                            "learning curve", ray=False, check=_needs_test)
def label_simulate(ctx: JobContext) -> dict[str, Any]:
    """``raylake label simulate active_labeling=youtube_spam``: query a batch, answer it
    from ``label_column`` (who = simulator), retrain, repeat until ``max_labels``; the
    test accuracy after each batch goes to the run record."""
    conf, lake, run = ctx.conf, ctx.lake, ctx.record
    a = conf.active_labeling
    assert a.test_table
    pool = load_pool(lake, a)
    if pool.truth is None:
        raise LabelingError(f"Table {a.pool_table!r} has no complete column {a.label_column!r} "
                            "to answer from; simulate needs the true labels "
                            "(active_labeling.label_column).")
    _, test_texts, test_y, test_v = load_table(lake, a, a.test_table)
    if test_y is None:
        raise LabelingError(f"Test table {a.test_table!r} has no column {a.label_column!r}.")
    X_test = pool.features.transform(test_texts)
    run.add_input(table=pool.table, version=pool.version, role="pool")
    run.add_input(table=a.test_table, version=test_v, role="test")
    state = read_queue(lake, a.queue)
    curve: list[dict[str, Any]] = []
    while True:
        pending = state.pending()
        if pending:
            answers = {i.item_id: int(pool.truth[pool.index[i.item_id]]) for i in pending
                       if i.item_id in pool.index}
            if answers:
                add_labels(lake, a.queue, answers, who="simulator", state=state,
                           run_id=run.run_id, job=ctx.name)
            state = read_queue(lake, a.queue)
            model = train_on_queue(pool, state, a.alpha)
            if model is not None:
                curve.append({"labels": len(state.labelled()), "batch": state.batch,
                              "accuracy": _accuracy(model, X_test, test_y)})
        nxt = query_next(lake, a, pool, state, run_id=run.run_id, job=ctx.name)
        if nxt is None:
            break
        state = nxt
    version = lake.version(a.queue)
    run.add_output(table=a.queue, version=version, labels=len(state.labelled()))
    run.metrics["curve"] = curve
    run.metrics["strategy"] = str(a.strategy)
    last = curve[-1] if curve else {"labels": 0, "accuracy": float("nan")}
    run.metrics["labels"], run.metrics["accuracy"] = last["labels"], last["accuracy"]
    return {"curve": curve, "queue_version": version,
            "summary": f"simulated {len(curve)} batches ({a.strategy}, batch {a.batch_size}) into "
                       f"{a.queue}@{version}: {last['labels']} labels, test accuracy "
                       f"{last['accuracy']:.4f} (run {run.run_id})"}


@job("label-train", help="train the loop's model on the queue's labels, with self-training or "
                         "label propagation over the unlabelled rows", ray=False,
     check=_needs_test)
def label_train(ctx: JobContext) -> dict[str, Any]:
    """``raylake label train active_labeling=youtube_spam active_labeling.semi.method=...``:
    the test accuracy of the semi-supervised model next to the labels-only one."""
    from raylake.labeling.semi import label_propagation, self_training

    conf, lake, run = ctx.conf, ctx.lake, ctx.record
    a = conf.active_labeling
    assert a.test_table
    pool = load_pool(lake, a)
    state = read_queue(lake, a.queue)
    mask, y = labelled_rows(pool, state)
    if np.unique(y[mask]).size < 2:
        raise LabelingError(f"Queue {a.queue!r} holds labels of {np.unique(y[mask]).size} "
                            "class(es); label items of two classes first "
                            "(`raylake label serve` or `raylake label simulate`).")
    _, test_texts, test_y, test_v = load_table(lake, a, a.test_table)
    if test_y is None:
        raise LabelingError(f"Test table {a.test_table!r} has no column {a.label_column!r}.")
    X_test = pool.features.transform(test_texts)
    base = train_on_queue(pool, state, a.alpha)
    assert base is not None
    s = a.semi
    X_l, y_l, X_u = pool.X[mask], y[mask], pool.X[~mask]
    method = str(s.method)
    if method == "self_training":
        result = self_training(X_l, y_l, X_u, pool.n_classes, threshold=s.threshold,
                               per_class=s.per_class, rounds=s.rounds, alpha=a.alpha)
        model, pseudo = result.model, result.pseudo_labelled
    elif method == "label_propagation":
        result = label_propagation(X_l, y_l, X_u, pool.n_classes, neighbors=s.neighbors,
                                   propagation_alpha=s.propagation_alpha, alpha=a.alpha)
        model, pseudo = result.model, result.pseudo_labelled
    else:
        model, pseudo = base, 0
    acc, base_acc = _accuracy(model, X_test, test_y), _accuracy(base, X_test, test_y)
    run.add_input(table=pool.table, version=pool.version, role="pool")
    run.add_input(table=a.queue, version=state.version, role="labels")
    run.add_input(table=a.test_table, version=test_v, role="test")
    run.metrics.update({"method": method, "labels": int(mask.sum()), "pseudo_labelled": pseudo,
                        "accuracy": acc, "labels_only_accuracy": base_acc})
    return {"model": model, "accuracy": acc, "labels_only_accuracy": base_acc,
            "summary": f"{method}: {int(mask.sum())} labels + {pseudo} unlabelled rows used, "
                       f"test accuracy {acc:.4f} (labels only {base_acc:.4f}; run {run.run_id})"}


@job("label-issues", help="find likely label errors by confident learning; write a review "
                          "queue the labeling page opens", ray=False, check=_needs_labels)
def label_issues(ctx: JobContext) -> dict[str, Any]:
    """``raylake label issues table=T [version=V]``: out-of-fold probabilities, per-class
    thresholds, the confident joint; the issues ranked, queued for review."""
    from raylake.labeling.issues import find_label_issues, out_of_fold_probs
    from raylake.labeling.loop import TextFeatures

    conf, lake, run = ctx.conf, ctx.lake, ctx.record
    a = conf.active_labeling
    table = conf.table or a.pool_table
    assert table
    ids, texts, labels, version = load_table(lake, a, table, conf.version)
    if labels is None:
        raise LabelingError(f"Table {table!r} has no complete label column {a.label_column!r} "
                            "(active_labeling.label_column); label issues checks given labels.")
    n_classes = max(len(a.classes), int(labels.max()) + 1)
    if np.unique(labels).size < 2:
        raise LabelingError(f"{table}@{version} has one class only in {a.label_column!r}; "
                            "confident learning needs at least two.")
    _, X = TextFeatures.fit(texts, a.features_dim, a.svd_dim, a.seed)
    probs = out_of_fold_probs(X, labels, n_classes, folds=a.issues.folds, alpha=a.alpha,
                              seed=a.seed)
    found = find_label_issues(labels, probs)
    rows = found.index[: a.issues.max_review] if a.issues.max_review else found.index
    review = a.issues.review_queue or f"{a.queue}_review"
    items = [{"item_id": ids[r], "text": texts[r], "guess": int(found.suggested[j]),
              "score": float(1.0 - found.self_confidence[j]), "given": int(labels[r])}
             for j, r in enumerate(rows)]
    prior = read_queue(lake, review)
    review_version = None
    if items:
        review_version = enqueue(lake, review, items, batch=prior.batch + 1,
                                 source=f"{table}@{version}", run_id=run.run_id, job=ctx.name)
        run.add_output(table=review, version=review_version, rows=len(items))
    run.add_input(table=table, version=version, rows=len(labels))
    names = class_names(a, n_classes)
    run.metrics.update({"issues": int(found.index.size), "rows": int(len(labels)),
                        "thresholds": [float(t) for t in found.thresholds],
                        "confident_joint": found.joint.round(2).tolist(), "classes": names})
    return {"issues": found, "ids": ids, "labels": labels, "review_queue": review, "review_version": review_version,
            "summary": f"{found.index.size} likely label errors in {table}@{version} "
                       f"({len(labels)} rows, {a.issues.folds}-fold); {len(items)} queued for "
                       f"review in {review}"
                       + (f"@{review_version}" if review_version is not None else "")
                       + f"; open it on the labeling page (`raylake label serve`) at "
                       f"/?queue={review} (run {run.run_id})"}
