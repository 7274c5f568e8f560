"""Quality jobs: profile a table version, compare two selections or versions for drift."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ray

from raylake.config.schema import RaylakeConfig
from raylake.errors import ConfigError
from raylake.lake.selection import parse_selection
from raylake.lake.tables import Lake
from raylake.quality.drift import DriftReport, compare
from raylake.quality.profile import Profile
from raylake.quality.profiler import WHOLE, profile_dataset
from raylake.quality.store import save_profiles
from raylake.runner import JobContext, job


def _needs_table(name: str) -> Callable[[RaylakeConfig], None]:
    def check(conf: RaylakeConfig) -> None:
        """ConfigError when the config names no ``table``."""
        if not conf.table:
            raise ConfigError(f"The {name} job needs a table: add table=<name> "
                              "(see `raylake lake list`).")
    return check


def _check_drift(conf: RaylakeConfig) -> None:
    _needs_table("drift")(conf)
    d = conf.drift
    if not (d.reference or d.reference_version) or not (d.current or d.current_version):
        raise ConfigError(
            "drift needs a reference and a current side: drift.reference=\"<selection>\" and/or "
            "drift.reference_version=<version|tag>, and the same for drift.current."
        )


def table_dataset(lake: Lake, table: str, version: Any = None) -> tuple[ray.data.Dataset, int]:
    """A Ray Dataset over one table version (partition columns included)."""
    dtab = lake.table(table, version)
    ds = ray.data.read_delta(dtab.table_uri, version=dtab.version(),
                             storage_options=lake.storage.delta_options())
    return ds, dtab.version()


def profile_table(lake: Lake, table: str, version: Any, conf: RaylakeConfig,
                  selection: str | None = None, segment_by: str | None = None) -> tuple[dict[str, Profile], int]:
    """Profiles of ``table`` at ``version`` (latest if None) made by the profiling tasks,
    keyed by segment value (``WHOLE`` when not segmented), and the version read; with
    ``selection`` only the rows it matches."""
    ds, resolved = table_dataset(lake, table, version)
    expr = parse_selection(selection) if selection else None
    p = conf.profile
    profiles = profile_dataset(ds, segment_by=segment_by, selection=expr, actors=p.actors,
                               actor_cpus=p.actor_cpus, batch_rows=p.batch_rows)
    return profiles, resolved


@job("profile", help="profile a table version (whylogs profiles, in Ray tasks)", check=_needs_table("profile"))
def profile(ctx: JobContext) -> dict[str, Any]:
    """``raylake profile table=T [version=V] [profile.segment_by=C]``: store the profile."""
    conf, lake, run = ctx.conf, ctx.lake, ctx.record
    assert conf.table
    whole, version = profile_table(lake, conf.table, conf.version, conf)
    save_profiles(lake, conf.table, version, whole, run_id=run.run_id)
    run.add_input(table=conf.table, version=version)
    seg = conf.profile.segment_by
    if seg:
        parts, _ = profile_table(lake, conf.table, version, conf, segment_by=seg)
        save_profiles(lake, conf.table, version, parts, segment_column=seg, run_id=run.run_id)
        run.metrics["segments"] = {k: p.rows for k, p in parts.items()}
    prof = whole[WHOLE]
    run.add_output(table="_profiles", table_profiled=conf.table, version=version, rows=prof.rows)
    run.metrics["rows"] = prof.rows
    run.metrics["nulls"] = {c: prof.summary(c).nulls for c in prof.columns}
    return {"version": version, "profile": prof,
            "summary": f"profiled {conf.table}@{version}: {prof.rows:,} rows, "
                       f"{len(prof.columns)} columns (run {run.run_id})"}


@job("drift", help="compare two selections or versions of a table", check=_check_drift)
def drift(ctx: JobContext) -> dict[str, Any]:
    """``raylake drift table=T drift.reference="month in [1]" drift.current="month in [7]"``."""
    conf, lake, run = ctx.conf, ctx.lake, ctx.record
    assert conf.table
    d = conf.drift
    ref, ref_v = profile_table(lake, conf.table, d.reference_version or conf.version, conf,
                               selection=d.reference)
    cur, cur_v = profile_table(lake, conf.table, d.current_version or conf.version, conf,
                               selection=d.current)
    thresholds = {c: {k: v for k, v in t.__dict__.items() if v is not None}
                  for c, t in d.thresholds.items()}
    columns, excluded = judged_columns(conf, ref[WHOLE], cur[WHOLE],
                                       column_types(lake, conf.table, cur_v))
    report = compare(ref[WHOLE], cur[WHOLE], columns=columns,
                     thresholds=thresholds, dataset_share=d.dataset_share)
    run.add_input(table=conf.table, version=ref_v, selection=d.reference, side="reference")
    run.add_input(table=conf.table, version=cur_v, selection=d.current, side="current")
    run.metrics["drift"] = {**report.to_dict(), "excluded": excluded}
    text = _drift_text(conf.table, report)
    if excluded:
        text += "\n  not judged (the selections make them differ): " + "; ".join(
            f"{c} ({why})" for c, why in excluded.items())
    return {"report": report, "excluded": excluded, "summary": text}


def _drift_text(table: str, report: DriftReport) -> str:
    lines = [f"drift of {table}: {'DRIFT' if report.drifted else 'no drift'} "
             f"({len(report.drifted_columns)}/{len(report.columns)} columns, "
             f"threshold share {report.dataset_share}); rows {report.reference_rows:,} vs "
             f"{report.current_rows:,}"]
    for c in report.columns:
        flag = "DRIFT" if c.drifted else "ok"
        lines.append(f"  {c.column:<16} {c.kind:<11} {c.metric}={c.value:.4f} "
                     f"(threshold {c.threshold}) {flag}")
    return "\n".join(lines)


def _check_validate(conf: RaylakeConfig) -> None:
    from raylake.quality.constraints import constraints_for

    _needs_table("validate")(conf)
    assert conf.table
    if not constraints_for(conf.quality, conf.table):
        raise ConfigError(
            f"No constraints are declared for table {conf.table!r} in quality={conf.quality.name}; "
            f"declare them under quality.tables.{conf.table}.constraints (conf/quality/)."
        )


@job("validate", help="check a table version against its constraints", check=_check_validate)
def validate(ctx: JobContext) -> dict[str, Any]:
    """``raylake validate table=T [version=V]``: every declared constraint on one version."""
    from raylake.errors import ValidationError
    from raylake.quality.constraints import constraints_for
    from raylake.quality.validate import validate_version

    conf, lake, run = ctx.conf, ctx.lake, ctx.record
    assert conf.table
    constraints = constraints_for(conf.quality, conf.table)
    results, version, rows = validate_version(lake, conf.table, conf.version, constraints, conf)
    run.add_input(table=conf.table, version=version, rows=rows)
    run.metrics["constraints"] = [r.to_dict() for r in results]
    failed = [r for r in results if not r.passed and r.policy == "fail"]
    run.metrics["passed"] = not failed
    # Printed before a failure is raised: the table of results is what the user needs.
    ctx.echo(_validate_text(conf.table, version, rows, results))
    if failed:
        raise ValidationError(
            f"{conf.table}@{version} breaks {len(failed)} constraint(s) with policy fail: "
            + "; ".join(f"{r.name} ({r.message})" for r in failed)
        )
    return {"version": version, "rows": rows, "results": results}


def _validate_text(table: str, version: int, rows: int, results: list) -> str:
    lines = [f"validate {table}@{version} ({rows:,} rows):"]
    for r in results:
        state = "ok" if r.passed else ("FAIL" if r.policy == "fail" else r.policy.upper())
        lines.append(f"  {state:<10} {r.name:<26} {r.check:<12} {r.message}")
    return "\n".join(lines)


@job("quality-report", help="JSON + HTML report: summaries, constraints, drift "
                           "(`raylake quality report`)", check=_needs_table("quality report"))
def quality_report(ctx: JobContext) -> dict[str, Any]:
    """``raylake quality report table=T [version=V]``: JSON + HTML with summaries,
    constraint results and drift (the configured selections or versions, else the
    previous version's stored profile against this one)."""
    from pathlib import Path

    from raylake.quality.constraints import constraints_for
    from raylake.quality.report import build_report, write_report
    from raylake.quality.validate import validate_version

    conf, lake, run = ctx.conf, ctx.lake, ctx.record
    assert conf.table
    profiles, version = profile_table(lake, conf.table, conf.version, conf)
    prof = profiles[WHOLE]
    constraints = constraints_for(conf.quality, conf.table)
    checks = [r.to_dict() for r in validate_version(lake, conf.table, version, constraints,
                                                    conf)[0]] if constraints else []
    ref, cur, sides = _drift_sides(lake, conf, version, prof)
    types = column_types(lake, conf.table, version)
    drift_report, no_drift = None, None
    excluded: dict[str, str] = {}
    if ref is not None and cur is not None and ref.rows and cur.rows:
        d = conf.drift
        thresholds = {c: {k: v for k, v in t.__dict__.items() if v is not None}
                      for c, t in d.thresholds.items()}
        columns, excluded = judged_columns(conf, ref, cur, types)
        drift_report = compare(ref, cur, columns=columns, thresholds=thresholds,
                               dataset_share=d.dataset_share)
    elif ref is None:
        no_drift = (f"version {version} is the first profiled version of {conf.table}, so "
                    "there is no earlier profile to compare it with. A later version's report "
                    "compares with this one; or compare two selections now with "
                    "drift.reference=\"<selection>\" drift.current=\"<selection>\".")
    else:
        no_drift = (f"a side selects no rows (reference {ref.rows:,} rows, current "
                    f"{cur.rows if cur is not None else 0:,} rows); check drift.reference and "
                    "drift.current.")
    report = build_report(conf.table, version, prof, checks, drift_report, ref, cur, sides,
                          excluded=excluded, no_drift=no_drift, column_types=types)
    base = Path(conf.output_dir) if conf.output_dir else Path(lake.root) / "_reports"
    if "://" in str(base):
        raise ConfigError(f"output_dir={base} must be a local folder for reports.")
    js, page = write_report(report, base / f"{conf.table.replace('/', '_')}@{version}")
    run.add_input(table=conf.table, version=version)
    run.add_output(report_json=str(js), report_html=str(page))
    run.metrics["rows"] = prof.rows
    return {"json": js, "html": page, "report": report,
            "summary": f"quality report of {conf.table}@{version}: {page}\n  json: {js}"}


def column_types(lake: Lake, table: str, version: int) -> dict[str, str]:
    """Column -> Arrow type text of ``table`` at ``version``."""
    import pyarrow as pa

    schema = pa.schema(lake.table(table, version).schema().to_arrow())
    return {f.name: str(f.type) for f in schema}


def judged_columns(conf: RaylakeConfig, ref: Profile, cur: Profile, types: dict[str, str]
                   ) -> tuple[list[str] | None, dict[str, str]]:
    """The columns a drift verdict judges (``drift.columns`` as given, else every shared
    column but those the selections make differ: :func:`report.drift_exclusions`), and
    the excluded ones with why."""
    from raylake.quality.report import drift_exclusions

    d = conf.drift
    if d.columns:
        return list(d.columns), {}
    excluded = drift_exclusions([d.reference, d.current], types)
    shared = [c for c in ref.columns if c in cur.columns]
    excluded = {c: why for c, why in excluded.items() if c in shared}
    return ([c for c in shared if c not in excluded] or None) if excluded else None, excluded


def _drift_sides(lake: Lake, conf: RaylakeConfig, version: int,
                 prof: Profile) -> tuple[Profile | None, Profile | None, dict[str, str]]:
    """The reference and current profiles of the report's drift section: the configured
    selections or versions, else the previous version's stored profile against this one."""
    from raylake.quality.store import load_profile, stored_versions

    assert conf.table
    d = conf.drift
    if d.reference or d.reference_version:
        ref = profile_table(lake, conf.table, d.reference_version or version, conf,
                            selection=d.reference)[0][WHOLE]
        cur = profile_table(lake, conf.table, d.current_version or version, conf,
                            selection=d.current)[0][WHOLE] if (d.current or d.current_version) \
            else prof
        return ref, cur, {"reference": d.reference or f"version {d.reference_version}",
                          "current": d.current or f"version {d.current_version or version}"}
    earlier = [v for v in stored_versions(lake, conf.table) if v < version]
    if earlier:
        return (load_profile(lake, conf.table, [earlier[-1]]), prof,
                {"reference": f"version {earlier[-1]}", "current": f"version {version}"})
    return None, None, {}
