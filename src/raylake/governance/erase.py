"""Right to erasure: ``raylake governance erase --key email=alice@example.com``.

1. Find the subject (``locate.py``): every table that holds their rows, in every file a
   readable version reads; the online-store keys; what lineage made from those versions
   (tables with no key column to search, model versions trained on them).
2. Nothing found anywhere: GovernanceError, nothing committed, no audit row (the failed
   run record says what was searched, never the value).
3. Delete the rows from the latest version of each table, one commit per table
   (``rewrite.py``), and the keys from the online store.
4. Vacuum each table that held the subject with the retention given (under 168 hours
   only with ``force``). The vacuum keeps readable every version that never held the
   subject; the versions that did are listed as unreadable before their files go. A
   retention that keeps some of those files (the default 168 hours keeps all of the
   files this erasure removes) is reported: those versions still hold the subject until
   a vacuum after the retention. Orphan files that hold the subject are deleted when
   older than the retention.
5. One audit row per table touched (rows deleted, versions made unreadable, versions
   still holding the subject) and one for the whole erasure (online keys, derived tables,
   models to retrain): names and counts, the key column and a digest of the value.

``dry_run`` does 1 and says what 3-5 would do.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa

from raylake.errors import GovernanceError, RaylakeError
from raylake.features.online.settings import StoreSettings, store_settings
from raylake.governance.locate import (
    Found,
    Where,
    describe,
    downstream,
    key_entities,
    not_personal,
    online_keys,
    online_stores,
    search,
    stored_keys,
    unknown_columns,
    where_to_look,
)
from raylake.governance.rewrite import delete_rows
from raylake.governance.subject import Subject, make_subject, match_text, short, value_entities
from raylake.governance.versions import (
    check_retention,
    data_path,
    log_quoting,
    scrub_log,
    spans,
    vacuum,
)
from raylake.lake.audit import append_audit
from raylake.lake.classification import classification
from raylake.lake.orphans import Orphan, remove_orphans
from raylake.lake.runs import RunRecord
from raylake.lake.tables import Lake
from raylake.quality.store import PROFILES_TABLE

JOB = "governance-erase"


@dataclass
class TableErasure:
    """One table's part of an erasure."""

    table: str
    columns: list[str]  # the columns that held the subject (in any file)
    version_before: int
    rows: int = 0  # the subject's rows deleted from the latest version (dry run: to delete)
    files: int = 0  # files rewritten or removed
    version: int | None = None  # the deletion's version
    held: list[int] = field(default_factory=list)  # versions that held the subject
    unreadable: list[int] = field(default_factory=list)  # versions the vacuum broke
    still_held: list[int] = field(default_factory=list)  # versions kept by the retention
    files_vacuumed: int = 0
    orphans: int = 0  # orphan files that held the subject, deleted
    log_scrubbed: list[int] = field(default_factory=list)  # commits whose file stats were cut
    log_quoting: list[int] = field(default_factory=list)  # commits that still quote the subject

    def to_dict(self) -> dict[str, Any]:
        """The table's part as a plain dict."""
        return asdict(self)


@dataclass
class EraseResult:
    keys: dict[str, str]  # key column -> digest of the value
    dry_run: bool
    retention_hours: int
    searched: list[str]  # tables searched: those with a column that could hold the subject
    in_lake: int  # tables looked at (every table of the lake, and the profile stores)
    tables: list[TableErasure]
    online: dict[str, int]  # "<store>: <view>" -> keys deleted (dry run: stored)
    stores: list[str]  # the online stores searched
    unreachable: list[str]  # stores a materialize run wrote to that could not be read
    derived: dict[str, list[int]]  # tables made from the subject's rows, no key to search
    models: list[dict[str, Any]]  # model versions trained on the subject's rows
    commands: list[str]  # `raylake ct` for each model
    lost: dict[str, list[str]]  # table -> columns of the entity a policy made unsearchable
    hashed: bool  # the hashed and tokenized forms were searched (the key was set)

    @property
    def rows(self) -> int:
        """Rows deleted (dry run: to delete) over every table."""
        return sum(t.rows for t in self.tables)

    @property
    def unreadable(self) -> int:
        """Versions made (dry run: to be made) unreadable over every table."""
        return sum(len(t.unreadable) for t in self.tables)

    @property
    def still_held(self) -> dict[str, list[int]]:
        """Table -> versions that still hold the subject (kept by the retention)."""
        return {t.table: t.still_held for t in self.tables if t.still_held}

    def to_dict(self) -> dict[str, Any]:
        """The result as plain dicts, with the totals."""
        out = asdict(self)
        out.update(rows=self.rows, unreadable=self.unreadable)
        return out

    def summary(self) -> list[str]:
        """What was (or would be) done, for the terminal: never the value."""
        keys = ", ".join(f"{c} ({short(d)})" for c, d in self.keys.items())
        verb = "would delete" if self.dry_run else "deleted"
        lines = [f"erase {keys}{' (dry run)' if self.dry_run else ''}: {len(self.tables)} "
                 f"tables hold the subject (searched {len(self.searched)} of {self.in_lake}: "
                 f"those with a column that could); {verb} {self.rows:,} rows; "
                 f"{self.unreadable} versions "
                 f"{'would become' if self.dry_run else 'made'} unreadable "
                 f"(vacuum retention {self.retention_hours} h)"]
        for t in self.tables:
            line = f"  {t.table} [{', '.join(t.columns)}]: {t.rows:,} rows"
            if t.version is not None:
                line += f" -> version {t.version}"
            if t.unreadable:
                line += f"; unreadable: versions {spans(t.unreadable)}"
            if t.still_held:
                line += (f"; versions {spans(t.still_held)} still hold the subject until a "
                         f"vacuum after the retention ({self.retention_hours} h)")
            if t.orphans:
                line += f"; {t.orphans} orphan files deleted"
            if t.log_quoting:
                line += (f"; the log of versions {spans(t.log_quoting)} still quotes the subject "
                         "(statistics of files kept by the retention, or a commit's own text)")
            lines.append(line)
        for where, n in sorted(self.online.items()):
            lines.append(f"  online {where}: {n} keys {'to delete' if self.dry_run else 'deleted'}")
        for where in self.unreachable:
            lines.append(f"  online store not reached, its keys not checked: {where}")
        for table, vs in sorted(self.derived.items()):
            lines.append(f"  derived, no key to search (rebuild it): {table}@{spans(vs)}")
        for table, cols in sorted(self.lost.items()):
            lines.append(f"  not searchable (masked, generalized or dropped at ingestion): "
                         f"{table} [{', '.join(cols)}]")
        if not self.hashed:
            lines.append("  hashed and tokenized values not searched: the governance key is "
                         "not set (governance.key_env)")
        for m, cmd in zip(self.models, self.commands):
            lines.append(f"  model {m['name']}:{m['version']} ({m['stage']}) was trained on "
                         f"the subject's rows: retrain with `{cmd}`")
        return lines


def erase(lake: Lake, cfg: Any, key: Mapping[str, str], retention_hours: float | None = None,
          dry_run: bool = False, force: bool = False, *, run: RunRecord | None = None,
          stores: Sequence[StoreSettings] | None = None) -> EraseResult:
    """Erase the subject named by ``key`` (column -> value; several pairs name one subject
    by any of them) from the lake and the online store; see the module docstring.
    ``cfg``: the typed config (governance, online store, features, request log)."""
    hours = check_retention(retention_hours, force=force)
    if not key:
        raise GovernanceError("Give the subject's key: --key COLUMN=VALUE, e.g. "
                              "--key email=alice@example.com.")
    classes = classification(lake)
    tables = lake.names()
    request_log = getattr(cfg.model_server, "request_log_table", None)
    unknown_columns(lake, tables, list(key), classes)
    kinds = {col: value_entities(value) for col, value in key.items()}
    for col in key:
        where = not_personal(classes, col, kinds[col])
        if where and not force:
            raise GovernanceError(
                f"Column {col!r} is classified as not personal in {', '.join(where)}, and the "
                "value is no email, phone, card, IBAN, IP or SSN: erasing by it deletes every "
                "row with that value, not one person's. Pass --force if that is what you "
                "mean; nothing was changed.")
    entities = {col: key_entities(classes, col, kinds[col]) for col in key}
    registry = _registry(cfg)
    profiles = [PROFILES_TABLE, *(getattr(getattr(cfg, part, None), "profile_table", None) or ""
                                   for part in ("model_server", "monitor"))]
    places = where_to_look(lake, tables, entities, classes, request_log, registry,
                           [p for p in profiles if p])
    gkey = _governance_key(cfg, places)
    subjects = [make_subject(col, value, entities[col], gkey) for col, value in key.items()]
    digests = {s.column: s.digest for s in subjects}
    found = [search(lake, w, subjects) for w in places.values() if w.whole or w.text]
    found = [f for f in found if f.any]
    stores = list(stores) if stores is not None else online_stores(lake, store_settings(cfg, lake))
    wanted = online_keys(registry, found, subjects, classes)
    online, unreachable = _stored(stores, wanted)
    if not found and not any(held for _, held in online):
        raise GovernanceError(
            f"Nothing matched {', '.join(f'{c} ({short(d)})' for c, d in digests.items())}: "
            f"searched {len(places)} tables that could hold it ("
            f"{', '.join(sorted(places)) or 'none'}) and the online store; nothing was "
            "committed and no audit row written. Check the value: emails compare without "
            "case, other values exactly as stored"
            + ("; hashed columns need the governance key set (governance.key_env)."
               if gkey is None else "."))
    derived, trained = downstream(lake, {f.where.table: f.held for f in found})
    result = EraseResult(
        keys=digests, dry_run=dry_run, retention_hours=hours, searched=sorted(places),
        in_lake=len(tables) + sum(lake.exists(p, system=True) for p in set(profiles) if p),
        tables=[], online={}, stores=[describe(s) for s, _ in online], unreachable=unreachable,
        derived={t: sorted(vs) for t, vs in derived.items()
                 if t not in {f.where.table for f in found}},
        models=_models(lake, trained), commands=[], lost={}, hashed=gkey is not None)
    result.lost = {w.table: sorted(w.lost) for w in places.values() if w.lost}
    result.commands = [f"raylake ct model={m['name']} ct.trigger=always lake.root={lake.root}"
                       for m in result.models]
    for f in found:
        result.tables.append(_erase_table(lake, f, subjects, hours, dry_run, run))
    for s, held in online:
        for view, ks in held.items():
            n = len(ks) if dry_run else s.open().delete(ks)
            result.online[f"{describe(s)}: {view}"] = n
    if not dry_run:
        _record(lake, result, run)
    return result


def _erase_table(lake: Lake, f: Found, subjects: Sequence[Subject], hours: int, dry_run: bool,
                 run: RunRecord | None) -> TableErasure:
    table, history = f.where.table, f.history
    t = TableErasure(table, sorted(f.columns), history.latest,
                     rows=f.live_rows, files=len(f.live_files), held=f.held)
    held = set(t.held)
    keep = [v for v in history.versions() if v not in held]
    run_id = run.run_id if run is not None else None
    if dry_run:
        planned = set(vacuum(lake, table, hours, keep_versions=keep, dry_run=True,
                             system=f.where.system))
        if hours == 0:  # the files the deletion removes are vacuumed at once
            planned.update(f.live_files)
        t.unreadable = history.versions_reading(planned)
        t.still_held = sorted(held - set(t.unreadable))
        t.orphans = sum(1 for n in f.orphans.values() if n)
        return t
    if t.rows:
        deleted = delete_rows(lake, table, f.where.matcher(subjects), f.where.columns,
                              app_id=f"raylake.erase/{subjects[0].digest.split(':')[1][:16]}",
                              run_id=run_id, job=JOB, known=dict(f.hits), system=f.where.system)
        t.rows, t.files, t.version = deleted.rows, len(deleted.files), deleted.version
        if run is not None and deleted.version is not None:
            run.add_output(table=table, version=deleted.version, rows_deleted=deleted.rows,
                           erased_from=history.latest)
    system = f.where.system
    doomed = vacuum(lake, table, hours, keep_versions=keep, dry_run=True, system=system)
    t.unreadable = history.versions_reading(doomed)
    if doomed:
        t.files_vacuumed = len(vacuum(lake, table, hours, keep_versions=keep, dry_run=False,
                                      run_id=run_id, job=JOB, system=system))
    young = [p for p, n in f.orphans.items() if n]
    if young:
        orphans = [Orphan(p, "file", table, 0, 0.0) for p in young
                   if _age_hours(lake, p) >= hours]
        t.orphans = len(remove_orphans(lake, orphans))
    left = [p for p in f.files if data_path(lake, table, p)]
    t.still_held = history.versions_reading(left)

    def quotes(lines: list[str]) -> list[bool]:
        return [bool(b) for b in match_text(pa.array(lines, pa.string()), subjects)]

    gone = [p for p in f.files if p not in set(left)]
    t.log_scrubbed = scrub_log(lake, table, history, gone, quotes, system=system)
    t.log_quoting = log_quoting(lake, table, history, quotes, system=system)
    return t


def _stored(stores: Sequence[StoreSettings], wanted: Mapping[str, Sequence[str]]
            ) -> tuple[list[tuple[StoreSettings, dict[str, list[str]]]], list[str]]:
    """Per store, the wanted keys it holds; the stores that could not be read. The
    configured store (the first) must be readable: the erasure stops before any change."""
    found, unreachable = [], []
    for i, s in enumerate(stores):
        try:
            found.append((s, stored_keys(s, wanted)))
        except GovernanceError as exc:
            if i == 0:
                raise GovernanceError(f"{exc} Nothing was changed; check online.* in config "
                                      "(the store must be reachable for an erasure).") from None
            unreachable.append(f"{describe(s)} ({exc})")
    return found, unreachable


def _age_hours(lake: Lake, path: str) -> float:
    import time

    fs, root = lake.storage.filesystem()
    info = fs.get_file_info(f"{root.rstrip('/')}/{path}")
    return (time.time() - info.mtime.timestamp()) / 3600 if info.mtime else 0.0


def _registry(cfg: Any) -> Any:
    """The feature definitions (their views feed the online store); None when they do
    not resolve (the online keys are then those of the key column only)."""
    from raylake.features.definitions import resolve

    try:
        return resolve(cfg.features)
    except RaylakeError:
        return None


def _governance_key(cfg: Any, places: Mapping[str, Where]) -> bytes | None:
    """The key, required when a column to search is stored hashed or tokenized; else
    used when set (request logs may hold hashed keys)."""
    from raylake.pii.policies import key_from_env

    hashed = [f"{w.table}.{c}" for w in places.values() for c in w.hashed]
    if hashed:
        try:
            return key_from_env(cfg.governance.key_env)
        except GovernanceError as exc:
            raise GovernanceError(f"{', '.join(hashed)} hold hashed or tokenized values; to "
                                  f"find the subject in them erase needs the key. {exc}") from None
    try:
        return key_from_env(cfg.governance.key_env)
    except GovernanceError:
        return None


def _models(lake: Lake, trained: Mapping[tuple[str, int], str]) -> list[dict[str, Any]]:
    from raylake.models.registry import ModelRegistry

    if not trained:
        return []
    known = {(m.name, m.version): m for m in ModelRegistry(lake).list()}
    out = []
    for (name, version), run_id in sorted(trained.items()):
        mv = known.get((name, version))
        if mv is not None:
            out.append({"name": name, "version": version, "stage": mv.stage, "run_id": run_id})
    return out


def _record(lake: Lake, result: EraseResult, run: RunRecord | None) -> None:
    """The audit rows and the run record's metrics: names, counts, digests."""
    run_id = run.run_id if run is not None else None
    keys = {c: d for c, d in result.keys.items()}
    rows = [{"action": "erase", "run_id": run_id, "job": JOB, "table": t.table,
             "version": t.version, "columns": t.columns,
             "detail": {"keys": keys, "rows_deleted": t.rows, "files_rewritten": t.files,
                        "version_before": t.version_before, "versions_held": t.held,
                        "versions_unreadable": t.unreadable, "versions_still_held": t.still_held,
                        "files_vacuumed": t.files_vacuumed, "orphans_deleted": t.orphans,
                        "log_scrubbed": t.log_scrubbed, "log_quoting": t.log_quoting,
                        "retention_hours": result.retention_hours}}
            for t in result.tables]
    rows.append({"action": "erase", "run_id": run_id, "job": JOB, "table": None,
                 "columns": sorted(keys),
                 "detail": {"keys": keys, "tables": [t.table for t in result.tables],
                            "rows_deleted": result.rows, "online": result.online,
                            "online_stores": result.stores,
                            "online_unreachable": result.unreachable, "derived": result.derived,
                            "models": [f"{m['name']}:{m['version']}" for m in result.models],
                            "not_searchable": result.lost, "hashed_searched": result.hashed,
                            "at": dt.datetime.now(dt.timezone.utc).isoformat()}})
    append_audit(lake, rows, app_id=f"raylake.audit.erase/{run_id}" if run_id else None)
    if run is not None:
        run.metrics.update({"keys": keys, "tables": len(result.tables), "rows_deleted": result.rows,
                            "versions_unreadable": result.unreadable,
                            "still_held": result.still_held, "online_keys_deleted": result.online,
                            "models_to_retrain": [f"{m['name']}:{m['version']}"
                                                  for m in result.models],
                            "derived": result.derived})
