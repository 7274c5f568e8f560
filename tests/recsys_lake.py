"""A small generated recommendation world taken through the ranker's pipeline once per
session, for every recsys test file: generate, `raylake ingest`, `recsys-impressions`,
`aggregate`, `training-set` and `materialize` (sqlite online store, up to the holdout's
start) with `experiment=recsys`.

A test file asks for it through a session fixture of its own (the build is shared: the
second call with the same spec returns the first lake)::

    from recsys_lake import recsys_lake

    @pytest.fixture(scope="session")
    def recsys(ray_session, tmp_path_factory):
        return recsys_lake(tmp_path_factory)

    def test_x(recsys):
        cfg = recsys.config("model=recsys_ranker", job="serve")

Tests may add tables, models and tags to this lake, never rewrite the tables it built
(others assert on their first versions). `train_ranker(recsys)` trains and registers the
XGBoost ranker once (small: 30 rounds, one worker) for the tests that need a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raylake.datasets.recsys_world import WorldSpec

SMALL = WorldSpec(users=2_000, items=500, requests=20_000)
HOLDOUT_START = "2026-03-22T00:00:00+00:00"  # the world's last 10 days (recsys.holdout_days)
# A small, quick ranker: one Train worker, few rounds.
TRAIN_OVERRIDES = ("train.scaling.num_workers=1", "train.xgboost.num_boost_round=30",
                   "train.checkpoint_every=30")


@dataclass
class RecsysLake:
    """The built lake: its root, the overrides that compose its config, the world's spec
    and folder, and each step's job result."""

    root: str
    overrides: list[str]
    spec: WorldSpec
    world_dir: Path
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    def config(self, *extra: str, job: str = "ingest") -> Any:
        """The composed config of this lake with ``extra`` overrides."""
        from raylake.config.loader import compose_config

        return compose_config([*self.overrides, *extra], job=job)

    def lake(self) -> Any:
        """The lake, opened."""
        from raylake.lake import Lake, Storage

        return Lake(Storage.from_config(self.root))


_BUILT: dict[tuple[WorldSpec, str], RecsysLake] = {}


def quiet(*_a: Any, **_k: Any) -> None:
    pass


def build_recsys_lake(base: Path, spec: WorldSpec = SMALL) -> RecsysLake:
    """Generate ``spec``'s world under ``base`` and take it through the pipeline (needs a
    running Ray)."""
    from raylake.datasets.recsys_world import generate, write
    from raylake.features.jobs import aggregate, materialize, training_set
    from raylake.ingest.jobs import ingest
    from raylake.recsys.jobs_impressions import recsys_impressions

    world_dir = base / "world"
    write(generate(spec), world_dir)
    root = str(base / "lake")
    built = RecsysLake(root, [f"lake.root={root}", "experiment=recsys",
                              f"dataset.root={world_dir}", f"materialize.end={HOLDOUT_START}"],
                       spec, world_dir)
    for name, fn in (("ingest", ingest), ("recsys-impressions", recsys_impressions),
                     ("aggregate", aggregate), ("training-set", training_set),
                     ("materialize", materialize)):
        built.results[name] = fn(built.config(job=name), echo=quiet)
    return built


def recsys_lake(tmp_path_factory: Any, spec: WorldSpec = SMALL) -> RecsysLake:
    """The session's lake for ``spec`` (built on the first call)."""
    key = (spec, str(tmp_path_factory.getbasetemp()))
    if key not in _BUILT:
        _BUILT[key] = build_recsys_lake(tmp_path_factory.mktemp("recsys"), spec)
    return _BUILT[key]


def train_ranker(built: RecsysLake, *extra: str) -> dict[str, Any]:
    """`raylake train experiment=recsys` on the lake, small (TRAIN_OVERRIDES), once per
    set of ``extra`` overrides; the train job's result (registered as recsys_ranker)."""
    from raylake.train.jobs import train

    key = f"train:{extra}"
    if key not in built.results:
        built.results[key] = train(built.config(*TRAIN_OVERRIDES, *extra, job="train"),
                                   echo=quiet)
    return built.results[key]


def train_towers(built: RecsysLake) -> tuple[dict[str, Any], list[str]]:
    """`raylake recsys-train experiment=recsys` on the lake once per session (small: 5
    epochs of 256 clicks a batch), after the ranker; its result and printed lines."""
    from raylake.recsys.jobs import recsys_train

    if "recsys-train" not in built.results:
        train_ranker(built)
        lines: list[str] = []
        out = recsys_train(built.config("recsys.towers.epochs=5", "recsys.towers.batch_size=256",
                                        job="recsys-train"), echo=lines.append)
        built.results["recsys-train"] = {"out": out, "lines": lines}
    done = built.results["recsys-train"]
    return done["out"], done["lines"]
