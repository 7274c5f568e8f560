"""The YouTube spam lake the labeling-loop benchmarks share (active learning, label
issues, semi-supervised): ``raylake ingest dataset=youtube_spam`` into a scratch lake,
once (ingestion is idempotent: a second run commits nothing).

The benchmarks' numpy work runs one BLAS thread: on a shared machine, BLAS threads
fighting over the cores made the small matrix products of these loops many times slower.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = os.environ.get("RAYLAKE_BENCH_LABELING_ROOT", "/tmp/raylake-bench-labeling/lake")
ACTIVE = "active_labeling=youtube_spam"


def youtube_lake(root: str = ROOT) -> list[str]:
    """Ingest the dataset into ``root`` when its tables are missing; returns the config
    overrides of the benchmarks (the lake, the labeling loop's YouTube settings)."""
    from raylake.lake import Lake, Storage

    lake = Lake(Storage.from_config(root))
    overrides = [f"lake.root={root}", ACTIVE]
    if not (lake.exists("youtube/train") and lake.exists("youtube/test")):
        from raylake.config.loader import compose_config
        from raylake.ingest.jobs import ingest

        ingest(compose_config([f"lake.root={root}", "dataset=youtube_spam", "quality=none",
                               "features=none"]), echo=lambda *_: None)
        import ray

        ray.shutdown()
    return overrides
