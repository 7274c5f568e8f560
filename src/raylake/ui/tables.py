"""Table pages: the list, one table at a version, its history, its rows, a diff."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Query
from fastapi.responses import HTMLResponse

from raylake.errors import TableNameError, TableNotFoundError
from raylake.lake.names import validate_table_name
from raylake.ui import diffs
from raylake.ui.app import Missing, Ui, View

HISTORY_PER_PAGE = 50
ROWS_PER_PAGE = 50
MAX_PER_PAGE = 500


def open_table(v: View, name: str, version: int | None = None) -> int:
    """The version of table ``name`` to show (latest when None); Missing naming the tables,
    or the versions, there are."""
    try:
        validate_table_name(name, system=True)
        latest = v.reader.latest(name)
    except (TableNotFoundError, TableNameError) as exc:
        names = v.names(system=name.startswith("_"))
        raise Missing(f"No table {name!r} in {v.lake.root} (branch {v.branch}). "
                      f"Its tables: {', '.join(names) or 'none'}.",
                      [(n, v.u(f"/table/{n}")) for n in names], "table") from exc
    if version is None:
        return latest
    if not 0 <= version <= latest:
        shown = sorted({0, max(0, latest - 2), max(0, latest - 1), latest})
        raise Missing(f"Table {name!r} has no version {version}: its versions are 0..{latest}.",
                      [(f"{name}@{x}", v.u(f"/table/{name}", version=x)) for x in shown]
                      + [("history", v.u(f"/history/{name}"))], "version")
    return version


def branches_with(v: View, name: str) -> list[dict[str, Any]]:
    """The other branches (and main) that have table ``name``, with its latest version there."""
    from raylake.lake.branches import list_branches

    out = []
    main = v.ui.view(None)
    if v.branch != "main" and main.reader.exists(name):
        out.append({"branch": "main", "version": main.reader.latest(name)})
    for b in list_branches(v.ui.lake):
        if b.name == v.branch or name not in b.tables:
            continue
        other = v.ui.view(b.name)
        if other.reader.exists(name):
            out.append({"branch": b.name, "version": other.reader.latest(name)})
    return out


def routes(app: FastAPI, ui: Ui) -> None:
    """Add the table pages to ``app``."""

    @app.get("/tables", response_class=HTMLResponse)
    def tables(branch: str = "", all: int = 0) -> HTMLResponse:
        v = ui.view(branch)
        rows = []
        for name in v.names(system=bool(all)):
            s = v.reader.summary(name)
            commit = v.reader.commit(name, s.version)
            writer = v.facts.run_ids().get(commit.run_id or "")
            rows.append({"name": name, "versions": s.version + 1, "rows": s.rows,
                         "bytes": s.bytes, "files": s.files, "commit": commit,
                         "writer": writer, "job": commit.job or (writer or {}).get("job")})
        return ui.render(v, "tables.html", rows=rows, all=bool(all))

    @app.get("/table/{name:path}", response_class=HTMLResponse)
    def table(name: str, branch: str = "", version: int | None = None) -> HTMLResponse:
        v = ui.view(branch)
        at = open_table(v, name, version)
        latest = v.reader.latest(name)
        summary = v.reader.summary(name, at)
        history = v.reader.history(name, latest, 10)
        sample, total = v.reader.rows(name, at, 0, 20)
        return ui.render(
            v, "table.html", name=name, at=at, latest=latest, s=summary, history=history,
            runs=v.facts.run_ids(), sample=_rows(sample), columns=sample.column_names,
            total=total, tags=v.facts.tags(name), quarantine=v.facts.quarantine(name),
            writer=v.facts.writer_of(name, at), branches=branches_with(v, name),
            diff_from=max(0, at - 1), diff_to=at)

    @app.get("/history/{name:path}", response_class=HTMLResponse)
    def history(name: str, branch: str = "", page: int = Query(0, ge=0),
                per: int = Query(HISTORY_PER_PAGE, ge=1, le=MAX_PER_PAGE),
                version: int | None = None) -> HTMLResponse:
        v = ui.view(branch)
        latest = open_table(v, name)
        if version is not None:  # "go to version": the page that holds it
            open_table(v, name, version)
            page = (latest - version) // per
        pages = latest // per + 1
        if page >= pages:
            raise Missing(f"History of {name!r} has {pages} pages of {per} versions "
                          f"(0..{latest}); there is no page {page}.",
                          [("first page", v.u(f"/history/{name}", per=per)),
                           ("last page", v.u(f"/history/{name}", page=pages - 1, per=per))],
                          "page")
        commits = v.reader.history(name, latest - page * per, per)
        return ui.render(v, "history.html", name=name, latest=latest, commits=commits,
                         runs=v.facts.run_ids(), page=page, pages=pages, per=per)

    @app.get("/rows/{name:path}", response_class=HTMLResponse)
    def rows(name: str, branch: str = "", version: int | None = None,
             page: int = Query(0, ge=0),
             per: int = Query(ROWS_PER_PAGE, ge=1, le=MAX_PER_PAGE)) -> HTMLResponse:
        v = ui.view(branch)
        at = open_table(v, name, version)
        got, total = v.reader.rows(name, at, page * per, per)
        pages = max(1, -(-total // per))
        if page >= pages:
            raise Missing(f"{name}@{at} has {total:,} rows: {pages} pages of {per}; there is "
                          f"no page {page}.",
                          [("first page", v.u(f"/rows/{name}", version=at, per=per))], "page")
        return ui.render(v, "rows.html", name=name, at=at, rows=_rows(got),
                         columns=got.column_names, total=total, page=page, pages=pages, per=per)

    @app.get("/diff/{name:path}", response_class=HTMLResponse)
    def diff(name: str, branch: str = "", a: int | None = Query(None, alias="from"),
             b: int | None = Query(None, alias="to")) -> HTMLResponse:
        v = ui.view(branch)
        latest = open_table(v, name)
        to = open_table(v, name, latest if b is None else b)
        frm = open_table(v, name, max(0, to - 1) if a is None else a)
        d = v.reader.values.get(("diff", name, frm, to),
                                lambda: diffs.diff(v.reader, name, frm, to, sample=20))
        return ui.render(v, "diff.html", name=name, d=d, latest=latest, frm=frm, to=to,
                         added=_rows_of(d.added_sample), removed=_rows_of(d.removed_sample))


def _rows(table: Any) -> list[list[Any]]:
    cols = [table.column(i).to_pylist() for i in range(table.num_columns)]
    return [list(r) for r in zip(*cols)] if cols else []


def _rows_of(records: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    cols = list(records[0]) if records else []
    return cols, [[r.get(c) for c in cols] for r in records]
