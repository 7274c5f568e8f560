"""``raylake lineage export --format openlineage``: the lake's run records as OpenLineage
RunEvents, to an NDJSON file, standard output or an HTTP receiver (Marquez).

Like the other admin commands, flags come anywhere and any ``key=value`` argument is a
config override (``lake.root=/tmp/lake``). Where events go when neither ``--output`` nor
``--url`` is given: ``governance.openlineage.url``, else ``.file``, else standard output.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

FORMATS = ("openlineage",)


def export_command(args: Sequence[str]) -> int:
    """Run ``raylake lineage export ...`` with ``args``; returns the exit status (errors
    raise RaylakeError, which the caller prints)."""
    from raylake.cli import _split
    from raylake.config.loader import compose_config, to_config
    from raylake.errors import ConfigError, did_you_mean
    from raylake.governance.openlineage import export, parse_since
    from raylake.lake import Lake

    rest, overrides = _split(args)
    p = argparse.ArgumentParser(
        prog="raylake lineage export",
        description="the lake's run records as OpenLineage RunEvents (START, COMPLETE, FAIL)",
        epilog="e.g. raylake lineage export --format openlineage --output events.ndjson; "
               "raylake lineage export --format openlineage --url http://localhost:5000")
    # Not argparse choices: an unknown format gets raylake's error with the fix.
    p.add_argument("--format", default="openlineage", help="openlineage (the only one)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--output", "-o", help="an NDJSON file (- for standard output)")
    where.add_argument("--url", help="POST each event to URL/api/v1/lineage")
    p.add_argument("--since", help="only runs started at or after this ISO time")
    ns = p.parse_args(rest)
    if ns.format not in FORMATS:
        raise ConfigError(f"Unknown lineage export format {ns.format!r}."
                          f"{did_you_mean(ns.format, FORMATS)} Formats: {', '.join(FORMATS)}.")
    since = parse_since(ns.since)
    conf = to_config(compose_config(overrides, job="admin"))
    settings = conf.governance.openlineage
    lake = Lake.from_config(conf.lake)
    lake.require_root()  # a mistyped root is an error, not "no runs"
    url, output = ns.url, ns.output
    if url is None and output is None:
        url, output = settings.url, None if settings.url else settings.file
    done = export(lake, namespace=settings.namespace, since=since, output=output, url=url,
                  timeout_s=settings.timeout_s, echo=print)
    # The count goes to stderr when the events themselves are on standard output.
    log = sys.stderr if done["to"] == "standard output" else sys.stdout
    print(f"exported {done['events']} OpenLineage events of {done['runs']} runs to "
          f"{done['to']}", file=log)
    return 0
