"""The labeling page: one item at a time, the model's guess, a key press to label it.

``make_app(lake, conf)`` is a FastAPI application:

- ``GET /``: the page (plain HTML and script; keys ``1..k`` or a class name's first
  letter label the item shown; ``?who=NAME`` says who is labelling, ``?queue=NAME``
  opens another queue, e.g. the review queue of ``raylake label issues``);
- ``GET /api/next?queue=``: the next item to label and the queue's counts; on the
  active-learning queue (``active_labeling.queue``) a completed batch queries the next
  one first;
- ``POST /api/label``: ``{"item_id", "label", "who", "queue"}`` appends a label row
  (404 naming the item when it is not in the queue, 400 for a label out of range).
"""

from __future__ import annotations

import html
import threading
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from raylake.config.active_labeling import ActiveLabelingConfig
from raylake.labeling.errors import LabelingError
from raylake.labeling.loop import Pool, class_names, load_pool, query_next
from raylake.labeling.queue import QueueItem, QueueState, UnknownItemError, add_label, read_queue
from raylake.lake.tables import Lake

__all__ = ["keys_for", "make_app"]


def keys_for(names: list[str]) -> dict[str, int]:
    """Key -> class: ``1..k`` always, and each name's first letter when no two names share it."""
    keys = {str(i + 1): i for i in range(min(len(names), 9))}
    firsts = [n[:1].lower() for n in names]
    for i, f in enumerate(firsts):
        if f and f.isalpha() and firsts.count(f) == 1:
            keys[f] = i
    return keys


class _Loop:
    """The state the page's handlers share: the pool (loaded once, lazily) and a lock so
    two labellers finishing a batch together query the next batch once."""

    def __init__(self, lake: Lake, conf: ActiveLabelingConfig, pool: Pool | None) -> None:
        self.lake, self.conf, self._pool = lake, conf, pool
        self.lock = threading.Lock()

    def pool(self) -> Pool:
        if self._pool is None:
            self._pool = load_pool(self.lake, self.conf)
        return self._pool

    def n_classes(self, state: QueueState) -> int:
        if self.conf.classes:
            return len(self.conf.classes)
        return self.pool().n_classes if state.name == self.conf.queue else 2

    def next_item(self, queue: str) -> tuple[QueueState, QueueItem | None]:
        with self.lock:
            state = read_queue(self.lake, queue)
            if queue == self.conf.queue and state.batch_complete():
                state = query_next(self.lake, self.conf, self.pool(), state,
                                   job="label-serve") or state
            pending = state.pending(state.batch) or state.pending()
            return state, pending[0] if pending else None


def _item_json(state: QueueState, item: QueueItem | None, names: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"queue": state.name, "version": state.version, "batch": state.batch,
                           "queued": len(state.items), "labelled": len(state.labelled()),
                           "pending": len(state.pending()), "classes": names,
                           "keys": keys_for(names), "item": None}
    if item is not None:
        d = item.to_dict()
        d["guess_name"] = names[item.guess] if item.guess is not None and item.guess < len(names) else None
        d["given_name"] = names[item.given] if item.given is not None and item.given < len(names) else None
        out["item"] = d
    return out


def make_app(lake: Lake, conf: ActiveLabelingConfig, pool: Pool | None = None) -> FastAPI:
    """The FastAPI app of the labeling page over ``lake`` (see the module docstring)."""
    loop = _Loop(lake, conf, pool)
    app = FastAPI(title="raylake labeling", docs_url=None, redoc_url=None)

    def names_for(state: QueueState) -> list[str]:
        return class_names(conf, loop.n_classes(state))

    @app.get("/", response_class=HTMLResponse)
    def page(queue: str = Query(default=conf.queue), who: str = Query(default=conf.who)) -> str:
        return _PAGE.replace("{{QUEUE}}", html.escape(queue)).replace("{{WHO}}", html.escape(who))

    @app.get("/api/next")
    def next_item(queue: str = Query(default=conf.queue)) -> dict[str, Any]:
        try:
            state, item = loop.next_item(queue)
        except LabelingError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from exc
        return _item_json(state, item, names_for(state))

    @app.post("/api/label")
    async def label(request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise HTTPException(status_code=400, detail="POST /api/label takes a JSON object")
        return await run_in_threadpool(_label, body)  # Delta I/O off the event loop

    def _label(body: dict[str, Any]) -> dict[str, Any]:
        queue = str(body.get("queue") or conf.queue)
        item_id = body.get("item_id")
        if item_id is None or "label" not in body:
            raise HTTPException(status_code=400,
                                detail="POST /api/label needs item_id and label (and who)")
        with loop.lock:
            state = read_queue(lake, queue)
            try:
                version = add_label(lake, queue, str(item_id), body["label"],
                                    who=str(body.get("who") or conf.who),
                                    n_classes=loop.n_classes(state), state=state)
            except UnknownItemError as exc:
                raise HTTPException(status_code=404, detail=str(exc)) from exc
            except LabelingError as exc:
                raise HTTPException(status_code=400, detail=str(exc)) from exc
        state, item = loop.next_item(queue)
        out = _item_json(state, item, names_for(state))
        out["written_version"] = version
        return out

    return app


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>raylake labeling</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; color: #222; }
#text { font-size: 1.3rem; padding: 1rem; border: 1px solid #ccc; border-radius: 6px;
        min-height: 4rem; white-space: pre-wrap; }
.meta { color: #666; font-size: .9rem; margin: .5rem 0; }
#keys span { display: inline-block; border: 1px solid #999; border-radius: 4px;
             padding: .2rem .6rem; margin-right: .4rem; }
#error { color: #b00; }
</style></head>
<body>
<h1>Label: <span id="queue">{{QUEUE}}</span></h1>
<div class="meta">batch <span id="batch">-</span> &middot; labelled <span id="labelled">0</span>
 &middot; waiting <span id="pending">0</span> &middot; as <b id="who">{{WHO}}</b></div>
<div id="text">loading...</div>
<div class="meta">model's guess: <b id="guess">-</b> <span id="score"></span>
 <span id="given"></span></div>
<div id="keys"></div>
<p id="error"></p>
<script>
const QUEUE = document.getElementById("queue").textContent;
const WHO = document.getElementById("who").textContent;
let current = null, keys = {}, busy = false;
function show(d) {
  keys = d.keys; current = d.item;
  document.getElementById("batch").textContent = d.batch;
  document.getElementById("labelled").textContent = d.labelled;
  document.getElementById("pending").textContent = d.pending;
  document.getElementById("keys").innerHTML = Object.entries(d.keys)
    .map(([k, c]) => "<span>" + k + ": " + d.classes[c] + "</span>").join("");
  if (!current) {
    document.getElementById("text").textContent = "Nothing left to label.";
    document.getElementById("guess").textContent = "-";
    document.body.dataset.item = "";
  } else {
    document.getElementById("text").textContent = current.text;
    document.getElementById("guess").textContent = current.guess_name || "none yet";
    document.getElementById("score").textContent =
      current.score === null ? "" : "(score " + current.score.toFixed(3) + ")";
    document.getElementById("given").textContent =
      current.given_name ? "labelled now: " + current.given_name : "";
    document.body.dataset.item = current.item_id;
  }
  document.body.dataset.ready = "1";
}
async function load() {
  const r = await fetch("api/next?queue=" + encodeURIComponent(QUEUE));
  const d = await r.json();
  if (!r.ok) { document.getElementById("error").textContent = d.detail; return; }
  show(d);
}
document.addEventListener("keydown", async (e) => {
  const label = keys[e.key.toLowerCase()];
  if (label === undefined || !current || busy) return;
  busy = true; document.body.dataset.ready = "0";
  try {
    const r = await fetch("api/label", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({queue: QUEUE, item_id: current.item_id, label: label, who: WHO})});
    const d = await r.json();
    if (!r.ok) { document.getElementById("error").textContent = d.detail; }
    else { document.getElementById("error").textContent = ""; show(d); }
  } finally { busy = false; }
});
load();
</script>
</body></html>
"""
