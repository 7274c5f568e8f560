"""Model pages: the registry's versions with stages and metrics, and one version."""

from __future__ import annotations

import json

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from raylake.config.redact import redact
from raylake.ui.app import Missing, Ui
from raylake.ui.runs import flat_metrics

KEY_METRICS = 4


def routes(app: FastAPI, ui: Ui) -> None:
    """Add the model pages to ``app``."""

    @app.get("/models", response_class=HTMLResponse)
    def models(branch: str = "") -> HTMLResponse:
        v = ui.view(branch)
        rows = [(mv, [(k, m) for k, m in flat_metrics(mv.metrics)
                      if isinstance(m, (int, float))][:KEY_METRICS])
                for mv in v.facts.models()]
        return ui.render(v, "models.html", rows=rows)

    @app.get("/models/{name}/{version}", response_class=HTMLResponse)
    def model(name: str, version: int, branch: str = "") -> HTMLResponse:
        v = ui.view(branch)
        every = v.facts.models()
        mv = next((m for m in every if m.name == name and m.version == version), None)
        if mv is None:
            raise Missing(f"No model version {name}:{version} in {v.lake.root}. Registered: "
                          f"{', '.join(m.ref for m in every) or 'none'}.",
                          [(m.ref, v.u(f"/models/{m.name}/{m.version}")) for m in every]
                          + [("the registry", v.u("/models"))],
                          "model version")
        monitored = v.reader.exists(f"monitoring/{name}")
        return ui.render(v, "model.html", mv=mv, metrics=flat_metrics(mv.metrics),
                         # Redacted at registration too; again for older entries.
                         config=json.dumps(redact(mv.config), indent=2, sort_keys=True,
                                           default=str),
                         monitored=monitored, run=v.facts.run_ids().get(mv.run_id or ""))
