"""Declared constraints: row checks (run on every row) and table checks (on the whole).

Row checks: ``not_null``, ``range``, ``in_set``, ``regex``, ``rule`` (a selection
every row must satisfy) and ``reference`` (values present in another table's
column). Like SQL CHECK constraints, a null passes every row check except
``not_null``. Table checks: ``null_share``, ``unique`` (exact), ``row_count``,
``freshness`` (newest event time not older than ``max_age``) and
``distribution`` (a profile statistic within bounds).

Each constraint has a policy: ``quarantine`` (row checks during ingestion:
the row goes to the quarantine with the constraint's name), ``fail`` (the run
commits nothing) or ``warn`` (recorded in the run record).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raylake.config.values import parse_duration
from raylake.errors import ConfigError, did_you_mean

ROW_CHECKS = ("not_null", "range", "in_set", "regex", "rule", "reference")
TABLE_CHECKS = ("null_share", "unique", "row_count", "freshness", "distribution")
STATS = ("mean", "stddev", "min", "max", "q01", "q05", "q25", "q50", "q75", "q95", "q99")
_NEEDS = {
    "not_null": ("column",), "range": ("column",), "in_set": ("column", "values"),
    "regex": ("column", "pattern"), "rule": ("expr",),
    "reference": ("column", "ref_table", "ref_column"), "null_share": ("column", "max"),
    "unique": ("columns",), "row_count": (), "freshness": ("column", "max_age"),
    "distribution": ("column", "stat"),
}


@dataclass(frozen=True)
class Constraint:
    """One declared constraint of a table, checked when it is loaded (see the module doc)."""

    name: str
    check: str
    policy: str = "warn"
    column: str | None = None
    columns: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    values: tuple[Any, ...] = ()
    pattern: str | None = None
    expr: str | None = None
    ref_table: str | None = None
    ref_column: str | None = None
    stat: str | None = None
    max_age: str | None = None
    as_of: str | None = None

    @property
    def row_level(self) -> bool:
        """True for checks run on every row (during ingestion), False for table checks."""
        return self.check in ROW_CHECKS

    @classmethod
    def from_config(cls, c: Any, table: str) -> Constraint:
        """A constraint from config; errors name the constraint, the table and the fix."""
        where = f"constraint {c.name!r} of table {table!r}"
        if c.check not in ROW_CHECKS + TABLE_CHECKS:
            raise ConfigError(
                f"{where}: check {c.check!r} is unknown.{did_you_mean(c.check, ROW_CHECKS + TABLE_CHECKS)} "
                f"Checks: {', '.join(ROW_CHECKS + TABLE_CHECKS)}."
            )
        missing = [k for k in _NEEDS[c.check] if not getattr(c, k)]
        if missing:
            raise ConfigError(f"{where}: check {c.check!r} needs {', '.join(missing)}.")
        if c.policy == "quarantine" and c.check not in ROW_CHECKS:
            raise ConfigError(
                f"{where}: policy quarantine applies to row checks ({', '.join(ROW_CHECKS)}); "
                f"use fail or warn for {c.check!r}."
            )
        if c.check == "distribution" and c.stat not in STATS:
            raise ConfigError(f"{where}: stat {c.stat!r} is not one of {', '.join(STATS)}.")
        if c.check == "regex":
            try:
                re.compile(c.pattern)
            except re.error as exc:
                raise ConfigError(f"{where}: pattern {c.pattern!r} is not a regex: {exc}") from exc
        if c.check == "rule":
            from raylake.lake.selection import parse_selection

            parse_selection(c.expr)  # fail at load, not in a worker
        if c.check == "freshness":
            parse_duration(c.max_age, f"{where}: max_age")
        return cls(
            name=c.name, check=c.check, policy=c.policy, column=c.column,
            columns=tuple(c.columns), min=c.min, max=c.max, values=tuple(c.values),
            pattern=c.pattern, expr=c.expr, ref_table=c.ref_table, ref_column=c.ref_column,
            stat=c.stat, max_age=c.max_age, as_of=c.as_of,
        )


def constraints_for(quality_cfg: Any, table: str) -> list[Constraint]:
    """The constraints ``quality.tables.<table>`` declares (none without quality config)."""
    tq = quality_cfg.tables.get(table) if quality_cfg is not None else None
    return [Constraint.from_config(c, table) for c in (tq.constraints if tq else [])]


# -- row checks ----------------------------------------------------------------


def row_violations(table: pa.Table, constraints: Sequence[Constraint],
                   refs: dict[str, pa.Array]) -> dict[str, np.ndarray]:
    """For each row check, a mask of the rows that violate it (nulls pass, but not not_null)."""
    out = {}
    for c in constraints:
        if not c.row_level:
            continue
        if c.check == "rule":
            from raylake.lake.selection import parse_selection

            holds = pc.fill_null(_evaluate(table, parse_selection(_needed(c, "expr", c.expr))), True)
            out[c.name] = ~holds.to_numpy(zero_copy_only=False)
            continue
        col = table.column(c.column)
        if c.check == "not_null":
            bad = col.is_null()
        elif c.check == "range":
            bad = pa.chunked_array([pa.array(np.zeros(len(col), bool))])
            if c.min is not None:
                bad = pc.or_(bad, pc.less(col, c.min))
            if c.max is not None:
                bad = pc.or_(bad, pc.greater(col, c.max))
        elif c.check == "in_set":
            bad = pc.invert(pc.is_in(col, value_set=pa.array(list(c.values)).cast(col.type)))
        elif c.check == "regex":
            bad = pc.invert(pc.match_substring_regex(col, f"^(?:{c.pattern})$"))
        else:  # reference
            bad = pc.invert(pc.is_in(col, value_set=refs[c.name].cast(col.type)))
        out[c.name] = pc.fill_null(bad, False).to_numpy(zero_copy_only=False)
    return out


def _evaluate(table: pa.Table, expr: pc.Expression) -> pa.ChunkedArray:
    import pyarrow.dataset as pds

    return pds.dataset(table).to_table(columns={"_ok": expr}).column("_ok")


def reference_sets(lake: Any, constraints: Sequence[Constraint]) -> dict[str, pa.Array]:
    """The allowed values of each reference check, read from the lake (latest version)."""
    from raylake.errors import TableNotFoundError

    refs = {}
    for c in constraints:
        if c.check != "reference":
            continue
        try:
            values = lake.read(c.ref_table, columns=[c.ref_column]).column(c.ref_column)
        except TableNotFoundError as exc:
            raise ConfigError(
                f"Constraint {c.name!r} checks values against {c.ref_table}.{c.ref_column}, but "
                f"table {c.ref_table!r} is not in the lake: ingest it first."
            ) from exc
        refs[c.name] = pc.unique(values.combine_chunks().drop_null())
    return refs


def _n(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def bounds_text(low: Any, high: Any) -> str:
    """Bounds in words where one may be open: ``[1, 90]``, ``>= 1``, ``<= 90``, ``any``."""
    if low is not None and high is not None:
        return f"[{_n(low)}, {_n(high)}]"
    if low is not None:
        return f">= {_n(low)}"
    return f"<= {_n(high)}" if high is not None else "any"


def describe(c: Constraint) -> str:
    """What a violating row of a row check is, in words (for messages and reports)."""
    if c.check == "range":
        if c.min is None or c.max is None:
            return (f"{c.column} below {_n(c.min)}" if c.max is None
                    else f"{c.column} above {_n(c.max)}")
        return f"{c.column} outside {bounds_text(c.min, c.max)}"
    if c.check == "in_set":
        return f"{c.column} not in {list(c.values)}"
    if c.check == "regex":
        return f"{c.column} does not match {c.pattern!r}"
    if c.check == "rule":
        return f"rule {c.expr!r} is false"
    if c.check == "reference":
        return f"{c.column} not in {c.ref_table}.{c.ref_column}"
    return f"{c.column} is null"


# -- table checks ----------------------------------------------------------------


@dataclass
class CheckResult:
    """The outcome of one constraint over a table or a run's rows."""

    name: str
    check: str
    policy: str
    passed: bool
    violations: int = 0
    observed: Any = None
    message: str = ""
    sample: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The result as a plain dict (run records, reports)."""
        return dict(self.__dict__)


def table_check(c: Constraint, *, rows: int, profile: Any = None, duplicates: int | None = None,
                now: dt.datetime | None = None) -> CheckResult:
    """Judge one table check from the row count, a profile and exact duplicate counts."""
    res = CheckResult(c.name, c.check, c.policy, True)
    if c.check == "row_count":
        res.observed = rows
        res.passed = (c.min is None or rows >= c.min) and (c.max is None or rows <= c.max)
        res.message = f"{rows:,} rows; allowed {bounds_text(c.min, c.max)}"
    elif c.check == "unique":
        res.observed = res.violations = int(duplicates or 0)
        res.passed = res.violations == 0
        res.message = f"{res.violations:,} rows repeat a ({', '.join(c.columns)}) key"
    elif c.check == "null_share":
        s = profile.summary(c.column)
        res.observed = round(s.null_share, 6)
        res.violations = s.nulls
        res.passed = s.null_share <= c.max
        res.message = f"null share {s.null_share:.4f} ({s.nulls:,} of {s.count:,}); max {c.max}"
    elif c.check == "freshness":
        s = profile.summary(c.column)
        as_of = _as_of(c, now)
        newest = dt.datetime.fromtimestamp(s.max, dt.timezone.utc) if s.max is not None else None
        res.observed = newest.isoformat() if newest else None
        max_age = parse_duration(c.max_age, f"constraint {c.name!r}: max_age")
        res.passed = newest is not None and as_of - newest <= max_age
        res.message = f"newest {c.column} {res.observed}; as of {as_of.isoformat()}, max age {c.max_age}"
    elif c.check == "distribution":
        s = profile.summary(c.column)
        stat = _needed(c, "stat", c.stat)
        value = s.quantiles.get(stat) if stat.startswith("q") else getattr(s, stat)
        res.observed = value
        res.passed = value is not None and (c.min is None or value >= c.min) and (
            c.max is None or value <= c.max)
        shown = f"{value:.4g}" if isinstance(value, float) else value
        res.message = f"{c.stat}({c.column}) = {shown}; allowed {bounds_text(c.min, c.max)}"
    return res


def _needed(c: Constraint, name: str, value: str | None) -> str:
    """A field the check needs: ``from_config`` requires it, a hand-built Constraint may lack it."""
    if value is None:
        raise ConfigError(f"constraint {c.name!r}: check {c.check!r} needs {name}; set it in the config.")
    return value


def _as_of(c: Constraint, now: dt.datetime | None) -> dt.datetime:
    if c.as_of:
        when = dt.datetime.fromisoformat(c.as_of.replace("Z", "+00:00"))
        return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)
    return now or dt.datetime.now(dt.timezone.utc)


def row_result(c: Constraint, violations: int, rows: int, sample: list[dict] | None = None) -> CheckResult:
    """The result of a row check from its violation count."""
    return CheckResult(c.name, c.check, c.policy, violations == 0, violations,
                       round(violations / rows, 6) if rows else 0.0,
                       f"{violations:,} of {rows:,} rows: {describe(c)}", sample or [])


def raw_json(rows: list[dict[str, Any]]) -> list[str]:
    """Each row as JSON text (the quarantine's ``raw`` column)."""
    return [json.dumps(r, default=str) for r in rows]


# -- during ingestion ----------------------------------------------------------------


def apply_row_checks(block: pa.Table, constraints: Sequence[Constraint], refs: dict[str, pa.Array],
                     columns: Sequence[str], markers: dict[str, str]) -> tuple[pa.Table, dict[str, int]]:
    """Mark rows failing a quarantine-policy check as bad; count warn/fail violations.

    ``markers`` names the pipeline's internal columns (error, column, raw, key).
    Counts are over the rows that stay good, i.e. the rows that will be written.
    """
    checks = [c for c in constraints if c.row_level]
    if not checks or block.num_rows == 0:
        return block, {}
    err, col_name, raw_name, key_name = (markers[k] for k in ("error", "column", "raw", "key"))
    good = block.column(err).is_null().to_numpy(zero_copy_only=False)
    typed = block.select(list(columns))
    violations = row_violations(typed, checks, refs)
    reasons = block.column(err).to_numpy(zero_copy_only=False).astype(object)
    where = block.column(col_name).to_numpy(zero_copy_only=False).astype(object)
    newly_bad = np.zeros(block.num_rows, dtype=bool)
    for c in checks:
        if c.policy != "quarantine":
            continue
        hit = violations[c.name] & good & ~newly_bad
        if hit.any():
            reasons[hit] = f"constraint {c.name}: {describe(c)}"
            where[hit] = c.column or ""
            newly_bad |= hit
    counts = {c.name: int((violations[c.name] & good & ~newly_bad).sum())
              for c in checks if c.policy != "quarantine"}
    counts.update({c.name: int((violations[c.name] & newly_bad).sum())
                   for c in checks if c.policy == "quarantine"})
    if newly_bad.any():
        raw = block.column(raw_name).to_numpy(zero_copy_only=False).astype(object)
        raw[newly_bad] = raw_json(typed.filter(pa.array(newly_bad)).to_pylist())
        block = block.set_column(block.schema.get_field_index(err), err, pa.array(reasons, pa.string()))
        block = block.set_column(block.schema.get_field_index(col_name), col_name,
                                 pa.array(where, pa.string()))
        block = block.set_column(block.schema.get_field_index(raw_name), raw_name,
                                 pa.array(raw, pa.string()))
        key = block.column(key_name)
        block = block.set_column(block.schema.get_field_index(key_name), key_name,
                                 pc.if_else(pa.array(newly_bad), pa.scalar(None, key.type), key))
    return block, counts
