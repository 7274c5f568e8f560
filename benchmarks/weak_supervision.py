"""Weak supervision on the YouTube Spam Collection with Snorkel's tutorial split, against
Snorkel itself on the same label matrix.

    python benchmarks/weak_supervision.py [--dir /tmp]

Ingests the five CSV files (videos 1-4: the unlabeled pool; video 5: the test set), builds
the label matrix of conf/labeling/youtube_spam.yaml with `label apply` (Ray Data) over the
pool and over the test table, fits raylake's label model (`label model`), writes the end
model's training set (`label features`: hashed text features, the label model's soft labels)
and trains XGBoost on it with `raylake train train=xgboost_youtube_spam`. Snorkel 0.10's
LabelModel and MajorityLabelVoter run in their own virtual environment
(benchmarks/_snorkel_env.py) on the very same matrices (saved as .npy). Ties of majority
vote are broken at random, as the tutorial scores it. Last line:

    weak: majority <acc>, label_model <acc>, end_model <acc>, snorkel_label_model <acc>

Targets: label_model >= snorkel_label_model, end_model >= 0.92. Snorkel's published
tutorial figures (its own LFs): majority 84.0%, label model 86.0%, end model 94.4%.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _snorkel_env import snorkel_python  # noqa: E402

PUBLISHED = {"majority": 0.840, "label_model": 0.860, "end_model": 0.944}

SNORKEL = r"""
import json, sys, numpy as np
from snorkel.labeling.model import LabelModel, MajorityLabelVoter
d = sys.argv[1]
Ltr, Lte, y = (np.load(f"{d}/{n}.npy") for n in ("L_train", "L_test", "y_test"))
lm = LabelModel(cardinality=2, verbose=False)
lm.fit(L_train=Ltr, n_epochs=500, log_freq=100, seed=123)
mv = MajorityLabelVoter(cardinality=2)
print(json.dumps({
    "label_model": lm.score(L=Lte, Y=y, tie_break_policy="random")["accuracy"],
    "majority": mv.score(L=Lte, Y=y, tie_break_policy="random")["accuracy"]}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=None, help="where the temporary lake goes")
    args = ap.parse_args()
    python = snorkel_python()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        run(tmp, python)


def run(tmp: str, snorkel: Path) -> None:
    import ray

    from raylake.config.loader import compose_config
    from raylake.ingest.jobs import ingest
    from raylake.labeling.analyze import align
    from raylake.labeling.jobs import label_apply, label_features, label_model
    from raylake.labeling.label_model import MajorityVote
    from raylake.lake import Lake, Storage
    from raylake.train.jobs import train

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    root = f"{tmp}/lake"
    base = [f"lake.root={root}", "labeling=youtube_spam"]

    def quiet(*_: object) -> None:
        pass

    started = time.perf_counter()
    ingest(compose_config([*base, "dataset=youtube_spam", "quality=none"]), echo=quiet)
    m_train = label_apply(compose_config(base, job="label-apply"), echo=quiet)["matrix"]
    m_test = label_apply(compose_config(
        [*base, "labeling.table=youtube/test",
         "labeling.matrix_table=labels/youtube_spam/test_matrix"], job="label-apply"),
        echo=quiet)["matrix"]
    fitted = label_model(compose_config(base, job="label-model"), echo=quiet)
    lake = Lake(Storage.from_config(root))
    test = lake.read("youtube/test", columns=["comment_id", "label"])
    L_test = align(m_test.table, m_test.lfs, test.select(["comment_id"]))
    y_test = test.column("label").to_numpy().astype(np.int64)
    L_train = m_train.L
    ours = {"majority": MajorityVote(2, seed=123).score(L_test, y_test),
            "label_model": fitted["model"].score(L_test, y_test)}
    label_features(compose_config(base, job="label-features"), echo=quiet)
    trained = train(compose_config([*base, "train=xgboost_youtube_spam"], job="train"), echo=quiet)
    ours["end_model"] = trained["metrics"]["test"]["accuracy"]
    ray.shutdown()
    ours_s = time.perf_counter() - started

    np.save(f"{tmp}/L_train.npy", L_train.astype(np.int64))
    np.save(f"{tmp}/L_test.npy", L_test.astype(np.int64))
    np.save(f"{tmp}/y_test.npy", y_test)
    out = subprocess.run([str(snorkel), "-c", SNORKEL, tmp], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"snorkel failed:\n{out.stderr[-3000:]}")
    theirs = json.loads(out.stdout.strip().splitlines()[-1])

    print(f"YouTube spam, Snorkel's split: pool {L_train.shape[0]} rows (videos 1-4), test "
          f"{len(y_test)} rows (video 5), {L_train.shape[1]} LFs; raylake pipeline {ours_s:.0f} s")
    print(f"{'test accuracy':<22} {'raylake':>8} {'snorkel 0.10':>13} {'published':>10}")
    for k, label in (("majority", "majority vote"), ("label_model", "label model"),
                     ("end_model", "end model")):
        sn = f"{theirs[k]:.3f}" if k in theirs else "-"
        print(f"{label:<22} {ours[k]:>8.3f} {sn:>13} {PUBLISHED[k]:>10.3f}")
    print("(snorkel columns: Snorkel's models on raylake's label matrix; published: Snorkel's "
          "tutorial with its own LFs)")
    print(f"weak: majority {ours['majority']:.4f}, label_model {ours['label_model']:.4f}, "
          f"end_model {ours['end_model']:.4f}, snorkel_label_model {theirs['label_model']:.4f}")


if __name__ == "__main__":
    main()
