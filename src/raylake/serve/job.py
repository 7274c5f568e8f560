"""``raylake serve model=NAME[:VERSION|champion]``: the model server on Ray Serve.

Deploys the app of ``serve/app.py`` with ``serve.run``, prints its URL and blocks like
``serve-features``. With ``model_server.config_file=PATH`` it also writes the Serve
config (``serve deploy PATH``, or a RayService's ``serveConfigV2``) for the same
arms, pinned to the versions deployed now.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

APP_NAME = "model"
IMPORT_PATH = "raylake.serve.app:app_builder"


def serve_config(conf: Any, arms: list[Any]) -> dict[str, Any]:
    """A Serve config (ServeDeploySchema) running this server with ``arms`` pinned."""
    from raylake.serve.app import DEPLOYMENT, deployment_options

    ms = asdict(conf.model_server)
    ms["arms"] = {a.name: {"model": f"{a.model}:{a.version}", "weight": a.weight,
                           "shadow": a.shadow} for a in arms}
    ms["config_file"] = None
    config: dict[str, Any] = {
        "lake": {"root": conf.lake.root, "storage_options": dict(conf.lake.storage_options)},
        "model_server": ms,
    }
    if conf.model_server.feature_service:
        config["features"] = asdict(conf.features)
        config["online"] = asdict(conf.online)
    options = deployment_options(conf.model_server)
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": conf.model_server.host, "port": conf.model_server.port},
        "applications": [{
            "name": APP_NAME,
            "route_prefix": "/",
            "import_path": IMPORT_PATH,
            "args": {"config": config},
            "deployments": [{"name": DEPLOYMENT, **options}],
        }],
    }


def write_serve_config(path: str, config: dict[str, Any]) -> None:
    import yaml

    with open(path, "w") as f:
        f.write("# Written by `raylake serve`; deploy with `serve deploy " + path + "`.\n")
        yaml.safe_dump(config, f, sort_keys=False)


def serve_model(cfg: Any, *, echo: Any = print, blocking: bool = True) -> Any:
    from ray import serve

    from raylake.config.loader import to_config
    from raylake.lake import Lake
    from raylake.models.registry import ModelRegistry
    from raylake.runtime import ensure_ray
    from raylake.serve.ab import resolve_arms
    from raylake.serve.app import build_app

    conf = to_config(cfg)
    lake = Lake.from_config(conf.lake)
    ms = conf.model_server
    arms = resolve_arms(conf.model, ms.arms, ModelRegistry(lake))
    if ms.config_file:
        write_serve_config(ms.config_file, serve_config(conf, arms))
        echo(f"Serve config written to {ms.config_file} (serve deploy {ms.config_file})")
    ensure_ray(conf.ray)
    serve.start(http_options={"host": ms.host, "port": ms.port})
    handle = serve.run(build_app(conf, lake), name=APP_NAME, route_prefix="/", blocking=False)
    shown = ", ".join(f"{a.name}={a.model}:{a.version}" + (" (shadow)" if a.shadow else
                                                           f" ({a.weight:g})") for a in arms)
    echo(f"model server on http://{ms.host}:{ms.port} (POST /predict, GET /health); arms: {shown}")
    if blocking:
        import time

        while True:
            time.sleep(3600)
    return handle
