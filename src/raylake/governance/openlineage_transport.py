"""Where OpenLineage events go: an NDJSON file (one event a line, what OpenLineage's file
transport writes) or an HTTP receiver, one POST per event to ``/api/v1/lineage`` (Marquez's
path; any OpenLineage HTTP consumer takes it).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from raylake.errors import GovernanceError

ENDPOINT = "/api/v1/lineage"
# The OpenLineage clients' variable for a receiver that wants a bearer token.
API_KEY_ENV = "OPENLINEAGE_API_KEY"


def write_ndjson(events: Iterable[dict[str, Any]], path: str) -> int:
    """Write ``events`` to the local file ``path``, one JSON object a line; the count."""
    if "://" in path:
        raise GovernanceError(f"--output {path!r} must be a local file; send events to a "
                              "server with --url.")
    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with target.open("w", encoding="utf-8") as out:
        for event in events:
            out.write(json.dumps(event, separators=(",", ":")) + "\n")
            n += 1
    return n


def endpoint(url: str) -> str:
    """``url`` with OpenLineage's HTTP path (``/api/v1/lineage``) unless it has it."""
    if not url.startswith(("http://", "https://")):
        raise GovernanceError(f"--url {url!r} is not an HTTP URL; give the receiver's base "
                              "URL, e.g. http://localhost:5000 (Marquez).")
    base = url.rstrip("/")
    return base if base.endswith(ENDPOINT) else base + ENDPOINT


def post_events(events: Iterable[dict[str, Any]], url: str, *, timeout_s: float = 10.0) -> int:
    """POST each event to ``url``'s lineage endpoint; the count sent. GovernanceError at the
    first answer that is not 2xx (naming the status and the URL) or when the receiver
    cannot be reached; events sent before it stay sent (receivers take repeats)."""
    target = endpoint(url)
    headers = {"Content-Type": "application/json"}
    key = os.environ.get(API_KEY_ENV)
    if key:
        headers["Authorization"] = f"Bearer {key}"
    sent = 0
    for event in events:
        req = urllib.request.Request(target, data=json.dumps(event).encode(), headers=headers,
                                     method="POST")
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                status = resp.status
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")[:300]
            raise GovernanceError(
                f"POST {target} answered {exc.code} {exc.reason} for the {event['eventType']} "
                f"event of {event['job']['name']} run {event['run']['runId']} ({sent} events "
                f"sent before it): {body}") from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise GovernanceError(
                f"Cannot POST to {target}: {reason} ({sent} events sent before it). Is the "
                "receiver running? Check --url or governance.openlineage.url.") from exc
        if not 200 <= status < 300:
            raise GovernanceError(f"POST {target} answered {status} ({sent} events sent "
                                  "before it); OpenLineage receivers answer 2xx.")
        sent += 1
    return sent
