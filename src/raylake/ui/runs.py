"""Run pages: the filterable list and one run (config, inputs, outputs, metrics, error)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Query
from fastapi.responses import HTMLResponse

from raylake.config.redact import redact
from raylake.errors import RunNotFoundError
from raylake.lake.clock import parse_time
from raylake.ui.app import Missing, Ui, View
from raylake.ui.facts import RunFilter

RUNS_PER_PAGE = 50
STATUSES = ("running", "succeeded", "failed", "skipped")


def entry_link(v: View, entry: dict[str, Any]) -> tuple[str, str]:
    """A run's input or output entry as (text, link or '')."""
    if entry.get("model"):
        ver = entry.get("version")
        return f"model {entry['model']}:{ver}", v.u(f"/models/{entry['model']}/{ver}")
    if entry.get("kind") == "files":
        files = entry.get("files") or []
        shown = ", ".join(str(f) for f in files[:3]) + (" …" if len(files) > 3 else "")
        return f"files {shown}" + (f" → {entry['table']}" if entry.get("table") else ""), ""
    if entry.get("table"):
        ver = entry.get("version")
        text = f"{entry['table']}@{ver}" if ver is not None else entry["table"]
        return text, v.u(f"/table/{entry['table']}", version=ver)
    return json.dumps(entry, default=str)[:120], ""


def flat_metrics(metrics: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested metrics as (dotted key, value) pairs."""
    out: list[tuple[str, Any]] = []
    if isinstance(metrics, dict):
        for k, val in metrics.items():
            out += flat_metrics(val, f"{prefix}{k}.")
    elif isinstance(metrics, list) and len(metrics) > 8:
        out.append((prefix.rstrip("."), f"[{len(metrics)} values]"))
    else:
        out.append((prefix.rstrip("."), metrics))
    return out


def routes(app: FastAPI, ui: Ui) -> None:
    """Add the run pages to ``app``."""

    @app.get("/runs", response_class=HTMLResponse)
    def runs(branch: str = "", job: str = "", status: str = "", since: str = "",
             until: str = "", page: int = Query(0, ge=0)) -> HTMLResponse:
        v = ui.view(branch)
        f = RunFilter(job, status, parse_time(since) if since else None,
                      parse_time(until) if until else None)
        every = v.facts.runs()
        shown = [r for r in every if f.keep(r)]
        pages = max(1, -(-len(shown) // RUNS_PER_PAGE))
        rows = shown[page * RUNS_PER_PAGE:(page + 1) * RUNS_PER_PAGE]
        for r in rows:
            r["_outputs"] = [entry_link(v, o) for o in r["outputs"] or []][:4]
        return ui.render(v, "runs.html", rows=rows, total=len(shown), count=len(every),
                         jobs=v.facts.jobs(), statuses=STATUSES, f=f, since=since,
                         until=until, page=page, pages=pages)

    @app.get("/runs/{run_id}", response_class=HTMLResponse)
    def run(run_id: str, branch: str = "") -> HTMLResponse:
        v = ui.view(branch)
        try:
            r = v.facts.run(run_id)
        except RunNotFoundError as exc:
            recent = v.facts.runs()[:20]
            raise Missing(f"{exc} The lake has {len(v.facts.runs())} runs; the newest are "
                          "listed below.",
                          [(f"{x['run_id']} ({x['status']})", v.u(f"/runs/{x['run_id']}"))
                           for x in recent], "run") from exc
        return ui.render(
            v, "run.html", r=r, inputs=[entry_link(v, i) for i in r["inputs"] or []],
            outputs=[entry_link(v, o) for o in r["outputs"] or []],
            metrics=flat_metrics(r["metrics"] or {}),
            # Stored redacted (RunRecorder); redacted again so that a record written
            # before that, or by another writer, never shows a credential on a page.
            config=json.dumps(redact(r["config"]), indent=2, default=str, sort_keys=True))
