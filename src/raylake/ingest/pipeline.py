"""Ingest one table: read -> cast and check -> write files -> de-duplicate -> commit.

One fused Ray Data task per source file reads it, casts every row to the
declared schema, checks it, and writes good rows and quarantined rows as
Parquet files (``raylake.ingest.tasks``); rows never pass through the object
store or the driver. The driver gets back file metadata and one 8-byte key hash per row, resolves
primary keys repeated within the input (rare: only then are files
rewritten), checks ``read == written + quarantined``, and commits the
quarantine and then the table, each in one Delta transaction tagged with the
input's fingerprint. A failure before the table commit leaves its version as
it was; a re-run over the same input finds the fingerprint and adds nothing.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pds

from raylake import errors as errors_module
from raylake.config.schema import GovernanceConfig, IngestConfig, TableConfig, WriteMode
from raylake.errors import CountMismatchError, IngestError, RaylakeError, did_you_mean
from raylake.ingest.dedup import resolve_duplicates
from raylake.ingest.govern import Governance, explicit_key, plan_governance
from raylake.ingest.sources import (
    SourceFile,
    SourceSpec,
    fingerprint,
    list_files,
    source_spec,
    with_format,
)
from raylake.ingest.tasks import (
    BlockWork,
    WorkerOutputs,
    collect_outputs,
    profile_source,
    read_cast_write,
)
from raylake.ingest.types import ColumnSpec, column_specs, declared_schema
from raylake.ingest.writer import QUARANTINE_SCHEMA, WriteTarget
from raylake.lake.classification import save_classification
from raylake.lake.commit import (
    add_actions,
    already_committed,
    commit_files,
    commit_once,
    merge_rows,
)
from raylake.lake.names import quarantine_table, validate_table_name
from raylake.lake.tables import Lake
from raylake.quality.cleanse import Step, describe_steps, resolve_steps
from raylake.quality.constraints import Constraint, reference_sets, row_result, table_check
from raylake.quality.profile import Profile
from raylake.quality.store import save_profiles
from raylake.runtime import remote_error, task_cause


@dataclass
class TableResult:
    """What ingesting one table did: rows read, written and quarantined, the versions
    committed, the constraint results, and seconds per step."""

    table: str
    mode: str
    fingerprint: str
    rows_read: int = 0
    rows_written: int = 0
    rows_quarantined: int = 0
    duplicates: int = 0
    version: int | None = None
    quarantine_version: int | None = None
    skipped: bool = False
    files: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    merge_metrics: dict[str, Any] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)
    cleansing: dict[str, Any] = field(default_factory=dict)
    profiled: bool = False
    # column -> class, entities found and the policy applied (governance on)
    classification: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class IngestOptions:
    """How one table is ingested, beyond its config: the run's settings."""

    run_id: str
    job: str = "ingest"  # the job named in the commits
    ingest_cfg: IngestConfig = field(default_factory=IngestConfig)
    task_cpus: float = 1.0  # CPUs per read-cast-write task
    constraints: tuple[Constraint, ...] = ()
    profile: bool = False  # save a profile of the committed version
    segment_by: str | None = None  # and one per value of this column
    # Scan, classify and apply policies (docs/governance.md); None: none of it.
    governance: GovernanceConfig | None = None


@dataclass(frozen=True)
class _Plan:
    """The table to write and the input found for it (before anything is written)."""

    lake: Lake
    tcfg: TableConfig
    opts: IngestOptions
    name: str
    specs: list[ColumnSpec]
    schema: pa.Schema
    mode: str
    source: SourceSpec
    files: list[SourceFile]
    fingerprint: str
    started: float  # perf_counter when listing began
    key: str = ""  # the table's key in dataset.tables (where its config lives)
    governance: Governance | None = None  # resolved after the committed-input check

    @property
    def app_id(self) -> str:
        """The Delta application transaction id of this input's commits (from its
        fingerprint): a re-run over the same input finds it and commits nothing."""
        return f"raylake.ingest.{self.fingerprint}"

    @property
    def qname(self) -> str:
        """The name of the table's quarantine table."""
        return quarantine_table(self.name)

    @property
    def primary_key(self) -> list[str]:
        """The table's declared primary key columns (empty when it has none)."""
        return list(self.tcfg.primary_key)


@dataclass(frozen=True)
class _WritePass:
    """How the write pass runs: where files go, the checks and cleansing steps."""

    target: WriteTarget
    refs: dict[str, pa.Array]  # reference constraints' allowed values
    steps: list[Step]
    latest_by: str | None  # dedup_latest's order column
    merging: bool  # mode=merge into an existing table: files go to a staging folder
    staging: str


def ingest_table(
    lake: Lake,
    key: str,
    tcfg: TableConfig,
    *,
    run_id: str,
    job: str = "ingest",
    ingest_cfg: IngestConfig | None = None,
    task_cpus: float = 1.0,
    constraints: Sequence[Constraint] = (),
    profile: bool = False,
    segment_by: str | None = None,
    governance: GovernanceConfig | None = None,
) -> TableResult:
    """Ingest the dataset table ``key`` (config ``tcfg``) into ``lake``; the keyword
    arguments are the fields of :class:`IngestOptions`.

    Nothing is committed unless every row read is written or quarantined and no
    constraint with policy fail is broken; the quarantine commits first, then the
    table. An input already committed (same fingerprint) adds nothing.
    """
    opts = IngestOptions(run_id=run_id, job=job, ingest_cfg=ingest_cfg or IngestConfig(),
                         task_cpus=task_cpus, constraints=tuple(constraints), profile=profile,
                         segment_by=segment_by, governance=governance)
    plan = _plan(lake, key, tcfg, opts)
    result = TableResult(plan.name, plan.mode, plan.fingerprint, files=[f.path for f in plan.files])
    result.seconds["list"] = round(time.perf_counter() - plan.started, 3)
    if already_committed(lake, plan.name, plan.app_id):
        result.skipped = True
        result.version = lake.version(plan.name)
        return result
    classes: list[Any] = []  # pii.types.ColumnClass
    if opts.governance is not None:  # reads a sample; refuses before anything is written
        gov, classes, schema = plan_governance(opts.governance, tcfg, plan.name, plan.files,
                                               plan.source, plan.specs, plan.schema)
        plan = dataclasses.replace(plan, schema=schema, governance=gov)
        result.classification = {c.column: {"class": c.data_class, "entities": c.entities,
                                            "policy": c.policy, "source": c.source}
                                 for c in classes}
    try:
        write = _prepare_write(plan)  # may profile the source: a Ray pass
    except Exception as exc:
        err = _reraise(exc, plan.name)
        if err is exc:
            raise
        raise err from exc
    try:
        out = _write_and_dedup(plan, write, result)
        try:
            _check_nothing_lost(plan, out, result)
            _check_constraints(plan, write, out, result)
        except RaylakeError:
            _remove_written(plan, write, out)  # nothing of this run is committed: leave nothing
            raise
        _commit(plan, write, out, result)
        _save_profiles(plan, write, out, result)
        if classes and not result.skipped:
            save_classification(lake, plan.name, classes, run_id=opts.run_id,
                                table_version=result.version)
    except Exception as exc:  # Ray wraps worker failures; keep the cause, say what happened
        err = _reraise(exc, plan.name)
        if err is exc:
            raise
        raise err from exc
    finally:
        if write.merging:
            _remove_staging(lake, f"_staging/{run_id}")
    result.seconds["total"] = round(time.perf_counter() - plan.started, 3)
    return result


def _plan(lake: Lake, key: str, tcfg: TableConfig, opts: IngestOptions) -> _Plan:
    """The declared schema checked, the source files listed and fingerprinted."""
    name = validate_table_name(tcfg.table or key)
    specs = column_specs(tcfg.columns, name)
    schema = declared_schema(specs)
    _check_keys(name, tcfg, schema)
    mode = WriteMode(tcfg.mode).value
    governed = ""
    if opts.governance is not None:
        explicit_key(opts.governance, tcfg)  # a missing key refuses before any read
        # The rules (not the key) are part of the input: new policies ingest anew.
        governed = json.dumps({"scan": dataclasses.asdict(opts.governance.scan),
                               "policies": _asdict(opts.governance.policies),
                               "table_policies": _asdict(tcfg.policies),
                               "classification": dict(tcfg.classification)},
                              sort_keys=True, default=str)
    started = time.perf_counter()
    spec = source_spec(tcfg.source, lake.storage.options)
    files = list_files(spec)
    spec = with_format(spec, files)
    layout = json.dumps(
        {"table": name, "schema": str(schema), "pk": list(tcfg.primary_key), "mode": mode,
         "partition_by": list(tcfg.partition_by),
         **({"governance": governed} if governed else {})}, sort_keys=True)
    return _Plan(lake, tcfg, opts, name, specs, schema, mode, spec, files,
                 fingerprint(files, spec, layout), started, key)


def _prepare_write(plan: _Plan) -> _WritePass:
    """Constraints checked against the schema, cleansing steps resolved, the target set."""
    lake, tcfg, opts, schema = plan.lake, plan.tcfg, plan.opts, plan.schema
    constraints = list(opts.constraints)
    refs = reference_sets(lake, constraints)
    table_checks_ = [c for c in constraints if not c.row_level]
    needs_profile = any(c.check in ("null_share", "freshness", "distribution") for c in table_checks_)
    for c in constraints:
        for col in [c.column, *c.columns]:
            if col and col not in schema.names:
                raise IngestError(
                    f"Constraint {c.name!r} of {plan.name!r} names column {col!r}, which is not "
                    f"declared ({', '.join(schema.names)}).{did_you_mean(col, schema.names)}"
                )
    steps = resolve_steps(tcfg.cleanse, plan.name, schema, tcfg.primary_key,
                          lambda: profile_source(plan.files, plan.source, plan.specs,
                                                 plan.primary_key, opts.task_cpus))
    latest_by = next((s.order_by for s in steps if s.op == "dedup_latest"), None)
    merging = plan.mode == "merge" and lake.exists(plan.name)
    staging = f"_staging/{opts.run_id}/{plan.name}"
    target = WriteTarget(
        storage=lake.storage, data_dir=staging if merging else plan.name,
        quarantine_dir=plan.qname, table=plan.name, columns=tuple(schema.names),
        partition_by=tuple(tcfg.partition_by), run_id=opts.run_id,
        source_files=tuple(f.path for f in plan.files),
        profile=opts.profile or needs_profile,
        segment_by=opts.segment_by if opts.profile else None,
        fail_after_write=opts.ingest_cfg.inject_failure == "write",
    )
    return _WritePass(target, refs, steps, latest_by, merging, staging)


def _write_and_dedup(plan: _Plan, write: _WritePass, result: TableResult) -> WorkerOutputs:
    """Read, cast, check and write every source file; then take repeated keys out."""
    t1 = time.perf_counter()
    gov = plan.governance if plan.governance is not None and plan.governance.active else None
    work = BlockWork(specs=plan.specs, primary_key=plan.primary_key, target=write.target,
                     constraints=list(plan.opts.constraints), refs=write.refs, steps=write.steps,
                     governance=gov)
    outputs = read_cast_write(plan.files, plan.source, work, plan.opts.task_cpus)
    result.seconds["read_cast_write"] = round(time.perf_counter() - t1, 3)
    out = collect_outputs(outputs)
    result.cleansing = {"steps": describe_steps(write.steps), "changed": out.cleansed}
    result.nodes = out.nodes

    t2 = time.perf_counter()
    dedup = resolve_duplicates(write.target, out.data, out.keys, plan.primary_key,
                               latest_by=write.latest_by)
    out.data, out.quarantined = dedup.data, out.quarantined + dedup.quarantine
    result.duplicates = dedup.duplicates
    result.seconds["dedup"] = round(time.perf_counter() - t2, 3)
    return out


def _check_nothing_lost(plan: _Plan, out: WorkerOutputs, result: TableResult) -> None:
    """Every row read is written or quarantined, and not too many rows failed.

    The share counts rows that failed a cast or a check; rows that repeat an
    earlier primary key are resolved (the first one wins), not failed, so they
    do not count.
    """
    name = plan.name
    result.rows_read = out.rows_seen
    result.rows_written = sum(d["rows"] for d in out.data)
    result.rows_quarantined = sum(q["rows"] for q in out.quarantined)
    if result.rows_read != result.rows_written + result.rows_quarantined:
        raise CountMismatchError(
            f"{name}: rows read {result.rows_read} != written {result.rows_written} + "
            f"quarantined {result.rows_quarantined}. Nothing was committed. This is a bug "
            "in raylake: report it with the run id."
        )
    examples: list[str] = []
    result.reasons = (_reason_counts(plan.lake, plan.qname, out.quarantined, examples)
                      if out.quarantined else {})
    failed = result.rows_quarantined - result.duplicates
    share = failed / result.rows_read if result.rows_read else 0.0
    limit, setting = _quarantine_limit(plan)
    if share > limit:
        top = sorted(((n, k) for k, n in result.reasons.items() if not k.startswith("duplicate")),
                     reverse=True)[:3]
        raise IngestError(
            f"{name}: {failed:,} of {result.rows_read:,} rows ({share:.1%}) failed their casts "
            f"or checks, over the limit of {limit:.1%} ({setting}={limit}). Nothing was "
            f"committed: table {name!r} and {plan.qname!r} are unchanged. Top reasons: "
            + "; ".join(f"{k} ({n:,} rows)" for n, k in top)
            + (f". For example: {'; '.join(examples)}" if examples else "")
            + ". Fix the source or the declared columns (type, format, source, "
            "source.csv.delimiter / encoding); if this share is expected, raise "
            f"{setting} (a share of rows, 0..1)."
        )


def _quarantine_limit(plan: _Plan) -> tuple[float, str]:
    """The table's limit on the share of failing rows, and the setting it comes from."""
    own = getattr(plan.tcfg, "max_quarantine_fraction", None)
    if own is not None:
        return float(own), f"dataset.tables.{plan.key or plan.name}.max_quarantine_fraction"
    return float(plan.opts.ingest_cfg.max_quarantine_fraction), "ingest.max_quarantine_fraction"


def _check_constraints(plan: _Plan, write: _WritePass, out: WorkerOutputs,
                       result: TableResult) -> None:
    """Every constraint judged over the rows to commit; one with policy fail stops the run."""
    result.checks = _judge(plan.lake, list(plan.opts.constraints), out.check_counts,
                           result.rows_written, out.profile, write.target, out.data,
                           plan.primary_key)
    failed = [c for c in result.checks if not c["passed"] and c["policy"] == "fail"]
    if failed:
        raise IngestError(
            f"{plan.name}: constraint(s) with policy fail did not hold: "
            + "; ".join(f"{c['name']} ({c['message']})" for c in failed)
            + ". Nothing was committed. Fix the data, or the constraint in conf/quality/."
        )


def _commit(plan: _Plan, write: _WritePass, out: WorkerOutputs, result: TableResult) -> None:
    """The quarantine first, then the table (append/overwrite, or merge from staging)."""
    lake, opts, tcfg, app_id = plan.lake, plan.opts, plan.tcfg, plan.app_id
    t3 = time.perf_counter()
    if out.quarantined:
        # Checked on the snapshot committed to: a concurrent run of this input commits once.
        result.quarantine_version = commit_files(
            lake, plan.qname, QUARANTINE_SCHEMA, add_actions(out.quarantined),
            mode="append", app_id=app_id, run_id=opts.run_id, job=opts.job,
        )
    if opts.ingest_cfg.inject_failure == "commit":
        raise IngestError(
            f"injected failure before committing {plan.name!r} (ingest.inject_failure=commit); "
            "nothing was committed to the table"
        )
    if write.merging:
        done, result.merge_metrics = merge_rows(
            lake, plan.name,
            lambda: _staged_reader(lake, write.staging, plan.schema, tcfg.partition_by, out.data),
            tcfg.primary_key, app_id=app_id, run_id=opts.run_id, job=opts.job,
        )
    else:
        done = commit_once(
            lake, plan.name, plan.schema, add_actions(out.data),
            mode="overwrite" if plan.mode == "overwrite" else "append",
            partition_by=tcfg.partition_by, app_id=app_id, run_id=opts.run_id, job=opts.job,
            description=tcfg.description,
        )
    # Not committed: a concurrent run of this input committed it first (nothing added).
    result.version, result.skipped = done.version, not done.committed
    result.seconds["commit"] = round(time.perf_counter() - t3, 3)


def _save_profiles(plan: _Plan, write: _WritePass, out: WorkerOutputs,
                   result: TableResult) -> None:
    """The committed version's profile (and segments), when asked for and not a merge."""
    lake, opts, prof = plan.lake, plan.opts, out.profile
    if not (opts.profile and not write.merging and prof.rows) or result.skipped:
        return
    version = result.version
    if version is None:  # _commit sets it before the profiles are saved
        raise IngestError(f"Table {plan.name!r} has no committed version to profile.")
    if result.duplicates:  # the merged block profiles still count the removed rows
        prof = Profile.empty()
        for d in out.data:
            prof = prof.merge(Profile.of(_read_data_file(lake, write.target, d)))
    save_profiles(lake, plan.name, version, {"": prof}, run_id=opts.run_id)
    # Segments are profiled only with segment_by set.
    if out.segments and opts.segment_by and not result.duplicates:
        save_profiles(lake, plan.name, version, out.segments,
                      segment_column=opts.segment_by, run_id=opts.run_id)
    result.profiled = True


def _judge(lake: Lake, constraints: list[Constraint], counts: dict[str, int], rows: int,
           prof: Profile, target: WriteTarget, data: list[dict], primary_key: list[str]) -> list[dict]:
    """Results of every constraint over the rows this run writes."""
    results = []
    for c in constraints:
        if c.row_level:
            res = row_result(c, counts.get(c.name, 0), rows)
            if c.policy == "quarantine":
                res.passed = True  # the violating rows are in the quarantine, not the table
                res.message += " -> quarantined"
        else:
            dups = None
            if c.check == "unique":
                # Repeated primary keys were quarantined already; other keys are counted.
                dups = 0 if set(primary_key) and set(primary_key) <= set(c.columns) else \
                    _count_duplicates(lake, target, data, list(c.columns))
            res = table_check(c, rows=rows, profile=prof, duplicates=dups)
        results.append(res.to_dict())
    return results


def _read_data_file(lake: Lake, target: WriteTarget, entry: dict, columns=None) -> pa.Table:
    import pyarrow.parquet as pq

    fs, root = lake.storage.filesystem()
    in_file = None if columns is None else [c for c in columns if c not in target.partition_by]
    table = pq.read_table(f"{root.rstrip('/')}/{target.data_dir}/{entry['path']}",
                          columns=in_file, filesystem=fs)
    for k, v in json.loads(entry["partition_values"] or "{}").items():
        if columns is None or k in columns:
            table = table.append_column(k, pa.array([v] * table.num_rows, pa.string()))
    return table


def _count_duplicates(lake: Lake, target: WriteTarget, data: list[dict], columns: list[str]) -> int:
    """Exact count of rows repeating a ``columns`` key among the rows written."""
    frames = [_read_data_file(lake, target, d, columns).to_pandas() for d in data]
    return int(pd.concat(frames)[columns].duplicated().sum()) if frames else 0


def _check_keys(name: str, tcfg: TableConfig, schema: pa.Schema) -> None:
    for what, cols in (("primary_key", tcfg.primary_key), ("partition_by", tcfg.partition_by),
                       ("event_time", [tcfg.event_time] if tcfg.event_time else [])):
        for col in cols:
            if col not in schema.names:
                raise IngestError(
                    f"Table {name!r}: {what} column {col!r} is not declared in `columns` "
                    f"({', '.join(schema.names)}). Declare it or fix {what}."
                )
    if WriteMode(tcfg.mode) == WriteMode.merge and not tcfg.primary_key:
        raise IngestError(f"Table {name!r}: mode=merge upserts on the primary key; set primary_key.")


def _staged_reader(lake: Lake, staging: str, schema: pa.Schema, partition_by, data: list[dict]):
    fs, root = lake.storage.filesystem()
    base = f"{root.rstrip('/')}/{staging}"
    paths = [f"{base}/{d['path']}" for d in data]
    part = pds.partitioning(pa.schema([schema.field(c) for c in partition_by]), flavor="hive") \
        if partition_by else None
    dataset = pds.dataset(paths, filesystem=fs, format="parquet", partitioning=part,
                          partition_base_dir=base)
    batches = (b.cast(schema) for b in dataset.scanner(columns=schema.names).to_batches())
    return pa.RecordBatchReader.from_batches(schema, batches)


def _remove_staging(lake: Lake, folder: str) -> None:
    fs, root = lake.storage.filesystem()
    try:
        fs.delete_dir(f"{root.rstrip('/')}/{folder}")
    except (FileNotFoundError, OSError):
        pass


def _reason_counts(lake: Lake, qname: str, quarantined: list[dict],
                   examples: list[str] | None = None) -> dict[str, int]:
    """Quarantined rows per kind of reason (the text before any quoted value) and column;
    the first few failing rows (file, record, full reason) go to ``examples``."""
    import pyarrow.parquet as pq

    fs, root = lake.storage.filesystem()
    counts: dict[str, int] = {}
    for q in quarantined:
        frame = pq.read_table(f"{root}/{qname}/{q['path']}",
                              columns=["reason", "column", "source_file", "source_row"],
                              filesystem=fs).to_pandas()
        if examples is not None and len(examples) < 3:
            failing = frame[~frame["reason"].str.startswith("duplicate primary key")]
            for row in failing.head(3 - len(examples)).itertuples():
                where = str(row.source_file).rsplit("/", 1)[-1]
                examples.append(f"{where} record {row.source_row}: {str(row.reason)[:200]}")
        kinds = frame["reason"].str.replace(r"'.*$|\(.*$|:.*$", "", regex=True).str.strip()
        kinds = kinds + frame["column"].fillna("").map(lambda c: f" [{c}]" if c else "")
        for kind, n in kinds.value_counts().items():
            counts[kind] = counts.get(kind, 0) + int(n)
    return counts


def _remove_written(plan: _Plan, write: _WritePass, out: WorkerOutputs) -> None:
    """Delete the files this run wrote and will not commit (best effort: what is left
    is an orphan that ``raylake lake vacuum`` finds)."""
    fs, root = plan.lake.storage.filesystem()
    base = root.rstrip("/")
    for folder, entries in ((write.target.data_dir, out.data),
                            (write.target.quarantine_dir, out.quarantined)):
        for entry in entries:
            try:
                fs.delete_file(f"{base}/{folder}/{entry['path']}")
            except (FileNotFoundError, OSError):
                pass


def _reraise(exc: Exception, name: str) -> BaseException:
    """What to raise for ``exc``: itself when it is raylake's own, else what
    :func:`_unwrapped` finds (to be chained to ``exc``)."""
    from ray.exceptions import RayTaskError

    if isinstance(exc, RaylakeError) and not isinstance(exc, RayTaskError):
        return exc
    return _unwrapped(exc, name)


def _unwrapped(exc: BaseException, name: str) -> RaylakeError:
    """The error a failed Ray task stands for: a raylake error raised in the task comes
    back as itself (its message, not Ray's traceback and retry hint); any other
    failure becomes an IngestError naming its root cause (``zipfile.BadZipFile: ...``)."""
    cause = task_cause(exc)
    if isinstance(cause, RaylakeError):
        return cause
    remote = remote_error(exc)
    if remote is not None:
        qualified, message = remote
        cls = getattr(errors_module, qualified.rsplit(".", 1)[-1], None) \
            if qualified.startswith("raylake.errors.") else None
        if isinstance(cls, type) and issubclass(cls, RaylakeError):
            try:
                return cls(message)
            except TypeError:  # an error class that takes more than a message
                pass
        root = f"{qualified.rsplit('.', 1)[-1]}: {message}"
    else:
        root = _root_cause(cause or exc)
    return IngestError(
        f"Ingesting {name!r} failed before commit: {root}. "
        f"Nothing was committed; table {name!r} is unchanged. Fix the cause and re-run."
    )


def _root_cause(exc: BaseException) -> str:
    seen = exc
    while seen.__cause__ is not None:
        seen = seen.__cause__
    text = str(seen).strip().splitlines()
    return text[-1] if text else type(seen).__name__


def _asdict(policies: Any) -> dict[str, Any]:
    return {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) and not isinstance(v, type)
            else v
            for k, v in dict(policies).items()}
