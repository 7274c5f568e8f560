"""A/B arms: which model version answers which unit.

Assignment is a pure function of (salt, unit id): sha256 of both, read as a number in
[0, 1), falls into one arm's slice of the cumulative weights. The same unit always
sees the same arm, on every replica and after restarts, with no shared state; a new
salt reshuffles units for a new experiment. Shadow arms take no slice: they get a copy
of every request, and their answers are only logged.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from raylake.errors import ConfigError, ModelNotFoundError

MAIN = "main"  # the arm's name when one model is served without `arms`


@dataclass(frozen=True)
class Arm:
    name: str
    model: str  # registered model name
    version: int  # pinned when the app is built, so every replica serves the same bytes
    weight: float
    shadow: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The arm's fields as a dict (how arms are passed to the Serve replicas)."""
        return {"name": self.name, "model": self.model, "version": self.version,
                "weight": self.weight, "shadow": self.shadow}


def bucket(unit_id: str, salt: str = "") -> float:
    """The unit's place in [0, 1): uniform over units, fixed for a unit."""
    digest = hashlib.sha256(f"{salt}\x00{unit_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


class Assigner:
    """Maps unit ids to the live (non-shadow) arms by their weights."""

    def __init__(self, arms: Sequence[Arm], salt: str = "") -> None:
        live = [a for a in arms if not a.shadow]
        if not live:
            raise ConfigError("model_server.arms needs at least one arm that is not a shadow: "
                              "shadow answers are never returned.")
        total = sum(a.weight for a in live)
        self.arms = live
        self.shadows = [a for a in arms if a.shadow]
        self.salt = salt
        edges, acc = [], 0.0
        for a in live:
            acc += a.weight / total
            edges.append(acc)
        edges[-1] = 1.0  # rounding must not leave a gap below 1
        self._edges = edges

    def assign(self, unit_id: str) -> Arm:
        """The live arm that answers ``unit_id``: for one salt, a unit always gets the same
        arm."""
        i = bisect.bisect_right(self._edges, bucket(unit_id, self.salt))
        return self.arms[min(i, len(self.arms) - 1)]

    def shares(self) -> dict[str, float]:
        """Each live arm's share of units (its normalised weight), by arm name."""
        lo, out = 0.0, {}
        for a, hi in zip(self.arms, self._edges):
            out[a.name] = hi - lo
            lo = hi
        return out


def resolve_arms(model: str | None, arms: Mapping[str, Any], registry: Any) -> list[Arm]:
    """Config arms (or the one `model`) with each reference pinned to a registered version."""
    from raylake.models.registry import parse_model_ref

    if not arms:
        if not model:
            raise ConfigError("serve needs model=NAME[:VERSION|champion] or model_server.arms "
                              "(e.g. raylake serve model=delay_model:champion).")
        spec: dict[str, dict[str, Any]] = {MAIN: {"model": model, "weight": 1.0, "shadow": False}}
    else:
        spec = {name: _plain(a) for name, a in arms.items()}
    out = []
    for name, a in spec.items():
        weight, shadow = float(a.get("weight", 1.0)), bool(a.get("shadow", False))
        if not shadow and not weight > 0:
            raise ConfigError(f"model_server.arms.{name}.weight={weight} must be > 0 "
                              "(drop the arm, or make it a shadow, to give it no traffic).")
        try:
            mname, ref = parse_model_ref(a["model"])
            mv = registry.get(mname, ref)
        except ModelNotFoundError as exc:
            raise ConfigError(f"model_server.arms.{name}: {exc}") from exc
        out.append(Arm(name, mv.name, mv.version, weight, shadow))
    Assigner(out)  # at least one live arm
    return out


def _plain(a: Any) -> dict[str, Any]:
    if isinstance(a, Mapping):
        return dict(a)
    return {"model": a.model, "weight": a.weight, "shadow": a.shadow}
