"""Row selections written as small boolean expressions: ``month in [1, 2] and origin == 'JFK'``.

Parsed with Python's ``ast`` into a pyarrow expression; nothing is evaluated,
so a selection from a command line or a request can never run code.
"""

from __future__ import annotations

import ast
import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import pyarrow.compute as pc

from raylake.errors import ConfigError

_COMPARE: dict[type[ast.cmpop], Callable[[pc.Expression, Any], pc.Expression]] = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
}


def parse_selection(text: str) -> pc.Expression:
    """``col op value`` terms (==, !=, <, <=, >, >=, in, not in, is None, is not None)
    joined by and / or / not."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
        return _expr(tree.body)
    except (SyntaxError, ValueError) as exc:
        raise ConfigError(
            f"Cannot read the selection {text!r}: {exc}. Write terms like \"month in [1, 2]\", "
            "\"temp >= 50\" or \"origin == 'JFK'\", joined by and / or."
        ) from exc


def selection_columns(text: str | None) -> list[str]:
    """The columns a selection compares, in the order written (``month in [1] and origin
    == 'JFK'`` -> month, origin); none for an empty or unreadable selection."""
    if not text:
        return []
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        return []
    names = [n.left.id for n in ast.walk(tree)
             if isinstance(n, ast.Compare) and isinstance(n.left, ast.Name)]
    return list(dict.fromkeys(names))


def _expr(node: ast.AST) -> pc.Expression:
    if isinstance(node, ast.BoolOp):
        parts = [_expr(v) for v in node.values]
        out = parts[0]
        for p in parts[1:]:
            out = (out & p) if isinstance(node.op, ast.And) else (out | p)
        return out
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return ~_expr(node.operand)
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        if not isinstance(node.left, ast.Name):
            raise ValueError("the left side of a comparison must be a column name")
        field = pc.field(node.left.id)
        op, right = node.ops[0], _value(node.comparators[0])
        if isinstance(op, (ast.Is, ast.IsNot)):
            if right is not None:
                raise ValueError("'is' compares with None only: x is None, x is not None")
            return field.is_null() if isinstance(op, ast.Is) else field.is_valid()
        if isinstance(op, (ast.In, ast.NotIn)):
            if not isinstance(right, list):
                raise ValueError("'in' needs a list, e.g. month in [1, 2]")
            term = field.isin(right)
            return ~term if isinstance(op, ast.NotIn) else term
        if type(op) in _COMPARE:
            return _COMPARE[type(op)](field, right)
    raise ValueError(f"unsupported expression {ast.dump(node)[:60]}")


_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$")


def _value(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, str) and _ISO.match(node.value):
            # A time window: "time_hour >= '2013-07-01'" (UTC unless an offset is given).
            when = dt.datetime.fromisoformat(node.value.replace("Z", "+00:00"))
            return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_value(v) for v in node.elts]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_value(node.operand)
    raise ValueError("values must be numbers, strings, or lists of them")
