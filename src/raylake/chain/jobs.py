"""``raylake chain``: the whole lifecycle on one lake, one job after another.

ingest -> profile -> aggregate -> features apply -> training set -> train (registers a
candidate) -> promote to champion -> materialize the online store -> serve on Ray
Serve -> one prediction over HTTP by entity key -> the answer's lineage. Each step is
the same job function ``raylake <job>`` runs, on the same composed config (so any
override, e.g. ``lake.root=...`` or ``train.seed=7``, applies to
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

from raylake.config.schema import RaylakeConfig
from raylake.errors import ConfigError, RaylakeError
from raylake.lake.tables import Lake
from raylake.runner import JobContext, job, job_config


def _check(conf: RaylakeConfig) -> None:
    if not conf.train.register:
        raise ConfigError("raylake chain promotes and serves the model it trains: drop "
                          "train.register=false.")
    if not conf.training_set.feature_service:
        raise ConfigError("raylake chain serves the model with the feature service it was "
                          "trained on: set training_set.feature_service=<name> (conf/features/).")


@job("chain", help="the whole lifecycle on one dataset: ingest, profile, features, train, "
                   "serve, one prediction, its lineage", record=False, check=_check)
def chain(ctx: JobContext) -> dict[str, Any]:
    """Each step is the job ``raylake <step>`` runs, on the composed config."""
    from raylake.features.jobs import aggregate, features_apply, materialize, training_set
    from raylake.ingest.jobs import ingest
    from raylake.models.registry import ModelRegistry
    from raylake.quality.jobs import profile
    from raylake.train.jobs import train

    conf, lake, echo = ctx.conf, ctx.lake, ctx.echo
    cfg = ctx.cfg if ctx.cfg is not None else OmegaConf.structured(conf)
    # A Ray this job started is this job's to stop; on a cluster it only removes its app.
    own_ray = bool(ctx.ray.get("started"))
    entity_table, service = conf.training_set.entity_table, conf.training_set.feature_service
    lake_arg = f"lake.root={conf.lake.root}"
    out: dict[str, Any] = {}
    started = time.perf_counter()

    def step(n: int, title: str, job: str, **keys: Any) -> DictConfig:
        """Print step ``n``'s heading (with the seconds since the chain started) and return
        a copy of the composed config for job ``job``, with ``keys`` (dotted config keys)
        set."""
        echo(f"\n== {n}/8 {title} ({time.perf_counter() - started:.0f}s)")
        return job_config(cfg, job, **keys)

    out["ingest"] = ingest(step(1, f"ingest {conf.dataset.name} into Delta tables", "ingest"),
                           echo=echo)
    echo(f"   look: raylake lake list {lake_arg}; raylake lake history {entity_table} {lake_arg}")

    out["profile"] = profile(step(2, f"profile {entity_table} (whylogs profiles)", "profile",
                                  table=entity_table), echo=echo)
    echo(f"   look: raylake quality report table={entity_table} {lake_arg}")

    c = step(3, "window aggregations, feature definitions, training set", "aggregate")
    if conf.features.aggregations:
        out["aggregate"] = aggregate(c, echo=echo)
    c.job = "features-apply"  # after aggregate: the definitions are checked against the lake
    out["features"] = features_apply(c, echo=echo)
    c.job = "training-set"
    out["training_set"] = training_set(c, echo=echo)
    echo(f"   look: raylake lake read {conf.training_set.output_table} --limit 5 {lake_arg}")

    out["train"] = train(step(4, f"train {conf.train.trainer} on Ray Train, register",
                              "train"), echo=echo)
    name, version = conf.train.model_name, out["train"]["version"]
    echo(f"   look: raylake models show {name} {lake_arg}")

    step(5, f"promote {name}:{version} to champion", "models")
    mv = ModelRegistry(lake).promote(name, version, "champion", reason="raylake chain")
    echo(f"{name}:{mv.version} is {mv.stage}")

    out["materialize"] = materialize(step(6, "latest feature values into the online store",
                                          "materialize"), echo=echo)

    c = step(7, "serve the champion on Ray Serve, one prediction over HTTP", "serve",
             model=f"{name}:champion", **{"model_server.feature_service": service})
    out["prediction"] = _serve_and_predict(c, _request(lake, conf, mv.features), echo,
                                           stop_serve=own_ray)

    step(8, "the answer's lineage", "lineage")
    from raylake.lineage import Lineage, parse_ref, render

    ref = f"request:{out['prediction']['request_id']}"
    log_table = conf.model_server.request_log_table
    if log_table:
        tree = Lineage(lake, log_table).upstream(parse_ref(lake, ref))
        out["lineage"] = render(tree)
        echo("\n".join(out["lineage"]))
        echo(f"   look: raylake lineage {ref} {lake_arg}; raylake runs list {lake_arg}")
    from raylake.runtime import console

    log_file = console().log_file
    echo(f"\nchain done in {time.perf_counter() - started:.0f}s; lake at {conf.lake.root}"
         + (f"; Ray's own log lines: {log_file}" if log_file else ""))
    return out


def _serve_and_predict(c: DictConfig, body: dict[str, Any], echo: Any, *,
                       stop_serve: bool) -> dict[str, Any]:
    from ray import serve

    from raylake.config.loader import to_config
    from raylake.serve.deploy import APP_NAME
    from raylake.serve.jobs import serve as serve_job

    ms = to_config(c).model_server
    url = f"http://{ms.host}:{ms.port}/predict"
    try:
        serve_job(c, echo=echo, blocking=False)
        entities = ", ".join(f"{k}={v[0]}" for k, v in body["entities"].items())
        echo(f"POST {url}: unit {body['unit_id']} ({entities}; {len(body['features'])} "
             "request features)")
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
        predictions = ", ".join(f"{p:.4g}" if isinstance(p, float) else str(p)
                                for p in answer.get("predictions") or [])
        echo(f"-> {answer.get('model')}:{answer.get('version')} (arm {answer.get('arm')}): "
             f"{predictions}; request {answer.get('request_id')}")
    finally:
        # Stopping the replica flushes its request log to the lake. Only this job's app
        # goes: other apps on a shared cluster keep running.
        if stop_serve:
            serve.shutdown()
        else:
            serve.delete(APP_NAME)
    return answer


def _request(lake: Lake, conf: RaylakeConfig, model_features: list[dict[str, Any]]
             ) -> dict[str, Any]:
    """One entity row as a client would send it: the feature service's entity keys (the
    online store looks their features up) and the row's own fields the model reads."""
    import pyarrow.compute as pc

    from raylake.features.definitions import resolve

    t = conf.training_set
    assert t.feature_service
    reg = resolve(conf.features)
    views = reg.select(t.feature_service)
    keys = list(dict.fromkeys(k for v in views if v in reg.views for k in reg.view(v).join_keys))
    names = {f["name"] for f in model_features} | set(reg.request_types(list(views)))
    own = [c for c in t.entity_columns if c in names and c not in t.drop_columns]
    columns = list(dict.fromkeys([*keys, *own]))
    rows = lake.read(t.entity_table, columns=columns)
    for k in keys:
        rows = rows.filter(pc.is_valid(rows[k]))
    if not rows.num_rows:
        raise ConfigError(f"{t.entity_table} has no row with every entity key "
                          f"({', '.join(keys)}) set; chain cannot build a request.")
    row = rows.slice(0, 1).to_pylist()[0]
    return {
        "unit_id": "-".join(str(row[k]) for k in keys) or "chain",
        "entities": {k: [row[k]] for k in keys},
        "features": {k: [row[k]] for k in own},
    }


def _check_replay(conf: RaylakeConfig) -> None:
    _check(conf)
    if not conf.training_set.label:
        raise ConfigError("raylake replay sends each row's outcome later: set "
                          "training_set.label (e.g. \"dep_delay > 15\").")
    if not conf.model_server.request_log_table:
        raise ConfigError("raylake replay monitors the request log: set "
                          "model_server.request_log_table (e.g. serving/requests).")


@job("replay", help="backtest monitoring and CT: months of traffic through the model server "
                    "on a replayed clock, monitored and retrained month by month",
     record=False, check=_check_replay)
def replay(ctx: JobContext) -> dict[str, Any]:
    """See :mod:`raylake.chain.replay`."""
    from raylake.chain.replay import Replay

    cfg = ctx.cfg if ctx.cfg is not None else OmegaConf.structured(ctx.conf)
    return Replay(ctx.conf, cfg, ctx.lake, ctx.echo).run()
