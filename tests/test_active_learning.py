"""Active learning: query strategies on constructed probabilities, the logistic
regression, the queue table's semantics, and `label simulate` on YouTube spam (no Ray)."""

from __future__ import annotations

import numpy as np
import pytest
from youtube_lake import overrides, write_youtube

from raylake.config.loader import compose_config, to_config
from raylake.errors import ConfigError
from raylake.labeling.active import (
    Candidates,
    density_margin,
    entropy,
    get_strategy,
    kcenter,
    kcenter_greedy,
    knn_density,
    least_confidence,
    margin,
    qbc,
    random_sampling,
    select,
)
from raylake.labeling.errors import LabelingError
from raylake.labeling.linear import LogisticRegression
from raylake.labeling.queue import UnknownItemError, add_label, enqueue, read_queue

# Rows built so each strategy has one right answer:
# 0: confident; 1: top 0.4 with a clear runner-up gap; 2: two-way tie 0.45/0.45;
# 3: flat over three classes.
PROBS = np.array([
    [0.98, 0.01, 0.01],
    [0.40, 0.35, 0.25],
    [0.45, 0.45, 0.10],
    [0.34, 0.33, 0.33],
])


def cand(probs=PROBS, **kw) -> Candidates:
    return Candidates(np.asarray(probs), rng=np.random.default_rng(0), **kw)


def test_least_confidence_picks_the_lowest_top_probability():
    assert least_confidence(cand(), 1).index.tolist() == [3]
    assert least_confidence(cand(), 4).index.tolist() == [3, 1, 2, 0]


def test_margin_picks_the_smallest_gap_between_the_two_best_classes():
    # Row 3 (0.34 vs 0.33) and row 2 (0.45 vs 0.45): row 2's gap is 0.
    assert margin(cand(), 2).index.tolist() == [2, 3]
    # least confidence would rank row 1 (top 0.40) above row 2 (top 0.45)
    assert least_confidence(cand(), 3).index.tolist() == [3, 1, 2]
    assert margin(cand(), 4).index.tolist()[-1] == 0


def test_entropy_picks_the_flattest_row():
    sel = entropy(cand(), 4)
    assert sel.index.tolist()[0] == 3 and sel.index.tolist()[-1] == 0
    assert sel.score[0] == pytest.approx(np.log(3), abs=1e-3)


def test_qbc_picks_where_the_committee_disagrees():
    # Three members, three rows: all agree on 0; split 2-1 on 1; split 1-1-1 on 2.
    committee = np.array([
        [[0.9, 0.1, 0.0], [0.9, 0.1, 0.0], [0.9, 0.1, 0.0]],
        [[0.9, 0.1, 0.0], [0.9, 0.1, 0.0], [0.1, 0.9, 0.0]],
        [[0.9, 0.1, 0.0], [0.1, 0.9, 0.0], [0.0, 0.1, 0.9]],
    ]).transpose(1, 0, 2)  # members x rows x classes
    c = cand(np.full((3, 3), 1 / 3), committee=committee)
    assert qbc(c, 3).index.tolist() == [2, 1, 0]
    with pytest.raises(ConfigError, match="committee"):
        qbc(cand(), 1)


def test_kcenter_spreads_a_batch_over_clusters():
    # Two tight clusters of 5 near-duplicates, all equally uncertain: a batch of 2 takes
    # one of each (top-2 by margin alone would take two near-duplicates).
    rng = np.random.default_rng(1)
    a = np.array([1.0, 0.0, 0.0]) + 0.01 * rng.random((5, 3))
    b = np.array([0.0, 0.0, 1.0]) + 0.01 * rng.random((5, 3))
    X = np.vstack([a, b])
    c = cand(np.tile([0.5, 0.5, 0.0], (10, 1)), X=X, X_labeled=np.zeros((0, 3)))
    picked = kcenter(c, 2).index
    assert {int(i) < 5 for i in picked} == {True, False}
    # Against a labelled row in cluster a, the first pick is from cluster b.
    first = kcenter_greedy(X, 1, X_labeled=np.array([[1.0, 0.0, 0.0]]))
    assert int(first[0]) >= 5


def test_knn_density_is_high_in_clusters_and_low_for_outliers():
    # A tight cluster of 6 rows around e1 and one outlier along e3: the cluster's rows
    # have 2 near neighbours each (cosine ~1), the outlier none.
    rng = np.random.default_rng(0)
    cluster = np.array([1.0, 0.0, 0.0]) + 0.05 * rng.random((6, 3))
    X = np.vstack([cluster, [[0.0, 0.1, 1.0]]])
    d = knn_density(X, 2)
    assert d.shape == (7,) and d[:6].min() > 0.95 and d[6] < 0.3
    # Self-similarity is left out: two identical rows are each other's neighbour at 1.
    assert knn_density(np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), 1).tolist() == [1.0, 1.0, 0.0]
    # Sparse rows give the same densities, chunked or not.
    import scipy.sparse as sp

    assert np.allclose(knn_density(sp.csr_matrix(X), 2, chunk=3), d)


def test_density_prefers_an_uncertain_row_that_stands_for_many():
    # Rows 0 and 1 are equally uncertain; row 0 is in a dense region, row 1 an outlier.
    # Margin alone ties them; density weighting takes row 0, and a confident dense row
    # (row 2) still comes last.
    probs = np.array([[0.5, 0.5], [0.5, 0.5], [0.95, 0.05]])
    c = cand(probs, density=np.array([0.9, 0.1, 0.9]))
    assert density_margin(c, 3).index.tolist() == [0, 1, 2]
    # beta 0 is plain margin: the two uncertain rows tie (score 1) and lead.
    flat = density_margin(cand(probs, density=np.array([0.9, 0.1, 0.9]), beta=0.0), 3)
    assert sorted(flat.index[:2].tolist()) == [0, 1] and flat.score[:2].tolist() == [1.0, 1.0]
    with pytest.raises(ConfigError, match="density"):
        density_margin(cand(probs), 1)


def test_select_density_skips_an_uncertain_outlier_on_real_features(lake):
    # The YouTube pool's own features: with the density computed in select, the rows
    # chosen are denser than the ones margin alone chooses.
    from raylake.labeling.loop import load_pool

    write_youtube(lake)
    a = to_config(compose_config(overrides(lake.root))).active_labeling
    assert str(a.strategy) == "density"  # the shipped default
    pool = load_pool(lake, a)
    assert pool.truth is not None
    labeled = np.zeros(len(pool.ids), dtype=bool)
    labeled[np.random.default_rng(0).permutation(len(pool.ids))[:20]] = True
    dens = pool.density(a.density_neighbors)
    assert pool.density(a.density_neighbors) is dens  # computed once per pool
    picks = {}
    for s in ("margin", "density"):
        rows, _, _ = select(s, pool.X, labeled, pool.truth, 10, 2, alpha=a.alpha,
                            rng=np.random.default_rng(0))
        picks[s] = rows
    assert not labeled[picks["density"]].any() and len(set(picks["density"].tolist())) == 10
    assert dens[picks["density"]].mean() > dens[picks["margin"]].mean()
    # Passing the density gives the same rows as computing it in select.
    rows, _, _ = select("density", pool.X, labeled, pool.truth, 10, 2, alpha=a.alpha,
                        rng=np.random.default_rng(0), density=dens)
    assert rows.tolist() == picks["density"].tolist()


def test_random_sampling_returns_distinct_rows_and_unknown_names_suggest():
    sel = random_sampling(cand(np.full((50, 2), 0.5)), 10)
    assert len(set(sel.index.tolist())) == 10
    with pytest.raises(ConfigError, match="Did you mean 'margin'"):
        get_strategy("margn")


def test_select_seeds_at_random_until_two_classes_are_labelled():
    X = np.eye(6)
    labeled = np.zeros(6, dtype=bool)
    rows, guess, _ = select("margin", X, labeled, np.zeros(6, dtype=int), 3, 2,
                            rng=np.random.default_rng(0))
    assert guess is None and len(rows) == 3
    labeled[[0, 1]] = True
    y = np.array([0, 1, 0, 0, 0, 0])
    rows, guess, score = select("entropy", X, labeled, y, 2, 2, rng=np.random.default_rng(0))
    assert guess is not None and not labeled[rows].any() and len(score) == 2


def test_logistic_regression_fits_and_honours_weights_and_soft_labels():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    m = LogisticRegression(alpha=0.1).fit(X, y)
    assert (m.predict(X) == y).mean() > 0.95
    assert np.allclose(m.predict_proba(X).sum(axis=1), 1.0)
    # Weight zero on every row of class 1: it is never predicted.
    w = np.where(y == 1, 0.0, 1.0)
    assert LogisticRegression(alpha=1.0).fit(X, y, n_classes=2, sample_weight=w).predict(X).max() == 0
    soft = np.column_stack([1 - y, y]).astype(float)
    ms = LogisticRegression(alpha=0.1).fit(X, soft, soft=True)
    assert np.allclose(ms.coef_, m.coef_, atol=1e-3)
    import scipy.sparse as sp

    msp = LogisticRegression(alpha=0.1).fit(sp.csr_matrix(X), y)
    assert np.allclose(msp.predict_proba(X), m.predict_proba(X), atol=1e-4)


# -- the queue ------------------------------------------------------------------------


def test_queue_is_append_only_with_who_and_when(lake):
    q = "labeling/q"
    v0 = enqueue(lake, q, [{"item_id": "a", "text": "hello", "guess": 1, "score": 0.5},
                           {"item_id": "b", "text": "buy now"}], batch=0, source="t@0")
    v1 = add_label(lake, q, "a", 0, who="alice")
    v2 = add_label(lake, q, "a", 1, who="bob")  # a correction: a new row, newest wins
    assert (v0, v1, v2) == (0, 1, 2)
    state = read_queue(lake, q)
    a = state.items["a"]
    assert (a.label, a.who) == (1, "bob") and a.at is not None and a.guess == 1
    assert state.labels_given == 2 and [i.item_id for i in state.pending()] == ["b"]
    # Earlier versions are untouched: at v1 alice's label stands.
    assert read_queue(lake, q, 1).items["a"].who == "alice"
    rows = lake.read(q).to_pylist()
    assert [r["event"] for r in rows].count("label") == 2 and len(rows) == 4
    ops = [h.get("operation") for h in lake.history(q)]
    assert all(op in ("WRITE", "CREATE TABLE") for op in ops)


def test_a_label_for_an_item_not_in_the_queue_names_it(lake):
    q = "labeling/q"
    with pytest.raises(UnknownItemError, match="'zzz' is not in queue 'labeling/q': the queue is empty"):
        add_label(lake, q, "zzz", 0, who="alice")
    enqueue(lake, q, [{"item_id": "a", "text": "x"}], batch=0)
    with pytest.raises(UnknownItemError) as err:
        add_label(lake, q, "nope-42", 1, who="alice")
    msg = str(err.value)
    assert msg.startswith("Item 'nope-42' is not in queue 'labeling/q' (1 items queued in "
                          "batches 0..0); only queued items can be labelled, e.g. 'a'. ")
    with pytest.raises(LabelingError, match="Label 7 for item 'a' is not a class in 0..1"):
        add_label(lake, q, "a", 7, who="alice", n_classes=2)
    with pytest.raises(LabelingError, match="who"):
        add_label(lake, q, "a", 1, who=" ")
    assert lake.version(q) == 0  # nothing was written by the refused labels


def test_config_refuses_a_bad_strategy_and_batch_size():
    with pytest.raises(ConfigError, match="active_labeling.strategy='margn'"):
        to_config(compose_config(["active_labeling=youtube_spam", "active_labeling.strategy=margn"]))
    with pytest.raises(ConfigError, match="active_labeling.batch_size=0"):
        to_config(compose_config(["active_labeling.batch_size=0"]))
    with pytest.raises(ConfigError, match="active_labeling.density_beta=-1"):
        to_config(compose_config(["active_labeling.density_beta=-1"]))


# -- simulate ---------------------------------------------------------------------------


@pytest.mark.slow
def test_simulate_labels_batches_from_the_truth_and_accuracy_improves(lake):
    from raylake.labeling.jobs_loop import label_simulate

    write_youtube(lake)
    out = label_simulate(compose_config(overrides(
        lake.root, "active_labeling.batch_size=10", "active_labeling.max_labels=60")),
        echo=lambda *_: None)
    curve = out["curve"]
    assert curve[-1]["labels"] == 60
    assert curve[-1]["accuracy"] > curve[0]["accuracy"] and curve[-1]["accuracy"] > 0.8
    state = read_queue(lake, "labeling/youtube_spam")
    assert len(state.labelled()) == 60 and not state.pending()
    assert {i.who for i in state.items.values()} == {"simulator"}
    # Batches after the first carry the model's guess and score.
    later = [i for i in state.items.values() if i.batch > 0]
    assert later and all(i.guess is not None and i.score is not None for i in later)
    assert out["status"] == "succeeded"


def test_simulate_without_a_test_table_says_what_to_set(lake):
    from raylake.labeling.jobs_loop import label_simulate

    with pytest.raises(ConfigError, match="active_labeling.pool_table"):
        label_simulate(compose_config([f"lake.root={lake.root}", "active_labeling.pool_table=null"]),
                       echo=lambda *_: None)
