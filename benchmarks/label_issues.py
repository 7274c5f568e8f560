"""Label errors on YouTube spam: flip 5% of the training labels at random, run
``raylake label issues`` on the noisy table, and measure how many of the flipped rows
rank in the top 5%.

    python benchmarks/label_issues.py [--seeds 3] [--share 0.05]

The table is youtube/train (1,586 comments, ingested with ``raylake ingest
dataset=youtube_spam``); for each seed a copy with ``share`` of its labels flipped is
written to the lake and the ``label-issues`` job runs on it (5-fold out-of-fold
probabilities of the loop's logistic regression on hashed tf-idf, per-class thresholds,
the confident joint, prune by noise rate, ranked by self-confidence). Every row is then
ranked (the issues first, in their order, then the rest by self-confidence) and the
top ``share`` of rows is compared with the flipped ones: precision = flipped among
them / their number, recall = flipped among them / flipped. (Both top-k and flipped
have the same size here, so the two are equal.) The YouTube labels have errors of their
own, which count against precision here.

Last line (means over the seeds):
    label_issues: precision <p>, recall <r>
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
import pyarrow as pa  # noqa: E402
# isort: on


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--share", type=float, default=0.05)
    args = p.parse_args()

    from raylake.config.loader import compose_config, to_config
    from raylake.labeling.issues import rank_all
    from raylake.labeling.jobs_loop import label_issues
    from raylake.lake import Lake, Storage
    from raylake.lake.commit import write_table

    overrides = youtube_lake()
    conf = to_config(compose_config(overrides))
    lake = Lake(Storage.from_config(conf.lake.root))
    clean = lake.read("youtube/train")
    y = np.asarray(clean.column("label").to_pylist(), dtype=np.int64)
    # Two rows of the table repeat whole (same id, same label): a label by id is exact.
    clean_label = dict(zip(clean.column("comment_id").to_pylist(), y.tolist()))
    precisions, recalls = [], []
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        m = int(round(args.share * len(y)))
        flipped = rng.choice(len(y), m, replace=False)
        noisy = y.copy()
        noisy[flipped] = 1 - noisy[flipped]
        table = f"bench/youtube_noisy_{seed}"
        write_table(lake, table, clean.set_column(clean.schema.get_field_index("label"), "label",
                                                  pa.array(noisy, pa.int8())), mode="overwrite")
        t0 = time.perf_counter()
        out = label_issues(compose_config(overrides + [
            f"table={table}", "active_labeling.svd_dim=0",
            f"active_labeling.issues.review_queue=bench/review_{seed}"]), echo=print)
        took = time.perf_counter() - t0
        found = out["issues"]
        # Rows come back in the order the job read them (a Delta table's row order is not
        # promised): the flipped rows are found again by id, as rows whose label differs
        # from the clean table's.
        given = np.asarray(out["labels"], dtype=np.int64)
        truth = np.asarray([clean_label[i] for i in out["ids"]], dtype=np.int64)
        flipped_rows = np.flatnonzero(given != truth)
        assert flipped_rows.size == m, (flipped_rows.size, m)
        top = rank_all(given, found.pred_probs, found)[:m]
        hits = int(np.isin(top, flipped_rows).sum())
        precision, recall = hits / len(top), hits / m
        flagged = int(np.isin(found.index, flipped_rows).sum())
        precisions.append(precision)
        recalls.append(recall)
        print(f"seed {seed}: {m} of {len(y)} labels flipped; {found.index.size} issues found "
              f"({flagged} of them flipped); top {m}: precision {precision:.3f}, recall "
              f"{recall:.3f}; job {took:.1f}s")
    print(f"label_issues: precision {np.mean(precisions):.3f}, recall {np.mean(recalls):.3f}")


if __name__ == "__main__":
    main()
