"""Feature store jobs: ``features apply`` (check and record definitions) and
``training-set`` (a point-in-time correct training set written to the lake)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import ray

from raylake.config.schema import RaylakeConfig
from raylake.errors import ConfigError
from raylake.features.definitions import check_against_lake, resolve
from raylake.features.offline import ROW, get_historical_features
from raylake.features.online.settings import store_settings
from raylake.lake.commit import (
    add_actions,
    already_committed,
    commit_files,
    version_holding,
    write_table,
)
from raylake.lake.files import file_records, write_files
from raylake.lake.selection import parse_selection
from raylake.lake.tables import Lake
from raylake.runner import JobContext, job
from raylake.runtime import serve_until_stopped

REGISTRY_TABLE = "_feature_registry"
MATERIALIZATIONS_TABLE = "_materializations"


@job("features-apply", help="check feature definitions against the lake, record them "
                           "(`raylake features apply`)", ray=False)
def features_apply(ctx: JobContext) -> dict[str, Any]:
    """``raylake features apply``: definitions checked against the tables, recorded when changed."""
    conf, lake, run = ctx.conf, ctx.lake, ctx.record
    resolved = run.config["features"]  # as the runner resolved and recorded it
    reg = resolve(conf.features)
    checked = check_against_lake(reg, lake)
    digest = hashlib.sha256(json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()[:16]
    changed = not already_committed(lake, REGISTRY_TABLE, f"raylake.features.{digest}", system=True)
    if changed:
        row = {"name": conf.features.name, "digest": digest,
               "definitions": json.dumps(resolved, sort_keys=True, default=str),
               "sources": json.dumps(checked), "run_id": run.run_id}
        write_table(lake, REGISTRY_TABLE, pa.Table.from_pylist([row]), system=True,
                    app_id=f"raylake.features.{digest}", run_id=run.run_id, job="features-apply")
    version = lake.version(REGISTRY_TABLE, system=True)
    for c in checked:
        run.add_input(table=c["table"], version=c["version"], view=c["view"])
    run.add_output(table=REGISTRY_TABLE, version=version, changed=changed)
    return {"registry_version": version, "changed": changed, "checked": checked,
            "summary": f"features {conf.features.name}: {len(reg.views)} views, "
                       f"{len(reg.services)} services checked against the lake; registry "
                       f"version {version} ({'recorded' if changed else 'unchanged'})"}


def _check_training_set(conf: RaylakeConfig) -> None:
    t = conf.training_set
    if not (t.feature_service or list(t.features)):
        raise ConfigError("training_set needs feature_service=<name> or features=[view:feature, ...].")


@job("training-set", help="point-in-time correct training set from the feature store into "
                         "the lake", check=_check_training_set)
def training_set(ctx: JobContext) -> dict[str, Any]:
    """``raylake training-set``: entity rows from a lake table + features as of each row's time."""
    conf, lake, run = ctx.conf, ctx.lake, ctx.record
    t = conf.training_set
    reg = resolve(conf.features)
    features = t.feature_service or list(t.features)
    dtab = lake.table(t.entity_table, t.entity_version)
    entity_version = dtab.version()
    cols = list(dict.fromkeys([*t.entity_columns, t.event_timestamp_column]))
    entities = ray.data.read_delta(dtab.table_uri, version=entity_version, columns=cols,
                                   storage_options=lake.storage.delta_options())
    window = _window(t, pa.schema(dtab.schema().to_arrow()))
    if window:
        entities = _in_window(entities, t.event_timestamp_column, *window)
    if t.label:
        entities = _with_label(entities, t.label_name, t.label, t.drop_null_label)
    retrieval = get_historical_features(lake, reg, entities, features,
                                        event_timestamp_column=t.event_timestamp_column,
                                        full_feature_names=t.full_feature_names,
                                        broadcast_rows=t.broadcast_rows)
    entity_input: dict[str, Any] = {"table": t.entity_table, "version": entity_version,
                                    "role": "entities"}
    if window:  # part of the input's identity: another window is another training set
        entity_input.update(start=t.start, end=t.end)
    inputs = [entity_input]
    inputs += [{"table": v["table"], "version": v["version"], "role": "features",
                "view": v["view"]} for v in retrieval.views]
    app_id = "raylake.training." + hashlib.sha256(json.dumps(
        [inputs, features, t.label, cols, list(t.drop_columns)], sort_keys=True,
        default=str).encode()).hexdigest()[:24]
    for i in inputs:
        run.add_input(**i)
    if already_committed(lake, t.output_table, app_id):
        version = version_holding(lake, t.output_table, app_id)
        rows, skipped = lake.count(t.output_table, version), True
    else:
        columns = [c for c in retrieval.columns if c not in set(t.drop_columns)]
        files = ray.get([_write_part.remote(ref, lake.storage, t.output_table, columns)
                         for ref in retrieval.refs])
        actions = [a for part in files for a in part]
        schema = _schema(actions, window and f" in [{t.start}, {t.end})")
        version = commit_files(lake, t.output_table, schema, add_actions(actions),
                               mode="overwrite", app_id=app_id, run_id=run.run_id,
                               job="training-set",
                               description=f"training set: {features} on {t.entity_table}")
        rows, skipped = sum(a["rows"] for a in actions), False
    run.add_output(table=t.output_table, version=version, rows=rows, skipped=skipped)
    run.metrics.update(rows=rows, feature_views=retrieval.views, features=features)
    if window:
        run.metrics["window"] = {"start": t.start, "end": t.end}
    return {"version": version, "rows": rows, "views": retrieval.views,
            "summary": f"training set {t.output_table}@{version}: {rows:,} rows from "
                       f"{t.entity_table}@{entity_version}"
                       + (f" in [{t.start or '...'}, {t.end or '...'})" if window else "")
                       + " + "
                       + ", ".join(f"{v['view']} ({v['table']}@{v['version']})"
                                   for v in retrieval.views)
                       + (" (already built from these versions)" if skipped else "")}


def _check_aggregations(conf: RaylakeConfig) -> None:
    if not conf.features.aggregations:
        raise ConfigError(f"features={conf.features.name} declares no aggregations.")


@job("aggregate", help="window aggregations (e.g. a carrier's 7-day mean delay) into lake tables",
     check=_check_aggregations)
def aggregate(ctx: JobContext) -> dict[str, Any]:
    """``raylake aggregate``: every window aggregation of the feature config into the lake."""
    from raylake.features.aggregate import compute

    conf, lake, run = ctx.conf, ctx.lake, ctx.record
    reg = resolve(conf.features)
    results = {}
    for name, agg in conf.features.aggregations.items():
        keys = [k for ent in agg.entities for k in reg.entities[ent].join_keys] \
            if all(e in reg.entities for e in agg.entities) else None
        if not keys:
            raise ConfigError(f"Aggregation {name!r} names unknown entities {list(agg.entities)}; "
                              f"defined: {sorted(reg.entities)}.")
        res = compute(lake, name, agg, keys, run.run_id)
        results[name] = res
        run.add_input(table=agg.source, version=res["source_version"], aggregation=name)
        run.add_output(table=res["table"], version=res["version"], rows=res["rows"],
                       skipped=res["skipped"])
    return {"results": results,
            "summary": [f"aggregation {name}: {r['table']}@{r['version']} ({r['rows']:,} rows"
                        + (", unchanged" if r["skipped"] else "") + ")"
                        for name, r in results.items()]}


@job("materialize", help="latest feature values into the online store "
                        "(materialize.start/end)")
def materialize(ctx: JobContext, *, incremental: bool = False) -> dict[str, Any]:
    """``raylake materialize materialize.start=... materialize.end=...``, or
    ``raylake materialize-incremental`` (from each view's last end to now)."""
    import datetime as dt

    from raylake.features.online.materialize import materialize as fill
    from raylake.lake.tables import parse_version_ref

    conf, lake, run = ctx.conf, ctx.lake, ctx.record
    reg = resolve(conf.features)
    m = conf.materialize
    end = _when(m.end, parse_version_ref) or dt.datetime.now(dt.timezone.utc)
    views = list(m.views)
    skipped = []
    if not views:  # all views whose tables exist; the others are named, not failed
        views = [v for v in reg.views if lake.exists(reg.view(v).source)]
        skipped = [v for v in reg.views if v not in views]
    store = store_settings(conf, lake)
    name = ctx.name
    last = _last_ends(lake) if incremental else {}
    results = {}
    for view in views:
        start = last.get(view) if incremental else _when(m.start, parse_version_ref)
        results.update(fill(lake, reg, store, start, end, [view]))
    rows = [{"view": v, "start": None if incremental and v not in last else str(last.get(v) or m.start),
             "end": end.isoformat(), "table": r["table"], "version": r["version"],
             "rows": r["rows"], "run_id": run.run_id} for v, r in results.items()]
    # Typed: a first incremental run has no start (null), which must not fix the column's type.
    write_table(lake, MATERIALIZATIONS_TABLE, pa.Table.from_pylist(rows, schema=_MATERIALIZED),
                system=True,
                run_id=run.run_id, job=name)
    for v, r in results.items():
        run.add_input(table=r["table"], version=r["version"], view=v)
    run.add_output(online_store=store[0], views=results, end=end.isoformat())
    summary = [f"{name} into {store[0]} up to {end.isoformat()}: " + ", ".join(
        f"{v} {r['rows']:,} rows ({r['table']}@{r['version']})" for v, r in results.items())]
    summary += [f"  skipped {v}: table {reg.view(v).source!r} is not in the lake "
                "(aggregation outputs come from `raylake aggregate`)" for v in skipped]
    return {"views": results, "end": end, "skipped": skipped, "summary": summary}


_MATERIALIZED = pa.schema([("view", pa.string()), ("start", pa.string()), ("end", pa.string()),
                           ("table", pa.string()), ("version", pa.int64()),
                           ("rows", pa.int64()), ("run_id", pa.string())])


@job("materialize-incremental", help="materialize from each view's last end up to now")
def materialize_incremental(ctx: JobContext) -> dict[str, Any]:
    """``raylake materialize-incremental``: each view from its last materialized end."""
    return materialize.spec.fn(ctx, incremental=True)


def _when(text: str | None, parse) -> Any:
    if not text:
        return None
    when = parse(text)
    if not hasattr(when, "tzinfo"):
        raise ConfigError(f"{text!r} is not an ISO time; write e.g. 2013-07-01T00:00:00Z.")
    return when


def _last_ends(lake: Lake) -> dict[str, Any]:
    import datetime as dt

    if not lake.exists(MATERIALIZATIONS_TABLE, system=True):
        return {}
    ends: dict[str, Any] = {}
    for row in lake.read(MATERIALIZATIONS_TABLE, system=True).to_pylist():
        when = dt.datetime.fromisoformat(row["end"])
        ends[row["view"]] = max(ends.get(row["view"], when), when)
    return ends


def _with_label(ds: ray.data.Dataset, name: str, label: str, drop_null: bool) -> ray.data.Dataset:
    expr = parse_selection(label)

    def add(block: pa.Table) -> pa.Table:
        """``block`` with the label column ``name`` computed from the label expression; rows
        whose label is null are dropped when ``drop_null``."""
        import pyarrow.dataset as pds

        values = pds.dataset(block).to_table(columns={"_l": expr}).column("_l")
        block = block.append_column(name, values)
        return block.filter(pc.is_valid(block.column(name))) if drop_null else block

    return ds.map_batches(add, batch_format="pyarrow", num_cpus=0.5)


@ray.remote(num_cpus=0.5)
def _write_part(block: pa.Table, storage, table: str, columns: list[str]) -> list[dict]:
    if not block.num_rows:
        return []
    block = block.sort_by(ROW).select(columns)
    return file_records(write_files(block, storage, table, ()), block.schema)


def _schema(actions: list[dict], window: str | None) -> pa.Schema:
    if actions:
        return pa.ipc.read_schema(pa.py_buffer(actions[0]["schema"]))
    raise ConfigError("The training set has no rows" + (window or "") + ": check the entity "
                      "table, the label" + (" and training_set.start/end." if window else "."))


def _window(t: Any, schema: pa.Schema) -> tuple[Any, Any] | None:
    """``training_set.start``/``end`` as UTC datetimes (either may be None); None when
    neither is set. ConfigError when the event time column holds no timestamps."""
    from raylake.lake.clock import parse_time

    if not (t.start or t.end):
        return None
    col = t.event_timestamp_column
    if col not in schema.names or not pa.types.is_timestamp(schema.field(col).type):
        have = schema.field(col).type if col in schema.names else "missing"
        raise ConfigError(f"training_set.start/end filter on training_set.event_timestamp_column="
                          f"{col!r}, which in {t.entity_table!r} is {have}, not a timestamp; "
                          "name a timestamp column or drop start/end.")
    return (parse_time(t.start, "training_set.start") if t.start else None,
            parse_time(t.end, "training_set.end") if t.end else None)


def _in_window(ds: ray.data.Dataset, column: str, start: Any, end: Any) -> ray.data.Dataset:
    def keep(block: pa.Table) -> pa.Table:
        """The rows of ``block`` whose ``column`` is in [start, end); null times leave."""
        if not block.num_rows:
            return block
        times = block.column(column)
        mask = pc.is_valid(times)
        if start is not None:
            mask = pc.and_(mask, pc.greater_equal(times, pa.scalar(start, times.type)))
        if end is not None:
            mask = pc.and_(mask, pc.less(times, pa.scalar(end, times.type)))
        return block.filter(pc.fill_null(mask, False))

    return ds.map_batches(keep, batch_format="pyarrow", num_cpus=0.5)




@job("serve-features", help="the HTTP feature server on Ray Serve (Feast's API)", record=False)
def serve_features(ctx: JobContext, *, blocking: bool = True) -> dict[str, Any]:
    """``raylake serve-features``: run the feature server until stopped (``blocking``)."""
    from ray import serve

    from raylake.features.server import build_app

    conf, lake = ctx.conf, ctx.lake
    fs = conf.feature_server
    serve.start(http_options={"host": fs.host, "port": fs.port})
    handle = serve.run(build_app(conf, lake, store_settings(conf, lake)), name="features",
                       route_prefix="/", blocking=False)
    ctx.echo(f"feature server on http://{fs.host}:{fs.port} "
             "(POST /get-online-features, POST /push, GET /health)")
    if blocking:
        serve_until_stopped()
    return {"handle": handle}


__all__ = ["aggregate", "features_apply", "materialize", "materialize_incremental",
           "serve_features", "training_set"]
