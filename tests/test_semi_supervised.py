"""Semi-supervised training: self-training (threshold, per-class balance) and label
propagation over a k-NN graph, on constructed data and on YouTube spam (no Ray)."""

from __future__ import annotations

import numpy as np
import pytest
from youtube_lake import overrides, write_youtube

from raylake.config.loader import compose_config, to_config
from raylake.errors import ConfigError
from raylake.labeling.semi import knn_graph, label_propagation, self_training


def two_moons_like(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two well-separated blobs stretched along one axis: a few labels at the ends
    leave a linear model unsure of the middle, which the unlabelled rows fill in."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = np.column_stack([rng.normal(0, 3, n), np.where(y == 1, 1.0, -1.0) + rng.normal(0, 0.3, n)])
    return X, y


def test_self_training_pseudo_labels_only_confident_rows_in_balanced_quotas():
    X, y = two_moons_like()
    lab = np.array([0, 1, 2, 3, 4, 5])
    y_l = y[lab]
    un = np.setdiff1d(np.arange(len(y)), lab)
    r = self_training(X[lab], y_l, X[un], 2, threshold=0.8, per_class=10, rounds=3)
    # Per round at most per_class * k * prior_c per class: 20 rows in all.
    assert r.rounds and max(r.rounds) <= 20 + 2
    assert r.pseudo_labelled == sum(r.rounds)
    # A threshold no row reaches: nothing is pseudo-labelled, the model is the labels' own.
    none = self_training(X[lab], y_l, X[un], 2, threshold=1.0, rounds=3)
    assert none.pseudo_labelled == 0


def test_knn_graph_is_symmetric_without_self_loops():
    X, _ = two_moons_like(50)
    W = knn_graph(X, k=5, block=7)
    assert (abs(W - W.T)).max() < 1e-12
    assert W.diagonal().max() == 0
    assert (W.getnnz(axis=1) >= 5).all()


def test_label_propagation_reaches_the_unlabelled_rows_of_each_cluster():
    X, y = two_moons_like(300, seed=2)
    X = np.column_stack([X[:, 1], 0.01 * X[:, 0]])  # clusters by the second axis
    lab = np.concatenate([np.flatnonzero(y == 0)[:2], np.flatnonzero(y == 1)[:2]])
    un = np.setdiff1d(np.arange(len(y)), lab)
    r = label_propagation(X[lab], y[lab], X[un], 2, neighbors=8)
    assert r.pseudo_labelled > 0.9 * len(un)
    assert (r.model.predict(X[un]) == y[un]).mean() > 0.95


@pytest.mark.slow
def test_self_training_uses_the_unlabelled_rows_of_youtube_spam_without_collapsing(lake):
    # Measured (benchmarks/semi_supervised.py, docs/labeling_loop.md): on YouTube spam with
    # 50 labels self-training is about level with the labels alone; it must not collapse.
    from raylake.labeling.active import fit_model
    from raylake.labeling.loop import load_pool, load_table

    write_youtube(lake)
    a = to_config(compose_config(overrides(lake.root))).active_labeling
    pool = load_pool(lake, a)
    _, texts, y_test, _ = load_table(lake, a, "youtube/test")
    X_test = pool.features.transform(texts)
    base_acc, st_acc = [], []
    for seed in range(3):
        rng = np.random.default_rng(seed)
        lab = rng.permutation(len(pool.ids))[:50]
        un = np.setdiff1d(np.arange(len(pool.ids)), lab)
        base = fit_model(pool.X[lab], pool.truth[lab], 2, alpha=a.alpha)
        st = self_training(pool.X[lab], pool.truth[lab], pool.X[un], 2,
                           threshold=a.semi.threshold, per_class=a.semi.per_class,
                           rounds=a.semi.rounds, alpha=a.alpha)
        assert st.pseudo_labelled > 0
        base_acc.append((base.predict(X_test) == y_test).mean())
        st_acc.append((st.model.predict(X_test) == y_test).mean())
    assert np.mean(st_acc) >= np.mean(base_acc) - 0.05 and min(st_acc) > 0.6


@pytest.mark.slow
def test_label_train_job_reports_both_accuracies(lake):
    from raylake.labeling.jobs_loop import label_train
    from raylake.labeling.queue import add_labels, enqueue

    write_youtube(lake)
    # 50 labelled items in the queue, as a labeller would leave them.
    pool = lake.read("youtube/train").slice(0, 1500)
    take = np.random.default_rng(0).choice(pool.num_rows, 50, replace=False)
    rows = [pool.slice(int(i), 1).to_pylist()[0] for i in take]
    enqueue(lake, "labeling/youtube_spam", [{"item_id": r["comment_id"], "text": r["text"]}
                                            for r in rows], batch=0)
    add_labels(lake, "labeling/youtube_spam", {r["comment_id"]: int(r["label"]) for r in rows},
               who="test")
    for method in ("self_training", "label_propagation"):
        out = label_train(compose_config(overrides(
            lake.root, f"active_labeling.semi.method={method}")), echo=lambda *_: None)
        assert 0.5 < out["accuracy"] <= 1 and 0.5 < out["labels_only_accuracy"] <= 1, (method, out)
        assert out["status"] == "succeeded"


def test_semi_config_checks_name_the_key():
    with pytest.raises(ConfigError, match="active_labeling.semi.threshold=1.5"):
        to_config(compose_config(["active_labeling.semi.threshold=1.5"]))
    with pytest.raises(ConfigError, match="active_labeling.semi.method='selftraining'"):
        to_config(compose_config(["active_labeling.semi.method=selftraining"]))
