"""A ``POST /predict`` body, checked before any model runs: its fields and every value
against the features the served models read (a 4xx whose ``error`` names the field, see
:mod:`raylake.serve.app`), then typed into the Arrow table a model's FeatureSpec encodes.
"""

from __future__ import annotations

import functools
import json
import math
from typing import Any, NamedTuple

import pyarrow as pa

from raylake.errors import ModelRequestError, did_you_mean
from raylake.models.spec import FeatureSpec

BadRequest = ModelRequestError  # the short name this module raises
_KEYS = ("unit_id", "features", "entities")


class Parsed(NamedTuple):
    """A checked request: its unit, feature columns, entity keys and row count."""

    unit_id: Any  # str or None
    features: dict[str, list[Any]]
    entities: Any  # dict or None
    rows: int


def feature_kinds(spec: FeatureSpec, features: list[dict[str, Any]]) -> dict[str, str]:
    """name -> "number", "bool" or "category", as the model's FeatureSpec encodes it."""
    types = {f["name"]: str(f.get("type", "")) for f in features}
    kinds = {c: "bool" if types.get(c) in ("bool", "boolean") else "number" for c in spec.numeric}
    kinds.update({c: "category" for c in spec.categorical})
    return kinds


def read_json(raw: bytes) -> Any:
    """The request body as JSON; 400 ``bad_json`` if it is not."""
    try:
        return json.loads(raw or b"")
    except ValueError as exc:
        raise BadRequest(400, f"The body is not JSON: {exc}.", "bad_json") from exc


def parse_request(body: Any, kinds: dict[str, str], max_rows: int,
                  lookup: bool = False) -> Parsed:
    """Check a /predict body against the features the arms know; 4xx naming the field."""
    if not isinstance(body, dict):
        raise BadRequest(400, "The body must be a JSON object: {\"features\": {...}}.", "bad_json")
    unknown = [k for k in body if k not in _KEYS]
    if unknown:
        raise BadRequest(422, f"Unknown field {unknown[0]!r}.{did_you_mean(unknown[0], _KEYS)} "
                              f"A request has {', '.join(_KEYS)}.", "unknown_field")
    unit_id = body.get("unit_id")
    if unit_id is not None:
        if isinstance(unit_id, bool) or not isinstance(unit_id, (str, int)) or unit_id == "":
            raise BadRequest(422, f"unit_id must be a non-empty string or an integer, got "
                                  f"{unit_id!r}.", "wrong_type")
        unit_id = str(unit_id)
    features, entities = body.get("features"), body.get("entities")
    if features is None and entities is None:
        raise BadRequest(400, "Give 'features': {name: [values]} (or 'entities' when the "
                              "server looks features up).", "invalid_request")
    if entities is not None and not lookup:
        raise BadRequest(422, "entities: this server has no feature service to look features "
                              "up with (model_server.feature_service); send 'features'.",
                         "invalid_request")
    columns: dict[str, list[Any]] = {}
    if features is not None:
        if not isinstance(features, dict) or not features:
            raise BadRequest(422, "features must be an object {name: [values]} or {name: value}.",
                             "wrong_type")
        lists = [isinstance(v, list) for v in features.values()]
        if any(lists) and not all(lists):
            raise BadRequest(422, "features: give every feature a list of values (columns) or "
                                  "every feature one value (one row), not both.", "wrong_type")
        columns = dict(features) if all(lists) else {k: [v] for k, v in features.items()}
        for name in columns:
            if name not in kinds:
                raise BadRequest(422, f"features.{name} is not a feature of the served model(s)."
                                      f"{did_you_mean(name, kinds)} Features: "
                                      f"{', '.join(sorted(kinds))}.", "unknown_feature")
    if entities is not None:
        if not isinstance(entities, dict) or not entities or not all(
                isinstance(v, list) for v in entities.values()):
            raise BadRequest(422, "entities must be an object {join_key: [values]}.", "wrong_type")
    sizes = {len(v) for v in [*columns.values(), *((entities or {}).values())]}
    if len(sizes) > 1:
        raise BadRequest(422, f"features and entities need the same number of values each; got "
                              f"{sorted(sizes)}.", "wrong_type")
    n = sizes.pop() if sizes else 0
    if n == 0:
        raise BadRequest(422, "features: no rows to score (empty lists).", "invalid_request")
    if n > max_rows:
        raise BadRequest(413, f"{n} rows is over the limit of {max_rows} per request.", "too_large")
    for name, values in columns.items():
        check_values(name, values, kinds[name])
    return Parsed(unit_id, columns, entities, n)


def check_values(name: str, values: list[Any], kind: str) -> None:
    """Every value of feature ``name`` is of its ``kind`` (or null); 422 naming the first
    that is not."""
    for i, v in enumerate(values):
        if v is None:  # a missing value is a valid input (NaN / unknown category)
            continue
        if kind == "category":
            ok = isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool))
            want = "a string"
        elif kind == "bool":
            ok = isinstance(v, (bool, int)) and not isinstance(v, float)
            want = "true or false"
        else:
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            want = "a finite number"
        if not ok:
            raise BadRequest(422, f"features.{name}[{i}] is {v!r} ({type(v).__name__}); {name} "
                                  f"must be {want} or null.", "wrong_type")


def to_table(columns: dict[str, list[Any]], spec: FeatureSpec) -> pa.Table:
    """The model's input columns, typed as its FeatureSpec reads them."""
    arrays = {c: pa.array([None if v is None else float(v) for v in columns[c]], pa.float64())
              for c in spec.numeric}
    arrays.update({c: pa.array([None if v is None else str(v) for v in columns[c]], pa.string())
                   for c in spec.categorical})
    return pa.table(arrays)


def with_bare_names(columns: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Looked-up ``view__feature`` columns, also under the bare ``feature`` name where no
    other view has it: a model trained on a training set with full names needs the
    first, one trained without the second."""
    out = dict(columns)
    for short, full in _bare_aliases(tuple(columns)).items():
        out.setdefault(short, columns[full])
    return out


@functools.lru_cache(maxsize=64)
def _bare_aliases(names: tuple[str, ...]) -> dict[str, str]:
    # A feature service returns the same names on every request: worked out once.
    full: dict[str, list[str]] = {}
    for name in names:
        if "__" in name:
            full.setdefault(name.split("__", 1)[1], []).append(name)
    return {short: f[0] for short, f in full.items() if len(f) == 1 and short not in names}
