"""The model server: registered models on Ray Serve, behind one ``POST /predict``.

Request (JSON)::

    {"unit_id": "user-17",                              # optional: sticky A/B arm
     "features": {"wind": [3.5, 12.0], "carrier": ["AA", "BB"]},   # columns, or
     "features": {"wind": 3.5, "carrier": "AA"},                     # one row
     "entities": {"origin": ["JFK", "EWR"]}}            # with model_server.feature_service

Answer: ``{"request_id", "unit_id", "arm", "model", "version", "predictions": [...]}``.

A bad request gets a 4xx whose ``error`` names the field (``inputs.py`` checks
it, within the body and value limits of ``model_server``); the replica stays healthy and
no input answers 500. With API keys configured (``raylake.auth``), /predict needs a key
with the ``read`` scope; /health is open. ``POST /outcomes`` records what happened after
answers (``outcomes.py``; a key with the ``push`` scope); replicas export the monitoring
state as gauges (``alert_gauges.py``).
Requests of one replica are scored together (``@serve.batch``, one model call per
arm). Shadow arms score a copy of the request after the answer is sent; their answers
go to the request log only. Every answer, error and shadow answer is logged
(``request_log.py``), entity keys classified pii or restricted as
``model_server.log_keys`` says (hashed by default, ``log_keys.py``); metrics go through
``ray.util.metrics`` (docs/serving.md).

Live-traffic profiles (``model_server.live_profile``, on by default): every answer's
features, as the model saw them, and predictions, main and shadow arms, are added to
the replica's running profile of its model version, arm and window
(``live_profile.py``); a background thread profiles and flushes them to
``model_server.profile_table``, never the request path.

Replayed clock (``model_server.replay_clock``, off by default; replays and backtests
only): the header ``X-Raylake-Clock: <ISO time>`` (naive = UTC) is the request's time:
looked-up features are judged against their TTL at that time, and the request log's
``at`` and the profile window are that time. A value that is not an ISO time gets a 400
of kind ``bad_clock``; with replay_clock off, the header gets a 400 naming
``model_server.replay_clock`` (a client must not move a production server's clock).
"""

# No `from __future__ import annotations` here: FastAPI must see the real
# `Request` annotation, not a string, or it reads the argument as a query parameter.
import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve

from raylake.auth import ApiKeys
from raylake.errors import AuthError, ImageError, RaylakeError, did_you_mean
from raylake.features.checks import Limits, read_body, safe_text
from raylake.models.spec import FeatureSpec
from raylake.serve.inputs import (
    BadRequest,
    Parsed,
    check_values,
    feature_kinds,
    parse_image_request,
    parse_request,
    read_json,
    to_table,
    with_bare_names,
)
from raylake.serve.log_keys import governed_log_keys, log_key_policy

app = FastAPI(title="raylake model server")
log = logging.getLogger("raylake.serve")

DEPLOYMENT = "ModelServer"
CLOCK_HEADER = "x-raylake-clock"  # the replayed clock (model_server.replay_clock)
# Milliseconds; a tree ensemble answers in a few, a cold or overloaded replica in hundreds.
LATENCY_BOUNDARIES_MS: list[float] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]


@dataclass(frozen=True)
class ArmModel:
    """One arm's model as a replica scores it."""

    spec: FeatureSpec  # how the request's columns become the model's inputs
    features: tuple[str, ...]  # the registered feature names: a request needs every one
    predict: Callable[[Any], Any]  # its flavor's scoring function, model bound: table -> scores


# Defined after the helpers: Serve serializes the class when it is decorated.
@serve.deployment
@serve.ingress(app)
class ModelServer:
    def __init__(self, arms: list[dict[str, Any]], lake_root: str, lake_options: dict[str, str],
                 settings: dict[str, Any], lookup: Any = None) -> None:
        from ray.util import metrics

        from raylake.lake import Lake, Storage
        from raylake.models.flavors import get_flavor
        from raylake.models.registry import ModelRegistry
        from raylake.serve.ab import Arm, Assigner
        from raylake.serve.request_log import RequestLog

        self.lake = Lake(Storage.from_config(lake_root, lake_options))
        registry = ModelRegistry(self.lake)
        self.arms = {a["name"]: Arm(**a) for a in arms}
        self.assigner = Assigner(list(self.arms.values()), settings["salt"])
        self.models: dict[str, ArmModel] = {}
        self.kinds: dict[str, str] = {}
        # Registered feature types per version: live profiles type their columns so.
        self.types: dict[tuple[str, int], dict[str, str]] = {}
        # Arms whose model reads images (flavor image_classifier) -> its class names.
        self.image_classes: dict[str, list[str]] = {}
        for arm in self.arms.values():
            mv, model = registry.load(arm.model, arm.version)
            if mv.flavor == "image_classifier":
                self.image_classes[arm.name] = list(mv.flavor_info.get("classes", []))
            self.types[(arm.model, arm.version)] = {f["name"]: str(f.get("type", ""))
                                                    for f in mv.features}
            spec = FeatureSpec.from_dict(mv.preprocessing)
            predict = get_flavor(mv.flavor).predictor(model, spec)
            self.models[arm.name] = ArmModel(spec, tuple(mv.feature_names), predict)
            for name, kind in feature_kinds(spec, mv.features).items():
                self.kinds.setdefault(name, kind)
        if self.image_classes and len(self.image_classes) != len(self.arms):
            raise RaylakeError("The arms mix image models with models of features; serve "
                               "image_classifier models on a server of their own.")
        self.max_rows = settings["max_rows"]
        # Request limits and API keys (docs/security.md#http). The keys are read here, in
        # the replica, from its environment and key file: never in the Serve arguments.
        self.limits = Limits(
            max_body_bytes=settings.get("max_body_bytes", 1 << 20), max_items=self.max_rows,
            max_string=settings.get("max_string_length", 1024),
            max_depth=settings.get("max_depth", 8))
        self.max_unit_id = settings.get("max_unit_id_length", 256)
        self.keys = ApiKeys(settings.get("api_keys_file"),
                            required=bool(settings.get("require_api_keys")))
        # Methods of the @serve.batch wrapper, which type checkers do not see.
        self._score.set_max_batch_size(settings["max_batch_size"])  # type: ignore[attr-defined]
        self._score.set_batch_wait_timeout_s(  # type: ignore[attr-defined]
            settings["batch_wait_timeout_s"])
        self.replica = serve.get_replica_context().replica_id.unique_id
        table = settings.get("request_log_table")
        # Rows are spooled locally before each answer and committed in batches under
        # this replica's Delta app id; a killed replica's spool is adopted (request_log.py).
        self.request_log = RequestLog(
            self.lake, table, replica=self.replica, spool_dir=settings.get("log_spool_dir"),
            flush_rows=settings["log_flush_rows"], flush_s=settings["log_flush_s"],
        ) if table else None
        # Governed entity keys in the log: hashed, kept or dropped (serve/log_keys.py).
        # Hashing with no key in this replica's environment: it does not start.
        self.log_keys = log_key_policy(settings.get("log_keys", "keep"),
                                       settings.get("governed_keys", []),
                                       settings.get("key_env", "RAYLAKE_GOVERNANCE_KEY"),
                                       logging=self.request_log is not None)
        self.replay_clock = bool(settings.get("replay_clock"))
        self.profiler = self._open_profiler(settings) if settings.get("live_profile") else None
        self.lookup: Any = None  # (registry, store, service, key types) of the feature lookups
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
            "unknown_feature, missing_feature, wrong_type, too_large, auth, bad_clock, lookup, "
            "internal, shadow).",
            ("kind",))
        # POST /outcomes (outcomes.py) and the monitoring gauges (alert_gauges.py).
        self.outcomes_table = settings.get("outcomes_table") or "serving/outcomes"
        self.max_outcomes = settings.get("max_outcomes", 1000)
        self.log_table = table
        self.alert_gauges: Any = None
        if settings.get("alerts_refresh_s"):
            from raylake.serve.alert_gauges import AlertGauges

            self.alert_gauges = AlertGauges(
                self.lake, [a.model for a in self.arms.values()],
                refresh_s=settings["alerts_refresh_s"], monitor_table=settings.get("monitor_table"))
            self.alert_gauges.start()

    def _open_profiler(self, settings: dict[str, Any]) -> Any:
        from raylake.config.values import parse_duration
        from raylake.serve.live_profile import LiveProfiler

        return LiveProfiler(
            self.lake, settings["profile_table"], writer=self.replica, types=self.types,
            window=parse_duration(settings["profile_window"], "model_server.profile_window"),
            replay=self.replay_clock)

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
        """``GET /health``: status ``ok`` and each arm's model, version, weight and whether
        it is a shadow."""
        return {"status": "ok", "arms": {a.name: {"model": a.model, "version": a.version,
                                                  "weight": a.weight, "shadow": a.shadow}
                                         for a in self.arms.values()}}

    @app.post("/predict")
    async def predict(self, request: Request) -> JSONResponse:
        """``POST /predict``: score the request's rows (feature columns, or features looked
        up by entity key) with the unit's arm and log the answer; shadow arms score a copy
        in the background. A failure answers JSON with ``error``, ``kind`` and
        ``request_id``: 4xx for the client's fault, 500 for the server's."""
        start = time.perf_counter()
        request_id = uuid.uuid4().hex
        unit_id, arm, at, keys = None, None, None, None
        try:
            self.keys.check(request.headers, "read")
            at = self._clock(request.headers)
            raw = await read_body(request, self.limits, BadRequest)
            if self.image_classes:
                return await self._predict_images(raw, request, request_id, start, at)
            req = parse_request(read_json(raw, self.limits), self.kinds, self.limits,
                                self.lookup[3] if self.lookup else None, self.max_unit_id)
            unit_id, keys = req.unit_id, req.entities
            # Without a unit id the request is its own unit: a fair draw, not sticky.
            arm = self.assigner.assign(unit_id or request_id)
            columns = self._columns(req, at)
            used, table = self._inputs(arm.name, columns)
            predictions = await self._score((arm.name, table))
        except BadRequest as exc:
            return self._failed(exc.status, exc.kind, exc, request_id, unit_id, arm, start, at,
                                keys)
        except AuthError as exc:  # no key, a wrong key or one without the read scope
            return self._failed(exc.status, "auth", exc, request_id, unit_id, arm, start, at)
        except RaylakeError as exc:  # e.g. the online lookup refused the entities
            status = 404 if isinstance(exc, LookupError) else 422
            return self._failed(status, "lookup", exc, request_id, unit_id, arm, start, at,
                                keys)
        except Exception as exc:  # a bug or a broken model: the client is not at fault
            log.exception("predict failed")
            return self._failed(500, "internal", exc, request_id, unit_id, arm, start, at, keys)
        ms = (time.perf_counter() - start) * 1000
        self._observe(arm, 200, len(predictions), ms)
        self._log(request_id, unit_id, arm, 200, rows=len(predictions), features=used,
                  predictions=predictions, latency_ms=ms, at=at, entities=keys)
        self._profile(arm, used, predictions, at)
        for shadow in self.assigner.shadows:
            task = asyncio.create_task(self._shadow(shadow, columns, request_id, unit_id, at,
                                                    keys))
            self._shadow_tasks.add(task)
            task.add_done_callback(self._shadow_tasks.discard)
        return JSONResponse({"request_id": request_id, "unit_id": unit_id, "arm": arm.name,
                             "model": arm.model, "version": arm.version,
                             "predictions": predictions})

    async def _predict_images(self, raw: bytes, request: Request, request_id: str,
                              start: float, at: Any) -> JSONResponse:
        """/predict for image models: base64 JSON or raw bytes (serve/inputs.py), scored by
        the unit's arm; the answer adds each prediction's class name (``labels``)."""
        import hashlib

        import pyarrow as pa

        unit_id, arm = None, None
        try:
            images, unit_id = parse_image_request(raw, request.headers.get("content-type", ""),
                                                  self.limits, self.max_unit_id)
            arm = self.assigner.assign(unit_id or request_id)
            table = pa.table({"image": pa.array(images, pa.binary())})
            predictions = await self._score((arm.name, table))
        except BadRequest as exc:
            return self._failed(exc.status, exc.kind, exc, request_id, unit_id, arm, start, at)
        except ImageError as exc:  # decodes, but not to the model's size or channels
            return self._failed(422, "bad_image", exc, request_id, unit_id, arm, start, at)
        except Exception as exc:  # a bug or a broken model: the client is not at fault
            log.exception("predict failed")
            return self._failed(500, "internal", exc, request_id, unit_id, arm, start, at)
        ms = (time.perf_counter() - start) * 1000
        self._observe(arm, 200, len(predictions), ms)
        # The log keeps each image's hash, not its bytes.
        used = {"image_sha256": [hashlib.sha256(b).hexdigest() for b in images]}
        self._log(request_id, unit_id, arm, 200, rows=len(predictions), features=used,
                  predictions=predictions, latency_ms=ms, at=at)
        classes = self.image_classes[arm.name]
        labels = [classes[int(p)] if 0 <= int(p) < len(classes) else None for p in predictions]
        return JSONResponse({"request_id": request_id, "unit_id": unit_id, "arm": arm.name,
                             "model": arm.model, "version": arm.version,
                             "predictions": predictions, "labels": labels})

    def _clock(self, headers: Any) -> Any:
        """The request's time from ``X-Raylake-Clock`` (None: now); 400 ``bad_clock`` for a
        value that is no ISO time, or for the header on a server without replay_clock."""
        text = headers.get(CLOCK_HEADER)
        if text is None:
            return None
        if not self.replay_clock:
            raise BadRequest(400, "The X-Raylake-Clock header needs model_server.replay_clock="
                                  "true on the server (replays and backtests only); send the "
                                  "request without it.", "bad_clock")
        from raylake.lake.clock import parse_time

        try:
            return parse_time(text, "X-Raylake-Clock")
        except ValueError as exc:
            raise BadRequest(400, str(exc)[:300], "bad_clock") from None

    @app.post("/outcomes")
    async def outcomes(self, request: Request) -> JSONResponse:
        """``POST /outcomes``: ``{"outcomes": [{"request_id" | "unit_id", "row", "outcome",
        "outcome_at"?}, ...]}`` into ``outcomes.table``, once per key (``outcomes.py``);
        needs a key with the ``push`` scope. Answers the counts ``added``, ``duplicate``,
        ``conflicting`` and ``unknown``; a bad body a 4xx naming the field."""
        from raylake.errors import ConcurrentWriteError
        from raylake.serve.outcomes import add_outcomes, check_items, to_response

        try:
            self.keys.check(request.headers, "push")
            raw = await read_body(request, self.limits, BadRequest)
            body = read_json(raw, self.limits)
            if not isinstance(body, dict) or set(body) != {"outcomes"}:
                raise BadRequest(400 if not isinstance(body, dict) else 422,
                                 "The body must be {\"outcomes\": [{\"request_id\": ..., "
                                 "\"row\": 0, \"outcome\": 1}, ...]}.", "invalid_request")
            rows = check_items(body["outcomes"], max_rows=self.max_outcomes,
                               max_string=self.limits.max_string, fail=BadRequest)
            # Delta reads and a commit: in a thread, so /predict is served meanwhile.
            counts = await asyncio.to_thread(add_outcomes, self.lake, self.outcomes_table, rows,
                                             "http", self.log_table, fail=BadRequest)
        except (BadRequest, AuthError) as exc:
            return self._refused(exc.status, getattr(exc, "kind", "auth"), str(exc))
        except ConcurrentWriteError as exc:  # safe to retry: adding is idempotent
            return self._refused(503, "busy", str(exc))
        except Exception:
            log.exception("outcomes failed")
            return self._refused(500, "internal", "Internal error; see the replica's log.")
        return JSONResponse(to_response(counts))

    def _refused(self, status: int, kind: str, message: str) -> JSONResponse:
        """An error answer of a route other than /predict (nothing goes to the request log)."""
        self.m_errors.inc(tags={"kind": kind})
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse({"error": safe_text(message), "kind": kind}, status_code=status,
                            headers=headers)

    # -- scoring -----------------------------------------------------------------------

    def _columns(self, req: Parsed, at: Any = None) -> dict[str, list[Any]]:
        if req.entities is None:
            return req.features
        from raylake.features.online.lookup import get_online_features

        registry, store, service, key_types = self.lookup
        for key in req.entities:
            if key not in key_types:
                raise BadRequest(422, f"entities.{key} is not an entity key.{did_you_mean(key, key_types)} "
                                      f"Keys: {', '.join(sorted(key_types))}.", "unknown_field")
        found = get_online_features(store, registry, service, req.entities,
                                    full_feature_names=True, now=at)
        columns = with_bare_names({name: list(r["values"]) for name, r in
                                   zip(found["metadata"]["feature_names"], found["results"])})
        return {**columns, **req.features}  # values in the request win over stored ones

    def _inputs(self, arm: str, columns: dict[str, list[Any]]):
        served = self.models[arm]
        missing = [c for c in served.features if c not in columns]
        if missing:
            raise BadRequest(422, f"features.{missing[0]} is missing: model "
                                  f"{self.arms[arm].model}:{self.arms[arm].version} needs "
                                  f"{', '.join(served.features)}.", "missing_feature")
        for name in served.features:  # looked-up values were not checked by parse_request
            check_values(name, columns[name], self.kinds[name])
        used = {c: columns[c] for c in served.features}
        return used, to_table(used, served.spec)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def _score(self, items: list[tuple[str, Any]]) -> list[list[float]]:
        """One model call per arm for the whole batch, then each request's slice."""
        import pyarrow as pa

        out: list[Any] = [None] * len(items)
        by_arm: dict[str, list[int]] = {}
        for i, (arm, _) in enumerate(items):
            by_arm.setdefault(arm, []).append(i)
        for arm, idx in by_arm.items():
            table = pa.concat_tables([items[i][1] for i in idx])
            # In a thread, so /health and new requests are served while a model runs.
            p = await asyncio.to_thread(self.models[arm].predict, table)
            at = 0
            for i in idx:
                n = items[i][1].num_rows
                out[i] = [float(x) for x in p[at:at + n]]
                at += n
        return out

    async def _shadow(self, arm: Any, columns: dict[str, list[Any]], request_id: str,
                      unit_id: Any, at: Any = None, entities: Any = None) -> None:
        start = time.perf_counter()
        try:
            used, table = self._inputs(arm.name, columns)
            predictions = await self._score((arm.name, table))
        except Exception as exc:  # a shadow's failure never reaches the client
            ms = (time.perf_counter() - start) * 1000
            status = exc.status if isinstance(exc, BadRequest) else 500
            self.m_errors.inc(tags={"kind": "shadow"})
            self._log(request_id, unit_id, arm, status, error_kind="shadow",
                      error=str(exc)[:1000], latency_ms=ms, at=at, entities=entities)
            return
        ms = (time.perf_counter() - start) * 1000
        self._observe(arm, 200, len(predictions), ms)
        self._log(request_id, unit_id, arm, 200, rows=len(predictions), features=used,
                  predictions=predictions, latency_ms=ms, at=at, entities=entities)
        self._profile(arm, used, predictions, at)

    # -- bookkeeping -------------------------------------------------------------------

    def _failed(self, status: int, kind: str, exc: Exception, request_id: str, unit_id: Any,
                arm: Any, start: float, at: Any = None, entities: Any = None) -> JSONResponse:
        ms = (time.perf_counter() - start) * 1000
        self.m_errors.inc(tags={"kind": kind})
        if arm is not None:
            self.m_requests.inc(tags={"arm": arm.name, "model": arm.model,
                                      "version": str(arm.version), "status": str(status)})
        # Messages can quote request values: made safe to encode (lone surrogates escaped).
        text = safe_text(str(exc))
        message = text if status < 500 else f"Internal error ({type(exc).__name__}); see the replica's log."
        self._log(request_id, unit_id, arm, status, error_kind=kind, error=text[:1000],
                  latency_ms=ms, at=at, entities=entities)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse({"error": message, "kind": kind, "request_id": request_id},
                            status_code=status, headers=headers)

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
             error: Any = None, latency_ms: float = 0.0, at: Any = None,
             entities: Any = None) -> None:
        if self.request_log is None:
            return
        if self.log_keys.active:  # governed keys hashed or left out (serve/log_keys.py)
            if error:  # a refused value may be a raw key
                error = self.log_keys.scrub(error, entities)
            features, entities = self.log_keys.apply(features), self.log_keys.apply(entities)
        self.request_log.add(
            at=at,
            request_id=request_id, unit_id=unit_id, experiment=self.assigner.salt,
            arm=arm.name if arm else None, model_name=arm.model if arm else None,
            model_version=arm.version if arm else None, shadow=bool(arm and arm.shadow),
            status=status, error_kind=error_kind, error=error, rows=rows,
            features=json.dumps(features, default=str) if features is not None else None,
            entities=json.dumps(entities, default=str) if entities else None,
            predictions=predictions, latency_ms=latency_ms, replica=self.replica)

    def _profile(self, arm: Any, used: dict[str, list[Any]], predictions: list[float],
                 at: Any) -> None:
        if self.profiler is not None:  # list appends only: profiled in the background
            self.profiler.add(arm.model, arm.version, arm.name, arm.shadow, used, predictions,
                              at)

    def check_health(self) -> None:
        """Serve's health check: RuntimeError when the request log's writer thread died, so
        that Serve replaces the replica."""
        rl = self.request_log
        if rl is not None and rl.writer_died:
            raise RuntimeError("the request log's writer thread died")
        if self.profiler is not None and self.profiler.thread_died:
            raise RuntimeError("the live profiler's thread died")

    async def __del__(self) -> None:
        # Ray Serve's graceful stop (scale-down, redeploy, serve.delete/shutdown) has no
        # other hook: once the replica's requests are drained it calls and awaits this,
        # once (the @serve.ingress wrapper's async __del__ runs FastAPI's shutdown, then
        # this), within graceful_shutdown_timeout_s (20 s) before killing the process.
        # Python's own garbage collection never runs it (the wrapper's __del__ is async).
        # Shadow answers still being scored are logged first, then the final flush runs
        # in a thread so the replica's event loop is not blocked; what it cannot append
        # stays in the spool for the next replica on this node.
        gauges = getattr(self, "alert_gauges", None)
        if gauges is not None:
            gauges.stop()  # its daemon thread would otherwise read the lake until killed
        tasks = list(getattr(self, "_shadow_tasks", ()))
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
        # The request log and the live profiles flush side by side, in threads.
        closing = [asyncio.to_thread(x.close, 8.0) for x in (
            getattr(self, "request_log", None), getattr(self, "profiler", None)) if x is not None]
        if closing:
            await asyncio.gather(*closing)


def build_app(conf: Any, lake: Any):
    """The Serve application: arms pinned to versions, autoscaling from ``conf.model_server``."""
    # @serve.deployment made the class a Deployment; type checkers still see the class.
    deployment = ModelServer.options(  # type: ignore[attr-defined]
        **deployment_options(conf.model_server))
    return deployment.bind(*server_args(conf, lake))


def server_args(conf: Any, lake: Any) -> tuple[Any, ...]:
    """The arguments each replica gets (``ModelServer``): arms pinned to versions, the
    lake's root and redacted options, the settings and the feature lookup. Refuses here,
    before any replica starts: an unknown model or version, a broken key file, governed
    entity keys to hash in the log and no key in the environment."""
    from dataclasses import asdict

    from raylake.config.redact import redact_options
    from raylake.models.registry import ModelRegistry
    from raylake.serve import live_profile
    from raylake.serve.ab import resolve_arms
    from raylake.serve.request_log import ensure_table

    ms = conf.model_server
    arms = resolve_arms(conf.model, ms.arms, ModelRegistry(lake))
    # Entity keys classified pii/restricted (serve/log_keys.py): their names travel, the
    # key is read by each replica; a missing key refuses here, before anything is written.
    governed = sorted(governed_log_keys(conf, lake))
    log_key_policy(str(ms.log_keys), governed, conf.governance.key_env,
                   logging=bool(ms.request_log_table))
    if ms.request_log_table:
        ensure_table(lake, ms.request_log_table)
    if ms.live_profile:
        live_profile.ensure_table(lake, ms.profile_table)
    lookup = None
    if ms.feature_service:
        from raylake.features.online.settings import store_settings

        lookup = {"features": asdict(conf.features), "service": ms.feature_service,
                  "store": store_settings(conf, lake)}
    settings = {k: getattr(ms, k) for k in (
        "salt", "max_rows", "max_batch_size", "batch_wait_timeout_s", "request_log_table",
        "log_flush_rows", "log_flush_s", "log_spool_dir", "live_profile", "profile_window",
        "profile_table", "replay_clock")}
    # Request limits; the key file's path only (the keys never leave the replica's host).
    settings.update({k: getattr(ms, k) for k in (
        "max_body_bytes", "max_string_length", "max_unit_id_length", "max_depth",
        "api_keys_file")})
    # A broken key file fails here, before any replica starts; keys found here must be
    # found by every replica too (a bool travels, never a key).
    settings["require_api_keys"] = ApiKeys(ms.api_keys_file).configured
    settings.update(log_keys=str(ms.log_keys), key_env=conf.governance.key_env,
                    governed_keys=governed)
    # POST /outcomes and the monitoring gauges (serve/outcomes.py, serve/alert_gauges.py).
    settings.update(outcomes_table=conf.outcomes.table,
                    max_outcomes=conf.outcomes.max_rows_per_request,
                    alerts_refresh_s=ms.alerts_refresh_s, monitor_table=conf.monitor.table)
    # Serve keeps a deployment's arguments: credentials stay out (config/redact.py); the
    # replicas read them from their environment.
    return ([a.to_dict() for a in arms], lake.root, redact_options(lake.storage.options),
            settings, lookup)


def deployment_options(ms: Any) -> dict[str, Any]:
    """Serve deployment options from the ``model_server`` config ``ms``: autoscaling, CPUs
    per replica and the most requests in flight per replica."""
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
    from raylake.config.loader import config_of_sections

    # Sections not given (dataset, train, ...) come from the shipped config, which sets
    # the values the schema leaves required.
    return config_of_sections(config or {})
