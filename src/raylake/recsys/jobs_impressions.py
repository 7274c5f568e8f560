"""``raylake recsys-impressions``: the impressions table (one row per impression of the
event log, its click and purchase labels, the item's category and price), from which the
ranker's features are aggregated and its training set is built (docs/recommendations.md).

    raylake recsys-impressions dataset=recsys_world
    raylake recsys-impressions recsys.events_table=recsys/events@3   # a pinned version

The table is rebuilt whole (one overwrite commit) from the versions read, with an
application transaction id made of them: a re-run over the same event and item versions
finds its id and writes nothing, as ``raylake aggregate`` and ``raylake training-set`` do.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from raylake.runner import JobContext, job


@job("recsys-impressions", help="one row per impression of recsys/events with its click and "
                                "purchase labels and the item's category and price "
                                "(recsys/impressions)", ray=False)
def recsys_impressions(ctx: JobContext) -> dict[str, Any]:
    """Build ``recsys.impressions_table`` from ``recsys.events_table`` and
    ``recsys.items_table`` (each ``TABLE`` or ``TABLE@VERSION``) unless these versions were
    built already."""
    from raylake.lake.commit import already_committed, version_holding, write_table
    from raylake.recsys.impressions import (
        OUTPUT_COLUMNS,
        TableRef,
        build,
        check_inputs,
        read_inputs,
    )

    conf, lake, run = ctx.conf, ctx.lake, ctx.record
    events, items = TableRef.parse(conf.recsys.events_table), TableRef.parse(conf.recsys.items_table)
    out = conf.recsys.impressions_table
    check_inputs(lake, events, items)
    ev_version = lake.table(events.name, events.version).version()
    it_version = lake.table(items.name, items.version).version()
    run.add_input(table=events.name, version=ev_version, role="events")
    run.add_input(table=items.name, version=it_version, role="items")
    app_id = "raylake.recsys.impressions." + hashlib.sha256(json.dumps(
        [events.name, ev_version, items.name, it_version, OUTPUT_COLUMNS]).encode()
    ).hexdigest()[:24]
    if already_committed(lake, out, app_id):
        version = version_holding(lake, out, app_id)
        rows = lake.count(out, version)
        run.add_output(table=out, version=version, rows=rows, skipped=True)
        run.metrics.update(rows=rows)
        run.status = "skipped"
        return {"version": version, "rows": rows, "skipped": True,
                "summary": f"recsys-impressions {out}@{version}: {rows:,} impressions, already "
                           f"built from {events.name}@{ev_version} and {items.name}@{it_version}"}
    built = build(*read_inputs(lake, events, items, ev_version, it_version))
    version = write_table(lake, out, built.table, mode="overwrite", app_id=app_id,
                          run_id=run.run_id, job=ctx.name)
    rows = built.table.num_rows
    ctr = built.clicks / rows if rows else 0.0
    run.add_output(table=out, version=version, rows=rows, skipped=False)
    run.metrics.update(rows=rows, impressions_in=built.impressions_in, clicks=built.clicks,
                       purchases=built.purchases, click_rate=ctr,
                       unknown_items=built.unknown_items)
    line = (f"recsys-impressions {out}@{version}: {rows:,} impressions from "
            f"{events.name}@{ev_version} ({built.clicks:,} clicked, {ctr:.2%}; "
            f"{built.purchases:,} purchased), {items.name}@{it_version}")
    if built.unknown_items:
        line += (f"; {built.unknown_items:,} impressions of items not in {items.name} (their "
                 "category and price are null)")
    return {"version": version, "rows": rows, "skipped": False, "clicks": built.clicks,
            "purchases": built.purchases, "unknown_items": built.unknown_items, "summary": line}
