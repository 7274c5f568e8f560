"""Where a data subject is: the tables, files and versions that hold their rows, the
online-store keys, and what lineage made from those rows (tables, model versions).

A table is searched when it has a column named like a key column, a column whose current
classification (``_classification``) finds the same entity type as the key's (an
``email`` key: every column classified EMAIL_ADDRESS), or free text that may quote the
subject: a quarantine table's raw rows and reasons, the model server's request log. Every
data file any readable version reads is searched, and files no version reads (orphans),
so old versions are judged as well as the latest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from raylake.config.governance import DataClass, PolicyAction
from raylake.errors import GovernanceError, RaylakeError, did_you_mean
from raylake.features.definitions import Registry
from raylake.features.online.base import entity_key
from raylake.features.online.settings import StoreSettings
from raylake.governance.rewrite import read_file
from raylake.governance.subject import Subject, match_text, match_whole
from raylake.governance.versions import FileHistory, file_history
from raylake.lake.names import quarantine_table
from raylake.lake.orphans import find_orphans
from raylake.lake.runs import list_runs
from raylake.lake.tables import Lake

QUARANTINE_SUFFIX = quarantine_table("t")[1:]  # "__quarantine"
QUARANTINE_TEXT = ("raw", "reason")  # the raw row as it arrived, and why it failed
PROFILE_TEXT = ("profile", "segment")  # a serialized profile (bytes), its segment's value
# Policies after which a value cannot be found again (hash and tokenize can, with the key).
LOST = (PolicyAction.mask.value, PolicyAction.generalize.value, PolicyAction.drop.value)
# Jobs whose outputs are not made from what they read: erasure and retention themselves.
NOT_DERIVING = ("governance-erase", "governance-retention")


@dataclass
class Where:
    """Where one table may hold the subject: columns compared whole, free-text columns
    searched, columns of the entity that a policy made unsearchable, and the feature
    views fed by the table (their join keys are read to clear online keys)."""

    table: str
    system: bool = False  # one of raylake's own tables (a profile store)
    whole: dict[str, str] = field(default_factory=dict)  # column -> why
    text: dict[str, str] = field(default_factory=dict)
    lost: dict[str, str] = field(default_factory=dict)  # column -> policy
    hashed: list[str] = field(default_factory=list)  # columns stored hashed or tokenized
    views: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        """Every column read to judge a row and clear its online keys."""
        keys = [k for ks in self.views.values() for k in ks]
        return list(dict.fromkeys([*self.whole, *self.text, *keys]))

    def masks(self, rows: pa.Table, subjects: Sequence[Subject]) -> dict[str, np.ndarray]:
        """Per column searched: the rows where it holds a subject."""
        out = {c: match_whole(rows.column(c), subjects)
               for c in self.whole if c in rows.column_names}
        out.update({c: match_text(rows.column(c), subjects)
                    for c in self.text if c in rows.column_names})
        return out

    def matcher(self, subjects: Sequence[Subject]) -> Any:
        """rows -> the rows that hold a subject (in any column searched)."""
        def match(rows: pa.Table) -> np.ndarray:
            out = np.zeros(rows.num_rows, bool)
            for mask in self.masks(rows, subjects).values():
                out |= mask
            return out
        return match


@dataclass
class Found:
    """What one table holds of the subject."""

    where: Where
    history: FileHistory
    hits: dict[str, int]  # data file path -> the subject's rows in it (0: none)
    orphans: dict[str, int]  # orphan file (under the lake root) -> the subject's rows
    key_values: dict[str, set[tuple[Any, ...]]]  # view -> join key values of those rows
    columns: set[str] = field(default_factory=set)  # the columns that held the subject

    @property
    def files(self) -> list[str]:
        """The data files that hold the subject's rows."""
        return sorted(p for p, n in self.hits.items() if n)

    @property
    def live_files(self) -> list[str]:
        """The files of the latest version that hold the subject's rows."""
        return [p for p in self.files if self.history.is_live(p)]

    @property
    def live_rows(self) -> int:
        """The subject's rows in the latest version."""
        return sum(self.hits[p] for p in self.live_files)

    @property
    def held(self) -> list[int]:
        """The versions that held the subject's rows."""
        return self.history.versions_reading(self.files)

    @property
    def any(self) -> bool:
        """Whether any file (data or orphan) holds the subject."""
        return bool(self.files) or any(self.orphans.values())


def key_entities(classes: Mapping[str, Mapping[str, Mapping[str, Any]]], column: str,
                 value_kinds: set[str]) -> set[str]:
    """The entity types a key stands for: those classification finds in columns named
    ``column``, and those the value itself is (an email address, a phone number)."""
    out = set(value_kinds)
    for cols in classes.values():
        row = cols.get(column)
        if row is not None:
            out.update(str(e) for e in dict(row.get("entities") or {}))
    return out


def where_to_look(lake: Lake, tables: Sequence[str], columns: Mapping[str, set[str]],
                  classes: Mapping[str, Mapping[str, Mapping[str, Any]]], request_log: str | None,
                  registry: Registry | None, profiles: Sequence[str] = ()) -> dict[str, Where]:
    """The tables of ``tables`` that may hold the subject, keyed by name, and the profile
    stores of ``profiles`` (their frequent items and segments are values of the columns
    profiled); ``columns``: key column -> its entity types."""
    entities = set().union(*columns.values()) if columns else set()
    out: dict[str, Where] = {}
    for table in dict.fromkeys(profiles):
        if lake.exists(table, system=True):
            cols = lake.table(table, system=True).schema().to_arrow().names
            out[table] = Where(table, system=True, text={
                c: "profile (frequent items, segments)" for c in PROFILE_TEXT if c in cols})
    for table in tables:
        try:
            schema = pa.schema(lake.table(table).schema().to_arrow())
        except RaylakeError:
            continue  # not a readable Delta table (a creation that never committed)
        names = set(schema.names)
        cls = classes.get(table, {})
        w = Where(table)
        for col in columns:
            if col in names:
                _add(w, col, cls.get(col), whole=True, why="key column")
        for col, row in cls.items():
            found = entities & {str(e) for e in dict(row.get("entities") or {})}
            if col in names and found and col not in w.whole:
                _add(w, col, row, whole=bool(row.get("whole")),
                     why="classified " + ",".join(sorted(found)))
        if table.endswith(QUARANTINE_SUFFIX):
            w.text.update({c: "quarantined raw row" for c in QUARANTINE_TEXT if c in names})
        if table == request_log:
            w.text.update({f.name: "request log" for f in schema
                           if pa.types.is_string(f.type) and f.name not in w.whole})
        if not (w.whole or w.text):
            if w.lost:
                out[table] = w
            continue
        for view in (registry.views.values() if registry is not None else ()):
            if view.source == table and set(view.join_keys) <= names:
                w.views[view.name] = tuple(view.join_keys)
        out[table] = w
    return out


def _add(w: Where, col: str, row: Mapping[str, Any] | None, *, whole: bool, why: str) -> None:
    policy = str((row or {}).get("policy") or PolicyAction.keep.value)
    if policy in LOST:
        w.lost[col] = policy
        return
    (w.whole if whole else w.text)[col] = why
    if policy in (PolicyAction.hash.value, PolicyAction.tokenize.value):
        w.hashed.append(col)


def unknown_columns(lake: Lake, tables: Sequence[str], columns: Sequence[str],
                    classes: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> None:
    """GovernanceError when a key column is in no table of the lake (nor classified)."""
    seen: dict[str, list[str]] = {}
    for table in tables:
        try:
            names = lake.table(table).schema().to_arrow().names
        except RaylakeError:
            continue
        for n in names:
            seen.setdefault(n, []).append(table)
    for cols in classes.values():
        for n in cols:
            seen.setdefault(n, [])
    for col in columns:
        if col in seen:
            continue
        personal = sorted({f"{c} ({', '.join(sorted(set(t for t, cs in classes.items() if c in cs)))})"
                           for cols in classes.values() for c, row in cols.items()
                           if row.get("class") in (DataClass.pii.value, DataClass.restricted.value)})
        hint = (f" Columns classified pii or restricted: {'; '.join(personal)}." if personal
                else "")
        raise GovernanceError(
            f"No table in the lake at {lake.root} has a column {col!r} (searched "
            f"{len(tables)} tables).{did_you_mean(col, seen)}{hint} Give --key COLUMN=VALUE "
            "with a column that holds the subject's identifier; nothing was changed.")


def not_personal(classes: Mapping[str, Mapping[str, Mapping[str, Any]]], column: str,
                 value_kinds: set[str]) -> list[str]:
    """Where ``column`` is classified, when no classification calls it personal
    (``public`` or ``internal`` everywhere) and the value is no entity: erasing by it is
    deleting by an ordinary value (a carrier code), not a subject's identifier."""
    rows = {t: cols[column] for t, cols in classes.items() if column in cols}
    if not rows or value_kinds:
        return []
    if any(r.get("class") in (DataClass.pii.value, DataClass.restricted.value) or r.get("entities")
           for r in rows.values()):
        return []
    return [f"{t} ({r.get('class')})" for t, r in sorted(rows.items())]


def search(lake: Lake, where: Where, subjects: Sequence[Subject]) -> Found:
    """Read every file of ``where.table`` that a readable version reads, and its orphans:
    the subject's rows per file, and the join key values of those rows per view."""
    history = file_history(lake, where.table, system=where.system)
    schema = pa.schema(lake.table(where.table, system=where.system).schema().to_arrow())
    match = where.matcher(subjects)
    found = Found(where, history, {}, {}, {v: set() for v in where.views})
    for f in history.files.values():
        rows = read_file(lake, where.table, f.path, f.partition_values, where.columns, schema)
        if rows is None:
            continue  # vacuumed: no version that reads it can be read
        masks = where.masks(rows, subjects)
        mask = np.zeros(rows.num_rows, bool)
        for col, m in masks.items():
            mask |= m
            if m.any():
                found.columns.add(col)
        found.hits[f.path] = int(mask.sum())
        if mask.any():
            _key_values(found, rows.filter(pa.array(mask)))
    for orphan in find_orphans(lake, where.table, min_age_hours=0):
        if orphan.kind != "file" or orphan.table != where.table:
            continue
        rel = orphan.path[len(where.table) + 1:]
        rows = read_file(lake, where.table, rel, {}, where.columns, schema)
        if rows is not None:
            found.orphans[orphan.path] = int(match(rows).sum())
    return found


def _key_values(found: Found, rows: pa.Table) -> None:
    for view, keys in found.where.views.items():
        if all(k in rows.column_names for k in keys):
            cols = [rows.column(k).to_pylist() for k in keys]
            found.key_values[view].update(zip(*cols))


def online_keys(registry: Registry | None, found: Sequence[Found], subjects: Sequence[Subject],
                classes: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, list[str]]:
    """view -> the entity keys that may hold the subject: those of the rows found, and
    for a view keyed by the key column alone (or by a column of its entity type), each
    form of the value (a row pushed online only, or already erased from the lake)."""
    out: dict[str, set[str]] = {}
    for f in found:
        for view, values in f.key_values.items():
            keys = f.where.views[view]
            out.setdefault(view, set()).update(entity_key(view, keys, v) for v in values)
    for fv in (registry.views.values() if registry is not None else ()):
        if len(fv.join_keys) != 1:
            continue
        (jk,) = fv.join_keys
        row = classes.get(fv.source, {}).get(jk) or {}
        kinds = {str(e) for e in dict(row.get("entities") or {})}
        for s in subjects:
            if jk == s.column or kinds & s.entities:
                forms: set[Any] = set(s.forms) | ({int(s.value)} if s.value.isdigit() else set())
                out.setdefault(fv.name, set()).update(
                    entity_key(fv.name, [jk], [v]) for v in forms)
    return {v: sorted(ks) for v, ks in out.items() if ks}


def online_stores(lake: Lake, configured: StoreSettings) -> list[StoreSettings]:
    """The online store of this config, then every other store a recorded materialize run
    wrote to (its config is in its run record; a password never is: it comes from the
    environment), each once."""
    out = [configured]
    for run in list_runs(lake):
        if not str(run["job"]).startswith("materialize") or run["status"] != "succeeded":
            continue
        online = (run.get("config") or {}).get("online") or {}
        kind = str(online.get("type") or "")
        if kind == "sqlite":
            root = ((run.get("config") or {}).get("lake") or {}).get("root") or lake.root
            store = StoreSettings(kind, {"path": online.get("path") or f"{root}/_online/online.db"})
        elif kind:
            store = StoreSettings(kind, {k: online.get(k) for k in ("host", "port", "db", "prefix")})
        else:
            continue
        if store not in out:
            out.append(store)
    return out


def describe(store: StoreSettings) -> str:
    """A store as printed: its kind and where it is (no credentials: none are config)."""
    o = store.options
    if store.kind == "sqlite":
        return f"sqlite {o.get('path')}"
    return f"{store.kind} {o.get('host')}:{o.get('port')}/{o.get('db')} prefix {o.get('prefix')!r}"


def stored_keys(store: StoreSettings, keys: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Of ``keys`` (per view), those the store holds."""
    if store.kind == "sqlite":
        import os

        if not os.path.exists(str(store.options.get("path"))):
            return {}  # never materialized: opening the store would create it
    try:
        opened = store.open()
        out = {}
        for view, ks in keys.items():
            rows = opened.get(list(ks))
            held = [k for k, r in zip(ks, rows) if r is not None]
            if held:
                out[view] = held
        return out
    except RaylakeError:
        raise
    except Exception as exc:  # a store that cannot be reached: say which, change nothing
        raise GovernanceError(
            f"Cannot read the online store {describe(store)} to find the subject's keys: "
            f"{type(exc).__name__}: {exc}.") from exc


def downstream(lake: Lake, held: Mapping[str, Sequence[int]]) -> tuple[dict[str, set[int]],
                                                                          dict[tuple[str, int], str]]:
    """What recorded runs made from the versions in ``held`` (table -> versions), followed
    through later runs: table -> versions made from them, and the model versions trained
    on them (-> the run that trained each)."""
    tainted: dict[str, set[int]] = {t: set(vs) for t, vs in held.items()}
    models: dict[tuple[str, int], str] = {}
    runs = [r for r in reversed(list_runs(lake)) if r["status"] == "succeeded"
            and r["job"] not in NOT_DERIVING]
    for run in runs:  # oldest first: a run's inputs were written before it
        read = False
        for i in run["inputs"] or []:
            if i.get("kind") == "files":
                continue
            if i.get("model") and (i["model"], i.get("version")) in models:
                read = True
            elif i.get("table") in tainted and i.get("version") in tainted[i["table"]]:
                read = True
        if not read:
            continue
        for o in run["outputs"] or []:
            if o.get("model") and o.get("version") is not None:
                models[(str(o["model"]), int(o["version"]))] = run["run_id"]
            elif o.get("table") and o.get("version") is not None:
                tainted.setdefault(str(o["table"]), set()).add(int(o["version"]))
    made = {t: vs - set(held.get(t, ())) for t, vs in tainted.items()}
    return {t: vs for t, vs in made.items() if vs}, models
