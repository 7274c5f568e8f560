"""Recommendations: the ``recsys`` group (the tables of the generated world and those the
pipeline writes, the two-tower retrieval model, the item index, the offline evaluation,
the ``POST /recommend`` server, model optimization). See docs/recommendations.md."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from raylake.config.values import Choice, at_least, choice, port
from raylake.errors import ConfigValueError


class IndexKind(Choice):
    auto = "auto"  # exact below recsys.index_hnsw_from items, HNSW from there (benchmarks/ann.py)
    exact = "exact"  # a matrix-vector product: no graph to build, recall 1
    hnsw = "hnsw"  # faiss IndexHNSWFlat


@dataclass
class TwoTowerSettings:
    dim: int = 32
    hidden: list[int] = field(default_factory=lambda: [64])
    temperature: float = 0.1
    epochs: int = 3
    batch_size: int = 2048  # per worker: the in-batch negatives of each click
    lr: float = 0.005
    # Ray Train workers (DDP, gloo on CPU) and the CPUs each asks for.
    num_workers: int = 2
    cpus_per_worker: float = 0.5
    threads_per_worker: int = 1
    use_gpu: bool = False
    max_failures: int = 2  # restarts from the last epoch's checkpoint after a lost worker

    def __post_init__(self) -> None:
        for key in ("dim", "epochs", "batch_size", "num_workers", "threads_per_worker"):
            at_least(f"recsys.towers.{key}", getattr(self, key), 1, "1")
        if not 0.0 < float(self.temperature) <= 1.0:
            raise ConfigValueError(f"recsys.towers.temperature={self.temperature!r} must be "
                                   "in (0, 1], e.g. 0.1.")
        if not self.cpus_per_worker > 0:
            raise ConfigValueError(f"recsys.towers.cpus_per_worker={self.cpus_per_worker!r} "
                                   "must be above 0, e.g. 0.5.")


@dataclass
class RecommendServerConfig:
    host: str = "127.0.0.1"
    port: int = 8300
    replicas: int = 1
    # Each replica's CPUs: fractional, so the HTTP proxy keeps a CPU on a 2-CPU machine.
    cpus_per_replica: float = 0.5
    # Requests from many clients scored together (`@serve.batch`): up to this many, waiting
    # at most batch_wait_s for the batch to fill.
    max_batch_size: int = 16
    batch_wait_s: float = 0.002
    max_k: int = 100  # a request's k above this is a 422 that names the limit

    def __post_init__(self) -> None:
        port("recsys.server.port", self.port)
        for key in ("replicas", "max_batch_size", "max_k"):
            at_least(f"recsys.server.{key}", getattr(self, key), 1, "1")


@dataclass
class RecsysConfig:
    name: str = "recsys"
    # The generated world's tables (conf/dataset/recsys_world.yaml).
    users_table: str = "recsys/users"
    items_table: str = "recsys/items"
    events_table: str = "recsys/events"
    # What the pipeline writes: one row per impression with its click label, the item
    # vectors of a two-tower version.
    impressions_table: str = "recsys/impressions"
    item_vectors_table: str = "recsys/item_vectors"
    # The time split: events from holdout_start on are the holdout (None: the last
    # holdout_days of the events table).
    holdout_start: Optional[str] = None
    holdout_days: int = 10
    # Registered models.
    tower_model: str = "recsys_two_tower"
    index_model: str = "recsys_item_index"
    ranker_model: str = "recsys_ranker"
    towers: TwoTowerSettings = field(default_factory=TwoTowerSettings)
    index: IndexKind = IndexKind.auto
    index_hnsw_from: int = 50_000  # items; measured in benchmarks/ann.py
    # Candidates retrieved per request (scored by the ranker), and the ranked list's length
    # offline.
    candidates: int = 500
    # Offline evaluation: this many holdout users (a seeded sample), and the generator's
    # truth/ folder for the oracle (None: <dataset.root>/truth).
    eval_users: int = 2000
    truth_dir: Optional[str] = None
    server: RecommendServerConfig = field(default_factory=RecommendServerConfig)

    def __post_init__(self) -> None:
        self.index = choice(IndexKind, self.index, "recsys.index")
        for key in ("holdout_days", "index_hnsw_from", "candidates", "eval_users"):
            at_least(f"recsys.{key}", getattr(self, key), 1, "1")
