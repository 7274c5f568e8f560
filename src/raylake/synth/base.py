"""The synthesizer interface, its registry and what all three kinds share.

``make_synthesizer("tvae", epochs=300)`` builds one; ``fit(frame)`` learns a table (the
:class:`~raylake.synth.transformer.DataTransformer` first, then the model), ``sample(n,
seed=...)`` draws rows (the same seed gives the same rows), ``conditions={"carrier": "UA"}``
draws only rows with those values of discrete columns. ``state()`` is a dict of tensors and
JSON metadata, nothing pickled; ``from_state`` rebuilds a synthesizer that samples the same
rows. SDV's single-table synthesizers have the same shape (``fit``, ``sample``).

TVAE and CTGAN (:class:`Trainable`) split ``fit`` for Ray Train: ``prepare`` fits the
transformer and encodes the table, ``train_loop`` runs the epochs on an encoded array (a
``wrap`` hook for DDP, an ``on_epoch`` hook for checkpoints, a ``start`` state to resume),
``adopt`` takes the trained state back.
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from raylake.errors import SynthError, did_you_mean
from raylake.synth.transformer import DataTransformer, SynthWarning

if TYPE_CHECKING:
    import torch

MEMORISATION_ROWS = 100  # fewer rows than this: a synthesizer can learn them by heart
MAX_CONDITION_ROUNDS = 25  # rejection sampling rounds before giving up
SAMPLE_CHUNK = 50_000  # rows generated at a time (bounds memory for million-row samples)

# kind -> "module:Class", imported on first use (no torch import to list the kinds).
_KINDS: dict[str, str] = {
    "copula": "raylake.synth.copula:GaussianCopula",
    "tvae": "raylake.synth.tvae:TVAE",
    "ctgan": "raylake.synth.ctgan:CTGAN",
}

EpochHook = Callable[[int, dict[str, float], dict[str, Any]], None]
Wrap = Callable[[Any], Any]


def register_synthesizer(kind: str, path: str) -> None:
    """Register a synthesizer class as ``"module:Class"`` under ``kind``."""
    _KINDS[kind] = path


def synthesizer_class(kind: str) -> type[Synthesizer]:
    """The class registered as ``kind``; SynthError naming the kinds when none is."""
    path = _KINDS.get(str(kind))
    if path is None:
        raise SynthError(f"No synthesizer kind {kind!r}.{did_you_mean(str(kind), _KINDS)} "
                         f"Kinds: {', '.join(_KINDS)}.")
    module, _, name = path.partition(":")
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, Synthesizer)
    return cls


def make_synthesizer(kind: str, **params: Any) -> Synthesizer:
    """A new, unfitted synthesizer of ``kind`` (copula, tvae, ctgan) with ``params``."""
    return synthesizer_class(kind)(**params)


def memorisation_warning(n_rows: int, n_columns: int | None = None) -> str | None:
    """A warning when ``n_rows`` is too few to learn a distribution from (a synthesizer
    can then reproduce its training rows), else None."""
    if n_rows >= MEMORISATION_ROWS:
        return None
    shape = f"{n_rows} rows" + (f" x {n_columns} columns" if n_columns else "")
    return (f"fitted on {shape} (under {MEMORISATION_ROWS} rows): the synthesizer can "
            "memorise them and its samples may copy real rows; check the report's "
            "exact-copy share and distance to the closest record before sharing samples, "
            "or fit on more rows")


@dataclasses.dataclass
class Params:
    """Every synthesizer's parameters; a kind uses those that apply to it (the copula none
    of the training ones), so one config shape fits every kind. ``None``: the kind's
    default (TVAE: learning rate 1e-3, hidden (128, 128); CTGAN: 2e-4, (256, 256))."""

    epochs: int = 300
    batch_size: int = 500
    learning_rate: float | None = None
    embedding_dim: int = 128
    hidden: tuple[int, ...] | None = None
    # TVAE
    l2scale: float = 1e-5
    loss_factor: float = 2.0
    # CTGAN
    pac: int = 10
    discriminator_steps: int = 1
    weight_decay: float = 1e-6
    gradient_penalty: float = 10.0
    log_frequency: bool = True
    # the transformer
    max_modes: int = 10
    max_fit_rows: int = 50_000
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name, low, example in (("epochs", 1, "300"), ("batch_size", 2, "500"),
                                   ("embedding_dim", 1, "128"), ("pac", 1, "10"),
                                   ("discriminator_steps", 1, "1"), ("max_modes", 1, "10"),
                                   ("max_fit_rows", 2, "50000")):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
                raise SynthError(f"{name}={value!r} must be an integer of at least {low}, "
                                 f"e.g. {name}={example}.")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise SynthError(f"learning_rate={self.learning_rate!r} must be above 0, e.g. 1e-3.")
        if self.hidden is not None:
            hidden = tuple(int(h) for h in self.hidden)
            if not hidden or min(hidden) < 1:
                raise SynthError(f"hidden={list(self.hidden)!r} must list layer sizes of at "
                                 "least 1, e.g. hidden=[128, 128].")
            self.hidden = hidden


class Synthesizer(abc.ABC):
    """A synthesizer of one table: :meth:`fit`, :meth:`sample`, :meth:`state`."""

    kind: ClassVar[str]
    default_lr: ClassVar[float] = 1e-3
    default_hidden: ClassVar[tuple[int, ...]] = (128, 128)

    def __init__(self, **params: Any) -> None:
        names = [f.name for f in dataclasses.fields(Params)]
        for key in params:
            if key not in names:
                raise SynthError(f"{self.kind} has no parameter {key!r}."
                                 f"{did_you_mean(key, names)} Parameters: {', '.join(names)}.")
        p = Params(**params)
        if p.learning_rate is None:
            p.learning_rate = self.default_lr
        if p.hidden is None:
            p.hidden = self.default_hidden
        self.params = p
        self.transformer: DataTransformer | None = None
        self.fit_stats: dict[str, float] = {}
        self.warnings: list[str] = []

    # -- fit -------------------------------------------------------------------------------

    def fit(self, df: pd.DataFrame, *, discrete: Sequence[str] | None = None,
            seed: int = 0) -> dict[str, float]:
        """Learn ``df`` (columns in ``discrete`` as categories besides strings, booleans and
        categoricals). Returns statistics: ``fit_s``, ``rows``, ``epochs``, final losses.
        Warns (SynthWarning) when the table is small enough to memorise."""
        started = time.perf_counter()
        self._fit_transformer(df, discrete, seed)
        stats = self._fit(df, seed)
        stats.update(rows=float(len(df)), columns=float(df.shape[1]),
                     fit_s=round(time.perf_counter() - started, 4))
        self.fit_stats = stats
        return dict(stats)

    def _fit_transformer(self, df: pd.DataFrame, discrete: Sequence[str] | None,
                         seed: int, max_modes: int | None = None) -> DataTransformer:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SynthWarning)
            self.transformer = DataTransformer.fit(
                df, discrete=discrete, max_modes=max_modes or self.params.max_modes, seed=seed,
                max_fit_rows=self.params.max_fit_rows)
        notes = [str(w.message) for w in caught]
        memo = memorisation_warning(len(df), df.shape[1])
        if memo:
            notes.append(memo)
        self.warnings = notes
        for note in notes:
            warnings.warn(note, SynthWarning, stacklevel=3)
        return self.transformer

    @abc.abstractmethod
    def _fit(self, df: pd.DataFrame, seed: int) -> dict[str, float]:
        """Fit the model on ``df`` (the transformer is fitted); return statistics."""

    # -- sample ----------------------------------------------------------------------------

    def sample(self, n: int, *, seed: int,
               conditions: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """``n`` rows with the fitted table's columns and dtypes; the same ``seed`` gives
        the same rows. ``conditions`` ({column: value} of discrete columns): only rows with
        those values."""
        tr = self._fitted()
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
            raise SynthError(f"rows={n!r} must be a whole number of rows, 0 or more, e.g. 1000.")
        conds = [(tr.columns.index(tr.column(str(k))), tr.category_index(str(k), v))
                 for k, v in (conditions or {}).items()]
        if n == 0:
            return tr.from_raw(np.empty((0, len(tr.columns))))
        if not conds:
            return tr.from_raw(self._sample_raw(int(n), int(seed), []))
        return tr.from_raw(self._rejection(int(n), int(seed), conds, conditions or {}))

    def _rejection(self, n: int, seed: int, conds: list[tuple[int, int]],
                   asked: Mapping[str, Any]) -> np.ndarray:
        """Rows meeting every condition, drawn in rounds (each with its own derived seed)
        from :meth:`_sample_raw`, which is told the conditions and may meet some itself."""
        parts, got, drawn, rate = [], 0, 0, 1.0
        budget = max(100 * n, 100_000)  # candidate rows drawn at most
        for r in range(MAX_CONDITION_ROUNDS):
            need = n - got
            m = int(min(max(need / rate * 1.2 + 16, 64), budget - drawn))
            if m <= 0:
                break
            round_seed = int(np.random.SeedSequence([seed, r]).generate_state(1)[0])
            raw = self._sample_raw(m, round_seed, conds)
            ok = np.ones(len(raw), dtype=bool)
            for j, code in conds:
                ok &= raw[:, j] == code
            drawn += m
            hits = int(ok.sum())
            parts.append(raw[ok][:need])
            got += min(hits, need)
            if got >= n:
                return np.concatenate(parts)
            rate = max(hits / m, 0.5 / drawn, 1e-5)
        what = ", ".join(f"{k}={v!r}" for k, v in asked.items())
        raise SynthError(f"Only {got:,} of {n:,} rows with {what} in {drawn:,} drawn: the model "
                         f"produces such rows in about {got / max(drawn, 1):.4%} of samples. "
                         "Ask for fewer rows, fit a ctgan synthesizer (its generator takes "
                         "the condition) or check how often the value occurs in the table.")

    @abc.abstractmethod
    def _sample_raw(self, n: int, seed: int, conds: list[tuple[int, int]]) -> np.ndarray:
        """``n`` rows as the transformer's raw array (see ``DataTransformer.raw``);
        ``conds`` [(column index, category index)] may be used to favour those rows."""

    def _fitted(self) -> DataTransformer:
        if self.transformer is None:
            raise SynthError(f"This {self.kind} synthesizer is not fitted: call fit(frame) "
                             "first, or load a registered one.")
        return self.transformer

    # -- state -----------------------------------------------------------------------------

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The fitted synthesizer as named tensors and JSON metadata (kind, parameters,
        transformer, fit statistics); :meth:`from_state` rebuilds it."""
        tr = self._fitted()
        meta = {"format": 1, "kind": self.kind, "params": dataclasses.asdict(self.params),
                "transformer": tr.to_json(), "fit": dict(self.fit_stats),
                "warnings": list(self.warnings), **self._meta()}
        return self._tensors(), meta

    @classmethod
    def from_state(cls, tensors: Mapping[str, torch.Tensor],
                   meta: Mapping[str, Any]) -> Synthesizer:
        """A synthesizer from :meth:`state`'s tensors and metadata (the tensors as read by
        ``torch.load(weights_only=True)``). Called on :class:`Synthesizer`, the kind in
        ``meta`` picks the class."""
        if meta.get("format") != 1 or "kind" not in meta:
            raise SynthError("Not a raylake synthesizer's metadata (format 1 with a kind).")
        target = synthesizer_class(str(meta["kind"]))
        if cls is not Synthesizer and not issubclass(target, cls):
            raise SynthError(f"The state is of a {meta['kind']} synthesizer, not {cls.kind}: "
                             f"load it with {target.__name__}.from_state.")
        params = dict(meta.get("params") or {})
        if params.get("hidden") is not None:
            params["hidden"] = tuple(params["hidden"])
        synth = target(**params)
        synth.transformer = DataTransformer.from_json(meta["transformer"])
        synth.fit_stats = {k: float(v) for k, v in (meta.get("fit") or {}).items()}
        synth.warnings = list(meta.get("warnings") or [])
        synth._load(dict(tensors), meta)
        return synth

    def _meta(self) -> dict[str, Any]:
        """Extra JSON metadata of a kind."""
        return {}

    @abc.abstractmethod
    def _tensors(self) -> dict[str, torch.Tensor]:
        """The fitted model's tensors."""

    @abc.abstractmethod
    def _load(self, tensors: dict[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
        """Set the model from :meth:`_tensors`' value (the transformer is set)."""


class Trainable(Synthesizer):
    """A synthesizer trained by epochs on the encoded table (TVAE, CTGAN)."""

    def prepare(self, df: pd.DataFrame, *, discrete: Sequence[str] | None = None,
                seed: int = 0) -> np.ndarray:
        """Fit the transformer on ``df`` and return the encoded float32 array to train on
        (each worker of a distributed fit trains on its shard of it)."""
        return self._fitted_transform(df, discrete, seed)

    def _fitted_transform(self, df: pd.DataFrame, discrete: Sequence[str] | None,
                          seed: int) -> np.ndarray:
        tr = self._fit_transformer(df, discrete, seed)
        return tr.transform(df, seed=seed)

    def fit(self, df: pd.DataFrame, *, discrete: Sequence[str] | None = None,
            seed: int = 0) -> dict[str, float]:
        """:meth:`prepare`, :meth:`train_loop` and :meth:`adopt` in this process."""
        started = time.perf_counter()
        data = self._fitted_transform(df, discrete, seed)
        encoded = time.perf_counter()
        losses: dict[str, float] = {}

        def keep(epoch: int, epoch_losses: dict[str, float], state: dict[str, Any]) -> None:
            losses.update(epoch_losses)

        state = self.train_loop(data, seed=seed, on_epoch=keep)
        self.adopt(state)
        stats = {"epochs": float(self.params.epochs), "rows": float(len(df)),
                 "columns": float(df.shape[1]), "dims": float(data.shape[1]),
                 "transform_s": round(encoded - started, 4),
                 "fit_s": round(time.perf_counter() - started, 4),
                 **{f"loss_{k}": round(float(v), 6) for k, v in losses.items()}}
        self.fit_stats = stats
        return dict(stats)

    def _encoded(self, data: np.ndarray) -> np.ndarray:
        """``data`` as float32, SynthError unless it is the transformer's encoding
        ([rows, output_dim], some rows): what :meth:`train_loop` trains on."""
        tr = self._fitted()
        data = np.asarray(data, dtype=np.float32)
        if data.ndim != 2 or data.shape[1] != tr.output_dim or len(data) == 0:
            raise SynthError(f"{self.kind.upper()} trains on the transformer's encoding: "
                             f"[rows, {tr.output_dim}] with rows, got {data.shape}.")
        return data

    def _fit(self, df: pd.DataFrame, seed: int) -> dict[str, float]:  # fit() is overridden
        raise NotImplementedError

    @abc.abstractmethod
    def train_loop(self, data: np.ndarray, *, seed: int = 0, wrap: Wrap | None = None,
                   on_epoch: EpochHook | None = None,
                   start: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Train on the encoded ``data`` (float32 [n, transformer.output_dim]) for
        ``params.epochs`` epochs and return the training state (nested dicts of tensors and
        numbers: ``torch.save`` it, read it back with ``torch.load(weights_only=True)``).

        ``wrap(module) -> module`` wraps each trained network (a Ray Train worker passes
        ``ray.train.torch.prepare_model`` for DDP); ``on_epoch(epoch, losses, state)`` is
        called after every epoch (``epoch`` counts from 1; ``state`` holds the live
        tensors: save it before returning); ``start``, a state from ``on_epoch`` or from
        this method, resumes after its epoch."""

    @abc.abstractmethod
    def adopt(self, state: Mapping[str, Any]) -> None:
        """Take the networks of a training state (from :meth:`train_loop`) to sample with."""


def derived_seed(seed: int, *path: int) -> int:
    """A 63-bit seed derived from ``seed`` and ``path`` (numpy's SeedSequence)."""
    words = np.random.SeedSequence([int(seed) & (2**63 - 1), *path]).generate_state(2)
    return int((int(words[0]) << 31) ^ int(words[1])) & (2**63 - 1)


def chunks(n: int, size: int = SAMPLE_CHUNK) -> list[int]:
    """``n`` split into chunk sizes of at most ``size``."""
    k = max(1, math.ceil(n / size))
    return [min(size, n - i * size) for i in range(k) if n - i * size > 0]
