"""The model server: registered models on Ray Serve, behind one ``POST /predict``.

Request (JSON)::

    {"unit_id": "user-17",                              # optional: sticky A/B arm
     "features": {"wind": [3.5, 12.0], "carrier": ["AA", "BB"]},   # columns, or
     "features": {"wind": 3.5, "carrier": "AA"},                     # one row
     "entities": {"origin": ["JFK", "EWR"]}}            # with model_server.feature_service

Answer: ``{"request_id", "unit_id", "arm", "model", "version", "predictions": [...]}``.

A bad request gets a 4xx whose ``error`` names the field; the replica stays healthy.
Requests of one replica are scored together (``@serve.batch``, one model call per
arm). Shadow arms score a copy of the request after the answer is sent; their answers
go to the request log only. Every answer, error and shadow answer is logged
(``request_log.py``); metrics go through ``ray.util.metrics`` (docs/serving.md).
"""

# No `from __future__ import annotations` here: FastAPI must see the real
# `Request` annotation, not a string, or it reads the argument as a query parameter.
import asyncio
import functools
import json
import logging
import math
import time
import uuid
from typing import Any, NamedTuple

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve

from raylake.errors import ModelRequestError, RaylakeError, did_you_mean

app = FastAPI(title="raylake model server")
log = logging.getLogger("raylake.serve")

BadRequest = ModelRequestError  # the short name this module raises
DEPLOYMENT = "ModelServer"
# Milliseconds; a tree ensemble answers in a few, a cold or overloaded replica in hundreds.
LATENCY_BOUNDARIES_MS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]
_KEYS = ("unit_id", "features", "entities")


class Parsed(NamedTuple):
    unit_id: Any  # str or None
    features: dict[str, list[Any]]
    entities: Any  # dict or None
    rows: int


def feature_kinds(spec: Any, features: list[dict[str, Any]]) -> dict[str, str]:
    """name -> "number", "bool" or "category", as the model's FeatureSpec encodes it."""
    types = {f["name"]: str(f.get("type", "")) for f in features}
    kinds = {c: "bool" if types.get(c) in ("bool", "boolean") else "number" for c in spec.numeric}
    kinds.update({c: "category" for c in spec.categorical})
    return kinds


def _json(raw: bytes) -> Any:
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
        _check_values(name, values, kinds[name])
    return Parsed(unit_id, columns, entities, n)


def _check_values(name: str, values: list[Any], kind: str) -> None:
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


def to_table(columns: dict[str, list[Any]], spec: Any):
    """The model's input columns, typed as its FeatureSpec reads them."""
    import pyarrow as pa

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


# Defined after the helpers: Serve serializes the class when it is decorated.
@serve.deployment
@serve.ingress(app)
class ModelServer:
    def __init__(self, arms: list[dict[str, Any]], lake_root: str, lake_options: dict[str, str],
                 settings: dict[str, Any], lookup: Any = None) -> None:
        from ray.util import metrics

        from raylake.lake import Lake, Storage
        from raylake.models.registry import ModelRegistry
        from raylake.serve.ab import Arm, Assigner
        from raylake.serve.batch import predictor
        from raylake.serve.request_log import RequestLog
        from raylake.train.data import FeatureSpec

        self.lake = Lake(Storage.from_config(lake_root, lake_options))
        registry = ModelRegistry(self.lake)
        self.arms = {a["name"]: Arm(**a) for a in arms}
        self.assigner = Assigner(list(self.arms.values()), settings["salt"])
        self.models: dict[str, tuple[Any, Any, Any, list[str]]] = {}
        self.kinds: dict[str, str] = {}
        for arm in self.arms.values():
            mv, model = registry.load(arm.model, arm.version)
            spec = FeatureSpec.from_dict(mv.preprocessing)
            predict = predictor(mv.flavor, model)
            self.models[arm.name] = (model, spec, predict, mv.feature_names)
            for name, kind in feature_kinds(spec, mv.features).items():
                self.kinds.setdefault(name, kind)
        self.max_rows = settings["max_rows"]
        self._score.set_max_batch_size(settings["max_batch_size"])
        self._score.set_batch_wait_timeout_s(settings["batch_wait_timeout_s"])
        self.replica = serve.get_replica_context().replica_id.unique_id
        table = settings.get("request_log_table")
        self.request_log = RequestLog(self.lake, table, flush_rows=settings["log_flush_rows"],
                                      flush_s=settings["log_flush_s"]) if table else None
        self.lookup = None
        if lookup:
            self._open_lookup(lookup)
        self._shadow_tasks: set[asyncio.Task] = set()
        arm_tags = ("arm", "model", "version", "shadow")
        self.m_predictions = metrics.Counter(
            "raylake_model_predictions", "Rows scored, per arm and model version.", arm_tags)
        self.m_requests = metrics.Counter(
            "raylake_model_requests", "Requests answered, per arm, model version and status.",
            ("arm", "model", "version", "status"))
        self.m_latency = metrics.Histogram(
            "raylake_model_latency_ms", "Time to answer /predict (ms), per arm and model version; "
            "shadow arms: their own scoring time.", LATENCY_BOUNDARIES_MS, arm_tags)
        self.m_errors = metrics.Counter(
            "raylake_model_errors", "Failed requests by kind (bad_json, unknown_field, "
            "unknown_feature, missing_feature, wrong_type, too_large, lookup, internal, shadow).",
            ("kind",))

    def _open_lookup(self, lookup: dict[str, Any]) -> None:
        from omegaconf import OmegaConf

        from raylake.config.schema import FeaturesConfig
        from raylake.features.definitions import resolve
        from raylake.features.online import open_store

        cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(FeaturesConfig),
                                                  lookup["features"]))
        registry = resolve(cfg)
        registry.select(lookup["service"])  # an unknown service fails here, not per request
        store = open_store(lookup["store"][0], **lookup["store"][1])
        self.lookup = (registry, store, lookup["service"], registry.key_types())

    # -- HTTP ------------------------------------------------------------------------

    @app.get("/health")
    def health(self) -> dict[str, Any]:
        return {"status": "ok", "arms": {a.name: {"model": a.model, "version": a.version,
                                                  "weight": a.weight, "shadow": a.shadow}
                                         for a in self.arms.values()}}

    @app.post("/predict")
    async def predict(self, request: Request) -> JSONResponse:
        start = time.perf_counter()
        request_id = uuid.uuid4().hex
        unit_id, arm = None, None
        try:
            req = parse_request(_json(await request.body()), self.kinds, self.max_rows,
                                self.lookup is not None)
            unit_id = req.unit_id
            # Without a unit id the request is its own unit: a fair draw, not sticky.
            arm = self.assigner.assign(unit_id or request_id)
            columns = self._columns(req)
            used, table = self._inputs(arm.name, columns)
            predictions = await self._score((arm.name, table))
        except BadRequest as exc:
            return self._failed(exc.status, exc.kind, exc, request_id, unit_id, arm, start)
        except RaylakeError as exc:  # e.g. the online lookup refused the entities
            status = 404 if isinstance(exc, LookupError) else 422
            return self._failed(status, "lookup", exc, request_id, unit_id, arm, start)
        except Exception as exc:  # a bug or a broken model: the client is not at fault
            log.exception("predict failed")
            return self._failed(500, "internal", exc, request_id, unit_id, arm, start)
        ms = (time.perf_counter() - start) * 1000
        self._observe(arm, 200, len(predictions), ms)
        self._log(request_id, unit_id, arm, 200, rows=len(predictions), features=used,
                  predictions=predictions, latency_ms=ms)
        for shadow in self.assigner.shadows:
            task = asyncio.create_task(self._shadow(shadow, columns, request_id, unit_id))
            self._shadow_tasks.add(task)
            task.add_done_callback(self._shadow_tasks.discard)
        return JSONResponse({"request_id": request_id, "unit_id": unit_id, "arm": arm.name,
                             "model": arm.model, "version": arm.version,
                             "predictions": predictions})

    # -- scoring -----------------------------------------------------------------------

    def _columns(self, req: Parsed) -> dict[str, list[Any]]:
        if req.entities is None:
            return req.features
        from raylake.features.online.lookup import get_online_features

        registry, store, service, key_types = self.lookup
        for key in req.entities:
            if key not in key_types:
                raise BadRequest(422, f"entities.{key} is not an entity key.{did_you_mean(key, key_types)} "
                                      f"Keys: {', '.join(sorted(key_types))}.", "unknown_field")
        found = get_online_features(store, registry, service, req.entities,
                                    full_feature_names=True)
        columns = with_bare_names({name: list(r["values"]) for name, r in
                                   zip(found["metadata"]["feature_names"], found["results"])})
        return {**columns, **req.features}  # values in the request win over stored ones

    def _inputs(self, arm: str, columns: dict[str, list[Any]]):
        _, spec, _, names = self.models[arm]
        missing = [c for c in names if c not in columns]
        if missing:
            raise BadRequest(422, f"features.{missing[0]} is missing: model "
                                  f"{self.arms[arm].model}:{self.arms[arm].version} needs "
                                  f"{', '.join(names)}.", "missing_feature")
        for name in names:  # looked-up values were not checked by parse_request
            _check_values(name, columns[name], self.kinds[name])
        used = {c: columns[c] for c in names}
        return used, to_table(used, spec)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def _score(self, items: list[tuple[str, Any]]) -> list[list[float]]:
        """One model call per arm for the whole batch, then each request's slice."""
        import pyarrow as pa

        out: list[Any] = [None] * len(items)
        by_arm: dict[str, list[int]] = {}
        for i, (arm, _) in enumerate(items):
            by_arm.setdefault(arm, []).append(i)
        for arm, idx in by_arm.items():
            model, spec, predict, _ = self.models[arm]
            table = pa.concat_tables([items[i][1] for i in idx])
            # In a thread, so /health and new requests are served while a model runs.
            p = await asyncio.to_thread(predict, model, spec, table)
            at = 0
            for i in idx:
                n = items[i][1].num_rows
                out[i] = [float(x) for x in p[at:at + n]]
                at += n
        return out

    async def _shadow(self, arm: Any, columns: dict[str, list[Any]], request_id: str,
                      unit_id: Any) -> None:
        start = time.perf_counter()
        try:
            used, table = self._inputs(arm.name, columns)
            predictions = await self._score((arm.name, table))
        except Exception as exc:  # a shadow's failure never reaches the client
            ms = (time.perf_counter() - start) * 1000
            status = exc.status if isinstance(exc, BadRequest) else 500
            self.m_errors.inc(tags={"kind": "shadow"})
            self._log(request_id, unit_id, arm, status, error_kind="shadow",
                      error=str(exc)[:1000], latency_ms=ms)
            return
        ms = (time.perf_counter() - start) * 1000
        self._observe(arm, 200, len(predictions), ms)
        self._log(request_id, unit_id, arm, 200, rows=len(predictions), features=used,
                  predictions=predictions, latency_ms=ms)

    # -- bookkeeping -------------------------------------------------------------------

    def _failed(self, status: int, kind: str, exc: Exception, request_id: str, unit_id: Any,
                arm: Any, start: float) -> JSONResponse:
        ms = (time.perf_counter() - start) * 1000
        self.m_errors.inc(tags={"kind": kind})
        if arm is not None:
            self.m_requests.inc(tags={"arm": arm.name, "model": arm.model,
                                      "version": str(arm.version), "status": str(status)})
        message = str(exc) if status < 500 else f"Internal error ({type(exc).__name__}); see the replica's log."
        self._log(request_id, unit_id, arm, status, error_kind=kind, error=str(exc)[:1000],
                  latency_ms=ms)
        return JSONResponse({"error": message, "kind": kind, "request_id": request_id},
                            status_code=status)

    def _observe(self, arm: Any, status: int, rows: int, ms: float) -> None:
        tags = {"arm": arm.name, "model": arm.model, "version": str(arm.version),
                "shadow": str(arm.shadow).lower()}
        self.m_predictions.inc(rows, tags=tags)
        self.m_latency.observe(ms, tags=tags)
        if not arm.shadow:
            self.m_requests.inc(tags={"arm": arm.name, "model": arm.model,
                                      "version": str(arm.version), "status": str(status)})

    def _log(self, request_id: str, unit_id: Any, arm: Any, status: int, *, rows: int = 0,
             features: Any = None, predictions: Any = None, error_kind: Any = None,
             error: Any = None, latency_ms: float = 0.0) -> None:
        if self.request_log is None:
            return
        self.request_log.add(
            request_id=request_id, unit_id=unit_id, experiment=self.assigner.salt,
            arm=arm.name if arm else None, model_name=arm.model if arm else None,
            model_version=arm.version if arm else None, shadow=bool(arm and arm.shadow),
            status=status, error_kind=error_kind, error=error, rows=rows,
            features=json.dumps(features, default=str) if features is not None else None,
            predictions=predictions, latency_ms=latency_ms, replica=self.replica)

    def check_health(self) -> None:
        log_thread = self.request_log and self.request_log._thread
        if log_thread and not log_thread.is_alive() and not self.request_log._stop.is_set():
            raise RuntimeError("the request log's writer thread died")

    def __del__(self) -> None:
        # Serve calls this when it stops the replica: write the rows still buffered.
        if getattr(self, "request_log", None) is not None:
            self.request_log.close()


def build_app(conf: Any, lake: Any):
    """The Serve application: arms pinned to versions, autoscaling from ``conf.model_server``."""
    from dataclasses import asdict

    from raylake.models.registry import ModelRegistry
    from raylake.serve.ab import resolve_arms
    from raylake.serve.request_log import ensure_table

    ms = conf.model_server
    arms = resolve_arms(conf.model, ms.arms, ModelRegistry(lake))
    if ms.request_log_table:
        ensure_table(lake, ms.request_log_table)
    lookup = None
    if ms.feature_service:
        from raylake.features.jobs import store_settings

        lookup = {"features": asdict(conf.features), "service": ms.feature_service,
                  "store": store_settings(conf, lake)}
    settings = {k: getattr(ms, k) for k in (
        "salt", "max_rows", "max_batch_size", "batch_wait_timeout_s", "request_log_table",
        "log_flush_rows", "log_flush_s")}
    deployment = ModelServer.options(**deployment_options(ms))
    return deployment.bind([a.to_dict() for a in arms], lake.root, dict(lake.storage.options),
                           settings, lookup)


def deployment_options(ms: Any) -> dict[str, Any]:
    return {
        "autoscaling_config": {
            "min_replicas": ms.min_replicas, "max_replicas": ms.max_replicas,
            "target_ongoing_requests": ms.target_ongoing_requests,
            "upscale_delay_s": ms.upscale_delay_s, "downscale_delay_s": ms.downscale_delay_s},
        "ray_actor_options": {"num_cpus": ms.replica_cpus},
        "max_ongoing_requests": ms.max_ongoing_requests,
    }


def app_builder(args: dict[str, Any]):
    """The application for ``serve deploy``/RayService: ``args.config`` holds the config
    sections the server reads (lake, model, model_server, and features/online for
    lookups), as `raylake serve` writes them into the Serve config file."""
    from raylake.lake import Lake

    conf = config_from_args((args or {}).get("config", {}))
    return build_app(conf, Lake.from_config(conf.lake))


def config_from_args(config: dict[str, Any]) -> Any:
    """The checked RaylakeConfig of a Serve config's ``args.config``."""
    from omegaconf import OmegaConf

    from raylake.config.loader import to_config
    from raylake.config.schema import RaylakeConfig

    base = OmegaConf.structured(RaylakeConfig)
    base.dataset.name = "none"  # mandatory in the schema, never read by the server
    return to_config(OmegaConf.merge(base, config or {}))
