"""The UI's application: one FastAPI app over one lake, its branches one query away.

``make_app(lake)`` builds it; ``check_lake(lake)`` refuses, before a server starts, a root
that is not a lake. Every page takes ``?branch=NAME`` (``main`` by default) and reads
that branch's lake. Pages that name something the lake does not have (a table, a
version, a run, a model, a branch) answer 404 with what there is instead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import quote, urlencode

import pyarrow.fs as pafs
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from raylake.config.lake import MAIN
from raylake.errors import (
    LakeError,
    ModelNotFoundError,
    RaylakeError,
    RunNotFoundError,
    TableNameError,
    TableNotFoundError,
    VersionNotFoundError,
)
from raylake.lake.runs import RUNS_TABLE
from raylake.lake.storage import BRANCHES_DIR
from raylake.lake.tables import Lake
from raylake.lineage import REQUEST_LOG
from raylake.ui.facts import Facts
from raylake.ui.reads import TableReader

# Top-level folders of a lake that hold no tables (and may hold many files).
NOT_TABLES = {BRANCHES_DIR, "_model_artifacts", "_train", "_reports", "_online"}
NAMES_TTL_S = 2.0


class Missing(Exception):
    """A page names something the lake does not have: 404 with what it has instead."""

    def __init__(self, message: str, exists: list[tuple[str, str]] | None = None,
                 what: str = "") -> None:
        super().__init__(message)
        self.message, self.exists, self.what = message, exists or [], what


@dataclass
class View:
    """One request's lake: the branch asked for, its reads and records, and ``u`` to
    write links that keep the branch."""

    branch: str
    lake: Lake
    reader: TableReader
    facts: Facts
    ui: Ui

    def u(self, path: str, **params: Any) -> str:
        """``path`` with query ``params`` (None left out) and the branch when not main."""
        q = {k: v for k, v in params.items() if v is not None and v != ""}
        if self.branch != MAIN:
            q["branch"] = self.branch
        return quote(path, safe="/:@-_.~") + (f"?{urlencode(q)}" if q else "")

    @property
    def branch_q(self) -> str:
        """``branch=NAME`` for links to another branch than main, else ''."""
        return "" if self.branch == MAIN else urlencode({"branch": self.branch})

    def names(self, *, system: bool = False) -> list[str]:
        """The branch's tables (cached for ``NAMES_TTL_S``)."""
        return self.ui.names(self, system=system)


class Ui:
    """The app's state: the main lake, a reader per branch, templates."""

    def __init__(self, lake: Lake, request_log: str = REQUEST_LOG, fresh_s: float = 0.5) -> None:
        self.lake = lake.on_branch(None) if lake.branch else lake
        self.request_log, self.fresh_s = request_log, fresh_s
        self._views: dict[str, View] = {}
        self._lock = threading.Lock()
        self._names: dict[tuple[str, bool], tuple[float, list[str]]] = {}
        self.env = Environment(loader=PackageLoader("raylake.ui", "templates"),
                               autoescape=select_autoescape(["html"]), trim_blocks=True,
                               lstrip_blocks=True)
        self.env.filters["num"] = fmt_num
        self.env.filters["size"] = fmt_bytes
        self.env.filters["when"] = fmt_when
        self.env.filters["cell"] = fmt_cell

    def view(self, branch: str | None) -> View:
        """The view of ``branch`` (main when empty); 404 naming the branches there are."""
        name = (branch or MAIN).strip() or MAIN
        with self._lock:
            if name in self._views:
                return self._views[name]
        if name == MAIN:
            lake = self.lake
        else:
            from raylake.lake.branches import branch_names

            try:
                lake = self.lake.on_branch(name)
            except (LakeError, ValueError) as exc:
                known = branch_names(self.lake)
                raise Missing(str(exc), [(MAIN, "/tables")] + [
                    (b, f"/tables?branch={quote(b)}") for b in known], "branch") from exc
        reader = TableReader(lake, fresh_s=self.fresh_s)
        v = View(name, lake, reader, Facts(reader, self.request_log), self)
        with self._lock:
            return self._views.setdefault(name, v)

    def names(self, view: View, *, system: bool) -> list[str]:
        """Table names of ``view``'s lake: a walk that stops at each table's folder."""
        key = (view.branch, system)
        hit = self._names.get(key)
        if hit and time.monotonic() - hit[0] < NAMES_TTL_S:
            return hit[1]
        found = table_names(view.lake, system=system)
        self._names[key] = (time.monotonic(), found)
        return found

    def render(self, view: View, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        """Page ``template`` with ``ctx``, the view and the branches for the switcher."""
        page = self.env.get_template(template).render(v=view, u=view.u, **ctx)
        return HTMLResponse(page, status_code=status)


def table_names(lake: Lake, *, system: bool = False) -> list[str]:
    """The tables under ``lake``'s root, found folder by folder: a folder with a
    ``_delta_log`` is a table (its own files are not listed further, its subfolders that
    could be nested tables are); partition folders (``col=value``) are skipped."""
    fs, root = lake.storage.filesystem()
    root = root.rstrip("/")
    found: list[str] = []

    def ls(path: str) -> list[pafs.FileInfo]:
        try:
            return fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        except OSError as exc:
            raise LakeError(f"Cannot list {path}: {exc}") from exc

    def walk(path: str, rel: str, depth: int) -> None:
        dirs = [i for i in ls(path) if i.type == pafs.FileType.Directory]
        if rel and any(d.base_name == "_delta_log" for d in dirs):
            found.append(rel)
        if depth >= 4:
            return
        for d in dirs:
            b = d.base_name
            if b == "_delta_log" or "=" in b or b.startswith("_") or b.startswith("."):
                continue
            walk(d.path, f"{rel}/{b}" if rel else b, depth + 1)

    for info in ls(root):
        if info.type != pafs.FileType.Directory or info.base_name in NOT_TABLES:
            continue
        if info.base_name.startswith("_"):
            if system and fs.get_file_info(f"{info.path}/_delta_log").type == \
                    pafs.FileType.Directory:
                found.append(info.base_name)
            continue
        walk(info.path, info.base_name, 1)
    return sorted(found)


def check_lake(lake: Lake) -> None:
    """LakeError naming the root and the fix unless ``lake`` is a raylake lake: the root
    exists and holds at least one Delta table or run record."""
    lake.require_root()
    if table_names(lake, system=True):
        return
    raise LakeError(
        f"{lake.root} is not a raylake lake: it holds no Delta tables and no run records "
        f"({RUNS_TABLE}). Point lake.root at a lake (e.g. `raylake ui lake.root=/tmp/lake`), "
        f"or make one first: `raylake ingest lake.root={lake.root}` or `raylake chain "
        f"lake.root={lake.root}`."
    )


def fmt_num(value: Any) -> str:
    """A number for a page: thousands separated, floats to 4 significant digits."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 10_000 else f"{value:.4g}"
    return str(value)


def fmt_bytes(n: Any) -> str:
    """Bytes as B, KB, MB, GB."""
    if n is None:
        return "–"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)


def fmt_cell(value: Any, width: int = 120) -> str:
    """A table cell: '' for null, the text cut at ``width`` characters."""
    if value is None:
        return ""
    text = str(value)
    return text if len(text) <= width else text[:width - 1] + "…"


def fmt_when(t: Any) -> str:
    """A time as ``YYYY-MM-DD HH:MM:SS`` (UTC)."""
    if t is None:
        return "–"
    return t.strftime("%Y-%m-%d %H:%M:%S") if hasattr(t, "strftime") else str(t)[:19]


PageModule = Callable[[FastAPI, Ui], None]


def make_app(lake: Lake, *, request_log: str = REQUEST_LOG, fresh_s: float = 0.5) -> FastAPI:
    """The UI over ``lake`` (its branches by ``?branch=``); ``fresh_s``: how often a
    page asks a table for its latest version."""
    from raylake.ui import branches, lineage_page, models, reports, runs, tables

    ui = Ui(lake, request_log, fresh_s)
    app = FastAPI(title="raylake", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.ui = ui

    @app.get("/", include_in_schema=False)
    def home(request: Request) -> Response:
        q = f"?{request.url.query}" if request.url.query else ""
        return Response(status_code=307, headers={"Location": f"/tables{q}"})

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        kinds = {"lineage.js": "text/javascript", "style.css": "text/css"}
        if name not in kinds:
            raise Missing(f"No file {name!r}.", [(k, f"/static/{k}") for k in kinds])
        data = resources.files("raylake.ui").joinpath("static", name).read_bytes()
        return Response(data, media_type=kinds[name],
                        headers={"Cache-Control": "max-age=3600"})

    for module in (tables, runs, lineage_page, models, reports, branches):
        module.routes(app, ui)

    def error_page(request: Request, status: int, title: str, message: str,
                   exists: list[tuple[str, str]]) -> HTMLResponse:
        try:
            view = ui.view(request.query_params.get("branch"))
        except Missing:
            view = ui.view(None)
        return ui.render(view, "error.html", status, title=title, message=message,
                         exists=exists)

    @app.exception_handler(Missing)
    def missing(request: Request, exc: Missing) -> HTMLResponse:
        return error_page(request, 404, f"Not found: {exc.what or 'page'}", exc.message,
                          exc.exists)

    @app.exception_handler(RaylakeError)
    def raylake_error(request: Request, exc: RaylakeError) -> HTMLResponse:
        if isinstance(exc, (TableNotFoundError, VersionNotFoundError, RunNotFoundError,
                            ModelNotFoundError, TableNameError)):
            view = ui.view(request.query_params.get("branch"))
            return error_page(request, 404, "Not found", str(exc), _what_exists(view, exc))
        return error_page(request, 400, "Cannot show this page", str(exc), [])

    @app.exception_handler(RequestValidationError)
    def bad_query(request: Request, exc: RequestValidationError) -> HTMLResponse:
        # FastAPI's default is a JSON 422; a person who typed ?version=abc gets a page.
        what = "; ".join(f"{'.'.join(str(x) for x in e.get('loc', ())[1:])}: {e.get('msg')}"
                         for e in exc.errors())
        return error_page(request, 400, "Bad request", f"{request.url.path}: {what}.", [])

    @app.exception_handler(StarletteHTTPException)
    def http_error(request: Request, exc: StarletteHTTPException) -> HTMLResponse:
        pages = [("tables", "/tables"), ("runs", "/runs"), ("models", "/models"),
                 ("lineage", "/lineage"), ("quality", "/quality"),
                 ("monitoring", "/monitoring"), ("branches", "/branches")]
        text = (f"No page at {request.url.path}." if exc.status_code == 404
                else str(exc.detail))
        return error_page(request, exc.status_code, "Not found" if exc.status_code == 404
                          else "Error", text, pages if exc.status_code == 404 else [])

    return app


def _what_exists(view: View, exc: Exception) -> list[tuple[str, str]]:
    """Links to what there is, for a 404 of ``exc``'s kind."""
    if isinstance(exc, RunNotFoundError):
        return [(r["run_id"], view.u(f"/runs/{r['run_id']}")) for r in view.facts.runs()[:30]]
    if isinstance(exc, ModelNotFoundError):
        return [(mv.ref, view.u(f"/models/{mv.name}/{mv.version}"))
                for mv in view.facts.models()]
    return [(n, view.u(f"/table/{n}")) for n in view.names()]
