"""The labeling loop: active learning over a pool table, the labeling page, simulation,
semi-supervised training and label issues (the ``active_labeling`` section).

The dataset's tables and columns come from YAML (``conf/active_labeling/``), e.g.
``raylake label simulate active_labeling=youtube_spam`` (the default option).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from raylake.config.values import Choice, at_least, choice, fraction, port, positive


class QueryStrategy(Choice):
    least_confidence = "least_confidence"
    margin = "margin"
    entropy = "entropy"
    qbc = "qbc"  # query by committee (vote entropy of bootstrap models)
    density = "density"  # information density: margin x k-NN density ** beta
    kcenter = "kcenter"  # uncertain shortlist, then k-center greedy: diverse batches
    random = "random"


class SemiMethod(Choice):
    none = "none"
    self_training = "self_training"
    label_propagation = "label_propagation"


@dataclass
class SemiConfig:
    """Semi-supervised training with the unlabelled rows (``label-train``)."""

    method: SemiMethod = SemiMethod.self_training
    # Self-training: pseudo-label rows whose top probability is at least this...
    threshold: float = 0.7
    # ...at most this many per class a round (the same number per class: per-class balance)...
    per_class: int = 20
    # ...for at most this many rounds.
    rounds: int = 5
    # Label propagation: k nearest neighbours (cosine) and the clamping factor.
    neighbors: int = 10
    propagation_alpha: float = 0.99

    def __post_init__(self) -> None:
        self.method = choice(SemiMethod, self.method, "active_labeling.semi.method")
        fraction("active_labeling.semi.threshold", self.threshold)
        for key in ("per_class", "rounds", "neighbors"):
            at_least(f"active_labeling.semi.{key}", getattr(self, key), 1, "10")
        fraction("active_labeling.semi.propagation_alpha", self.propagation_alpha,
                 open_high=True)


@dataclass
class IssuesConfig:
    """Label issues by confident learning (``label-issues``)."""

    folds: int = 5
    # The review queue written (None: <active_labeling.queue>_review).
    review_queue: Optional[str] = None
    # Queue at most this many of the ranked issues (None: every one found).
    max_review: Optional[int] = None

    def __post_init__(self) -> None:
        at_least("active_labeling.issues.folds", self.folds, 2, "5")
        at_least("active_labeling.issues.max_review", self.max_review, 1, "100")


@dataclass
class ActiveLabelingConfig:
    """The pool (a lake table of items to label), its columns, the queue table, the
    query strategy and the model the loop retrains."""

    # The table of items to label (the pool) and, for simulate, a held-out test table.
    pool_table: Optional[str] = None
    test_table: Optional[str] = None
    id_column: str = "id"
    text_column: str = "text"
    # The true labels: simulate answers from this column; label-issues checks it.
    label_column: str = "label"
    # Class names, index = label (the page's keys: 1..k and each name's first letter).
    classes: list[str] = field(default_factory=list)
    # The queue table (items queued per batch and the labels given, append-only).
    queue: str = "labeling/queue"
    strategy: QueryStrategy = QueryStrategy.margin
    batch_size: int = 10
    # Labels to stop at (simulate); None: the whole pool.
    max_labels: Optional[int] = None
    committee: int = 5
    # kcenter: the uncertain shortlist is pool_factor * batch_size rows.
    pool_factor: int = 5
    # density: a row's density is its mean cosine similarity to this many nearest pool
    # rows; the margin score is weighted by density ** density_beta (0: plain margin).
    density_neighbors: int = 20
    density_beta: float = 1.0
    # Hashed text features (raylake.labeling.text.featurize).
    features_dim: int = 4096
    # Dense features: truncated SVD (LSA) of the pool's tf-idf to this many dimensions; 0: off.
    svd_dim: int = 100
    # L2 penalty of the logistic regression (sklearn's 1/C).
    alpha: float = 1.0
    seed: int = 0
    # Who a label is recorded as when the page is not told (the page's ?who=).
    who: str = "anonymous"
    host: str = "127.0.0.1"
    port: int = 8765
    semi: SemiConfig = field(default_factory=SemiConfig)
    issues: IssuesConfig = field(default_factory=IssuesConfig)

    def __post_init__(self) -> None:
        self.strategy = choice(QueryStrategy, self.strategy, "active_labeling.strategy")
        at_least("active_labeling.batch_size", self.batch_size, 1, "10")
        at_least("active_labeling.max_labels", self.max_labels, 2, "200")
        at_least("active_labeling.committee", self.committee, 2, "5")
        at_least("active_labeling.pool_factor", self.pool_factor, 1, "5")
        at_least("active_labeling.density_neighbors", self.density_neighbors, 1, "20")
        at_least("active_labeling.density_beta", self.density_beta, 0, "1.0")
        at_least("active_labeling.features_dim", self.features_dim, 2, "4096")
        at_least("active_labeling.svd_dim", self.svd_dim, 0, "100")
        positive("active_labeling.alpha", self.alpha, "1.0")
        port("active_labeling.port", self.port)
