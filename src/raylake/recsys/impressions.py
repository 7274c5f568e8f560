"""The impressions table: one row per impression of the event log with its click and
purchase labels and the item's category and price, the entity rows of the ranker's
training set and the source of its window aggregations (conf/features/recsys.yaml).

A click or a purchase belongs to the impression with the same ``(request_id, position)``
(a page shows an item once, so the pair names one impression). The labels are joined
over the whole event log in one pass of pyarrow joins on one process: the event log is
read with the ``event`` filter pushed down, three narrow tables (about 0.6 GB at the
default world's 9.4 million impressions), so no shuffle is needed and a click that lands
in the next events file (a page shown just before a file's last second) is still found.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from raylake.errors import LakeError, TableNotFoundError

# The columns read from each input and their order in the output.
EVENT_COLUMNS = ("event_id", "ts", "user_id", "item_id", "request_id", "position")
ITEM_COLUMNS = ("item_id", "category", "price")
OUTPUT_COLUMNS = (*EVENT_COLUMNS, "category", "price", "clicked", "purchased")
LABELS = {"clicked": "click", "purchased": "purchase"}  # output column -> event kind
INGEST_HINT = ("`python -m raylake.datasets.recsys_world --out DIR` then `raylake ingest "
               "dataset=recsys_world dataset.root=DIR`")


@dataclass(frozen=True)
class TableRef:
    """A lake table and the version read: ``recsys/events`` (the latest) or
    ``recsys/events@3`` (a version, tag or ISO time, as ``raylake lake`` reads them)."""

    name: str
    version: str | None = None

    @classmethod
    def parse(cls, text: str) -> TableRef:
        """``TABLE`` or ``TABLE@VERSION`` (a table name never holds ``@``)."""
        name, _, version = str(text).partition("@")
        return cls(name.strip(), version.strip() or None)


@dataclass(frozen=True)
class Impressions:
    """The built table and what it was built from: rows in (impressions of the event
    log), labels found, impressions whose item is not in the catalogue."""

    table: pa.Table
    impressions_in: int
    clicks: int
    purchases: int
    unknown_items: int


def check_inputs(lake: Any, events: TableRef, items: TableRef) -> None:
    """TableNotFoundError naming the command that makes a missing input table; LakeError
    for an input without the columns this job reads."""
    for ref, what, needed in ((events, "recsys.events_table", (*EVENT_COLUMNS, "event")),
                              (items, "recsys.items_table", ITEM_COLUMNS)):
        if not lake.exists(ref.name):
            raise TableNotFoundError(
                f"No table {ref.name!r} ({what}) in the lake at {lake.root}: the impressions "
                f"are built from the generated world's events and items. Make them with "
                f"{INGEST_HINT} lake.root={lake.root}, or point {what} at your table.")
        have = set(pa.schema(lake.table(ref.name).schema().to_arrow()).names)
        missing = [c for c in needed if c not in have]
        if missing:
            raise LakeError(
                f"Table {ref.name!r} ({what}) has no column(s) {missing}; the impressions "
                f"job reads {list(needed)}. Ingest it with conf/dataset/recsys_world.yaml's "
                "columns, or point the key at a table that has them.")


def read_inputs(lake: Any, events: TableRef, items: TableRef, events_version: int,
                items_version: int) -> tuple[pa.Table, dict[str, pa.Table], pa.Table]:
    """The impressions, the (request_id, position) pairs of each label's event kind and the
    catalogue, read at the given versions with the event filter pushed down."""
    kind = pc.field("event")
    shown = lake.read(events.name, events_version, columns=list(EVENT_COLUMNS),
                      filters=kind == "impression")
    labels = {col: lake.read(events.name, events_version, columns=["request_id", "position"],
                             filters=kind == event)
              for col, event in LABELS.items()}
    catalogue = lake.read(items.name, items_version, columns=list(ITEM_COLUMNS))
    return shown, labels, catalogue


def build(shown: pa.Table, labels: dict[str, pa.Table], catalogue: pa.Table) -> Impressions:
    """One row per impression of ``shown`` (ordered by event_id) with ``clicked`` and
    ``purchased`` (a label event with the same request_id and position) and the item's
    category and price (null for an item the catalogue lacks). LakeError when the output
    does not hold every impression exactly once, or two impressions share a
    (request_id, position)."""
    keys = ["request_id", "position"]
    rows_in = shown.num_rows
    if rows_in and pc.count_distinct(shown.column("event_id")).as_py() != rows_in:
        raise LakeError(f"The event log repeats an impression's event_id ({rows_in:,} "
                        "impressions, fewer ids): re-ingest recsys/events (it is keyed on "
                        "event_id).")
    pairs = pa.table({"_r": shown.column("request_id"), "_p": shown.column("position")})
    if rows_in and pairs.group_by(["_r", "_p"]).aggregate([]).num_rows != rows_in:
        raise LakeError("Two impressions share a (request_id, position): a click could not "
                        "be told which one it belongs to. Check the event log's request ids.")
    out = shown
    for col, found in labels.items():
        distinct = found.group_by(keys).aggregate([])
        flagged = distinct.append_column(col, pa.array([True] * distinct.num_rows, pa.bool_()))
        out = out.join(flagged, keys=keys, join_type="left outer", use_threads=True)
        out = out.set_column(out.schema.get_field_index(col), col,
                             pc.fill_null(out.column(col), False))
    catalogue = catalogue.select(list(ITEM_COLUMNS))
    if catalogue.num_rows and pc.count_distinct(catalogue.column("item_id")).as_py() \
            != catalogue.num_rows:
        raise LakeError("The items table repeats an item_id: re-ingest recsys/items (it is "
                        "merged on item_id).")
    out = out.join(catalogue, keys="item_id", join_type="left outer", use_threads=True)
    out = out.sort_by("event_id").select(list(OUTPUT_COLUMNS))
    if out.num_rows != rows_in:
        raise LakeError(f"Impressions in and out differ: {rows_in:,} impressions read, "
                        f"{out.num_rows:,} rows built. Nothing was written.")
    unknown = out.column("category").null_count
    return Impressions(out, rows_in, int(pc.sum(out.column("clicked")).as_py() or 0),
                       int(pc.sum(out.column("purchased")).as_py() or 0), unknown)
