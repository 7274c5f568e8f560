"""The label matrix at scale: 1,000,000 rows (the YouTube comments replicated) through the
youtube_spam LF set, raylake (Ray Data, `label apply`'s build) against the same LFs applied
in one process with pandas.

    python benchmarks/label_matrix.py [--rows 1000000] [--dir /tmp]

The table is written to a temporary lake first (not timed). raylake: `build_matrix` over
the table version, Ray Data tasks with Arrow-vectorised keyword/regex LFs and the Python LFs
per row; timed from the read to the matrix on the driver. pandas: the table read into a
DataFrame, each keyword/regex LF as ``Series.str.contains`` (vectorised), each Python LF
over ``DataFrame.itertuples()`` (pandas' fastest row loop; Snorkel's PandasLFApplier uses
``apply``, which is slower); timed the same way. Both matrices are checked equal. Last line:

    label_matrix: raylake <rows/s>, pandas <rows/s>, ratio <r>

Target: ratio at least 1.5.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def pandas_matrix(df, lfset) -> np.ndarray:
    """The LF set's votes the pandas way (see the module docstring)."""
    from raylake.labeling.lfs import ABSTAIN, LabelingFunction

    out = np.full((len(df), len(lfset.lfs)), ABSTAIN, np.int8)
    for j, lf in enumerate(lfset.lfs):
        if type(lf) is LabelingFunction:
            fn = lf.fn
            votes = []
            for row in df.itertuples(index=False):
                try:
                    v = fn(row)
                except Exception:  # noqa: BLE001 - an error is an abstain, as in raylake
                    v = ABSTAIN
                votes.append(ABSTAIN if v is None else v)
            out[:, j] = votes
        else:
            hit = df[lf.column].str.contains(lf.pattern, case=not lf.ignore_case, regex=True,
                                             na=False).to_numpy()
            out[:, j] = np.where(hit, lf.label, ABSTAIN)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()

    import warnings

    import pandas as pd
    import ray

    # str.contains warns about the LFs' groups (alternations), which it matches correctly.
    warnings.filterwarnings("ignore", "This pattern is interpreted as a regular expression")

    from raylake.config.loader import compose_config, to_config
    from raylake.labeling.lfs import lf_set_from_config
    from raylake.labeling.matrix import build_matrix
    from raylake.lake import Lake, Storage
    from raylake.lake.commit import write_table

    lcfg = to_config(compose_config(["labeling=youtube_spam"], job="label-apply")).labeling
    lfset = lf_set_from_config(lcfg)
    src = Path(__file__).resolve().parents[1] / "src/raylake/datasets/youtube_spam"
    texts = pd.concat([pd.read_csv(f) for f in sorted(src.glob("Youtube0*.csv"))])["CONTENT"]
    reps = -(-args.rows // len(texts))
    text = np.tile(texts.to_numpy(dtype=object), reps)[: args.rows]
    table = pa.table({"row": pa.array(np.arange(args.rows, dtype=np.int64)),
                      "text": pa.array(list(text), pa.string())})
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        lake = Lake(Storage.from_config(f"{tmp}/lake"))
        # Eight commits: eight files, as an ingest of a few source files would leave.
        for part in np.array_split(np.arange(args.rows), 8):
            write_table(lake, "comments", table.take(pa.array(part)), mode="append")
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        build_matrix(lake, "comments", None, lfset, ["row"], batch_rows=8192)  # warm workers
        t = time.perf_counter()
        m, _ = build_matrix(lake, "comments", None, lfset, ["row"], batch_rows=8192)
        ray_s = time.perf_counter() - t
        ray.shutdown()
        t = time.perf_counter()
        df = lake.read("comments").to_pandas()
        L_pd = pandas_matrix(df, lfset)
        pd_s = time.perf_counter() - t
        order = np.argsort(m.table.column("row").to_numpy())
        L_ray = m.L[order]
        same = bool(np.array_equal(L_ray, L_pd[np.argsort(df["row"].to_numpy())]))
    print(f"{args.rows:,} rows x {len(lfset.lfs)} LFs ({', '.join(lfset.names)})")
    print(f"raylake (Ray Data, 2 CPUs): {ray_s:.1f} s; pandas (one process): {pd_s:.1f} s; "
          f"matrices equal: {same}; LF errors: {sum(m.errors.values())}")
    if not same:
        raise SystemExit("the two label matrices differ")
    r, p = args.rows / ray_s, args.rows / pd_s
    print(f"label_matrix: raylake {r:,.0f}, pandas {p:,.0f}, ratio {r / p:.2f}")


if __name__ == "__main__":
    main()
