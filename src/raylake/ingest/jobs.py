"""The ingest job: every table of a dataset into the lake, one run record."""

from __future__ import annotations

from typing import Any

from raylake.config.schema import RaylakeConfig
from raylake.errors import ConfigError, did_you_mean
from raylake.ingest.govern import explicit_key
from raylake.ingest.images import ingest_image_tables
from raylake.ingest.pipeline import TableResult, ingest_table
from raylake.quality.constraints import constraints_for
from raylake.runner import JobContext, job


def _check(conf: RaylakeConfig) -> None:
    tables, images = conf.dataset.tables, conf.dataset.images
    known = [*tables, *images]
    for key in conf.ingest.tables:
        if key not in known:
            raise ConfigError(
                f"ingest.tables names {key!r}, which dataset {conf.dataset.name!r} does not "
                f"have.{did_you_mean(key, known)} Its tables: {', '.join(known)}."
            )
    for key in _chosen(conf, tables):
        explicit_key(conf.governance, tables[key])  # refuse before the lake or Ray start


def _chosen(conf: RaylakeConfig, tables: Any) -> list[str]:
    """The keys of ``tables`` (tabular or image tables) this run ingests."""
    return [k for k in tables if not conf.ingest.tables or k in conf.ingest.tables]


@job("ingest", help="ingest a dataset's tables into the lake (Ray Data -> Delta)", check=_check)
def ingest(ctx: JobContext) -> dict[str, Any]:
    """Ingest ``dataset`` into the lake; the run id and per-table results."""
    conf, lake, run_rec = ctx.conf, ctx.lake, ctx.record
    tables = conf.dataset.tables
    results: list[TableResult] = []
    run_rec.metrics["ray"] = ctx.ray
    for key in _chosen(conf, tables):
        table_name = tables[key].table or key
        res = ingest_table(
            lake, key, tables[key], run_id=run_rec.run_id, job="ingest",
            ingest_cfg=conf.ingest, task_cpus=conf.ray.data_task_cpus,
            constraints=constraints_for(conf.quality, table_name),
            profile=conf.profile.on_ingest,
            segment_by=_segment(conf.profile.segment_by, tables[key]),
            governance=conf.governance,
        )
        results.append(res)
        run_rec.add_input(kind="files", table=res.table, files=res.files, fingerprint=res.fingerprint)
        run_rec.add_output(table=res.table, version=res.version, rows=res.rows_written,
                           skipped=res.skipped)
        if res.quarantine_version is not None:
            run_rec.add_output(table=f"{res.table}__quarantine", version=res.quarantine_version,
                               rows=res.rows_quarantined)
        run_rec.metrics[res.table] = {
            "rows_read": res.rows_read, "rows_written": res.rows_written,
            "rows_quarantined": res.rows_quarantined, "skipped": res.skipped,
            "reasons": res.reasons, "seconds": res.seconds, "nodes": res.nodes,
            "merge": res.merge_metrics, "constraints": res.checks,
            "profiled": res.profiled, "duplicates": res.duplicates,
            "cleansing": res.cleansing,
            # which policy touched which columns (names and actions, never values)
            "governance": {c: v["policy"] for c, v in res.classification.items()
                           if v["policy"] != "keep"},
            "classification": {c: v["class"] for c, v in res.classification.items()},
        }
        ctx.echo(_summary(res))
    # Image tables (dataset.images) are a source kind of their own: read and checked image
    # by image (ingest/images.py), not through the tabular Ray Data pipeline.
    images = {k: v for k, v in conf.dataset.images.items() if k in _chosen(conf, conf.dataset.images)}
    image_results = ingest_image_tables(lake, images, run_rec, ctx.echo, job="ingest")
    if all(r.skipped for r in results) and not any(
            r.rows_written or r.rows_quarantined for r in image_results):
        run_rec.status = "skipped"
    status = "skipped" if run_rec.status == "skipped" else "succeeded"
    return {"tables": results, "images": image_results,
            "summary": f"run {run_rec.run_id}: {status}; lake at {lake.root} "
                       f"(see `raylake runs show {run_rec.run_id} lake.root={lake.root}`)"}


def _segment(column: str | None, tcfg) -> str | None:
    """Segment profiles for tables that have the column (e.g. origin)."""
    return column if column and column in tcfg.columns else None


def _summary(r: TableResult) -> str:
    if r.skipped:
        return f"{r.table}: input already ingested (fingerprint {r.fingerprint[:12]}); " \
               f"nothing added, table stays at version {r.version}"
    line = (f"{r.table}: read {r.rows_read:,} = written {r.rows_written:,} + quarantined "
            f"{r.rows_quarantined:,} -> version {r.version} ({r.mode}, {r.seconds.get('total', 0):.1f}s)")
    if r.reasons:
        line += "\n  quarantined: " + ", ".join(f"{k}: {v:,}" for k, v in sorted(r.reasons.items()))
    changed = {k: v for k, v in (r.cleansing.get("changed") or {}).items() if v}
    if changed:
        line += "\n  cleansed: " + ", ".join(f"{k}: {v:,} values" for k, v in changed.items())
    flagged = [c for c in r.checks if c["policy"] == "warn" and not c["passed"]]
    if flagged:
        line += "\n  warnings: " + "; ".join(f"{c['name']}: {c['message']}" for c in flagged)
    found = {c: v for c, v in r.classification.items() if v["class"] in ("pii", "restricted")}
    if found:
        line += "\n  classified: " + ", ".join(
            f"{c} {v['class']} ({', '.join(sorted(v['entities'])) or v['source']}; {v['policy']})"
            for c, v in sorted(found.items()))
    return line
