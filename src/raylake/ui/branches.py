"""Branch pages: the list, and one branch's tables against its base and main."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from raylake.lake.branches import BranchError, get_branch, list_branches
from raylake.ui.app import Missing, Ui


def routes(app: FastAPI, ui: Ui) -> None:
    """Add the branch pages to ``app``."""

    @app.get("/branches", response_class=HTMLResponse)
    def branches(branch: str = "") -> HTMLResponse:
        v = ui.view(branch)
        return ui.render(v, "branches.html", rows=list_branches(ui.lake))

    @app.get("/branches/{name}", response_class=HTMLResponse)
    def one(name: str) -> HTMLResponse:
        try:
            info = get_branch(ui.lake, name)
        except (BranchError, ValueError) as exc:
            raise Missing(str(exc), [("main", "/tables")] + [
                (b.name, f"/branches/{b.name}") for b in list_branches(ui.lake)],
                "branch") from exc
        v, main = ui.view(name), ui.view(None)
        rows = []
        for table in v.names():
            base = info.tables.get(table)
            latest = v.reader.latest(table)
            on_main = main.reader.latest(table) if main.reader.exists(table) else None
            rows.append({"table": table, "base": base, "latest": latest, "main": on_main,
                         "changed": base is None or latest != base})
        return ui.render(v, "branch.html", info=info, rows=rows)
