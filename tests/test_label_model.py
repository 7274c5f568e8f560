"""Weak supervision without Ray: the label model against known LF accuracies, against
majority vote on YouTube spam, LFs that raise, dev sets of one class, soft-label metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest

from raylake.config.loader import compose_config, to_config
from raylake.labeling.analyze import check_dev_labels, dev_sample, lf_summary, totals
from raylake.labeling.errors import DevSetError, LabelingFunctionError
from raylake.labeling.label_model import LabelModel, MajorityVote
from raylake.labeling.lfs import ABSTAIN, LFSet, labeling_function, lf_set_from_config
from raylake.labeling.matrix import apply_local
from raylake.labeling.text import featurize

DATA = Path(__file__).resolve().parents[1] / "src/raylake/datasets/youtube_spam"


def synthetic(n: int, acc: list[float], coverage: float, balance: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < balance).astype(np.int64)
    L = np.full((n, len(acc)), ABSTAIN, np.int64)
    for j, a in enumerate(acc):
        votes = rng.random(n) < coverage
        right = rng.random(n) < a
        L[votes, j] = np.where(right[votes], y[votes], 1 - y[votes])
    return L, y


def test_label_model_recovers_known_lf_accuracies_and_class_balance():
    acc = [0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6]
    L, y = synthetic(20_000, acc, coverage=0.5, balance=0.3)
    lm = LabelModel(2).fit(L)
    assert np.abs(lm.lf_accuracies() - np.array(acc)).max() < 0.03
    # Abstains shared among the classes pull the balance a little towards uniform.
    assert lm.class_balance[1] == pytest.approx(0.3, abs=0.07)
    assert lm.score(L, y) > MajorityVote(2).score(L, y) + 0.02
    p = lm.predict_proba(L)
    assert p.shape == (len(y), 2) and np.allclose(p.sum(axis=1), 1)
    params = lm.params([f"lf{j}" for j in range(len(acc))])
    assert params["kind"] == "dawid_skene" and len(params["lf_accuracy"]) == len(acc)


def test_a_vote_outside_the_classes_is_refused_with_the_fix():
    from raylake.labeling.errors import LabelingError

    with pytest.raises(LabelingError, match=r"votes \[2\] outside -1 \(abstain\) and 0..1"):
        LabelModel(2).fit(np.array([[0, 2], [1, -1]]))


def _youtube(files: str) -> pa.Table:
    text = pcsv.ConvertOptions(column_types={"DATE": pa.string()})
    tables = [pcsv.read_csv(f, convert_options=text) for f in sorted(DATA.glob(files))]
    t = pa.concat_tables(tables)
    return t.rename_columns([{"CONTENT": "text", "COMMENT_ID": "comment_id"}.get(c, c)
                             for c in t.column_names])


@pytest.fixture(scope="module")
def youtube():
    lcfg = to_config(compose_config(["labeling=youtube_spam"], job="label-apply")).labeling
    lfset = lf_set_from_config(lcfg)
    pool, test = _youtube("Youtube0[1-4]-*.csv"), _youtube("Youtube05-*.csv")
    return lcfg, lfset, pool, test


def test_label_model_beats_majority_vote_on_youtube_dev_and_test(youtube):
    lcfg, lfset, pool, test = youtube
    L = apply_local(lfset, pool, ["comment_id"]).L
    L_test = apply_local(lfset, test, ["comment_id"]).L
    y_test = test.column("label").to_numpy()
    lm, mv = LabelModel(2).fit(L), MajorityVote(2, seed=123)
    keys, y_dev = dev_sample(pool, ["comment_id"], "label", 100, 123, 2)
    rows = [pool.column("comment_id").to_pylist().index(k)
            for k in keys.column("comment_id").to_pylist()]
    assert lm.score(L_test, y_test) > mv.score(L_test, y_test)
    assert lm.score(L[rows], y_dev) > mv.score(L[rows], y_dev)
    assert lm.score(L_test, y_test) >= 0.93
    stats = {s.name: s for s in lf_summary(L, lfset.names, y=y_dev, L_dev=L[rows])}
    assert stats["check_out"].polarity == [1] and stats["short_comment"].polarity == [0]
    assert 0.2 < stats["check_out"].coverage < 0.3 and stats["check_out"].accuracy == 1.0
    assert 0.7 < totals(L)["coverage"] < 0.9


def test_an_lf_that_raises_on_a_row_abstains_there_and_counts_the_error(youtube):
    lcfg, lfset, pool, _ = youtube

    @labeling_function(name="fragile")
    def fragile(x):
        if "http" in x.text:
            raise ValueError("cannot parse links")
        return 1 if "!" in x.text else ABSTAIN

    @labeling_function(name="sloppy")
    def sloppy(x):
        return "spam"  # not a class index

    lfs = LFSet([*lfset.lfs, fragile, sloppy], cardinality=2)
    m = apply_local(lfs, pool, ["comment_id"])
    links = sum("http" in t for t in pool.column("text").to_pylist())
    assert m.errors["fragile"] == links > 0
    assert m.errors["sloppy"] == pool.num_rows
    assert (m.L[:, lfs.names.index("sloppy")] == ABSTAIN).all()
    assert "ValueError: cannot parse links" in m.messages["fragile"]
    assert "returned 'spam', not a class in 0..1" in m.messages["sloppy"]
    assert m.errors["check_out"] == 0


def test_a_dev_set_of_one_class_is_refused_with_a_clear_message():
    with pytest.raises(DevSetError, match=r"holds one class only \(0\).*rows of every class"):
        check_dev_labels(np.zeros(50, np.int64), 2)
    only_ham = pa.table({"id": list(range(20)), "label": [0] * 20})
    with pytest.raises(DevSetError, match="one class only"):
        dev_sample(only_ham, ["id"], "label", 10, 1, 2, "ham_only@0")
    with pytest.raises(DevSetError, match=r"label column 'gold' is not in"):
        dev_sample(only_ham, ["id"], "gold", 10, 1, 2)


def test_bad_lf_declarations_name_the_lf_and_the_fix():
    base = ["labeling=youtube_spam"]
    lcfg = to_config(compose_config([*base, "labeling.lfs.link.pattern='x(?=y)'"])).labeling
    with pytest.raises(LabelingFunctionError, match=r"labeling.lfs.link: pattern .* RE2"):
        lf_set_from_config(lcfg)
    lcfg = to_config(compose_config(
        [*base, "labeling.lfs.sentiment.function=raylake.nowhere:fn"])).labeling
    with pytest.raises(LabelingFunctionError, match="cannot be imported"):
        lf_set_from_config(lcfg)
    from raylake.errors import ConfigError

    with pytest.raises(ConfigError, match=r"labeling.lfs.link.label=3 is not a class"):
        to_config(compose_config([*base, "labeling.lfs.link.label=3"]))


def test_threshold_lf_votes_on_a_numeric_column():
    lcfg = to_config(compose_config(["labeling=youtube_spam"])).labeling
    from raylake.config.labeling import LFConfig

    lcfg.lfs["long"] = LFConfig(kind="threshold", column="n", op="gt", threshold=3, label=1)
    lfset = lf_set_from_config(lcfg)
    t = pa.table({"comment_id": ["a", "b", "c"], "text": ["x", "y", "z"],
                  "n": pa.array([1.0, 5.0, None])})
    L = apply_local(lfset, t, ["comment_id"]).L
    assert L[:, lfset.names.index("long")].tolist() == [ABSTAIN, 1, ABSTAIN]


def test_soft_labels_are_scored_as_their_more_likely_class():
    from raylake.config.schema import CostConfig
    from raylake.train.metrics import evaluate

    y_soft = np.array([0.9, 0.2, 0.7, 0.4])
    m = evaluate(y_soft, np.array([0.8, 0.1, 0.3, 0.2]), 0.5, CostConfig())
    assert m["accuracy"] == 0.75 and m["auc"] == 1.0 and m["positive_rate"] == 0.5


def test_featurize_is_deterministic_sparse_and_normalised():
    a = featurize(["Check out my channel http://x.com", "great song", ""], dim=256)
    b = featurize(["Check out my channel http://x.com", "great song", ""], dim=256)
    assert a.shape == (3, 256) and a.format == "csr"
    assert (a != b).nnz == 0
    norms = np.sqrt(np.asarray(a.multiply(a).sum(axis=1)).ravel())
    assert np.allclose(norms, [1, 1, 0])
