"""``POST /recommend`` on Ray Serve: retrieval and ranking for many clients at once.

Request (JSON)::

    {"user_id": 17, "k": 20}          # k: 1..recsys.server.max_k, default 20

Answer::

    {"request_id": "…", "user_id": 17, "items": [812, 45, …], "scores": [0.31, 0.29, …],
     "cold_start": false, "candidates_scored": 500,
     "models": {"towers": "recsys_two_tower:1", "index": "recsys_item_index:1",
                "ranker": "recsys_ranker:1"}}

Requests that arrive together are scored together (``@serve.batch``: up to
``recsys.server.max_batch_size`` requests, waiting at most ``recsys.server.batch_wait_s``
for the batch to fill): one index search, one batched online read per feature view and
one ranker call per batch (``recommender.py``), in the replica's event loop: requests
arriving meanwhile queue and make the next batch (in a thread, the GIL-bound scoring
starved the loop to batches of one request: see ``RecommendServer.__init__``), so
``/health`` waits at most one batch. Replicas ask for ``recsys.server.cpus_per_replica``
CPUs each (fractional: Serve's HTTP proxy keeps a core on a 2-core machine).

Bad input, and what the server answers (the replica stays healthy after each):

- a user the towers never saw (or an id that is no integer): 200 with the most popular
  items, ``cold_start: true`` and ``fallback: "popularity"``;
- fewer candidates than ``k`` (a small index): the ranked ones, then popular items,
  ``fallback: "popularity"`` and ``filled``;
- ``k`` above ``recsys.server.max_k`` or below 1, or not an integer: 422 naming the limit;
- a body that is no JSON object (400), no ``user_id``, a ``user_id`` that is not an
  integer or a string, an unknown field (422): ``error`` says which and how to fix it;
- over ``model_server.max_body_bytes``: 413.

With API keys configured (``raylake.auth``, ``model_server.api_keys_file``), /recommend
needs a key with the ``read`` scope, like /predict; /health is open.

Request log: every answer and refusal is a row of ``model_server.request_log_table``
(``serve/request_log.py``: spooled before the answer, committed in batches), the table
``POST /predict`` logs to, so that ``POST /outcomes`` and the A/B report join clicks to
answers by ``request_id``. Its columns as this server fills them: ``unit_id`` the user,
``model_name``/``model_version`` the ranker, ``arm`` ``recommend``, ``rows`` the items
answered, ``predictions`` their scores, ``entities`` ``{"user_id": [u], "item_id":
[items…]}`` (keys classified pii or restricted hashed as ``model_server.log_keys`` says),
``features`` ``{"models": {...}, "k", "cold_start", "fallback", "candidates_scored"}``.
"""

# No `from __future__ import annotations`: FastAPI must see the real `Request` annotation.
import asyncio
import json
import logging
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve

from raylake.auth import ApiKeys
from raylake.errors import AuthError, did_you_mean
from raylake.features.checks import Limits, read_body, safe_text
from raylake.serve.inputs import BadRequest, read_json

app = FastAPI(title="raylake recommendations")
log = logging.getLogger("raylake.recsys")

APP_NAME = "recommend"
DEPLOYMENT = "RecommendServer"
ARM = "recommend"  # the request log's arm of this server's rows
FIELDS = ("user_id", "k")
DEFAULT_K = 20


def parse_body(body: Any, max_k: int, max_string: int = 256) -> tuple[Any, int]:
    """(user id, k) of a /recommend body; BadRequest naming the field otherwise."""
    if not isinstance(body, dict):
        raise BadRequest(400, 'The body must be a JSON object: {"user_id": 17, "k": 20}.',
                         "bad_json")
    unknown = [k for k in body if k not in FIELDS]
    if unknown:
        name = str(unknown[0])[:100]
        raise BadRequest(422, f"Unknown field {name!r}.{did_you_mean(name, FIELDS)} A request "
                              'has "user_id" and, optionally, "k".', "unknown_field")
    if "user_id" not in body:
        raise BadRequest(422, 'user_id is missing: send {"user_id": 17, "k": 20}.',
                         "missing_field")
    user = body["user_id"]
    if isinstance(user, bool) or not isinstance(user, (int, str)):
        raise BadRequest(422, f"user_id must be an integer or a string, not "
                              f"{type(user).__name__}.", "wrong_type")
    if isinstance(user, str) and len(user) > max_string:
        raise BadRequest(422, f"user_id is {len(user)} characters, over the limit of "
                              f"{max_string}.", "wrong_type")
    k = body.get("k", DEFAULT_K)
    if isinstance(k, bool) or not isinstance(k, int):
        raise BadRequest(422, f"k must be an integer from 1 to {max_k} "
                              f"(recsys.server.max_k), not {type(k).__name__}.", "wrong_type")
    if k < 1:
        raise BadRequest(422, f"k={k} must be at least 1.", "bad_k")
    if k > max_k:
        raise BadRequest(422, f"k={k} is above the limit of {max_k} (recsys.server.max_k); "
                              f"ask for at most {max_k} items.", "bad_k")
    return user, k


@serve.deployment
@serve.ingress(app)
class RecommendServer:
    def __init__(self, config: dict[str, Any], settings: dict[str, Any]) -> None:
        from raylake.config.loader import config_of_sections
        from raylake.lake import Lake
        from raylake.recsys.recommender import Recommender
        from raylake.serve.log_keys import log_key_policy
        from raylake.serve.request_log import RequestLog

        conf = config_of_sections(config)
        self.lake = Lake.from_config(conf.lake)
        self.rec = Recommender.open(self.lake, conf, threads=int(settings.get("threads", 1)))
        s, ms = conf.recsys.server, conf.model_server
        self.max_k = int(s.max_k)
        self.limits = Limits(max_body_bytes=ms.max_body_bytes, max_items=16,
                             max_string=ms.max_string_length, max_depth=4)
        self.keys = ApiKeys(ms.api_keys_file, required=bool(settings.get("require_api_keys")))
        # Methods of the @serve.batch wrapper, which type checkers do not see.
        self._batch.set_max_batch_size(int(s.max_batch_size))  # type: ignore[attr-defined]
        self._batch.set_batch_wait_timeout_s(float(s.batch_wait_s))  # type: ignore[attr-defined]
        self.replica = serve.get_replica_context().replica_id.unique_id
        table = ms.request_log_table
        self.request_log = RequestLog(
            self.lake, table, replica=self.replica, spool_dir=ms.log_spool_dir,
            flush_rows=ms.log_flush_rows, flush_s=ms.log_flush_s) if table else None
        self.log_keys = log_key_policy(str(ms.log_keys), settings.get("governed_keys", []),
                                       conf.governance.key_env, logging=table is not None)
        self.ranker = self.rec.versions["ranker"].rsplit(":", 1)
        # Scoring in the event loop (default) or in a thread. Scoring is mostly Python
        # holding the GIL (store reads, JSON): in a thread it starves the event loop,
        # which then takes in a request or two per batch (measured: batches of ~1,
        # 29 requests/s); in the loop, requests queue during a batch and the next batch
        # takes them all (benchmarks/recsys.py --in-thread).
        self.in_thread = bool(settings.get("in_thread", False))
        # Batches scored, requests in them and seconds spent scoring (GET /health).
        self.batches, self.batched, self.batch_s = 0, 0, 0.0

    @app.get("/health")
    def health(self) -> dict[str, Any]:
        """``GET /health``: status ``ok``, the model versions and the batch settings."""
        return {"status": "ok", "models": self.rec.versions,
                "candidates": self.rec.candidates, "max_k": self.max_k,
                "batches": self.batches, "requests_batched": self.batched,
                "scoring_s": round(self.batch_s, 3)}

    @app.post("/recommend")
    async def recommend(self, request: Request) -> JSONResponse:
        """``POST /recommend``: the user's top k items with scores (see the module)."""
        start = time.perf_counter()
        request_id = uuid.uuid4().hex
        user: Any = None
        try:
            self.keys.check(request.headers, "read")
            raw = await read_body(request, self.limits, BadRequest)
            user, k = parse_body(read_json(raw, self.limits), self.max_k,
                                 self.limits.max_string)
            answer = await self._batch((user, k, request_id))
        except BadRequest as exc:
            return self._failed(exc.status, exc.kind, str(exc), request_id, user, start)
        except AuthError as exc:
            return self._failed(exc.status, "auth", str(exc), request_id, user, start)
        except Exception as exc:  # a bug or a broken store: the client is not at fault
            log.exception("recommend failed")
            return self._failed(500, "internal", f"Internal error ({type(exc).__name__}); see "
                                "the replica's log.", request_id, user, start)
        body = answer.to_dict(self.rec.versions)
        self._log(request_id, user, 200, answer=body, latency_ms=(time.perf_counter() - start)
                  * 1000)
        return JSONResponse(body)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
    async def _batch(self, items: list[tuple[Any, int, str]]) -> list[Any]:
        """One ``Recommender.recommend`` for the whole batch."""
        start = time.perf_counter()
        args = ([(u, k) for u, k, _ in items], [r for _, _, r in items])
        if self.in_thread:
            out = await asyncio.to_thread(self.rec.recommend, *args)
        else:
            out = self.rec.recommend(*args)
        self.batches, self.batched = self.batches + 1, self.batched + len(items)
        self.batch_s += time.perf_counter() - start
        return out

    def _failed(self, status: int, kind: str, message: str, request_id: str, user: Any,
                start: float) -> JSONResponse:
        text = safe_text(message)
        self._log(request_id, user, status, error_kind=kind, error=text[:1000],
                  latency_ms=(time.perf_counter() - start) * 1000)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse({"error": text, "kind": kind, "request_id": request_id},
                            status_code=status, headers=headers)

    def _log(self, request_id: str, user: Any, status: int, *, answer: Any = None,
             error_kind: Any = None, error: Any = None, latency_ms: float = 0.0) -> None:
        if self.request_log is None:
            return
        entities: Any = {"user_id": [user]} if user is not None else None
        features: Any = None
        predictions = None
        if answer is not None:
            entities["item_id"] = answer["items"]
            predictions = answer["scores"]
            features = {k: answer.get(k) for k in ("models", "cold_start", "fallback",
                                                   "candidates_scored")}
            features["k"] = len(answer["items"])
        if self.log_keys.active:
            if error:
                error = self.log_keys.scrub(error, entities)
            entities = self.log_keys.apply(entities)
        self.request_log.add(
            request_id=request_id, unit_id=None if user is None else str(user),
            experiment=None, arm=ARM, model_name=self.ranker[0],
            model_version=int(self.ranker[1]), shadow=False, status=status,
            error_kind=error_kind, error=error, rows=len(predictions or []),
            features=json.dumps(features) if features is not None else None,
            entities=json.dumps(entities, default=str) if entities else None,
            predictions=predictions, latency_ms=latency_ms, replica=self.replica)

    def check_health(self) -> None:
        """Serve's health check: RuntimeError when the request log's writer thread died."""
        rl = self.request_log
        if rl is not None and rl.writer_died:
            raise RuntimeError("the request log's writer thread died")

    async def __del__(self) -> None:
        # Serve's graceful stop: the request log's last rows go to the lake (serve/app.py).
        rl = getattr(self, "request_log", None)
        if rl is not None:
            await asyncio.to_thread(rl.close, 8.0)


def build_app(conf: Any, lake: Any, *, threads: int = 1, in_thread: bool = False) -> Any:
    """The Serve application of ``conf.recsys.server`` on ``lake``: ``replicas`` replicas
    of ``cpus_per_replica`` CPUs. ``threads``: the ranker's threads per replica;
    ``in_thread``: score batches in a thread instead of the event loop (measurements)."""
    s = conf.recsys.server
    deployment = RecommendServer.options(  # type: ignore[attr-defined]
        num_replicas=int(s.replicas),
        ray_actor_options={"num_cpus": float(s.cpus_per_replica)},
        # Enough requests in flight per replica to fill a batch while one is scored.
        max_ongoing_requests=max(4 * int(s.max_batch_size), 32))
    config, settings = server_args(conf, lake, threads)
    settings["in_thread"] = bool(in_thread)
    return deployment.bind(config, settings)


def server_args(conf: Any, lake: Any, threads: int = 1) -> tuple[dict[str, Any],
                                                                  dict[str, Any]]:
    """What each replica gets: the config sections it reads (the lake's options redacted:
    replicas read credentials from their environment) and its settings. Refuses here,
    before any replica starts, a registry without the models or a broken key file."""
    from dataclasses import asdict

    from raylake.config.redact import redact_options
    from raylake.models.registry import ModelRegistry
    from raylake.recsys.vectors import tower_version
    from raylake.serve.log_keys import governed_log_keys, log_key_policy
    from raylake.serve.request_log import ensure_table

    r = conf.recsys
    registry = ModelRegistry(lake)
    for name in (r.index_model, r.ranker_model):
        registry.get(name)  # ModelNotFoundError naming the job that registers it
    tower_version(lake, conf, None)
    ms = conf.model_server
    governed = sorted(governed_log_keys(conf, lake))
    log_key_policy(str(ms.log_keys), governed, conf.governance.key_env,
                   logging=bool(ms.request_log_table))
    if ms.request_log_table:
        ensure_table(lake, ms.request_log_table)
    lake_section = asdict(conf.lake)
    lake_section["storage_options"] = redact_options(lake.storage.options)
    config = {"lake": lake_section, "recsys": asdict(r), "features": asdict(conf.features),
              "online": asdict(conf.online), "model_server": asdict(ms),
              "governance": asdict(conf.governance)}
    config = json.loads(json.dumps(config, default=_plain))
    settings = {"threads": int(threads), "governed_keys": governed,
                "require_api_keys": ApiKeys(ms.api_keys_file).configured}
    return config, settings


def _plain(v: Any) -> Any:
    return getattr(v, "value", str(v))  # enums (Choice) as their value
