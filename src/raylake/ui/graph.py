"""The lineage graph as a picture: the trees ``raylake lineage`` walks (upstream and
downstream of one node) laid out left to right as one graph, drawn as inline SVG.

What a node came from is on its left, what was made from it on its right; runs are
nodes between what they read and what they wrote. A node shown twice in the trees is
one node here (its first place kept), with every edge. Each node links to its own page;
``static/lineage.js`` lights up a node's upstream and downstream on hover.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from raylake.lineage import Node, Tree

COL_W, ROW_H, BOX_W, BOX_H, PAD = 212, 54, 180, 40, 12
COLORS = {"table": "#2f6fde", "model": "#8e44ad", "run": "#5f6b7a", "files": "#1f9d55",
          "request": "#c77c02"}


@dataclass
class GNode:
    """A node of the picture: its key, column, row, label, link and tooltip."""

    key: str
    kind: str
    label: str
    col: int
    href: str
    tip: str
    focus: bool = False
    row: int = 0


@dataclass
class Graph:
    """Nodes (in order of discovery) and edges (key of source, key of target)."""

    nodes: dict[str, GNode] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)

    def add(self, node: GNode) -> str:
        """Add ``node`` unless a node of its key is there; its key."""
        self.nodes.setdefault(node.key, node)
        return node.key

    def link(self, src: str, dst: str) -> None:
        """An edge from ``src`` to ``dst`` (once)."""
        if src != dst and (src, dst) not in self.edges:
            self.edges.append((src, dst))


def node_key(node: Node) -> str:
    """A node's key in the picture (kind, name and version)."""
    return f"{node.kind}:{node.name}" + (f"@{node.version}" if node.version is not None else "")


def href_of(node: Node, branch_q: str = "") -> str:
    """The page of ``node``: a table version, a model version, a run or a request's graph."""
    amp = f"&{branch_q}" if branch_q else ""
    q = f"?{branch_q}" if branch_q else ""
    if node.kind == "table":
        return f"/table/{quote(node.name)}?version={node.version}{amp}"
    if node.kind == "model":
        return f"/models/{quote(node.name)}/{node.version}{q}"
    if node.kind == "run":
        return f"/runs/{quote(node.name)}{q}"
    if node.kind == "request":
        return f"/lineage?ref={quote('request:' + node.name)}{amp}"
    return ""


def _run_label(run: dict[str, Any]) -> str:
    return f"{run['job']} run"


def _gnode(node: Node, col: int, branch_q: str, note: str = "", run: dict | None = None,
           focus: bool = False) -> GNode:
    if node.kind == "run" and run is not None:
        label = f"{run['job']} · {str(run['started_at'])[5:16]}"
        tip = f"run {node.name} ({run['job']}, {run['status']}, {run['started_at']})"
    elif node.kind == "files":  # the files' own names; the tooltip has their paths
        label = ", ".join(f.rstrip("/").rsplit("/", 1)[-1] for f in node.name.split(", "))
        tip = str(node)
    else:
        label = str(node)
        tip = str(node)
    if note:
        tip += f" [{note}]"
    return GNode(node_key(node), node.kind, label, col, href_of(node, branch_q), tip, focus)


def build(up: Tree, down: Tree, branch_q: str = "") -> Graph:
    """One graph of the upstream tree ``up`` and the downstream tree ``down`` of a node."""
    g = Graph()
    root = g.add(_gnode(up.node, 0, branch_q, up.note or down.note, focus=True))

    def upstream(t: Tree, key: str, col: int) -> None:
        if t.run is None:
            return
        run_key = g.add(_gnode(Node("run", t.run["run_id"]), col - 1, branch_q, run=t.run))
        g.link(run_key, key)
        for c in t.children:
            ck = g.add(_gnode(c.node, col - 2, branch_q, c.note))
            g.link(ck, run_key)
            upstream(c, ck, col - 2)

    def downstream(t: Tree, key: str, col: int) -> None:
        for reader in t.children:  # run nodes
            rk = g.add(_gnode(reader.node, col + 1, branch_q, run=reader.run))
            g.link(key, rk)
            for out in reader.children:
                ok = g.add(_gnode(out.node, col + 2, branch_q, out.note))
                g.link(rk, ok)
                downstream(out, ok, col + 2)

    upstream(up, root, 0)
    downstream(down, root, 0)
    rows: dict[int, int] = {}
    for n in g.nodes.values():
        n.row = rows.get(n.col, 0)
        rows[n.col] = n.row + 1
    return g


def svg(g: Graph) -> str:
    """The graph as inline SVG: boxes (each a link to its page) and curved edges."""
    e = html.escape
    cols = sorted({n.col for n in g.nodes.values()})
    first = cols[0] if cols else 0
    height = max([n.row for n in g.nodes.values()] + [0]) + 1
    width = (cols[-1] - first + 1) * COL_W + 2 * PAD if cols else 2 * PAD

    def xy(n: GNode) -> tuple[float, float]:
        return PAD + (n.col - first) * COL_W, PAD + n.row * ROW_H

    out = [f"<svg id='lineage-graph' xmlns='http://www.w3.org/2000/svg' width='{width}' "
           f"height='{height * ROW_H + 2 * PAD}' viewBox='0 0 {width} "
           f"{height * ROW_H + 2 * PAD}' font-size='12'>",
           "<defs><marker id='arrow' viewBox='0 0 10 10' refX='10' refY='5' markerWidth='7' "
           "markerHeight='7' orient='auto-start-reverse'><path d='M 0 0 L 10 5 L 0 10 z' "
           "fill='#9aa7b8'/></marker></defs>"]
    for src, dst in g.edges:
        a, b = g.nodes[src], g.nodes[dst]
        (ax, ay), (bx, by) = xy(a), xy(b)
        x1, y1, x2, y2 = ax + BOX_W, ay + BOX_H / 2, bx, by + BOX_H / 2
        mid = (x1 + x2) / 2
        out.append(f"<path class='edge' data-src='{e(src)}' data-dst='{e(dst)}' "
                   f"d='M {x1:.0f} {y1:.0f} C {mid:.0f} {y1:.0f}, {mid:.0f} {y2:.0f}, "
                   f"{x2:.0f} {y2:.0f}' fill='none' stroke='#9aa7b8' stroke-width='1.5' "
                   "marker-end='url(#arrow)'/>")
    for n in g.nodes.values():
        x, y = xy(n)
        color = COLORS.get(n.kind, "#5f6b7a")
        label = n.label if len(n.label) <= 26 else n.label[:25] + "…"
        box = (f"<rect x='{x}' y='{y}' width='{BOX_W}' height='{BOX_H}' rx='6' "
               f"fill='{'#fff8e1' if n.focus else '#fff'}' stroke='{color}' "
               f"stroke-width='{3 if n.focus else 1.5}'/>"
               f"<text x='{x + 10}' y='{y + 16}' fill='{color}' font-size='10' "
               f"font-weight='600'>{e(n.kind.upper())}</text>"
               f"<text x='{x + 10}' y='{y + 32}' fill='#1d2733'>{e(label)}</text>")
        body = f"<title>{e(n.tip)}</title>{box}"
        attrs = (f"class='node{' focus' if n.focus else ''}' data-key='{e(n.key)}' "
                 f"data-kind='{e(n.kind)}'")
        if n.href:
            out.append(f"<a href='{e(n.href)}' {attrs}>{body}</a>")
        else:
            out.append(f"<g {attrs}>{body}</g>")
    out.append("</svg>")
    return "".join(out)


def edges_json(g: Graph) -> str:
    """The edges as JSON for the page's script (``[[src, dst], ...]``). The page embeds it
    unescaped in a ``<script>`` element, and keys hold names from run records (file
    paths, request ids): ``<``, ``>`` and ``&`` are written as JSON escapes, so that a
    name holding ``</script>`` cannot end the element."""
    text = json.dumps(g.edges)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
