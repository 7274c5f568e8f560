"""The lineage page: the graph `raylake lineage` walks, upstream and downstream of a table
version, a model version or a request, as an interactive picture."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from raylake.errors import ConfigError, ModelError, ModelNotFoundError, TableNotFoundError
from raylake.lineage import Node, parse_ref, render
from raylake.ui import graph
from raylake.ui.app import Missing, Ui, View
from raylake.ui.tables import open_table

EXAMPLES = ("TABLE@VERSION (training/flights_delay@0)", "model:NAME:VERSION (model:delay_model:1)",
            "request:ID")


def _start(v: View, ref: str) -> Node:
    """``ref`` as a lineage node: a table version read off the cached log (``parse_ref``
    would open the table's latest snapshot), a model version or a request by
    ``parse_ref``."""
    ref = ref.strip()
    if ref.startswith(("model:", "request:")):
        return parse_ref(v.lake, ref)
    name, _, version = ref.partition("@")
    if version and not version.isdigit():
        raise ConfigError(f"Lineage takes a table version number, got {version!r} in {ref!r}.")
    try:
        return Node("table", name, open_table(v, name, int(version) if version else None))
    except Missing as exc:
        raise TableNotFoundError(exc.message) from exc


def routes(app: FastAPI, ui: Ui) -> None:
    """Add the lineage page to ``app``."""

    @app.get("/lineage", response_class=HTMLResponse)
    def lineage(branch: str = "", ref: str = "", depth: int = 20) -> HTMLResponse:
        v = ui.view(branch)
        starts = [(f"model:{mv.name}:{mv.version}",
                   v.u("/lineage", ref=f"model:{mv.name}:{mv.version}"))
                  for mv in v.facts.models()]
        if not ref:
            starts += [(n, v.u("/lineage", ref=f"{n}@{v.reader.latest(n)}"))
                       for n in v.names()]
            return v.ui.render(v, "lineage.html", ref="", starts=starts, svg="", edges="[]",
                               text="", examples=EXAMPLES)
        try:
            node = _start(v, ref)
            walk = v.facts.lineage()
            up, down = walk.upstream(node, depth), walk.downstream(node, depth)
        except (TableNotFoundError, ModelNotFoundError, ModelError, ConfigError) as exc:
            raise Missing(f"{exc} Give {', '.join(EXAMPLES)}.", starts + [
                (n, v.u("/lineage", ref=f"{n}@{v.reader.latest(n)}")) for n in v.names()],
                "lineage start") from exc
        g = graph.build(up, down, v.branch_q)
        text = "\n".join(render(up) + ["", "downstream:"] + render(down, downstream=True))
        return v.ui.render(v, "lineage.html", ref=ref, node=node, starts=starts,
                           svg=graph.svg(g), edges=graph.edges_json(g), text=text,
                           examples=EXAMPLES, nodes=list(g.nodes.values()))
