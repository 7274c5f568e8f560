"""A ``POST /predict`` body, checked before any model runs: its size, JSON and nesting
(``raylake.features.checks``), its fields and every value against the features the served
models read and the entity keys' types (a 4xx whose ``error`` names the field, see
:mod:`raylake.serve.app`), then typed into the Arrow table a model's FeatureSpec encodes.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Optional

import pyarrow as pa

from raylake.errors import ModelRequestError, did_you_mean
from raylake.features.checks import (
    Limits,
    check_string,
    label,
    parse_json,
    show,
    value_error,
)
from raylake.models.spec import FeatureSpec

BadRequest = ModelRequestError  # the short name this module raises
_KEYS = ("unit_id", "features", "entities")
_INT64 = 2 ** 63


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


_DEFAULT_LIMITS = Limits()


def read_json(raw: bytes, limits: Limits = _DEFAULT_LIMITS) -> Any:
    """The request body as JSON; 400 ``bad_json`` if it is not UTF-8 JSON within
    ``limits.max_depth`` (``raylake.features.checks.parse_json``)."""
    return parse_json(raw, limits, BadRequest)


def _near(name: str, known: Any) -> str:
    # difflib on a huge hostile name costs seconds: only short names get a suggestion.
    return did_you_mean(name, known) if len(name) <= 100 else ""


def parse_request(body: Any, kinds: dict[str, str], limits: Limits,
                  key_types: Optional[dict[str, str]] = None,
                  max_unit_id: int = 256) -> Parsed:
    """Check a /predict body against the features the arms know and, when the server looks
    features up, the entity keys' types (``key_types``; None: no lookups); 4xx naming the
    field. ``limits.max_items`` is the most rows a request may have."""
    if not isinstance(body, dict):
        raise BadRequest(400, "The body must be a JSON object: {\"features\": {...}}.", "bad_json")
    unknown = [k for k in body if k not in _KEYS]
    if unknown:
        raise BadRequest(422, f"Unknown field {label(unknown[0])!r}.{_near(unknown[0], _KEYS)} "
                              f"A request has {', '.join(_KEYS)}.", "unknown_field")
    unit_id = _unit_id(body.get("unit_id"), max_unit_id)
    features, entities = body.get("features"), body.get("entities")
    if features is None and entities is None:
        raise BadRequest(400, "Give 'features': {name: [values]} (or 'entities' when the "
                              "server looks features up).", "invalid_request")
    if entities is not None and key_types is None:
        raise BadRequest(422, "entities: this server has no feature service to look features "
                              "up with (model_server.feature_service); send 'features'.",
                         "invalid_request")
    known_keys = key_types or {}
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
                raise BadRequest(422, f"features.{label(name)} is not a feature of the served "
                                      f"model(s).{_near(name, kinds)} Features: "
                                      f"{', '.join(sorted(kinds))}.", "unknown_feature")
    if entities is not None:
        if not isinstance(entities, dict) or not entities or not all(
                isinstance(v, list) for v in entities.values()):
            raise BadRequest(422, "entities must be an object {join_key: [values]}.", "wrong_type")
        for key in entities:
            if key not in known_keys:
                raise BadRequest(422, f"entities.{label(key)} is not an entity key."
                                      f"{_near(key, known_keys)} Keys: "
                                      f"{', '.join(sorted(known_keys))}.", "unknown_field")
    sizes = {len(v) for v in [*columns.values(), *((entities or {}).values())]}
    if len(sizes) > 1:
        raise BadRequest(422, f"features and entities need the same number of values each; got "
                              f"{sorted(sizes)}.", "wrong_type")
    n = sizes.pop() if sizes else 0
    if n == 0:
        raise BadRequest(422, "features: no rows to score (empty lists).", "invalid_request")
    if n > limits.max_items:
        raise BadRequest(413, f"{n} rows is over the limit of {limits.max_items} per request.",
                         "too_large")
    for name, values in columns.items():
        check_values(name, values, kinds[name], limits.max_string)
    for key, values in (entities or {}).items():
        for i, v in enumerate(values):
            want = None if v is None else value_error(v, known_keys[key], limits.max_string)
            if want:
                raise BadRequest(422, f"entities.{key}[{i}] is {show(v)}; {key} is "
                                      f"{known_keys[key]}: {want}.", "wrong_type")
    return Parsed(unit_id, columns, entities, n)


def _unit_id(unit_id: Any, max_length: int) -> Optional[str]:
    # Never echoed: it is logged with every answer, and a hostile one could be megabytes.
    if unit_id is None:
        return None
    if type(unit_id) is int and -_INT64 <= unit_id < _INT64:
        return str(unit_id)
    if type(unit_id) is not str or unit_id == "":
        raise BadRequest(422, "unit_id must be a non-empty string or an integer.", "wrong_type")
    if not check_string(unit_id, max_length):
        raise BadRequest(422, f"unit_id must be UTF-8 text of at most {max_length} "
                              f"characters (model_server.max_unit_id_length).", "too_large")
    return unit_id


def check_values(name: str, values: list[Any], kind: str, max_string: int = 1024) -> None:
    """Every value of feature ``name`` is of its ``kind`` (or null); 422 naming the first
    that is not. ``bool`` takes only true/false; numbers must be finite floats' size."""
    for i, v in enumerate(values):
        if v is None:  # a missing value is a valid input (NaN / unknown category)
            continue
        if kind == "category":
            ok = check_string(v, max_string) or (type(v) is int and -_INT64 <= v < _INT64)
            want = f"text of at most {max_string} characters or an integer"
        elif kind == "bool":
            ok = type(v) is bool
            want = "true or false"
        else:
            ok = value_error(v, "float64", max_string) is None
            want = "a finite number"
        if not ok:
            raise BadRequest(422, f"features.{name}[{i}] is {show(v)} ({type(v).__name__}); "
                                  f"{name} must be {want} or null.", "wrong_type")


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


# -- image requests (models of the image_classifier flavor) ----------------------------

_IMAGE_KEYS = ("image", "images", "unit_id")


def parse_image_request(raw: bytes, content_type: str, limits: Limits,
                        max_unit_id: int = 256) -> tuple[list[bytes], Optional[str]]:
    """The encoded images of a /predict body for an image model, and its unit id.

    Raw bytes (``Content-Type: image/png``, ``image/jpeg`` or
    ``application/octet-stream``) are one image; JSON is ``{"image": "<base64>"}`` or
    ``{"images": ["<base64>", ...]}`` (with an optional ``unit_id``). Every image must
    decode (PNG or JPEG, mode L or RGB): 422 ``bad_image`` naming the first that does not.
    """
    import base64
    import binascii

    from raylake.errors import ImageError
    from raylake.lake.image_codec import decode

    kind = content_type.split(";")[0].strip().lower()
    unit_id = None
    if kind.startswith("image/") or kind == "application/octet-stream":
        images = [raw]
    else:
        body = read_json(raw, limits)
        if not isinstance(body, dict) or not any(k in body for k in ("image", "images")):
            raise BadRequest(400, "An image model takes {\"image\": \"<base64 PNG/JPEG>\"}, "
                                  "{\"images\": [...]} or the raw bytes with Content-Type "
                                  "image/png.", "invalid_request")
        unknown = [k for k in body if k not in _IMAGE_KEYS]
        if unknown:
            raise BadRequest(422, f"Unknown field {label(unknown[0])!r}."
                                  f"{_near(unknown[0], _IMAGE_KEYS)} An image request has "
                                  f"{', '.join(_IMAGE_KEYS)}.", "unknown_field")
        unit_id = _unit_id(body.get("unit_id"), max_unit_id)
        texts = [body["image"]] if "image" in body else body["images"]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise BadRequest(422, "image must be a base64 string, images a non-empty list of "
                                  "them.", "wrong_type")
        if len(texts) > limits.max_items:
            raise BadRequest(413, f"{len(texts)} images is over the limit of "
                                  f"{limits.max_items} per request.", "too_large")
        images = []
        for i, text in enumerate(texts):
            try:
                images.append(base64.b64decode(text, validate=True))
            except (binascii.Error, ValueError):
                raise BadRequest(422, f"images[{i}] is not valid base64; send the file's bytes "
                                      "base64-encoded (or the raw bytes with Content-Type "
                                      "image/png).", "wrong_type") from None
    for i, data in enumerate(images):
        try:
            decode(data)
        except ImageError as exc:
            raise BadRequest(422, f"images[{i}]: {exc}; send a PNG or JPEG the model reads.",
                             "bad_image") from None
    return images, unit_id
