"""Declarative cleansing steps applied during ingestion, in the order declared.

``trim`` / ``lower`` / ``upper`` (strings), ``impute`` (nulls -> a constant, or
the median / mode of the data's profile), ``clip`` (to numbers or profile
quantiles such as q01 / q99), ``scale`` (x * factor + offset: units) and
``dedup_latest`` (among rows sharing the primary key keep the one with the
latest ``order_by``; the others go to the quarantine, so nothing is lost).
Type coercion is the cast to each column's declared type, which runs first
(values that do not fit are quarantined). Each step counts the values it
changed; the counts go into the run record.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raylake.errors import ConfigError, did_you_mean

OPS = ("trim", "lower", "upper", "impute", "clip", "scale", "dedup_latest")


@dataclass(frozen=True)
class Step:
    op: str
    columns: tuple[str, ...] = ()
    value: Any = None  # impute: the (resolved) fill value per column
    lower: Any = None  # clip: resolved bounds per column
    upper: Any = None
    factor: float = 1.0
    offset: float = 0.0
    order_by: str | None = None

    @property
    def label(self) -> str:
        """The step as counts and reports show it: ``op(columns)``, or ``op(order_by)`` for
        a step without columns."""
        return f"{self.op}({','.join(self.columns) or self.order_by or ''})"


def resolve_steps(configs: Sequence[Any], table: str, schema: pa.Schema, primary_key: Sequence[str],
                  profile_source: Any) -> list[Step]:
    """Check the declared steps and fill in profile statistics (median, mode, quantiles).

    ``profile_source()`` returns a Profile of the incoming data; it is called
    only when a step needs one.
    """
    steps, profile = [], None
    for i, c in enumerate(configs):
        where = f"cleanse step {i} ({c.op}) of table {table!r}"
        if c.op not in OPS:
            raise ConfigError(f"{where}: unknown op.{did_you_mean(c.op, OPS)} Ops: {', '.join(OPS)}.")
        for col in c.columns:
            if col not in schema.names:
                raise ConfigError(f"{where}: column {col!r} is not declared.{did_you_mean(col, schema.names)}")
        if c.op != "dedup_latest" and not c.columns:
            raise ConfigError(f"{where}: give the columns it applies to.")
        needs_profile = (c.op == "impute" and c.strategy in ("median", "mode")) or (
            c.op == "clip" and any(str(b).startswith("q") for b in (c.lower, c.upper) if b is not None))
        if needs_profile and profile is None:
            profile = profile_source()
        if c.op == "impute":
            if c.strategy not in (None, "constant", "median", "mode"):
                raise ConfigError(f"{where}: strategy {c.strategy!r} is not constant, median or mode.")
            if c.strategy in (None, "constant") and c.value is None:
                raise ConfigError(f"{where}: give a value, or strategy median / mode.")
            values = tuple(_fill_value(profile, col, c.strategy, c.value) for col in c.columns)
            steps.append(Step("impute", tuple(c.columns), value=values))
        elif c.op == "clip":
            lo = tuple(_bound(profile, col, c.lower) for col in c.columns)
            hi = tuple(_bound(profile, col, c.upper) for col in c.columns)
            steps.append(Step("clip", tuple(c.columns), lower=lo, upper=hi))
        elif c.op == "dedup_latest":
            if not primary_key:
                raise ConfigError(f"{where}: dedup_latest works on the primary key; set primary_key.")
            if c.order_by not in schema.names:
                raise ConfigError(f"{where}: order_by {c.order_by!r} must be a declared column.")
            steps.append(Step("dedup_latest", order_by=c.order_by))
        else:
            steps.append(Step(c.op, tuple(c.columns), factor=c.factor, offset=c.offset))
    return steps


def _fill_value(profile: Any, col: str, strategy: str | None, value: Any) -> Any:
    if strategy in (None, "constant"):
        return value
    s = profile.summary(col)
    if strategy == "median":
        if s.kind != "numeric":
            raise ConfigError(f"impute median needs a numeric column; {col!r} is {s.kind}.")
        return s.quantiles["q50"]
    if not s.frequent:
        raise ConfigError(f"impute mode: no frequent values of {col!r} in the profile.")
    return s.frequent[0][0]


def _bound(profile: Any, col: str, bound: Any) -> float | None:
    if bound is None:
        return None
    text = str(bound)
    if text.startswith("q"):
        quantiles = profile.summary(col).quantiles
        if text not in quantiles:
            raise ConfigError(f"clip bound {text!r} is not one of {sorted(quantiles)}.")
        return quantiles[text]
    return float(text)


def apply_steps(table: pa.Table, steps: Sequence[Step], good: np.ndarray) -> tuple[pa.Table, dict[str, int]]:
    """Apply the row steps to the good rows; count the values each step changed."""
    counts: dict[str, int] = {}
    for step in steps:
        if step.op == "dedup_latest":
            continue
        changed = 0
        for i, col in enumerate(step.columns):
            before = table.column(col)
            after = pc.if_else(pa.array(~good), before, _apply(step, i, before).cast(before.type))
            diff = pc.fill_null(pc.not_equal(before, after), False).to_numpy(zero_copy_only=False)
            diff |= (before.is_null().to_numpy(zero_copy_only=False)
                     != after.is_null().to_numpy(zero_copy_only=False))
            changed += int((diff & good).sum())
            table = table.set_column(table.schema.get_field_index(col), col, after)
        counts[step.label] = changed
    return table, counts


def _apply(step: Step, i: int, col: pa.ChunkedArray) -> pa.ChunkedArray:
    if step.op == "trim":
        return pc.utf8_trim_whitespace(col)
    if step.op == "lower":
        return pc.utf8_lower(col)
    if step.op == "upper":
        return pc.utf8_upper(col)
    if step.op == "impute":
        return pc.fill_null(col, pa.scalar(step.value[i]).cast(col.type))
    if step.op == "clip":
        out = col
        if step.lower[i] is not None:
            out = pc.max_element_wise(out, pa.scalar(step.lower[i]).cast(col.type))
        if step.upper[i] is not None:
            out = pc.min_element_wise(out, pa.scalar(step.upper[i]).cast(col.type))
        return out
    # scale: float arithmetic, back to the column's type (rounded for integers)
    out = pc.add(pc.multiply(col.cast(pa.float64()), step.factor), step.offset)
    return out if pa.types.is_floating(col.type) else pc.round(out)


def describe_steps(steps: Sequence[Step]) -> list[dict[str, Any]]:
    """The resolved steps as JSON-ready dicts (values JSON cannot hold become strings), for
    the run record."""
    return [json.loads(json.dumps(s.__dict__, default=str)) for s in steps]
