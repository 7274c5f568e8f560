"""Lineage from run records: what a table version, model version or answer came from
(upstream) and what was made from it (downstream).

Every job records the table versions, model versions and source files it read
(``inputs``) and what it wrote (``outputs``) in ``_runs``. The graph is those records:
a table version's producer is the run that wrote it (or, for a version no run wrote,
such as a compaction, the run that wrote the nearest earlier version); a model
version's producer is the run that registered it; an answer of the model server (a row
of its request log) comes from the model version that gave it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from raylake.errors import ConfigError, TableNotFoundError
from raylake.lake.runs import list_runs
from raylake.lake.tables import Lake

REQUEST_LOG = "serving/requests"


@dataclass(frozen=True)
class Node:
    kind: str  # table | model | files | request | run
    name: str
    version: int | None = None

    def __str__(self) -> str:
        return _SHOWN[self.kind].format(name=self.name, version=self.version)


_SHOWN = {"table": "{name}@{version}", "model": "model {name}:{version}",
          "request": "request {name}", "run": "run {name}", "files": "source files {name}"}


@dataclass
class Tree:
    node: Node
    run: dict[str, Any] | None = None  # the run that made node (upstream) or read it
    children: list[Tree] = field(default_factory=list)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The tree as JSON-ready dicts: each node's text, kind, name and version, a summary
        of its run, its note and its children."""
        return {"node": str(self.node), "kind": self.node.kind, "name": self.node.name,
                "version": self.node.version,
                "run": _run_summary(self.run) if self.run else None, "note": self.note,
                "children": [c.to_dict() for c in self.children]}


def parse_ref(lake: Lake, ref: str) -> Node:
    """``TABLE[@VERSION]``, ``model:NAME[:VERSION|champion|latest]`` or ``request:ID``."""
    from raylake.models.registry import ModelRegistry

    ref = ref.strip()
    if ref.startswith("request:"):
        return Node("request", ref.split(":", 1)[1])
    if ref.startswith("model:"):
        mv = ModelRegistry(lake).get(ref.split(":", 1)[1])
        return Node("model", mv.name, mv.version)
    name, _, version = ref.partition("@")
    if not lake.exists(name):
        raise TableNotFoundError(f"No table {name!r} in {lake.root}: give TABLE[@VERSION], "
                                 "model:NAME[:VERSION] or request:REQUEST_ID.")
    if not version:
        return Node("table", name, lake.version(name))
    if not version.isdigit():
        raise ConfigError(f"Lineage takes a table version number, got {version!r} in {ref!r}.")
    latest = lake.version(name)
    if int(version) > latest:
        raise ConfigError(f"{name!r} has no version {version}; its latest is {latest} "
                          f"(see raylake lake history {name}).")
    return Node("table", name, int(version))


class Lineage:
    def __init__(self, lake: Lake, request_log: str = REQUEST_LOG) -> None:
        self.lake, self.request_log = lake, request_log
        self.runs = [r for r in reversed(list_runs(lake)) if r["status"] == "succeeded"]
        self._writers: dict[tuple[str, str], list[tuple[int, dict[str, Any]]]] = {}
        for run in self.runs:
            for out in run["outputs"] or []:
                key = _key(out)
                if key and out.get("version") is not None:
                    self._writers.setdefault(key, []).append((int(out["version"]), run))

    # -- upstream -----------------------------------------------------------------

    def producer(self, node: Node) -> dict[str, Any] | None:
        """The succeeded run that made ``node``: for a model version the run that registered
        it, for a table version the run that wrote the nearest version at or below it; None
        for other kinds or when no recorded run did."""
        if node.kind == "model":
            from raylake.models.registry import ModelRegistry

            run_id = ModelRegistry(self.lake).get(node.name, node.version).run_id
            return next((r for r in self.runs if r["run_id"] == run_id), None)
        if node.kind != "table":
            return None
        written = [(v, r) for v, r in self._writers.get(("table", node.name), [])
                   if v <= (node.version or 0)]
        return max(written, key=lambda vr: vr[0])[1] if written else None

    def upstream(self, node: Node, depth: int = 20, _seen: set | None = None) -> Tree:
        """The tree of what ``node`` came from, following recorded runs' inputs up to
        ``depth`` levels; a node already shown is not expanded again. A request starts at
        the model versions that answered it (ConfigError or TableNotFoundError when it is
        not in the request log). A model version's note names the decisions (``raylake
        ct``) it took part in."""
        tree = self._upstream(node, depth, _seen)
        if node.kind == "model" and (decided := self.decisions(node)):
            shown = [f"{r['job']} run {r['run_id']}: {r['metrics']['decision']}"
                     + (f" as {role}" if (role := _role(r, node)) else "")
                     for r in decided[-3:]]
            more = f" (+{len(decided) - 3} earlier)" if len(decided) > 3 else ""
            tree.note = "; ".join([tree.note] * bool(tree.note) + shown) + more
        return tree

    def decisions(self, node: Node) -> list[dict[str, Any]]:
        """The succeeded runs, oldest first, that recorded a decision (``metrics.decision``,
        e.g. a ct run's promoted or kept_champion) with model version ``node`` among their
        inputs or outputs."""
        return [r for r in self.runs if (r.get("metrics") or {}).get("decision")
                and _role(r, node) is not None]

    def _upstream(self, node: Node, depth: int, _seen: set | None) -> Tree:
        seen = set() if _seen is None else _seen
        if node.kind == "request":
            return self._request(node, depth, seen)
        run = self.producer(node)
        tree = Tree(node, run)
        if run is None:
            tree.note = "no recorded run wrote it" if node.kind == "table" else ""
            return tree
        if node.kind == "table":
            wrote = max(v for v, r in self._writers[("table", node.name)]
                        if r is run and v <= (node.version or 0))
            if wrote != node.version:
                tree.note = (f"v{node.version} was written outside a raylake run; shown: the "
                             f"run that wrote v{wrote}")
        if depth <= 0 or node in seen:
            tree.note = "(shown above)" if node in seen else "(depth limit)"
            return tree
        seen.add(node)
        for i in run["inputs"] or []:
            if i.get("kind") == "files":
                if node.kind == "table" and i.get("table") not in (None, node.name):
                    continue  # an ingest run of several tables: another table's sources
                files = i.get("files") or []
                shown = ", ".join(str(f) for f in files[:3]) + (" ..." if len(files) > 3 else "")
                tree.children.append(Tree(Node("files", shown),
                                          note=f"fingerprint {i.get('fingerprint', '')}"[:60]))
            elif i.get("via"):
                continue  # read through the training set: shown under it
            elif (key := _key(i)) and i.get("version") is not None:
                kind, name = key
                tree.children.append(self.upstream(Node(kind, name, int(i["version"])),
                                                   depth - 1, seen))
        return tree

    def _request(self, node: Node, depth: int, seen: set) -> Tree:
        import pyarrow.dataset as pads

        if not self.lake.exists(self.request_log):
            raise TableNotFoundError(f"No request log {self.request_log!r}; set "
                                     "model_server.request_log_table.")
        rows = self.lake.dataset(self.request_log).to_table(
            columns=["request_id", "arm", "model_name", "model_version", "shadow", "status"],
            filter=pads.field("request_id") == node.name).to_pylist()
        if not rows:
            raise ConfigError(f"No request {node.name!r} in {self.request_log!r} (the id is in "
                              "each answer; rows are flushed in batches, every few seconds).")
        tree = Tree(node, note=f"in {self.request_log}")
        for r in rows:
            if r["model_name"] is None:
                continue
            child = self.upstream(Node("model", r["model_name"], r["model_version"]),
                                  depth - 1, seen)
            arm = f"arm {r['arm']}" + (", shadow" if r["shadow"] else "")
            child.note = f"{arm}; {child.note}" if child.note else arm
            tree.children.append(child)
        return tree

    # -- downstream ---------------------------------------------------------------

    def downstream(self, node: Node, depth: int = 20, _seen: set | None = None) -> Tree:
        """The tree of what was made from ``node``: each succeeded run that read it, with
        that run's outputs, followed up to ``depth`` levels; a model's note counts the
        requests it answered (shadow and failed ones left out)."""
        seen = set() if _seen is None else _seen
        tree = Tree(node)
        if depth <= 0:
            return tree
        for run in self.runs:
            if run["run_id"] in seen or not any(
                    _key(i) == (node.kind, node.name) and i.get("version") == node.version
                    for i in run["inputs"] or []):
                continue
            seen.add(run["run_id"])
            reader = Tree(Node("run", run["run_id"]), run)
            for out in run["outputs"] or []:
                if (key := _key(out)) and out.get("version") is not None:
                    kind, name = key
                    reader.children.append(self.downstream(Node(kind, name, int(out["version"])),
                                                           depth - 1, seen))
            tree.children.append(reader)
        if node.kind == "model":
            answered = self._answers(node)
            if answered:
                tree.note = f"answered {answered} requests ({self.request_log})"
        return tree

    def _answers(self, node: Node) -> int:
        import pyarrow.dataset as pads

        if not self.lake.exists(self.request_log):
            return 0
        # Answers a client got: shadow answers and failed requests are not answers.
        f = (pads.field("model_name") == node.name) & (pads.field("model_version") == node.version)
        f &= (pads.field("status") == 200) & (pads.field("shadow") == False)  # noqa: E712
        return self.lake.dataset(self.request_log).count_rows(filter=f)


def render(tree: Tree, *, downstream: bool = False, indent: int = 0) -> list[str]:
    """``tree`` as text, one line per node indented by depth: each node with the run that
    made it (left out with ``downstream``, where runs are nodes of their own) and its note."""
    pad = "  " * indent
    if tree.node.kind == "run":
        line = f"{pad}-> {_run_text(tree.run)}"
    else:
        run = f"  <- {_run_text(tree.run)}" if tree.run and not downstream else ""
        line = f"{pad}{tree.node}{run}"
    if tree.note:
        line += f"  [{tree.note}]"
    lines = [line]
    for c in tree.children:
        lines += render(c, downstream=downstream, indent=indent + 1)
    return lines


def _key(entry: dict[str, Any]) -> tuple[str, str] | None:
    if entry.get("model"):
        return ("model", entry["model"])
    if entry.get("table") and entry.get("kind") != "files":
        return ("table", entry["table"])
    return None


def _role(run: dict[str, Any], node: Node) -> str | None:
    """How ``run`` names model version ``node``: its input's role (champion, challenger,
    model), "output" for a version it wrote or promoted, "" without a role; None when it
    does not name it."""
    for entry, default in [(i, "") for i in run["inputs"] or []] + \
            [(o, "output") for o in run["outputs"] or []]:
        if _key(entry) == ("model", node.name) and entry.get("version") == node.version:
            return str(entry.get("role") or entry.get("stage") or default)
    return None


def _run_text(run: dict[str, Any] | None) -> str:
    if not run:
        return ""
    decision = (run.get("metrics") or {}).get("decision")
    return (f"{run['job']} run {run['run_id']} ({str(run['started_at'])[:19]})"
            + (f": {decision}" if decision else ""))


def _run_summary(run: dict[str, Any]) -> dict[str, Any]:
    return {k: run.get(k) for k in ("run_id", "job", "status", "started_at", "code_version")}
