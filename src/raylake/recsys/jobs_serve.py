"""``raylake recsys-serve experiment=recsys``: ``POST /recommend`` on Ray Serve
(``recsys/server.py``), in the foreground like ``raylake serve``; Ctrl-C stops it after
the replicas flushed their request logs."""

from __future__ import annotations

from typing import Any

from raylake.runner import JobContext, job
from raylake.runtime import gate_ray_logs, serve_until_stopped


@job("recsys-serve", help="serve recommendations on Ray Serve: POST /recommend "
                          "{\"user_id\", \"k\"} (two-tower retrieval, ranker, popularity "
                          "for cold users; experiment=recsys)", record=False)
def recsys_serve(ctx: JobContext, *, blocking: bool = True) -> dict[str, Any]:
    """Deploy the recommendation app at ``recsys.server.host:port``, print its URL and
    block until Ctrl-C (``blocking=False``: return at once, tests)."""
    from ray import serve as ray_serve

    from raylake.recsys.server import APP_NAME, build_app

    conf, lake = ctx.conf, ctx.lake
    s = conf.recsys.server
    app = build_app(conf, lake)  # refuses missing models before Serve starts
    ray_serve.start(http_options={"host": s.host, "port": s.port})
    handle = ray_serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
    gate_ray_logs()
    ctx.echo(f"recommendations on http://{s.host}:{s.port} (POST /recommend, GET /health); "
             f"{s.replicas} replica(s) x {s.cpus_per_replica:g} CPU, batches up to "
             f"{s.max_batch_size} (wait {s.batch_wait_s * 1000:g} ms), "
             f"{conf.recsys.candidates} candidates a request, k up to {s.max_k}")
    if blocking:
        serve_until_stopped()  # returns on Ctrl-C
        ctx.echo("stopping the recommendation server (Ctrl-C)")
        try:
            ray_serve.shutdown()  # the replicas flush their request logs to the lake
        except KeyboardInterrupt:
            pass  # a second Ctrl-C: leave at once
        ctx.echo("recommendation server stopped")
    return {"handle": handle, "url": f"http://{s.host}:{s.port}"}
