"""The labeling queue: one append-only Delta table per queue.

Every change is a new row and a new table version, never an update:

- ``queued`` rows: an item put in front of a labeller, with its batch number, its text,
  the model's guess and the strategy's score (and, in a review queue, the label the item
  has now, ``given``);
- ``label`` rows: a label given to a queued item, with who gave it and when.

An item's label is its newest ``label`` row, so a correction is another row and the
whole history stays readable at every version (``raylake lake history <queue>``). A
batch is complete when each of its items has a label; the loop then queries the next.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from raylake.errors import TableNotFoundError
from raylake.labeling.errors import LabelingError
from raylake.lake.commit import write_table
from raylake.lake.tables import Lake

__all__ = ["QUEUE_SCHEMA", "QueueItem", "QueueState", "UnknownItemError", "add_label", "add_labels",
           "enqueue", "read_queue"]

QUEUE_SCHEMA = pa.schema([
    ("event", pa.string()),  # "queued" | "label"
    ("item_id", pa.string()),
    ("batch", pa.int64()),
    ("text", pa.string()),
    ("guess", pa.int64()),
    ("score", pa.float64()),
    ("given", pa.int64()),
    ("label", pa.int64()),
    ("who", pa.string()),
    ("at", pa.timestamp("us", tz="UTC")),
    ("source", pa.string()),  # table@version the item came from
    ("run_id", pa.string()),
])


class UnknownItemError(LabelingError, LookupError):
    """A label names an item the queue never listed."""


@dataclass
class QueueItem:
    """An item as the queue holds it: where it was queued and its newest label."""

    item_id: str
    batch: int
    text: str | None
    guess: int | None
    score: float | None
    given: int | None = None
    label: int | None = None
    who: str | None = None
    at: dt.datetime | None = None
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly fields (``at`` as ISO text)."""
        out = dict(self.__dict__)
        out["at"] = self.at.isoformat() if self.at else None
        return out


@dataclass
class QueueState:
    """A queue read at one version: items in queue order, each with its newest label."""

    name: str
    version: int | None
    items: dict[str, QueueItem] = field(default_factory=dict)
    labels_given: int = 0

    @property
    def batch(self) -> int:
        """The newest batch number (-1 for an empty queue)."""
        return max((i.batch for i in self.items.values()), default=-1)

    def pending(self, batch: int | None = None) -> list[QueueItem]:
        """Items without a label, in queue order (of one batch, when given)."""
        return [i for i in self.items.values()
                if i.label is None and (batch is None or i.batch == batch)]

    def labelled(self) -> dict[str, int]:
        """item_id -> its newest label."""
        return {k: i.label for k, i in self.items.items() if i.label is not None}

    def batch_complete(self) -> bool:
        """True when the newest batch has no item left to label (or nothing is queued)."""
        return not self.pending(self.batch)


def read_queue(lake: Lake, name: str, version: int | None = None) -> QueueState:
    """The queue ``name`` at ``version`` (latest if None); an empty state when the table
    does not exist yet."""
    try:
        data = lake.read(name, version)
    except TableNotFoundError:
        return QueueState(name, None)
    state = QueueState(name, lake.table(name, version).version())
    rows = data.sort_by([("at", "ascending")]).to_pylist() if data.num_rows else []
    for row in sorted(rows, key=lambda r: 0 if r["event"] == "queued" else 1):
        if row["event"] == "queued":
            state.items[row["item_id"]] = QueueItem(
                row["item_id"], row["batch"], row["text"], row["guess"], row["score"],
                row["given"], source=row["source"])
    for row in rows:
        if row["event"] == "label" and row["item_id"] in state.items:
            item = state.items[row["item_id"]]
            item.label, item.who, item.at = row["label"], row["who"], row["at"]
            state.labels_given += 1
    return state


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def enqueue(lake: Lake, name: str, items: Sequence[Mapping[str, Any]], *, batch: int,
            source: str | None = None, run_id: str | None = None, job: str | None = None) -> int:
    """Append ``items`` (dicts with item_id, text, and optionally guess, score, given) as
    batch ``batch``; returns the new table version."""
    at = _now()
    rows = [{"event": "queued", "item_id": str(it["item_id"]), "batch": batch,
             "text": it.get("text"), "guess": _opt_int(it.get("guess")),
             "score": _opt_float(it.get("score")), "given": _opt_int(it.get("given")),
             "label": None, "who": None, "at": at, "source": source, "run_id": run_id}
            for it in items]
    return write_table(lake, name, pa.Table.from_pylist(rows, schema=QUEUE_SCHEMA),
                       run_id=run_id, job=job)


def add_labels(lake: Lake, name: str, labels: Mapping[str, int], *, who: str,
               n_classes: int | None = None, state: QueueState | None = None,
               at: dt.datetime | None = None, run_id: str | None = None,
               job: str | None = None) -> int:
    """Append one label row per ``item_id -> label`` in one commit; every item must be in
    the queue (UnknownItemError naming it otherwise) and every label in
    ``[0, n_classes)``. Returns the new table version."""
    state = state if state is not None else read_queue(lake, name)
    for item_id, label in labels.items():
        _check(state, str(item_id), label, n_classes)
    if not who or not str(who).strip():
        raise LabelingError("A label needs who gave it: pass who=<name> (the page's ?who=).")
    when = at or _now()
    rows = [{"event": "label", "item_id": str(item_id), "batch": state.items[str(item_id)].batch,
             "text": None, "guess": None, "score": None, "given": None, "label": int(label),
             "who": str(who), "at": when, "source": None, "run_id": run_id}
            for item_id, label in labels.items()]
    return write_table(lake, name, pa.Table.from_pylist(rows, schema=QUEUE_SCHEMA),
                       run_id=run_id, job=job)


def add_label(lake: Lake, name: str, item_id: str, label: int, *, who: str,
              n_classes: int | None = None, state: QueueState | None = None) -> int:
    """Append one label of ``item_id`` given by ``who`` now; returns the new version."""
    return add_labels(lake, name, {item_id: label}, who=who, n_classes=n_classes, state=state)


def _check(state: QueueState, item_id: str, label: Any, n_classes: int | None) -> None:
    if item_id not in state.items:
        if not state.items:
            raise UnknownItemError(
                f"Item {item_id!r} is not in queue {state.name!r}: the queue is empty. Queue "
                "a batch first (`raylake label serve` or `raylake label simulate`).")
        ids = [i.item_id for i in state.pending()[:3]] or list(state.items)[:3]
        sample = ", ".join(repr(k) for k in ids)
        raise UnknownItemError(
            f"Item {item_id!r} is not in queue {state.name!r} ({len(state.items)} items queued "
            f"in batches 0..{state.batch}); only queued items can be labelled, e.g. {sample}. "
            "Check the item id, or the queue name (active_labeling.queue).")
    if not isinstance(label, int | float) or int(label) != label or (
            n_classes is not None and not 0 <= int(label) < n_classes):
        bound = f" in 0..{n_classes - 1}" if n_classes is not None else ""
        raise LabelingError(f"Label {label!r} for item {item_id!r} is not a class{bound}; "
                            "give the class number (the page's keys 1..k map to 0..k-1).")


def _opt_int(v: Any) -> int | None:
    return None if v is None else int(v)


def _opt_float(v: Any) -> float | None:
    return None if v is None else float(v)
