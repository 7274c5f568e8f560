"""The model registry: versions of named models, their lineage and their stages.

>>> reg = ModelRegistry(lake)
>>> mv = reg.register("delay", booster, flavor="xgboost", features=[...],
...                   training={"table": "training/delay", "version": 3}, config={...},
...                   metrics={"auc": 0.81}, run_id=run.run_id)
>>> reg.promote("delay", mv.version)            # candidate -> champion
>>> mv, model = reg.load("delay:champion")
"""

from __future__ import annotations

import builtins
import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from raylake.config.redact import redact
from raylake.errors import (
    ArtifactIntegrityError,
    ModelError,
    ModelNotFoundError,
    ModelStageError,
    ModelVersionNotFoundError,
    did_you_mean,
)
from raylake.lake.tables import Lake
from raylake.models.flavors import get_flavor
from raylake.models.store import ModelStore, sha256_hex

STAGES = ("candidate", "champion", "archived")
# New versions are candidates; a version is then moved to one of these.
TARGET_STAGES = ("champion", "archived")
REFS = ("champion", "latest")

# Model names become a folder name under _model_artifacts/ and cannot hold
# ":", which separates a name from a version in "NAME:REF".
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,127}$")

Ref = int | str | None


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a model, as the registry knows it now."""

    name: str
    version: int
    stage: str
    flavor: str
    artifact: str  # path under the lake root
    artifact_uri: str
    sha256: str
    size_bytes: int
    features: list[dict[str, Any]]  # {name, type} and any extra keys given
    training: dict[str, Any]
    config: dict[str, Any]
    metrics: dict[str, Any]
    run_id: str | None
    preprocessing: dict[str, Any]
    flavor_info: dict[str, Any]
    description: str
    created_at: dt.datetime
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ref(self) -> str:
        """``NAME:VERSION``: the reference to exactly this version."""
        return f"{self.name}:{self.version}"

    @property
    def feature_names(self) -> list[str]:
        """The names of the model's input features, in registered order."""
        return [f["name"] for f in self.features]

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain dicts and lists (``dataclasses.asdict``)."""
        return asdict(self)


def validate_model_name(name: str) -> str:
    """Return ``name`` if it is a valid model name (letters, digits, ``_`` and ``-``,
    starting with a letter or digit, at most 128 characters), else raise ModelError."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ModelError(
            f"Model name {name!r} must start with a letter or digit and contain only letters, "
            "digits, '_' and '-' (at most 128 characters), e.g. 'flight-delay'."
        )
    return name


def parse_model_ref(text: str) -> tuple[str, Ref]:
    """``"NAME"`` -> (NAME, None); ``"NAME:3"`` -> (NAME, 3); ``"NAME:champion"`` too."""
    name, sep, ref = str(text).strip().partition(":")
    if sep and not ref.strip():
        raise ModelError(
            f"Model reference {text!r} has nothing after ':'; write NAME, NAME:VERSION, "
            "NAME:champion or NAME:latest."
        )
    return validate_model_name(name), (_normalize_ref(ref) if sep else None)


def _normalize_ref(ref: Ref) -> Ref:
    if isinstance(ref, str):
        ref = ref.strip()
        return int(ref) if ref.isdigit() else ref.lower()
    return ref


class ModelRegistry:
    """Models registered in a lake (``_models`` table plus artifact files)."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self.store = ModelStore(lake)

    # -- writing -----------------------------------------------------------------

    def register(
        self,
        name: str,
        model: Any,
        *,
        flavor: str,
        features: Iterable[Mapping[str, Any] | tuple[str, str]],
        training: Mapping[str, Any],
        config: Mapping[str, Any],
        metrics: Mapping[str, Any],
        run_id: str | None,
        preprocessing: Mapping[str, Any] | None = None,
        description: str = "",
    ) -> ModelVersion:
        """Store ``model`` as the next version of ``name`` (a ``candidate``)."""
        validate_model_name(name)
        kind = get_flavor(flavor)
        meta = {
            "features": _check_features(name, features),
            "training": _check_training(name, training),
            # Credential-like keys redacted: the registry is read by anyone with the lake.
            "config": redact(_plain_json(name, "config", config)),
            "metrics": _plain_json(name, "metrics", metrics),
            "preprocessing": _plain_json(name, "preprocessing", preprocessing or {}),
        }
        saved = kind.save(model)
        artifact, sha = self.store.write_artifact(name, saved.data, saved.extension)
        now = _now()

        def build(events: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
            """The ``registered`` row of the next version of ``name`` (one past the highest
            in ``events``) and that version number."""
            mine = [e for e in events if e["name"] == name]
            version = max((e["version"] for e in mine), default=0) + 1
            row = {
                "name": name,
                "version": version,
                "seq": _next_seq(mine),
                "event": "registered",
                "stage": "candidate",
                "at": now,
                "reason": "registered",
                "flavor": flavor,
                "flavor_info": saved.info,
                "artifact": artifact,
                "sha256": sha,
                "size_bytes": len(saved.data),
                "run_id": run_id,
                "description": description,
                **meta,
            }
            return [row], version

        version = self.store.transact(name, build, run_id=run_id, job="models.register")
        return self.get(name, version)

    def promote(
        self, name: str, version: Ref = None, stage: str = "champion", *, reason: str = ""
    ) -> ModelVersion:
        """Move a version to ``champion`` (the old champion is archived) or ``archived``.

        ``version`` is a number, ``"latest"``, or None when ``name`` is ``"NAME:REF"``.
        """
        stage = _check_stage(stage)
        if version is None and ":" in str(name):
            name, version = parse_model_ref(name)
        validate_model_name(name)
        if version is None:
            raise ModelError(
                f"Say which version of {name!r} to move to {stage}: promote(name, version) "
                f"or `raylake models promote {name} VERSION`."
            )

        def build(events: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
            """The stage rows that move the chosen version to ``stage`` (archiving any other
            champion when it becomes champion) and its version; no rows when it is there
            already."""
            versions = self._versions(name, events)
            target = _pick(name, versions, version)
            if target.stage == stage:
                return [], target.version
            now, seq = _now(), _next_seq([e for e in events if e["name"] == name])
            rows = [_stage_row(target, stage, seq, now, reason or f"promoted to {stage}")]
            if stage == "champion":
                for old in versions.values():
                    if old.stage == "champion" and old.version != target.version:
                        seq += 1
                        why = f"replaced by version {target.version}"
                        rows.append(_stage_row(old, "archived", seq, now, why))
            return rows, target.version

        got = self.store.transact(name, build, run_id=None, job="models.promote")
        return self.get(name, got)

    # -- reading -----------------------------------------------------------------

    def get(self, name: str, ref: Ref = None) -> ModelVersion:
        """A version by number, ``"champion"``, ``"latest"``, or None (the
        champion if there is one, else the latest); ``name`` may be ``"NAME:REF"``."""
        if ref is None and ":" in str(name):
            name, ref = parse_model_ref(name)
        validate_model_name(name)
        return _pick(name, self._versions(name, self.store.events()), ref)

    def load(self, name: str, ref: Ref = None) -> tuple[ModelVersion, Any]:
        """The version and its model, after checking the artifact's hash."""
        mv = self.get(name, ref)
        data = self.store.read_artifact(mv.artifact)
        digest = sha256_hex(data)
        if len(data) != mv.size_bytes or digest != mv.sha256:
            raise ArtifactIntegrityError(
                f"The artifact of model {mv.ref} at {mv.artifact_uri} does not match the registry: "
                f"sha256 {digest[:16]}... ({len(data)} bytes), registered {mv.sha256[:16]}... "
                f"({mv.size_bytes} bytes). The file was changed or damaged after registration; "
                "do not use it. Restore it from a backup or register the model again"
                + (f" from run {mv.run_id}." if mv.run_id else ".")
            )
        return mv, get_flavor(mv.flavor).load(data, mv.flavor_info)

    def list(self, name: str | None = None) -> list[ModelVersion]:
        """Every version (of ``name``, or of all models), by name then version."""
        events = self.store.events()
        if name is not None:
            return sorted(self._versions(validate_model_name(name), events).values(),
                          key=lambda v: v.version)
        names = sorted({e["name"] for e in events})
        return [v for n in names for v in sorted(self._versions(n, events).values(),
                                                    key=lambda v: v.version)]

    # In the class body below, `list` is the method above: annotations say builtins.list.
    def names(self) -> builtins.list[str]:
        """The names of the registered models, sorted (empty when none is registered)."""
        return sorted({e["name"] for e in self.store.events()})

    def _versions(self, name: str, events: builtins.list[dict[str, Any]]) -> dict[int, ModelVersion]:
        mine = [e for e in events if e["name"] == name]
        if not mine:
            known = sorted({e["name"] for e in events})
            raise ModelNotFoundError(
                f"No model {name!r} in the lake at {self.lake.root}.{did_you_mean(name, known)} "
                f"Registered models: {', '.join(known) or 'none'}. "
                "List them with `raylake models list`."
            )
        by_version: dict[int, list[dict[str, Any]]] = {}
        for e in sorted(mine, key=lambda e: e["seq"]):
            by_version.setdefault(e["version"], []).append(e)
        return {v: self._version(rows) for v, rows in sorted(by_version.items())}

    def _version(self, rows: builtins.list[dict[str, Any]]) -> ModelVersion:
        first = next(r for r in rows if r["event"] == "registered")
        history = [
            {"stage": r["stage"], "previous_stage": r["previous_stage"], "at": r["at"],
             "reason": r["reason"] or ""}
            for r in rows
        ]
        return ModelVersion(
            name=first["name"],
            version=int(first["version"]),
            stage=rows[-1]["stage"],
            flavor=first["flavor"],
            artifact=first["artifact"],
            artifact_uri=self.store.uri(first["artifact"]),
            sha256=first["sha256"],
            size_bytes=int(first["size_bytes"]),
            features=first["features"] or [],
            training=first["training"] or {},
            config=first["config"] or {},
            metrics=first["metrics"] or {},
            run_id=first["run_id"],
            preprocessing=first["preprocessing"] or {},
            flavor_info=first["flavor_info"] or {},
            description=first["description"] or "",
            created_at=first["at"],
            history=history,
        )


# -- helpers ---------------------------------------------------------------------


def _pick(name: str, versions: dict[int, ModelVersion], ref: Ref) -> ModelVersion:
    ref = _normalize_ref(ref)
    listing = ", ".join(f"{v} ({mv.stage})" for v, mv in versions.items())
    if isinstance(ref, bool):  # bool is an int, but True is no version number
        ref = str(ref)
    if ref is None or ref == "champion":
        champions = [mv for mv in versions.values() if mv.stage == "champion"]
        if champions:
            # One champion at a time is kept by promote(); should two ever
            # exist, the most recently promoted one wins.
            return max(champions, key=lambda mv: mv.history[-1]["at"])
        if ref is None:
            return versions[max(versions)]
        raise ModelVersionNotFoundError(
            f"Model {name!r} has no champion (versions: {listing}). Promote one with "
            f"`raylake models promote {name} VERSION`, or ask for {name}:latest."
        )
    if ref == "latest":
        return versions[max(versions)]
    if isinstance(ref, int):
        if ref in versions:
            return versions[ref]
        raise ModelVersionNotFoundError(
            f"Model {name!r} has no version {ref}; its versions are {listing}. "
            f"See `raylake models list {name}`."
        )
    raise ModelVersionNotFoundError(
        f"{ref!r} is not a version of model {name!r}.{did_you_mean(str(ref), REFS)} Give a "
        f"version number, 'champion' or 'latest'; its versions are {listing}."
    )


def _check_stage(stage: str) -> str:
    if stage not in TARGET_STAGES:
        hint = (
            " New versions start as candidates; a version cannot go back to candidate."
            if stage == "candidate"
            else did_you_mean(str(stage), TARGET_STAGES)
        )
        raise ModelStageError(
            f"Cannot move a model version to stage {stage!r}.{hint} "
            f"Stages to move to: {', '.join(TARGET_STAGES)}."
        )
    return stage


def _stage_row(mv: ModelVersion, stage: str, seq: int, at: dt.datetime, reason: str) -> dict:
    return {"name": mv.name, "version": mv.version, "seq": seq, "event": "stage",
            "stage": stage, "previous_stage": mv.stage, "at": at, "reason": reason}


def _next_seq(events: list[dict[str, Any]]) -> int:
    return max((e["seq"] for e in events), default=0) + 1


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _check_features(name: str, features: Iterable[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for f in features:
        extra: dict[str, Any] = {}
        if isinstance(f, Mapping):
            fname, ftype = f.get("name"), f.get("type")
            # Other keys (e.g. "encoding": "categorical") are kept as given.
            extra = _plain_json(name, "features", f)
        elif isinstance(f, (tuple, list)) and len(f) == 2:
            fname, ftype = f
        else:
            fname = ftype = None
        if not isinstance(fname, str) or not fname or not isinstance(ftype, str) or not ftype:
            raise ModelError(
                f"Feature {f!r} of model {name!r} needs a name and a type, "
                "e.g. {'name': 'dep_delay', 'type': 'float64'}."
            )
        out.append({**extra, "name": fname, "type": ftype})
    names = [f["name"] for f in out]
    if not out:
        raise ModelError(f"Model {name!r} needs its feature list ({{name, type}} per input).")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ModelError(f"Model {name!r} lists features {dupes} more than once.")
    return out


def _check_training(name: str, training: Mapping[str, Any]) -> dict[str, Any]:
    plain = _plain_json(name, "training", training)
    table, version = plain.get("table"), plain.get("version")
    if not isinstance(table, str) or isinstance(version, bool) or not isinstance(version, int):
        raise ModelError(
            f"training of model {name!r} must name the training set's lake table and version, "
            "e.g. {'table': 'training/delay', 'version': 3, 'sources': [{'table': "
            "'flights', 'version': 5}]}; got " + json.dumps(plain)[:200] + "."
        )
    return plain


def _plain_json(name: str, what: str, value: Any) -> dict[str, Any]:
    """``value`` as plain JSON data (numpy scalars, datetimes and OmegaConf converted)."""
    try:
        plain = json.loads(json.dumps(value, default=_jsonable, sort_keys=True))
    except (TypeError, ValueError) as exc:
        raise ModelError(
            f"{what} of model {name!r} cannot be stored as JSON: {exc}. Give dicts, lists, "
            "strings, numbers and booleans."
        ) from exc
    if not isinstance(plain, dict):
        raise ModelError(f"{what} of model {name!r} must be a mapping, got {type(value).__name__}.")
    return plain


def _jsonable(obj: Any) -> Any:
    if type(obj).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(obj, resolve=True)
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, (dt.datetime, dt.date)):
        return obj.isoformat()
    if hasattr(obj, "tolist"):  # numpy and torch scalars and arrays
        return obj.tolist()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")
