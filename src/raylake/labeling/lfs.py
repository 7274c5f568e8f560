"""Labeling functions: declared in Python with :func:`labeling_function` or in config
(keyword, regex, a threshold on a column, a registered model's prediction), collected
into an :class:`LFSet` that votes over Arrow batches.

A function votes a class index or ``ABSTAIN`` (-1) per row. An LF that raises on a row,
or returns something that is not a class, gives that row an abstain vote and counts an
error against the LF (with the first message kept); the batch, and the job, go on.
Config LFs run vectorised with Arrow compute; Python LFs run once per row on a
:class:`Row` (attribute and item access to the row's columns).
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raylake.errors import did_you_mean
from raylake.labeling.errors import LabelingFunctionError

ABSTAIN = -1

__all__ = ["ABSTAIN", "LFSet", "LabelingFunction", "Row", "Votes", "labeling_function",
           "lf_set_from_config"]


class Row:
    """One row for a Python LF: ``x.text`` or ``x["text"]``; a missing column is an error."""

    __slots__ = ("_d",)

    def __init__(self, d: dict[str, Any]) -> None:
        self._d = d

    def __getattr__(self, name: str) -> Any:
        try:
            return self._d[name]
        except KeyError:
            raise AttributeError(f"the row has no column {name!r}."
                                 f"{did_you_mean(name, self._d)}") from None

    def __getitem__(self, name: str) -> Any:
        return self._d[name]

    def get(self, name: str, default: Any = None) -> Any:
        """The column's value, or ``default``."""
        return self._d.get(name, default)


@dataclass
class Votes:
    """One batch's votes: ``matrix`` (rows x LFs, int8), errors per LF and the first
    error message of each LF that failed."""

    matrix: np.ndarray
    errors: np.ndarray
    messages: dict[str, str] = field(default_factory=dict)


class LabelingFunction:
    """A named function from a row to a class index or ABSTAIN."""

    kind = "python"

    def __init__(self, name: str, fn: Callable[[Any], Any] | None = None) -> None:
        self.name = name
        self.fn = fn

    def __call__(self, row: Any) -> Any:
        """The vote of the Python function on one row."""
        if self.fn is None:
            raise LabelingFunctionError(f"LF {self.name!r} has no Python function")
        return self.fn(row)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def describe(self) -> dict[str, Any]:
        """What the run record keeps of this LF."""
        fn = self.fn
        where = f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', '?')}"
        return {"name": self.name, "kind": self.kind, "function": where}

    # Vectorised LFs override this; Python LFs are called per row by LFSet.
    def vote_batch(self, table: pa.Table) -> tuple[np.ndarray, int, str | None]:
        """Votes of every row of ``table`` (int8), errors and the first error message."""
        raise NotImplementedError


def labeling_function(name: str | None = None) -> Callable[[Callable[[Any], Any]],
                                                            LabelingFunction]:
    """Decorator: ``@labeling_function(name="has_link")`` over ``def f(x) -> int``, where
    ``x`` is a :class:`Row` and the result a class index or ``ABSTAIN`` (-1)."""

    def wrap(fn: Callable[[Any], Any]) -> LabelingFunction:
        return LabelingFunction(name or fn.__name__, fn)

    return wrap


class _ArrowLF(LabelingFunction):
    """A config LF evaluated on whole Arrow columns."""

    def __init__(self, name: str, kind: str, column: str, label: int, spec: dict[str, Any]):
        super().__init__(name)
        self.kind, self.column, self.label, self.spec = kind, column, label, spec

    def describe(self) -> dict[str, Any]:
        """The LF's kind, column, vote and parameters."""
        return {"name": self.name, "kind": self.kind, "column": self.column,
                "label": self.label, **self.spec}

    def mask(self, col: pa.ChunkedArray | pa.Array) -> pa.Array:
        """True where the LF fires (nulls never fire)."""
        raise NotImplementedError

    def vote_batch(self, table: pa.Table) -> tuple[np.ndarray, int, str | None]:
        """The LF's label where :meth:`mask` is true, ABSTAIN elsewhere."""
        if self.column not in table.column_names:
            raise LabelingFunctionError(
                f"LF {self.name!r} reads column {self.column!r}, which the table lacks."
                f"{did_you_mean(self.column, table.column_names)} Columns: "
                f"{', '.join(table.column_names)}.")
        fired = pc.fill_null(self.mask(table.column(self.column)), False)
        hit = np.asarray(fired.to_numpy(zero_copy_only=False), dtype=bool)
        return np.where(hit, np.int8(self.label), np.int8(ABSTAIN)).astype(np.int8), 0, None


class _RegexLF(_ArrowLF):
    def __init__(self, name: str, kind: str, column: str, label: int, pattern: str,
                 ignore_case: bool, spec: dict[str, Any]) -> None:
        super().__init__(name, kind, column, label, spec)
        self.pattern, self.ignore_case = pattern, ignore_case
        try:  # Arrow's regex engine is RE2: reject what it cannot compile now, not per batch
            pc.match_substring_regex(pa.array([""]), pattern, ignore_case=ignore_case)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise LabelingFunctionError(
                f"labeling.lfs.{name}: pattern {pattern!r} is not a valid RE2 regular "
                f"expression ({exc}); RE2 has no lookarounds or backreferences.") from exc

    def mask(self, col: pa.ChunkedArray | pa.Array) -> pa.Array:
        """True where the pattern is found in the text."""
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            col = pc.cast(col, pa.string())
        return pc.match_substring_regex(col, self.pattern, ignore_case=self.ignore_case)


class _ThresholdLF(_ArrowLF):
    OPS = {"lt": pc.less, "le": pc.less_equal, "gt": pc.greater, "ge": pc.greater_equal,
           "eq": pc.equal, "ne": pc.not_equal}

    def mask(self, col: pa.ChunkedArray | pa.Array) -> pa.Array:
        """True where ``column op threshold``; NaN and nulls never fire."""
        if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)
                or pa.types.is_boolean(col.type)):
            raise LabelingFunctionError(
                f"LF {self.name!r}: column {self.column!r} is {col.type}, not a number; a "
                "threshold LF compares a numeric column (use a regex LF for text).")
        col = pc.cast(col, pa.float64())
        return pc.and_(self.OPS[self.spec["op"]](col, self.spec["threshold"]), pc.is_finite(col))


class _ModelLF(LabelingFunction):
    """A registered model's positive-class probability, cut at ``threshold`` +- ``margin``."""

    kind = "model"

    def __init__(self, name: str, ref: str, flavor: str, model: Any, spec: dict[str, Any],
                 threshold: float, margin: float) -> None:
        super().__init__(name)
        self.ref, self.flavor, self.model, self.spec = ref, flavor, model, spec
        self.threshold, self.margin = threshold, margin

    def describe(self) -> dict[str, Any]:
        """The model reference, threshold and margin."""
        return {"name": self.name, "kind": self.kind, "model": self.ref,
                "threshold": self.threshold, "margin": self.margin}

    def _votes(self, p: np.ndarray) -> np.ndarray:
        out = np.full(len(p), ABSTAIN, np.int8)
        out[p >= self.threshold + self.margin] = 1
        out[p < self.threshold - self.margin] = 0
        return out

    def vote_batch(self, table: pa.Table) -> tuple[np.ndarray, int, str | None]:
        """Scores the batch at once; a batch that fails is scored row by row, so one bad
        row abstains alone."""
        from raylake.models.flavors import get_flavor
        from raylake.models.spec import FeatureSpec

        flavor, spec = get_flavor(self.flavor), FeatureSpec.from_dict(self.spec)
        try:
            return self._votes(np.asarray(flavor.predict(self.model, spec, table), float)), 0, None
        except Exception:  # noqa: BLE001 - retried per row below, errors counted there
            pass
        out = np.full(table.num_rows, ABSTAIN, np.int8)
        errors, first = 0, None
        for i in range(table.num_rows):
            try:
                p = np.asarray(flavor.predict(self.model, spec, table.slice(i, 1)), float)
                out[i] = self._votes(p)[0]
            except Exception as exc:  # noqa: BLE001 - one row's failure is an abstain vote
                errors += 1
                first = first or f"{type(exc).__name__}: {exc}"
        return out, errors, first


class LFSet:
    """Labeling functions applied together; their order is the label matrix's columns."""

    def __init__(self, lfs: Sequence[LabelingFunction], cardinality: int = 2,
                 name: str = "lfs") -> None:
        names = [lf.name for lf in lfs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise LabelingFunctionError(f"LF names must be unique; {dupes} repeat. Rename one.")
        if not lfs:
            raise LabelingFunctionError("The LF set is empty: declare labeling functions under "
                                        "labeling.lfs (conf/labeling/<name>.yaml).")
        self.lfs, self.cardinality, self.name = list(lfs), cardinality, name

    @property
    def names(self) -> list[str]:
        """The LF names, in matrix column order."""
        return [lf.name for lf in self.lfs]

    def describe(self) -> list[dict[str, Any]]:
        """Every LF as the run record keeps it."""
        return [lf.describe() for lf in self.lfs]

    def digest(self) -> str:
        """A short hash of the LF set's description (which LFs, how declared)."""
        text = json.dumps(self.describe(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def apply(self, table: pa.Table) -> Votes:
        """Votes of every LF on every row of ``table``."""
        n = table.num_rows
        matrix = np.full((n, len(self.lfs)), ABSTAIN, np.int8)
        errors = np.zeros(len(self.lfs), np.int64)
        messages: dict[str, str] = {}
        python = [(j, lf) for j, lf in enumerate(self.lfs) if type(lf) is LabelingFunction]
        for j, lf in enumerate(self.lfs):
            if type(lf) is not LabelingFunction:
                matrix[:, j], errors[j], msg = lf.vote_batch(table)
                if msg:
                    messages[lf.name] = msg
        if python and n:
            rows = [Row(d) for d in table.to_pylist()]
            for j, lf in python:
                matrix[:, j], errors[j], msg = _call_per_row(lf, rows, self.cardinality)
                if msg:
                    messages[lf.name] = msg
        return Votes(matrix, errors, messages)


def _call_per_row(lf: LabelingFunction, rows: list[Row],
                  cardinality: int) -> tuple[np.ndarray, int, str | None]:
    fn = lf.fn
    assert fn is not None
    out = np.full(len(rows), ABSTAIN, np.int8)
    errors, first = 0, None
    for i, row in enumerate(rows):
        try:
            v = fn(row)
        except Exception as exc:  # noqa: BLE001 - an LF's failure on a row is an abstain vote
            errors += 1
            if first is None:
                first = f"{type(exc).__name__}: {exc} (row {i} of its batch)"
            continue
        if v is None or v == ABSTAIN:
            continue
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) \
                or not 0 <= v < cardinality:
            errors += 1
            if first is None:
                first = (f"returned {v!r}, not a class in 0..{cardinality - 1} or ABSTAIN (-1)")
            continue
        out[i] = v
    return out, errors, first


def _import_lf(name: str, target: str) -> LabelingFunction:
    module_name, _, attr = target.partition(":")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise LabelingFunctionError(
            f"labeling.lfs.{name}.function={target!r} cannot be imported ({exc}); give "
            "'package.module:function' of an importable module.") from exc
    if isinstance(obj, LabelingFunction):
        return LabelingFunction(name, obj.fn)
    if callable(obj):
        return LabelingFunction(name, obj)
    raise LabelingFunctionError(f"labeling.lfs.{name}.function={target!r} is not a function.")


def _keyword_pattern(words: Iterable[str]) -> str:
    import re

    # Whole words or phrases: not inside a longer word ("sub" does not fire on "subway").
    alts = "|".join(re.escape(w.strip()) for w in words if w.strip())
    return rf"(?:^|[^\w])(?:{alts})(?:$|[^\w])"


def lf_set_from_config(lcfg: Any, lake: Any = None,
                       extra: Sequence[LabelingFunction] = ()) -> LFSet:
    """The LF set of ``labeling`` config (``lfs`` in declaration order, then ``extra``).

    A model LF loads its registered model here (from ``lake``'s registry), once, so
    every worker gets the model with the set."""
    lfs: list[LabelingFunction] = []
    for name, c in lcfg.lfs.items():
        kind = str(c.kind)
        column = c.column or lcfg.text_column
        if kind == "python":
            lfs.append(_import_lf(name, c.function))
        elif kind == "keyword":
            lfs.append(_RegexLF(name, kind, column, c.label, _keyword_pattern(c.terms),
                                c.ignore_case, {"terms": list(c.terms)}))
        elif kind == "regex":
            lfs.append(_RegexLF(name, kind, column, c.label, c.pattern, c.ignore_case,
                                {"pattern": c.pattern}))
        elif kind == "threshold":
            lfs.append(_ThresholdLF(name, kind, column, c.label,
                                    {"op": str(c.op), "threshold": float(c.threshold)}))
        elif kind == "model":
            lfs.append(_model_lf(name, c, lake))
        else:  # the config's Enum admits no other kind
            raise LabelingFunctionError(f"labeling.lfs.{name}.kind={kind!r} is unknown")
    return LFSet([*lfs, *extra], cardinality=lcfg.cardinality, name=lcfg.name)


def _model_lf(name: str, c: Any, lake: Any) -> _ModelLF:
    from raylake.models.registry import ModelRegistry, parse_model_ref

    if lake is None:
        raise LabelingFunctionError(f"LF {name!r} scores with model {c.model!r}: it needs the lake "
                                    "whose registry holds it.")
    model_name, ref = parse_model_ref(c.model)
    registry = ModelRegistry(lake)
    mv, model = registry.load(model_name, ref)
    return _ModelLF(name, f"{model_name}:v{mv.version}", mv.flavor, model,
                    dict(mv.preprocessing or {}),
                    0.5 if c.threshold is None else float(c.threshold), float(c.margin))
