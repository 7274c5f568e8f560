"""The feature server: Feast's HTTP API on Ray Serve, over raylake's online store.

``POST /get-online-features`` takes and returns Feast's JSON, so Feast's HTTP
clients work unchanged; ``POST /push`` writes rows to the online store (and,
with ``"to": "online_and_offline"``, appends them to the view's lake table);
``GET /health``. A bad request gets a 4xx whose message says what is wrong;
the replica stays healthy. Autoscaling comes from ``feature_server`` config.
"""

import json
from typing import Any

from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from raylake.errors import FeatureRequestError, RaylakeError
from raylake.features.online.settings import StoreSettings

# path -> (method, handler). Serve hands each request to `__call__`, which routes it
# itself: a FastAPI ingress costs the replica about 0.4 ms per request (measured with
# benchmarks/online.py), more than a one-entity lookup.
_ROUTES = {
    "/get-online-features": ("POST", "get_online_features"),
    "/push": ("POST", "push"),
    "/health": ("GET", "health"),
}

_TYPES = {
    "string": (str,), "int8": (int,), "int16": (int,), "int32": (int,), "int64": (int,),
    "float32": (int, float), "float64": (int, float), "bool": (bool,),
}


BadRequest = FeatureRequestError  # the short name this module raises


async def _json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw or b"")
    except ValueError as exc:
        raise BadRequest(400, f"The body is not JSON: {exc}.") from exc
    if not isinstance(body, dict):
        raise BadRequest(400, "The body must be a JSON object.")
    return body


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


def _rows(df: Any) -> list[dict[str, Any]]:
    """Feast's push ``df``: columns {name: [values]} (or a list of row objects)."""
    if isinstance(df, list) and all(isinstance(r, dict) for r in df):
        return df
    if isinstance(df, dict) and df and all(isinstance(v, list) for v in df.values()):
        sizes = {len(v) for v in df.values()}
        if len(sizes) != 1:
            raise BadRequest(422, "Every column of 'df' needs the same number of values.")
        n = sizes.pop()
        return [{k: v[i] for k, v in df.items()} for i in range(n)]
    raise BadRequest(400, "Give 'df' as {column: [values]} or a list of row objects.")


def _parse_time(v: Any):
    import datetime as dt

    if isinstance(v, (int, float)):
        return dt.datetime.fromtimestamp(v, dt.timezone.utc)
    try:
        when = dt.datetime.fromisoformat(str(v).replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadRequest(422, f"{v!r} is not an ISO time.") from exc
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def _epoch(v: Any) -> float:
    return _parse_time(v).timestamp()


# Defined after the helpers: Serve serializes the class when it is decorated.
@serve.deployment
class FeatureServer:
    """A Serve replica answering Feast's HTTP API from the online store (routes in ``_ROUTES``)."""

    def __init__(self, features: dict[str, Any], store: StoreSettings,
                 lake_root: str, lake_options: dict[str, str], max_batch: int) -> None:
        from omegaconf import OmegaConf

        from raylake.config.schema import FeaturesConfig
        from raylake.features.definitions import resolve
        from raylake.lake import Lake, Storage

        cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(FeaturesConfig), features))
        self.registry = resolve(cfg)
        self.store = store.open()
        self.lake = Lake(Storage.from_config(lake_root, lake_options))
        self.max_batch = max_batch
        self._types = {**self.registry.key_types(), **self.registry.request_types()}

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
        """``GET /health``."""
        return JSONResponse({"status": "ok"})

    async def get_online_features(self, request: Request) -> Response:
        """``POST /get-online-features``: Feast's request and response JSON."""
        try:
            result = self._lookup(await _json(request))
            return Response(encode_response(result), media_type="application/json")
        except BadRequest as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        except RaylakeError as exc:  # unknown feature, view or service (404), missing keys (422)
            return JSONResponse({"error": str(exc)}, status_code=_status(exc))

    async def push(self, request: Request) -> Response:
        """``POST /push``: rows to the online store (and the view's table with ``online_and_offline``)."""
        import datetime as dt

        import pyarrow as pa

        from raylake.features.online.base import entity_key

        try:
            body = await _json(request)
            name = body.get("feature_view") or body.get("push_source_name")
            view = self.registry.view(name or "")
            rows = _rows(body.get("df"))
            if len(rows) > self.max_batch:
                raise BadRequest(413, f"{len(rows)} rows is over the limit of {self.max_batch}.")
            to = body.get("to", "online")
            if to not in ("online", "offline", "online_and_offline"):
                raise BadRequest(422, f"'to' is {to!r}; use online, offline or online_and_offline.")
            needed = [*view.join_keys, *([view.timestamp_field] if view.timestamp_field else [])]
            for r in rows:
                missing = [c for c in needed if r.get(c) is None]
                if missing:
                    raise BadRequest(422, f"Every pushed row needs {needed}; a row lacks {missing}.")
            if to != "offline":
                out = []
                for r in rows:
                    ts = _epoch(r[view.timestamp_field]) if view.timestamp_field else 0.0
                    out.append((entity_key(view.name, view.join_keys, [r[k] for k in view.join_keys]),
                                ts, dt.datetime.now(dt.timezone.utc).timestamp(),
                                {f: r.get(f) for f in view.feature_names}))
                self.store.write(out)
            if to != "online":
                self._append_offline(view, rows, pa)
            return JSONResponse({"status": "ok", "rows": len(rows), "to": to})
        except BadRequest as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        except RaylakeError as exc:
            return JSONResponse({"error": str(exc)}, status_code=_status(exc))

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

        features = body.get("feature_service") or body.get("features")
        if not features:
            raise BadRequest(400, "Give 'features': ['view:feature', ...] or 'feature_service'.")
        entities = self._check_entities(body.get("entities"))
        return get_online_features(self.store, self.registry, features, entities,
                                   full_feature_names=bool(body.get("full_feature_names")))

    def _check_entities(self, entities: Any) -> dict[str, list[Any]]:
        """``entities`` once it is a dict of lists of the keys' types (else BadRequest)."""
        if not isinstance(entities, dict) or not entities:
            raise BadRequest(400, "Give 'entities': {\"join_key\": [values, ...]}.")
        types = self._types
        for key, values in entities.items():
            if key not in types:
                raise BadRequest(422, f"Unknown entity key {key!r}; known keys: {sorted(types)}.")
            if not isinstance(values, list):
                raise BadRequest(400, f"entities.{key} must be a list of values.")
            if len(values) > self.max_batch:
                raise BadRequest(413, f"{len(values)} entity rows is over the limit of {self.max_batch}.")
            allowed = _TYPES.get(types[key], (str, int, float))
            for v in values:
                if v is not None and (not isinstance(v, allowed) or (
                        isinstance(v, bool) and bool not in allowed)):
                    raise BadRequest(422, f"entities.{key} holds {v!r} ({type(v).__name__}); "
                                          f"{key} is {types[key]}.")
        return entities

    def _append_offline(self, view, rows: list[dict[str, Any]], pa) -> None:
        from raylake.lake.commit import write_table

        dtab = self.lake.table(view.source)
        schema = pa.schema(dtab.schema().to_arrow())
        cols = {}
        for f in schema:
            values = [r.get(f.name) for r in rows]
            if not f.nullable and any(v is None for v in values):
                raise BadRequest(422, f"Column {f.name!r} of {view.source!r} may not be null; "
                                      "push it with every row.")
            if pa.types.is_timestamp(f.type):
                values = [None if v is None else _parse_time(v) for v in values]
            try:
                cols[f.name] = pa.array(values, f.type)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise BadRequest(422, f"Column {f.name!r}: {exc}") from exc
        write_table(self.lake, view.source, pa.table(cols, schema=schema), job="push")


def build_app(conf: Any, lake: Any, store: StoreSettings):
    """The Serve application with autoscaling and resources from ``conf.feature_server``."""
    from dataclasses import asdict

    fs = conf.feature_server
    # Ray's stubs do not show what @serve.deployment makes of the class (a Deployment).
    deployment = FeatureServer.options(  # type: ignore[attr-defined]
        autoscaling_config={"min_replicas": fs.min_replicas, "max_replicas": fs.max_replicas,
                            "target_ongoing_requests": fs.target_ongoing_requests},
        ray_actor_options={"num_cpus": fs.replica_cpus},
    )
    return deployment.bind(asdict(conf.features), store, lake.root, dict(lake.storage.options),
                           fs.max_batch)
