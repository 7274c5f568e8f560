"""Serving jobs: ``raylake serve`` (the model server), ``raylake batch-predict``,
``raylake ab report`` and ``raylake profile-requests``."""

from __future__ import annotations

from typing import Any

from raylake.runner import JobContext, job
from raylake.runtime import gate_ray_logs, serve_until_stopped
from raylake.serve import ab_report as ab
from raylake.serve import batch
from raylake.serve import outcomes as oc
from raylake.serve import request_profiles as rp


@job("serve", help="serve a registered model on Ray Serve (model=NAME[:REF], A/B arms, "
                   "request log)", record=False)
def serve(ctx: JobContext, *, blocking: bool = True) -> dict[str, Any]:
    """Deploy the app of ``serve/app.py`` with ``serve.run``, print its URL and block like
    ``serve-features``. With ``model_server.config_file=PATH`` it also writes the Serve
    config for the same arms, pinned to the versions deployed now."""
    from ray import serve as ray_serve

    from raylake.config.redact import env_paths
    from raylake.models.registry import ModelRegistry
    from raylake.serve.ab import resolve_arms
    from raylake.serve.app import build_app
    from raylake.serve.deploy import APP_NAME, serve_config, write_serve_config

    conf, lake = ctx.conf, ctx.lake
    ms = conf.model_server
    arms = resolve_arms(conf.model, ms.arms, ModelRegistry(lake))
    if ms.config_file:
        write_serve_config(ms.config_file, serve_config(conf, arms, env_paths(ctx.cfg)))
        ctx.echo(f"Serve config written to {ms.config_file} (serve deploy {ms.config_file})")
    ray_serve.start(http_options={"host": ms.host, "port": ms.port})
    handle = ray_serve.run(build_app(conf, lake), name=APP_NAME, route_prefix="/",
                           blocking=False)
    gate_ray_logs()  # Serve's own loggers in this process, set up by serve.start
    shown = ", ".join(f"{a.name}={a.model}:{a.version}" + (" (shadow)" if a.shadow else
                                                           f" ({a.weight:g})") for a in arms)
    ctx.echo(f"model server on http://{ms.host}:{ms.port} (POST /predict, GET /health); "
             f"arms: {shown}")
    if blocking:
        serve_until_stopped()  # returns on Ctrl-C
        ctx.echo("stopping the model server (Ctrl-C)")
        try:
            ray_serve.shutdown()  # the replica flushes its request log to the lake
        except KeyboardInterrupt:
            pass  # a second Ctrl-C: leave at once
        ctx.echo("model server stopped")
    return {"handle": handle, "arms": arms}


@job("batch-predict", help="score a lake table with a registered model (Ray Data actors) "
                           "into the lake", check=batch.check_config)
def batch_predict(ctx: JobContext) -> dict[str, Any]:
    """Ray Data actors score a table version; one Delta commit, once per model and input."""
    return batch.score_table(ctx.lake, ctx.conf, ctx.record)


@job("ab-report", help="an A/B test's answers joined with outcomes: per-arm rates or means, "
                       "intervals, significance, sample size (`raylake ab report`)",
     ray=False, check=ab.check_config)
def ab_report(ctx: JobContext) -> dict[str, Any]:
    """The report of :func:`raylake.serve.ab_report.analyse`, printed and appended."""
    report = ab.run_report(ctx.lake, ctx.conf, ctx.record)
    report["summary"] = ab.format_report(report)
    return report


@job("outcomes-add", help="record outcomes from a CSV, Parquet or JSON Lines file, once per "
                          "request or unit id (`raylake outcomes add FILE`)",
     ray=False, check=oc.check_config)
def outcomes_add(ctx: JobContext) -> dict[str, Any]:
    """Check ``outcomes.path`` and add its outcomes to ``outcomes.table``; prints the
    counts (added, duplicate, conflicting, unknown)."""
    return oc.run_add(ctx.lake, ctx.conf, ctx.record)


@job("profile-requests", help="profile the request log's answers into live profiles "
                              "(traffic served before monitoring was on)",
     ray=False, check=rp.check_config)
def profile_requests(ctx: JobContext) -> dict[str, Any]:
    """Whole ended windows of ``model``'s answers in the request log, profiled per version,
    arm and window into ``model_server.profile_table`` (``source=log``), once each."""
    return rp.profile_requests(ctx.lake, ctx.conf, ctx.record)
