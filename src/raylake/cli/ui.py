"""``raylake ui [lake.root=...] [--port 8080] [--host 127.0.0.1]``: the read-only web UI
over a lake (raylake.ui), served by uvicorn until Ctrl-C."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence

_OVERRIDE = re.compile(r"^[+~]{0,2}[A-Za-z_][\w.\-/@]*=")


def ui_command(args: Sequence[str]) -> int:
    """Start the UI; a lake root that is not a lake fails here, before the server starts."""
    from raylake.config.loader import compose_config, to_config
    from raylake.lake import Lake
    from raylake.lineage import REQUEST_LOG
    from raylake.ui.app import check_lake, make_app

    overrides = [a for a in args if _OVERRIDE.match(a)]
    p = argparse.ArgumentParser(
        prog="raylake ui", description="a read-only web UI over the lake: tables, runs, "
        "lineage, models, quality, monitoring, branches (docs/ui.md)",
        epilog="e.g. raylake ui lake.root=/tmp/lake --port 8080")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--host", default="127.0.0.1",
                   help="the address to listen on (default 127.0.0.1: this machine only; the "
                        "UI has no login, see docs/ui.md)")
    ns = p.parse_args([a for a in args if a not in overrides])
    conf = to_config(compose_config(overrides, job="admin"))
    lake = Lake.from_config(conf.lake)
    check_lake(lake)
    app = make_app(lake, request_log=conf.model_server.request_log_table or REQUEST_LOG)
    import uvicorn

    print(f"raylake ui: {lake.root} at http://{ns.host}:{ns.port}/ (Ctrl-C stops)",
          file=sys.stderr)
    try:
        uvicorn.run(app, host=ns.host, port=ns.port, log_level="warning")
    except KeyboardInterrupt:
        pass
    return 0
