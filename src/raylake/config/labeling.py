"""Weak supervision: the ``labeling`` group (labeling functions, the label matrix, the
dev set, the label model and the end model's training set)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

from omegaconf import MISSING

from raylake.config.values import Choice, at_least, choice, fraction, is_set, optional_choice
from raylake.errors import ConfigValueError


class LFKind(Choice):
    python = "python"  # a @labeling_function in a module: function: "package.module:name"
    keyword = "keyword"  # any of `terms` (words or phrases) in `column` (whole words, case-insensitive)
    regex = "regex"  # `pattern` (RE2 syntax) found in `column`
    threshold = "threshold"  # `column` `op` `threshold` on a numeric column
    model = "model"  # a registered model's probability: >= threshold + margin -> 1,
    # < threshold - margin -> 0, otherwise abstain


class ThresholdOp(Choice):
    lt = "lt"
    le = "le"
    gt = "gt"
    ge = "ge"
    eq = "eq"
    ne = "ne"


class LabelModelKind(Choice):
    dawid_skene = "dawid_skene"  # EM over each LF's confusion matrix (abstains included)
    majority = "majority"  # the baseline: the most common vote, ties broken at random


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class LFConfig:
    kind: LFKind = MISSING
    # The vote when the function fires (keyword, regex, threshold): a class index.
    label: Optional[int] = None
    # The column read; None: labeling.text_column (keyword, regex).
    column: Optional[str] = None
    terms: list[str] = field(default_factory=list)
    pattern: Optional[str] = None
    ignore_case: bool = True
    op: Optional[ThresholdOp] = None
    # threshold: the value compared with; model: the probability cut (default 0.5).
    threshold: Optional[float] = None
    # model: NAME[:VERSION|champion|latest] of the registry; abstain within +-margin of the cut.
    model: Optional[str] = None
    margin: float = 0.0
    # python: "package.module:function", a function decorated with @labeling_function.
    function: Optional[str] = None

    def __post_init__(self) -> None:
        if self.kind != MISSING:
            self.kind = choice(LFKind, self.kind, "labeling.lfs.<name>.kind")
        self.op = optional_choice(ThresholdOp, self.op, "labeling.lfs.<name>.op")
        fraction("labeling.lfs.<name>.margin", self.margin)


@dataclass
class DevSetConfig:
    # A small labelled sample: the rows of `table` (None: labeling.table) whose key hashes
    # into the first `rows`, with their gold labels in `label`. Used only to score LFs and
    # label models (`label analyze`), never to fit them.
    table: Optional[str] = None
    version: Optional[str] = None
    label: str = "label"
    rows: int = 100
    seed: int = 123

    def __post_init__(self) -> None:
        at_least("labeling.dev.rows", self.rows, 2, "100")


@dataclass
class LabelModelConfig:
    kind: LabelModelKind = LabelModelKind.dawid_skene
    max_iter: int = 500
    tol: float = 1e-7
    # Dirichlet pseudo-counts added to every LF's confusion-matrix row (keeps an LF that
    # never fires on a class from a probability of exactly 0).
    smoothing: float = 1.0
    # P(class); empty: learned from the votes.
    class_balance: list[float] = field(default_factory=list)
    # True: abstains follow the posterior like votes (full Dawid-Skene). Off by default:
    # correlated LFs' silences add up as if independent (on YouTube spam it labels every
    # uncovered row spam); False shares each LF's abstains equally among the classes.
    abstain_informative: bool = False
    seed: int = 123

    def __post_init__(self) -> None:
        self.kind = choice(LabelModelKind, self.kind, "labeling.label_model.kind")
        at_least("labeling.label_model.max_iter", self.max_iter, 1, "500")
        at_least("labeling.label_model.smoothing", self.smoothing, 0, "1.0")
        if self.class_balance and (min(self.class_balance) <= 0
                                   or abs(sum(self.class_balance) - 1) > 1e-6):
            raise ConfigValueError(
                f"labeling.label_model.class_balance={list(self.class_balance)} must be positive "
                "and sum to 1, e.g. [0.5, 0.5]; or leave it empty to learn it.")


@dataclass
class EndModelConfig:
    # `label features`: hashed text features (raylake.labeling.text) with the label model's
    # probability for the pool, gold labels for the dev (valid) and test rows, as one
    # training set for `raylake train` (its split column orders train < valid < test).
    test_table: Optional[str] = None
    test_version: Optional[str] = None
    dim: int = 1024
    # Drop hashed columns that fewer than this many training rows use.
    min_df: int = 2
    output_table: Optional[str] = None  # None: labels/<name>/train_set

    def __post_init__(self) -> None:
        at_least("labeling.end_model.dim", self.dim, 2, "1024")
        at_least("labeling.end_model.min_df", self.min_df, 1, "2")


@dataclass
class LabelingConfig:
    name: str = MISSING
    # The table labeled (and its version: an int, a tag or an ISO time; None: latest).
    table: str = MISSING
    version: Optional[str] = None
    # Columns that identify a row; they are copied into the label matrix.
    id_columns: list[str] = field(default_factory=list)
    text_column: str = "text"
    cardinality: int = 2
    classes: list[str] = field(default_factory=list)  # class names, e.g. [ham, spam]
    # Name -> labeling function; the name is the label matrix column.
    lfs: dict[str, LFConfig] = field(default_factory=dict)
    # None: labels/<name>/matrix and labels/<name>/probs.
    matrix_table: Optional[str] = None
    output_table: Optional[str] = None
    # Rows per Ray Data batch, and CPUs per applying task.
    batch_rows: int = 8192
    num_cpus: float = 1.0
    dev: DevSetConfig = field(default_factory=DevSetConfig)
    label_model: LabelModelConfig = field(default_factory=LabelModelConfig)
    end_model: EndModelConfig = field(default_factory=EndModelConfig)

    def __post_init__(self) -> None:
        at_least("labeling.cardinality", self.cardinality, 2, "2")
        at_least("labeling.batch_rows", self.batch_rows, 1, "8192")
        if self.num_cpus <= 0:
            raise ConfigValueError(f"labeling.num_cpus={self.num_cpus} must be > 0, e.g. 1.")
        if self.classes and len(self.classes) != self.cardinality:
            raise ConfigValueError(
                f"labeling.classes={list(self.classes)} names {len(self.classes)} classes but "
                f"labeling.cardinality={self.cardinality}; name one per class.")
        if self.label_model.class_balance and \
                len(self.label_model.class_balance) != self.cardinality:
            raise ConfigValueError(
                f"labeling.label_model.class_balance has {len(self.label_model.class_balance)} "
                f"values for {self.cardinality} classes; give one per class.")
        for name, lf in self.lfs.items():
            self._check_lf(name, lf)

    def _check_lf(self, name: str, lf: LFConfig) -> None:
        key = f"labeling.lfs.{name}"
        if not _NAME.fullmatch(name) or name in self.id_columns:
            raise ConfigValueError(
                f"{key}: an LF name must be an identifier (letters, digits, _) and not a key "
                f"column ({self.id_columns}); rename it, e.g. has_link.")
        if not is_set(lf.kind):
            return
        needs = {LFKind.keyword: ("terms", "label"), LFKind.regex: ("pattern", "label"),
                 LFKind.threshold: ("column", "op", "threshold", "label"),
                 LFKind.model: ("model",), LFKind.python: ("function",)}[lf.kind]
        for attr in needs:
            value = getattr(lf, attr)
            if value is None or value == [] or value == "":
                raise ConfigValueError(f"{key}: a {lf.kind} LF needs {key}.{attr}; see "
                                       "conf/labeling/youtube_spam.yaml for an example.")
        if lf.label is not None and not 0 <= lf.label < self.cardinality:
            raise ConfigValueError(
                f"{key}.label={lf.label} is not a class of labeling.cardinality="
                f"{self.cardinality}; use 0..{self.cardinality - 1}.")
        if lf.kind == LFKind.model and self.cardinality != 2:
            raise ConfigValueError(f"{key}: a model LF votes from a binary probability; it needs "
                                   "labeling.cardinality=2.")
        if lf.kind == LFKind.python and ":" not in str(lf.function):
            raise ConfigValueError(f"{key}.function={lf.function!r} must be "
                                   "'package.module:function', e.g. "
                                   "raylake.labeling.youtube_lfs:short_comment.")
