"""Semi-supervised learning on YouTube spam: 50 labels plus the unlabelled rest of the pool.

    python benchmarks/semi_supervised.py [--labels 50] [--seeds 5]

For each seed, ``--labels`` rows of youtube/train are drawn at random as the labelled
set; the rest are unlabelled. Three models of the labeling loop (hashed tf-idf, 50-dim
SVD fitted on the pool, L2 logistic regression; ``active_labeling=youtube_spam``) are
scored on youtube/test: the labels only, self-training (threshold 0.7, quotas of 20 per
class a round for 5 rounds: ``active_labeling.semi``'s defaults, chosen on seeds 10-19, not
on the seeds measured here) and label propagation over a 10-NN graph. The same options train through ``raylake label train``.

Last line (mean test accuracy over the seeds):
    semi: self_training <acc>, labels_only <acc>
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# isort: off
from _label_loop_data import youtube_lake  # noqa: E402  (sets BLAS threads before numpy)

import numpy as np  # noqa: E402
# isort: on


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--labels", type=int, default=50)
    p.add_argument("--seeds", type=int, default=5)
    args = p.parse_args()

    from raylake.config.loader import compose_config, to_config
    from raylake.labeling.active import fit_model
    from raylake.labeling.loop import load_pool, load_table
    from raylake.labeling.semi import label_propagation, self_training
    from raylake.lake import Lake, Storage

    conf = to_config(compose_config(youtube_lake()))
    a, s = conf.active_labeling, conf.active_labeling.semi
    lake = Lake(Storage.from_config(conf.lake.root))
    pool = load_pool(lake, a)
    assert pool.truth is not None and a.test_table
    _, texts, y_test, _ = load_table(lake, a, a.test_table)
    X_test = pool.features.transform(texts)
    k = pool.n_classes

    def acc(model) -> float:
        return float((model.predict(X_test) == y_test).mean())

    full = acc(fit_model(pool.X, pool.truth, k, alpha=a.alpha))
    print(f"pool {len(pool.ids)} rows, test {len(y_test)}; all labels: {full:.4f}")
    scores: dict[str, list[float]] = {"labels_only": [], "self_training": [],
                                      "label_propagation": []}
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        lab = rng.permutation(len(pool.ids))[: args.labels]
        un = np.setdiff1d(np.arange(len(pool.ids)), lab)
        X_l, y_l, X_u = pool.X[lab], pool.truth[lab], pool.X[un]
        base = acc(fit_model(X_l, y_l, k, alpha=a.alpha))
        t0 = time.perf_counter()
        st = self_training(X_l, y_l, X_u, k, threshold=s.threshold, per_class=s.per_class,
                           rounds=s.rounds, alpha=a.alpha)
        t1 = time.perf_counter()
        lp = label_propagation(X_l, y_l, X_u, k, neighbors=s.neighbors,
                               propagation_alpha=s.propagation_alpha, alpha=a.alpha)
        t2 = time.perf_counter()
        scores["labels_only"].append(base)
        scores["self_training"].append(acc(st.model))
        scores["label_propagation"].append(acc(lp.model))
        print(f"seed {seed}: labels only {base:.4f}; self-training {acc(st.model):.4f} "
              f"({st.pseudo_labelled} pseudo-labelled, {t1 - t0:.1f}s); label propagation "
              f"{acc(lp.model):.4f} ({t2 - t1:.1f}s)")
    means = {name: float(np.mean(v)) for name, v in scores.items()}
    print(f"mean over {args.seeds} seeds: " + ", ".join(f"{n} {v:.4f}" for n, v in means.items()))
    print(f"semi: self_training {means['self_training']:.4f}, "
          f"labels_only {means['labels_only']:.4f}")


if __name__ == "__main__":
    main()
