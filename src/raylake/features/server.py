"""The feature server: Feast's HTTP API on Ray Serve, over raylake's online store.

``POST /get-online-features`` takes and returns Feast's JSON, so Feast's HTTP
clients work unchanged; ``POST /push`` writes rows to the online store only (an
offline push is refused: rows reach the lake through ``raylake ingest``, with its
casts, constraints, quarantine, dedup and run record); ``GET /health``.

Every request is checked before it is served (``checks.py``): its API key and
scope (``raylake.auth``: reads need ``read`` once keys are configured, push needs
``push`` and is off without keys), its size, JSON and nesting, and every value
against the declared entity, request or feature type. A bad request gets a 4xx
whose message names the field; no input answers 500 and the replica stays
healthy. Limits and autoscaling come from ``feature_server`` config.

Features whose lake column is classified ``restricted`` (``_classification``, read once
when a replica starts: ``features/access.py``) are not served: a request that reads one
gets a 403 naming it and ``feature_server.allow_restricted``, which lists those a
deployment may serve all the same.
"""

import json
import logging
from typing import Any

from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from raylake.auth import ApiKeys
from raylake.errors import AuthError, FeatureRequestError, RaylakeError
from raylake.features.checks import (
    Limits,
    parse_json,
    parse_time,
    read_body,
    safe_text,
    show,
    value_error,
)
from raylake.features.online.settings import StoreSettings

log = logging.getLogger("raylake.features.server")

# path -> (method, handler). Serve hands each request to `__call__`, which routes it
# itself: a FastAPI ingress costs the replica about 0.4 ms per request (measured with
# benchmarks/online.py), more than a one-entity lookup.
_ROUTES = {
    "/get-online-features": ("POST", "get_online_features"),
    "/push": ("POST", "push"),
    "/health": ("GET", "health"),
}
_LOOKUP_FIELDS = ("features", "feature_service", "entities", "full_feature_names")
# Feast's push request, plus raylake's `feature_view` for the push source's name.
_PUSH_FIELDS = ("feature_view", "push_source_name", "df", "to", "allow_registry_cache")
_OFFLINE_REFUSED = (
    "'to': {to!r} is refused: the feature server writes the online store only. Put rows "
    "into the lake with `raylake ingest` (casts, constraints, quarantine, dedup on the "
    "primary key and a run record), then `raylake materialize`; push with 'to': 'online'.")


BadRequest = FeatureRequestError  # the short name this module raises


def _fail(status: int, message: str, kind: str = "") -> Exception:
    return BadRequest(status, message)


# Starlette's JSONResponse settings, with the encoder built once rather than per call.
_DUMPS = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
_COLUMN_KEYS = {"values", "statuses", "event_timestamps"}


def encode_response(result: dict[str, Any]) -> bytes:
    """Feast's response as JSON, each distinct list encoded once: a view's columns share
    one list of event times (and of statuses when all are present), and encoding those
    again per feature would cost more than the lookup itself."""
    results = result.get("results")
    if not isinstance(results, list):  # not Feast's shape: encoded as it is
        return _DUMPS(result).encode()
    try:
        rows = len(results[0]["values"])
    except (TypeError, LookupError):
        rows = 0
    # Short lists: one encoder call is cheaper than checking the shape and sharing lists.
    if rows < 8 or result.keys() != {"metadata", "results"} or not all(
            type(r) is dict and r.keys() == _COLUMN_KEYS for r in results):
        return _DUMPS(result).encode()
    memo: dict[int, str] = {}

    def once(values: Any) -> str:
        """``values`` as JSON, encoded once per list object: a list shared between columns
        is encoded the first time and reused after."""
        text = memo.get(id(values))  # every list lives in `result` while this runs
        if text is None:
            text = memo[id(values)] = _DUMPS(values)
        return text

    columns = ",".join(
        f'{{"values":{_DUMPS(r["values"])},"statuses":{once(r["statuses"])},'
        f'"event_timestamps":{once(r["event_timestamps"])}}}' for r in results)
    return f'{{"metadata":{_DUMPS(result["metadata"])},"results":[{columns}]}}'.encode()


def _status(exc: Exception) -> int:
    from raylake.errors import TransformError

    if isinstance(exc, TransformError):  # the on-demand function failed: the server's fault
        return 500
    return 404 if isinstance(exc, LookupError) else 422


def _error(exc: Exception) -> Response:
    """The JSON answer to a refused request (its message made safe to encode)."""
    if isinstance(exc, (BadRequest, AuthError)):
        status = exc.status
    elif isinstance(exc, RaylakeError):  # unknown feature, view or service (404), missing keys (422)
        status = _status(exc)
    else:  # a bug: the client is not at fault, and the replica stays up
        log.exception("feature server request failed")
        return JSONResponse({"error": f"Internal error ({type(exc).__name__}); see the "
                                      "replica's log."}, status_code=500)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": safe_text(str(exc))}, status_code=status, headers=headers)


def _unknown_fields(body: dict[str, Any], known: tuple[str, ...]) -> None:
    unknown = [k for k in body if k not in known]
    if unknown:
        raise BadRequest(422, f"Unknown field {show(unknown[0])}; a request has "
                              f"{', '.join(known)}.")


def _rows(df: Any, limits: Limits) -> list[dict[str, Any]]:
    """Feast's push ``df``: columns {name: [values]} (or a list of row objects)."""
    if isinstance(df, list) and all(isinstance(r, dict) for r in df):
        rows = df
    elif isinstance(df, dict) and df and all(isinstance(v, list) for v in df.values()):
        sizes = {len(v) for v in df.values()}
        if len(sizes) != 1:
            raise BadRequest(422, "Every column of 'df' needs the same number of values.")
        n = sizes.pop()
        if n > limits.max_items:
            raise BadRequest(413, f"{n} rows is over the limit of {limits.max_items}.")
        return [{k: v[i] for k, v in df.items()} for i in range(n)]
    else:
        raise BadRequest(400, "Give 'df' as {column: [values]} or a list of row objects.")
    if len(rows) > limits.max_items:
        raise BadRequest(413, f"{len(rows)} rows is over the limit of {limits.max_items}.")
    return rows


# Defined after the helpers: Serve serializes the class when it is decorated.
@serve.deployment
class FeatureServer:
    """A Serve replica answering Feast's HTTP API from the online store (routes in ``_ROUTES``)."""

    def __init__(self, features: dict[str, Any], store: StoreSettings, limits: dict[str, int],
                 api_keys_file: str | None = None, require_keys: bool = False,
                 access: dict[str, Any] | None = None) -> None:
        from omegaconf import OmegaConf

        from raylake.config.schema import FeaturesConfig
        from raylake.features.definitions import resolve
        from raylake.lake.types import type_name

        cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(FeaturesConfig), features))
        self.registry = resolve(cfg)
        # Restricted features this replica refuses (features/access.py), read once here.
        self.refused = refused_in_lake(self.registry, access) if access else {}
        self.store = store.open()
        self.limits = Limits(**limits)
        # Read here, in the replica: keys never travel in the deployment's arguments.
        self.keys = ApiKeys(api_keys_file, required=require_keys)
        self._types = {**self.registry.key_types(), **self.registry.request_types()}
        self._feature_types = {name: {f: type_name(t) for f, t in view.features}
                               for name, view in self.registry.views.items()}

    async def __call__(self, request: Request) -> Response:
        """Route ``request`` to its handler in ``_ROUTES``: 404 for an unknown path, 405
        (with ``Allow``) for a method the route does not take."""
        scope = request.scope
        path, root = scope["path"], scope.get("root_path", "")
        route = _ROUTES.get(path[len(root):] if root and path.startswith(root) else path)
        if route is None:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        if request.method != route[0]:
            return JSONResponse({"detail": "Method Not Allowed"}, status_code=405,
                                headers={"Allow": route[0]})
        return await getattr(self, route[1])(request)

    async def health(self, request: Request) -> Response:
        """``GET /health`` (open: no API key)."""
        return JSONResponse({"status": "ok"})

    async def _body(self, request: Request, scope: str) -> dict[str, Any]:
        """The request's JSON object once its key has ``scope`` and it is within limits."""
        self.keys.check(request.headers, scope)
        body = parse_json(await read_body(request, self.limits, _fail), self.limits, _fail)
        if not isinstance(body, dict):
            raise BadRequest(400, "The body must be a JSON object.")
        return body

    async def get_online_features(self, request: Request) -> Response:
        """``POST /get-online-features``: Feast's request and response JSON."""
        try:
            body = await self._body(request, "read")
            _unknown_fields(body, _LOOKUP_FIELDS)
            result = self._lookup(body)
            return Response(encode_response(result), media_type="application/json")
        except Exception as exc:
            return _error(exc)

    async def push(self, request: Request) -> Response:
        """``POST /push``: rows to the online store; needs a key with the ``push`` scope."""
        try:
            body = await self._body(request, "push")
            _unknown_fields(body, _PUSH_FIELDS)
            to = body.get("to", "online")
            if to in ("offline", "online_and_offline"):
                raise BadRequest(422, _OFFLINE_REFUSED.format(to=to))
            if to != "online":
                raise BadRequest(422, f"'to' is {show(to)}; use online.")
            name = body.get("feature_view") or body.get("push_source_name")
            if not self._text(name):
                raise BadRequest(422, "Name the view: 'feature_view' (or 'push_source_name').")
            view = self.registry.view(str(name))
            rows, ignored = self._check_rows(view, _rows(body.get("df"), self.limits))
            self.store.write(rows)
            answer: dict[str, Any] = {"status": "ok", "rows": len(rows), "to": to}
            if ignored:
                answer["ignored_columns"] = [show(c) for c in sorted(ignored)[:20]]
            return JSONResponse(answer)
        except Exception as exc:
            return _error(exc)

    def _text(self, value: Any) -> bool:
        return value_error(value, "string", self.limits.max_string) is None and bool(value)

    def _check_rows(self, view: Any, rows: list[Any]) -> tuple[list[Any], set[str]]:
        """The online store's rows for pushed ``rows``, every value checked against the
        view's declared types (422 naming the row and column); and the pushed columns
        the view does not have (ignored, as Feast ignores them)."""
        import datetime as dt

        from raylake.features.online.base import entity_key

        key_types = self.registry.key_types()
        types = self._feature_types[view.name]
        times = [c for c in (view.timestamp_field, view.created_timestamp_column) if c]
        known = {*view.join_keys, *times, *types}
        needed = [*view.join_keys, *([view.timestamp_field] if view.timestamp_field else [])]
        now = dt.datetime.now(dt.timezone.utc).timestamp()
        out, ignored = [], set[str]()
        for i, row in enumerate(rows):
            ignored.update(c for c in row if c not in known)
            lacks = [c for c in needed if row.get(c) is None]
            if lacks:
                raise BadRequest(422, f"df row {i} lacks {', '.join(lacks)}: every pushed row "
                                      f"needs {needed}.")
            for key in view.join_keys:
                v = row[key]
                want = value_error(v, key_types.get(key, "string"), self.limits.max_string)
                if want:
                    raise BadRequest(422, f"df row {i}: {key} is {show(v)}; it must be {want} "
                                          f"({key} is {key_types.get(key, 'string')}).")
            stamps = []
            for col in times:
                when = parse_time(row.get(col))
                if when is None and (col == view.timestamp_field or row.get(col) is not None):
                    raise BadRequest(422, f"df row {i}: {col} is {show(row.get(col))}; it must "
                                          "be an ISO time (2024-01-31T12:00:00Z) or epoch "
                                          "seconds.")
                stamps.append(when.timestamp() if when else None)
            values = {}
            for f, t in types.items():
                v = row.get(f)
                want = None if v is None else value_error(v, t, self.limits.max_string)
                if want:
                    raise BadRequest(422, f"df row {i}: {f} is {show(v)}; it must be {want} "
                                          f"({f} is {t}) or null.")
                values[f] = v
            event = stamps[0] if view.timestamp_field else 0.0
            created = stamps[-1] if view.created_timestamp_column and stamps[-1] else now
            out.append((entity_key(view.name, view.join_keys, [row[k] for k in view.join_keys]),
                        event, created, values))
        return out, ignored

    async def lookup(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /get-online-features`` without HTTP, for other deployments calling through
        a DeploymentHandle (``await handle.lookup.remote({"features": [...], "entities":
        {...}})``): the same request and response as dicts, no proxy hop, no JSON. A bad
        request raises ``FeatureRequestError`` (its ``status`` is the HTTP one) or another
        ``RaylakeError``."""
        if not isinstance(body, dict):
            raise BadRequest(400, "The request must be a dict (Feast's request shape).")
        return self._lookup(body)

    def _lookup(self, body: dict[str, Any]) -> dict[str, Any]:
        from raylake.features.online.lookup import get_online_features

        service, features = body.get("feature_service"), body.get("features")
        if service is not None:
            if not self._text(service):
                raise BadRequest(422, f"feature_service is {show(service)}; give a service's "
                                      "name.")
            wanted: Any = service
        elif isinstance(features, list) and features:
            if len(features) > self.limits.max_items:
                raise BadRequest(413, f"{len(features)} features is over the limit of "
                                      f"{self.limits.max_items}.")
            bad = [i for i, f in enumerate(features) if not self._text(f)]
            if bad:
                raise BadRequest(422, f"features[{bad[0]}] is {show(features[bad[0]])}; give "
                                      "'view:feature' names.")
            wanted = features
        else:
            raise BadRequest(400, "Give 'features': ['view:feature', ...] or 'feature_service'.")
        full = body.get("full_feature_names")
        if full is not None and type(full) is not bool:
            raise BadRequest(422, f"full_feature_names is {show(full)}; use true or false.")
        entities = self._check_entities(body.get("entities"))
        return get_online_features(self.store, self.registry, wanted, entities,
                                   full_feature_names=bool(full), refused=self.refused)

    def _check_entities(self, entities: Any) -> dict[str, list[Any]]:
        """``entities`` once it is a dict of lists of the keys' types (else BadRequest)."""
        if not isinstance(entities, dict) or not entities:
            raise BadRequest(400, "Give 'entities': {\"join_key\": [values, ...]}.")
        types, limit, max_string = self._types, self.limits.max_items, self.limits.max_string
        for key, values in entities.items():
            if key not in types:
                raise BadRequest(422, f"Unknown entity key {show(key)}; known keys: "
                                      f"{sorted(types)}.")
            if not isinstance(values, list):
                raise BadRequest(400, f"entities.{key} must be a list of values.")
            if len(values) > limit:
                raise BadRequest(413, f"{len(values)} entity rows is over the limit of {limit}.")
            for i, v in enumerate(values):
                want = None if v is None else value_error(v, types[key], max_string)
                if want:
                    raise BadRequest(422, f"entities.{key}[{i}] is {show(v)}; {key} is "
                                          f"{types[key]}: {want}.")
        return entities


def refused_in_lake(registry: Any, access: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The restricted features of ``registry`` that ``access["allow"]`` does not list, from
    the lake's ``_classification`` (nothing when the lake has none)."""
    from raylake.features.access import refused_features
    from raylake.lake import Lake, Storage
    from raylake.lake.classification import classification

    lake = Lake(Storage.from_config(access["lake_root"], access["lake_options"]))
    refused = refused_features(registry, classification(lake), access["allow"])
    if refused:
        log.info("feature server: restricted features refused (%s lists any to serve): %s",
                 "feature_server.allow_restricted",
                 ", ".join(f"{v}:{f}" for v, fs in sorted(refused.items()) for f in sorted(fs)))
    return refused


def server_limits(fs: Any) -> dict[str, int]:
    """The request limits of a ``feature_server`` config, as ``Limits`` takes them."""
    return {"max_body_bytes": fs.max_body_bytes, "max_items": fs.max_batch,
            "max_string": fs.max_string_length, "max_depth": fs.max_depth}


def build_app(conf: Any, lake: Any, store: StoreSettings):
    """The Serve application with autoscaling, resources and request limits from
    ``conf.feature_server``; its API keys are read by each replica (``raylake.auth``)."""
    from dataclasses import asdict

    from raylake.config.redact import redact_options
    from raylake.features.access import check_allowed
    from raylake.features.definitions import resolve

    fs = conf.feature_server
    # A broken key file fails here, before any replica starts; keys found here must be
    # found by every replica too (a bool travels, never a key).
    require_keys = ApiKeys(fs.api_keys_file).configured
    # An allow_restricted entry naming no feature fails here too; each replica reads the
    # classification itself when it starts (credentials stay out of Serve's arguments).
    if fs.allow_restricted:
        check_allowed(resolve(conf.features), list(fs.allow_restricted))
    access = {"lake_root": lake.root, "lake_options": redact_options(lake.storage.options),
              "allow": list(fs.allow_restricted)}
    # Ray's stubs do not show what @serve.deployment makes of the class (a Deployment).
    deployment = FeatureServer.options(  # type: ignore[attr-defined]
        autoscaling_config={"min_replicas": fs.min_replicas, "max_replicas": fs.max_replicas,
                            "target_ongoing_requests": fs.target_ongoing_requests},
        ray_actor_options={"num_cpus": fs.replica_cpus},
    )
    return deployment.bind(asdict(conf.features), store, server_limits(fs), fs.api_keys_file,
                           require_keys, access)
