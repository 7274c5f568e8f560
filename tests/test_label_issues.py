"""Label issues by confident learning: thresholds and the confident joint on constructed
probabilities; planted flips found on YouTube spam; `label issues` writes a review queue.
No Ray."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from youtube_lake import overrides, write_youtube

from raylake.config.loader import compose_config
from raylake.labeling.errors import LabelingError
from raylake.labeling.issues import (
    confident_joint,
    find_label_issues,
    out_of_fold_probs,
    rank_all,
)
from raylake.labeling.queue import read_queue


def test_thresholds_and_confident_joint_on_constructed_probabilities():
    labels = np.array([0, 0, 0, 1, 1, 1])
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9],   # row 2: labelled 0, surely 1
                      [0.2, 0.8], [0.3, 0.7], [0.4, 0.6]])
    t, joint, counted = confident_joint(labels, probs)
    # t_j: the mean probability of j over the rows labelled j.
    assert t == pytest.approx([(0.9 + 0.8 + 0.1) / 3, (0.8 + 0.7 + 0.6) / 3])
    assert counted[2] == 1
    assert joint[0, 1] > 0 and joint.sum() == pytest.approx(6)
    issues = find_label_issues(labels, probs)
    assert issues.index.tolist() == [2] and issues.suggested.tolist() == [1]
    assert issues.self_confidence[0] == pytest.approx(0.1)
    assert rank_all(labels, probs, issues)[0] == 2


def test_issues_are_ranked_by_self_confidence():
    labels = np.array([0] * 5 + [1] * 5)
    probs = np.array([[0.9, 0.1]] * 3 + [[0.2, 0.8], [0.05, 0.95]] + [[0.1, 0.9]] * 4 + [[0.7, 0.3]])
    issues = find_label_issues(labels, probs)
    assert issues.index.tolist()[:2] == [4, 3]  # 0.05 before 0.2


def test_too_few_rows_for_the_folds_says_what_to_change():
    with pytest.raises(LabelingError, match="fewer rows than folds=5"):
        out_of_fold_probs(np.eye(6), np.array([0, 0, 0, 0, 1, 1]), 2, folds=5)


def _flip(y: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    m = int(round(share * len(y)))
    flipped = rng.choice(len(y), m, replace=False)
    noisy = y.copy()
    noisy[flipped] = 1 - noisy[flipped]
    return noisy, flipped


@pytest.mark.slow
def test_planted_flips_rank_first_on_youtube_spam(lake):
    from raylake.labeling.jobs_loop import label_issues

    write_youtube(lake)
    clean = lake.read("youtube/train")
    noisy, flipped = _flip(np.asarray(clean.column("label").to_pylist()), 0.05, seed=0)
    lake_table = clean.set_column(clean.schema.get_field_index("label"), "label",
                                  pa.array(noisy, pa.int8()))
    from raylake.lake.commit import write_table

    write_table(lake, "youtube/noisy", lake_table)
    out = label_issues(compose_config(overrides(lake.root, "table=youtube/noisy",
                                                "active_labeling.svd_dim=0")),
                       echo=lambda *_: None)
    found = out["issues"]
    # The job's rows are in the order it read them: find the flipped ones again by id.
    truth = dict(zip(clean.column("comment_id").to_pylist(), clean.column("label").to_pylist()))
    given = np.asarray(out["labels"])
    flipped_rows = np.flatnonzero(given != np.asarray([truth[i] for i in out["ids"]]))
    assert flipped_rows.size == len(flipped)
    top = rank_all(given, found.pred_probs, found)[: len(flipped)]
    precision = np.isin(top, flipped_rows).mean()
    assert precision >= 0.7, precision
    # The review queue holds the issues, most likely first, with the given label and the
    # suggested one.
    review = read_queue(lake, out["review_queue"])
    first = next(iter(review.items.values()))
    row = int(found.index[0])
    assert first.item_id == out["ids"][row] and first.given == int(given[row])
    assert first.guess == int(found.suggested[0]) and first.guess != first.given
    assert len(review.items) <= len(found.index)


def test_label_issues_refuses_one_class(lake):
    from raylake.labeling.jobs_loop import label_issues
    from raylake.lake.commit import write_table

    write_table(lake, "one", pa.table({"comment_id": ["a", "b", "c"], "text": ["x", "y", "z"],
                                       "label": pa.array([1, 1, 1], pa.int8())}))
    with pytest.raises(LabelingError, match="one class only"):
        label_issues(compose_config(overrides(lake.root, "table=one")), echo=lambda *_: None)
