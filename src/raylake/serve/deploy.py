"""The Serve config of the model server: what ``serve deploy`` (or a RayService's
``serveConfigV2``) runs for the arms deployed by ``raylake serve``, pinned to their
versions."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

from raylake.config.redact import ConfigPath, redact

APP_NAME = "model"
IMPORT_PATH = "raylake.serve.app:app_builder"


def serve_config(conf: Any, arms: list[Any], env: Iterable[ConfigPath] = ()) -> dict[str, Any]:
    """A Serve config (ServeDeploySchema) running this server with ``arms`` pinned.

    The config it carries is redacted (``config/redact.py``): credential-like keys and
    the values at ``env`` (the composed config's environment interpolations,
    :func:`~raylake.config.redact.env_paths`) become ``<redacted>``, which the app
    leaves out, so the cluster's environment supplies them."""
    from raylake.serve.app import DEPLOYMENT, deployment_options

    ms = asdict(conf.model_server)
    ms["arms"] = {a.name: {"model": f"{a.model}:{a.version}", "weight": a.weight,
                           "shadow": a.shadow} for a in arms}
    ms["config_file"] = None
    config: dict[str, Any] = {
        # The branch too: a config deployed from a branch serves the branch's registry.
        "lake": {"root": conf.lake.root, "storage_options": dict(conf.lake.storage_options),
                 "branch": conf.lake.branch},
        "model_server": ms,
        # POST /outcomes writes here; the gauges read monitor.table's results.
        "outcomes": asdict(conf.outcomes),
        "monitor": {"table": conf.monitor.table},
    }
    if conf.model_server.feature_service:
        config["features"] = asdict(conf.features)
        config["online"] = asdict(conf.online)
    config = redact(config, env)
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
    """Write ``config`` (a Serve config) to ``path`` as YAML, under a comment saying how to
    deploy it; an existing file is replaced."""
    import yaml

    with open(path, "w") as f:
        f.write("# Written by `raylake serve`; deploy with `serve deploy " + path + "`.\n")
        yaml.safe_dump(config, f, sort_keys=False)
