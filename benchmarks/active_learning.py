"""Active learning on YouTube spam: test accuracy against the number of labels, the
configured uncertainty strategy (``active_labeling.strategy``; density-weighted margin
by default) against random sampling, 5 seeds each.

    python benchmarks/active_learning.py [--seeds 5] [--max-labels 250] [--png docs/active_learning.png]
        [--strategy margin|density|kcenter|qbc|...] [--density-neighbors 20] [--density-beta 1.0]

The pool is youtube/train (files 1-4 of Snorkel's split, ingested with
``raylake ingest dataset=youtube_spam``), the test set youtube/test (file 5). Features and
model are the labeling loop's (``active_labeling=youtube_spam``: hashed tf-idf, a
50-dimension SVD fitted on the pool, L2 logistic regression), the same for both arms;
each curve starts from the same 4 random labels per seed and queries one row at a time
(``batch_size: 1``: with batches of 2 the margin curve needed 68 labels against random's
98, see docs/labeling_loop.md). A query is answered from the true label, as
``raylake label simulate`` does; the simulate job itself is run once (the active arm's
strategy, seed 0, to 40 labels, its seed batch one query batch) and its curve printed too.

"Labels to 95% full": the fewest labels at which the mean curve over the seeds reaches
95% of the test accuracy of the same model trained on every pool label.

The plot is drawn with matplotlib when it is installed, else by the small PNG writer
below (numpy + zlib: neither matplotlib nor Pillow was installed where the committed plot
was made).

Last line:
    active: labels_to_95pct_full <n_al>, random_labels_to_95pct_full <n_random>
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# isort: off
from _label_loop_data import youtube_lake  # noqa: E402  (sets BLAS threads before numpy)

import numpy as np  # noqa: E402
# isort: on

REPO = Path(__file__).resolve().parents[1]


def labels_to_reach(curve: list[tuple[int, float]], target: float) -> int | None:
    return next((n for n, acc in curve if acc >= target), None)


def mean_curve(curves: list[list[tuple[int, float]]]) -> list[tuple[int, float]]:
    n = min(len(c) for c in curves)
    return [(curves[0][i][0], float(np.mean([c[i][1] for c in curves]))) for i in range(n)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--max-labels", type=int, default=250)
    p.add_argument("--seed-size", type=int, default=4)
    p.add_argument("--png", default=str(REPO / "docs" / "active_learning.png"))
    p.add_argument("--strategy", default=None,
                   help="the active arm's query strategy (default: active_labeling.strategy)")
    p.add_argument("--density-neighbors", type=int, default=None,
                   help="density strategy: k of the k-NN density (active_labeling.density_neighbors)")
    p.add_argument("--density-beta", type=float, default=None,
                   help="density strategy: the density's exponent (active_labeling.density_beta)")
    args = p.parse_args()

    from raylake.config.loader import compose_config, to_config
    from raylake.labeling.active import fit_model, simulate_curve
    from raylake.labeling.jobs_loop import label_simulate
    from raylake.labeling.loop import load_pool, load_table
    from raylake.lake import Lake, Storage

    overrides = youtube_lake()
    for key, value in (("strategy", args.strategy), ("density_neighbors", args.density_neighbors),
                       ("density_beta", args.density_beta)):
        if value is not None:
            overrides.append(f"active_labeling.{key}={value}")
    conf = to_config(compose_config(overrides))
    a = conf.active_labeling
    args.strategy = str(a.strategy)
    print(f"active arm: {a.strategy} (density: {a.density_neighbors} neighbours, beta "
          f"{a.density_beta}); random arm: random; batch {a.batch_size}, svd {a.svd_dim}, "
          f"alpha {a.alpha}")
    lake = Lake(Storage.from_config(conf.lake.root))
    pool = load_pool(lake, a)
    assert pool.truth is not None and a.test_table
    _, test_texts, y_test, _ = load_table(lake, a, a.test_table)
    assert y_test is not None
    X_test = pool.features.transform(test_texts)
    full_model = fit_model(pool.X, pool.truth, pool.n_classes, alpha=a.alpha)
    full = float((full_model.predict(X_test) == y_test).mean())
    target = 0.95 * full
    print(f"pool {len(pool.ids)} rows ({pool.source}), test {len(y_test)} rows; all "
          f"{len(pool.ids)} labels: test accuracy {full:.4f}; 95% of it: {target:.4f}")

    curves: dict[str, list[list[tuple[int, float]]]] = {}
    for strategy in (args.strategy, "random"):
        t0 = time.perf_counter()
        curves[strategy] = [
            simulate_curve(pool.X, pool.truth, X_test, y_test, strategy,
                           seed_size=args.seed_size, batch_size=a.batch_size,
                           max_labels=args.max_labels, seed=seed, alpha=a.alpha,
                           committee=a.committee, pool_factor=a.pool_factor,
                           density_neighbors=a.density_neighbors,
                           density_beta=a.density_beta, n_classes=pool.n_classes)
            for seed in range(args.seeds)]
        print(f"{strategy}: {args.seeds} seeds in {time.perf_counter() - t0:.1f}s")
    means = {s: mean_curve(c) for s, c in curves.items()}
    reach = {s: labels_to_reach(m, target) for s, m in means.items()}
    print(f"{'labels':>7} " + " ".join(f"{s:>10}" for s in means))
    for i, (n, _) in enumerate(means[args.strategy]):
        if n % 10 == 0 or n == args.seed_size:
            print(f"{n:>7} " + " ".join(f"{means[s][i][1]:>10.4f}" for s in means))
    per_seed = {s: [labels_to_reach(c, target) for c in cs] for s, cs in curves.items()}
    for s, v in per_seed.items():
        print(f"{s}: labels to 95% full per seed {v}; mean curve {reach[s]}")

    # The job itself, through the lake queue: the same numbers as the library's loop.
    queue = f"bench/{args.strategy}"
    _drop_queue(lake, queue)  # a fresh queue: simulate resumes a queue that has labels
    job_overrides = overrides + [f"active_labeling.queue={queue}", "active_labeling.max_labels=40"]
    t0 = time.perf_counter()
    out = label_simulate(compose_config(job_overrides), echo=lambda *_: None)
    took = time.perf_counter() - t0
    job_curve = [(c["labels"], c["accuracy"]) for c in out["curve"]]
    print(f"label-simulate job ({args.strategy}, batch {a.batch_size}, seed batch random): "
          f"{len(job_curve)} batches in {took:.1f}s, {job_curve[-1][0]} labels -> test accuracy "
          f"{job_curve[-1][1]:.4f}; " + " ".join(f"{n}:{acc:.3f}" for n, acc in job_curve[::5]))
    _drop_queue(lake, queue)

    plot(means, curves, target, full, args.png, args.strategy)
    print(f"plot: {args.png}")
    print(f"active: labels_to_95pct_full {reach[args.strategy]}, "
          f"random_labels_to_95pct_full {reach['random']}")


def _drop_queue(lake, name: str) -> None:
    import shutil

    path = Path(lake.root) / name
    if path.is_dir():
        shutil.rmtree(path)


# -- the plot ---------------------------------------------------------------------

COLORS = {"margin": (31, 119, 180), "density": (31, 119, 180), "random": (214, 39, 40)}


def plot(means, curves, target, full, path: str, strategy: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        plt = None
    if plt is not None:
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
        for s, cs in curves.items():
            color = np.array(COLORS.get(s, (80, 80, 80))) / 255
            for c in cs:
                ax.plot([n for n, _ in c], [a for _, a in c], color=color, alpha=0.2, lw=0.8)
            ax.plot([n for n, _ in means[s]], [a for _, a in means[s]], color=color, lw=2,
                    label=f"{s} (mean of {len(cs)})")
        ax.axhline(target, color="gray", ls="--", lw=1, label="95% of all labels")
        ax.set_xlabel("labels")
        ax.set_ylabel("test accuracy")
        ax.set_title("Active learning on YouTube spam")
        ax.legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(path)
        return
    img = Canvas(760, 480)
    draw_chart(img, means, curves, target, strategy)
    img.save(path)


class Canvas:
    """An RGB image in numpy with lines, rectangles and a 5x7 bitmap font; saved as PNG."""

    def __init__(self, w: int, h: int) -> None:
        self.w, self.h = w, h
        self.px = np.full((h, w, 3), 255, dtype=np.uint8)

    def dot(self, x: float, y: float, color, width: int = 1) -> None:
        xi, yi = int(round(x)), int(round(y))
        r = width // 2
        self.px[max(yi - r, 0):min(yi - r + width, self.h),
                max(xi - r, 0):min(xi - r + width, self.w)] = color

    def line(self, x0, y0, x1, y1, color, width: int = 1, dash: int = 0) -> None:
        steps = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
        for i in range(steps + 1):
            if dash and (i // dash) % 2:
                continue
            t = i / steps
            self.dot(x0 + (x1 - x0) * t, y0 + (y1 - y0) * t, color, width)

    def text(self, x: int, y: int, s: str, color=(0, 0, 0), scale: int = 2) -> None:
        for ch in s.upper():
            glyph = FONT.get(ch, FONT["?"])
            for r, row in enumerate(glyph):
                for c in range(5):
                    if row >> (4 - c) & 1:
                        self.px[y + r * scale:y + (r + 1) * scale,
                                x + c * scale:x + (c + 1) * scale] = color
            x += 6 * scale

    def save(self, path: str) -> None:
        raw = b"".join(b"\x00" + self.px[y].tobytes() for y in range(self.h))

        def chunk(kind: bytes, data: bytes) -> bytes:
            return (struct.pack(">I", len(data)) + kind + data
                    + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

        png = (b"\x89PNG\r\n\x1a\n"
               + chunk(b"IHDR", struct.pack(">IIBBBBB", self.w, self.h, 8, 2, 0, 0, 0))
               + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
        Path(path).write_bytes(png)


def draw_chart(img: Canvas, means, curves, target, strategy: str) -> None:
    left, right, top, bottom = 80, img.w - 20, 50, img.h - 60
    xs = [n for c in curves.values() for cc in c for n, _ in cc]
    x_max = max(xs)
    y_lo, y_hi = 0.4, 1.0

    def X(n):
        return left + (right - left) * n / x_max

    def Y(a):
        return bottom - (bottom - top) * (min(max(a, y_lo), y_hi) - y_lo) / (y_hi - y_lo)

    for a in np.arange(y_lo, y_hi + 1e-9, 0.1):
        img.line(left, Y(a), right, Y(a), (235, 235, 235))
        img.text(left - 50, int(Y(a)) - 7, f"{a:.1f}")
    step = 20 if x_max <= 200 else 50
    for n in range(0, x_max + 1, step):
        img.line(X(n), bottom, X(n), bottom + 5, (0, 0, 0))
        label = str(n)
        img.text(int(X(n)) - 6 * len(label), bottom + 10, label)
    img.line(left, top, left, bottom, (0, 0, 0))
    img.line(left, bottom, right, bottom, (0, 0, 0))
    img.line(left, Y(target), right, Y(target), (120, 120, 120), dash=6)
    for s, cs in curves.items():
        color = COLORS.get(s, (80, 80, 80))
        light = tuple(int(255 - (255 - v) * 0.3) for v in color)
        for c in cs:
            for (n0, a0), (n1, a1) in zip(c, c[1:]):
                img.line(X(n0), Y(a0), X(n1), Y(a1), light)
    for s, m in means.items():
        color = COLORS.get(s, (80, 80, 80))
        for (n0, a0), (n1, a1) in zip(m, m[1:]):
            img.line(X(n0), Y(a0), X(n1), Y(a1), color, width=3)
    img.text(left, 12, "ACTIVE LEARNING ON YOUTUBE SPAM: TEST ACCURACY VS LABELS", scale=2)
    img.text((left + right) // 2 - 36, img.h - 25, "LABELS")
    ly = bottom - 90
    for s, cs in curves.items():
        color = COLORS.get(s, (80, 80, 80))
        img.line(right - 250, ly + 6, right - 220, ly + 6, color, width=3)
        img.text(right - 212, ly, f"{s} (mean of {len(cs)})")
        ly += 22
    img.line(right - 250, ly + 6, right - 220, ly + 6, (120, 120, 120), dash=6)
    img.text(right - 212, ly, "95% of all labels")


# 5x7 glyphs, one int per row (5 bits, most significant = leftmost pixel).
FONT = {
    " ": [0, 0, 0, 0, 0, 0, 0],
    "?": [14, 17, 1, 2, 4, 0, 4],
    ".": [0, 0, 0, 0, 0, 12, 12],
    ",": [0, 0, 0, 0, 12, 4, 8],
    ":": [0, 12, 12, 0, 12, 12, 0],
    "-": [0, 0, 0, 31, 0, 0, 0],
    "%": [24, 25, 2, 4, 8, 19, 3],
    "(": [2, 4, 8, 8, 8, 4, 2],
    ")": [8, 4, 2, 2, 2, 4, 8],
    "/": [0, 1, 2, 4, 8, 16, 0],
    "0": [14, 17, 19, 21, 25, 17, 14],
    "1": [4, 12, 4, 4, 4, 4, 14],
    "2": [14, 17, 1, 2, 4, 8, 31],
    "3": [31, 2, 4, 2, 1, 17, 14],
    "4": [2, 6, 10, 18, 31, 2, 2],
    "5": [31, 16, 30, 1, 1, 17, 14],
    "6": [6, 8, 16, 30, 17, 17, 14],
    "7": [31, 1, 2, 4, 8, 8, 8],
    "8": [14, 17, 17, 14, 17, 17, 14],
    "9": [14, 17, 17, 15, 1, 2, 12],
    "A": [14, 17, 17, 31, 17, 17, 17],
    "B": [30, 17, 17, 30, 17, 17, 30],
    "C": [14, 17, 16, 16, 16, 17, 14],
    "D": [28, 18, 17, 17, 17, 18, 28],
    "E": [31, 16, 16, 30, 16, 16, 31],
    "F": [31, 16, 16, 30, 16, 16, 16],
    "G": [14, 17, 16, 23, 17, 17, 15],
    "H": [17, 17, 17, 31, 17, 17, 17],
    "I": [14, 4, 4, 4, 4, 4, 14],
    "J": [7, 2, 2, 2, 2, 18, 12],
    "K": [17, 18, 20, 24, 20, 18, 17],
    "L": [16, 16, 16, 16, 16, 16, 31],
    "M": [17, 27, 21, 21, 17, 17, 17],
    "N": [17, 17, 25, 21, 19, 17, 17],
    "O": [14, 17, 17, 17, 17, 17, 14],
    "P": [30, 17, 17, 30, 16, 16, 16],
    "Q": [14, 17, 17, 17, 21, 18, 13],
    "R": [30, 17, 17, 30, 20, 18, 17],
    "S": [15, 16, 16, 14, 1, 1, 30],
    "T": [31, 4, 4, 4, 4, 4, 4],
    "U": [17, 17, 17, 17, 17, 17, 14],
    "V": [17, 17, 17, 17, 17, 10, 4],
    "W": [17, 17, 17, 21, 21, 21, 10],
    "X": [17, 17, 10, 4, 10, 17, 17],
    "Y": [17, 17, 17, 10, 4, 4, 4],
    "Z": [31, 1, 2, 4, 8, 16, 31],
}


if __name__ == "__main__":
    main()
