"""What live traffic is compared with: the monitored model version and its reference.

The reference is, by default, the training set the registry recorded for the version
(``training["table"]`` at ``training["version"]``: the exact rows it was trained on);
``monitor.reference=TABLE@VERSION`` replaces it. Its profile is the one ``_profiles``
keeps for that version (ingestion and ``raylake profile`` store them), else it is made
here once and stored, so later runs read it. The model's scores on the reference make
the reference of prediction drift; they are profiled once and kept in ``_profiles`` too,
under a name of their own (:func:`prediction_key`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from raylake.errors import (
    MonitorError,
    RaylakeError,
    TableNotFoundError,
    VersionNotFoundError,
    did_you_mean,
)
from raylake.lake.tables import Lake
from raylake.models.registry import ModelRegistry, ModelVersion, parse_model_ref
from raylake.models.spec import FeatureSpec
from raylake.quality.profile import Profile
from raylake.quality.store import load_profile, save_profiles, stored_versions

PREDICTION = "_prediction"  # the profile column of the scores (serve/live_profile.py)
# The model's scores on the reference are profiled on a deterministic sample: a few
# hundred thousand scores pin a distribution far tighter than a day of traffic.
MAX_SCORED_ROWS = 200_000
BATCH_ROWS = 100_000


@dataclass
class Reference:
    """A model version and the profiles its live traffic is judged against."""

    mv: ModelVersion
    spec: FeatureSpec
    table: str
    version: int
    features: list[str]  # the features checked (monitor.features, else the model's)
    profile: Profile  # the reference table's profile (every column)
    prediction: Profile  # the model's scores on it, column ``_prediction``
    vocab: dict[str, set[str]] = field(default_factory=dict)  # categorical features

    @property
    def name(self) -> str:
        """``TABLE@VERSION``: what the monitoring rows name as their reference."""
        return f"{self.table}@{self.version}"


def resolve_model(lake: Lake, model: str | None) -> ModelVersion:
    """The version ``model`` (``NAME[:VERSION|champion|latest]``) names; MonitorError when
    no model is named."""
    if not model:
        raise MonitorError("Which model? Add model=NAME[:VERSION|champion|latest], e.g. "
                           "model=delay_model:champion (see `raylake models list`).")
    name, ref = parse_model_ref(model)
    return ModelRegistry(lake).get(name, ref)


def reference_source(lake: Lake, override: str | None, mv: ModelVersion) -> tuple[str, int]:
    """(table, version) of the reference: ``override`` (``TABLE@VERSION``) or the training
    set the registry recorded; MonitorError, saying what to do, when there is none or it
    is gone."""
    fix = (f"register {mv.name} with its training lineage (`raylake train` records the "
           "training set and its version), or set monitor.reference=TABLE@VERSION "
           "(e.g. monitor.reference=training/flights_delay@3)")
    table: Any
    version: Any
    if override:
        table, _, version = str(override).rpartition("@")
        where = f"monitor.reference={override}"
    else:
        table, version = mv.training.get("table"), mv.training.get("version")
        if not table or version is None or not str(version).strip().isdigit():
            raise MonitorError(f"Model {mv.ref} has no training lineage (its registry entry "
                               f"records training={mv.training!r}): nothing to compare its "
                               f"traffic with. To monitor it, {fix}.")
        where = f"the training set of {mv.ref}, {table}@{version},"
    try:
        lake.table(str(table), int(version))
    except (TableNotFoundError, VersionNotFoundError) as exc:
        raise MonitorError(f"The reference {where} cannot be read ({exc}). It was deleted or "
                           f"vacuumed; {fix}.") from exc
    return str(table), int(version)


def monitored_features(mv: ModelVersion, spec: FeatureSpec, wanted: list[str]) -> list[str]:
    """``wanted`` (monitor.features) or every input of the model; MonitorError for a
    feature the model does not read."""
    known = spec.names or mv.feature_names
    for name in wanted:
        if name not in known:
            raise MonitorError(f"monitor.features names {name!r}, which {mv.ref} does not "
                               f"read.{did_you_mean(name, known)} Its features: "
                               f"{', '.join(known)}.")
    return list(wanted) or list(known)


def load_reference(lake: Lake, conf: Any, mv: ModelVersion, run_id: str = "") -> Reference:
    """The reference of ``mv`` under ``conf.monitor``: its profile and prediction profile,
    made and stored on first use."""
    spec = FeatureSpec.from_dict(mv.preprocessing)
    features = monitored_features(mv, spec, list(conf.monitor.features))
    table, version = reference_source(lake, conf.monitor.reference, mv)
    columns = lake.table(table, version).schema().to_arrow().names
    absent = [f for f in spec.names if f not in columns]
    if absent:
        raise MonitorError(f"The reference {table}@{version} lacks {mv.ref}'s features "
                           f"{absent}; set monitor.reference=TABLE@VERSION to a table of the "
                           "model's inputs (a training set).")
    profile = table_profile(lake, table, version, run_id)
    prediction = prediction_profile(lake, mv, spec, table, version, run_id)
    vocab = {c: set(spec.vocab.get(c) or []) for c in spec.categorical}
    return Reference(mv, spec, table, version, features, profile, prediction, vocab)


def table_profile(lake: Lake, table: str, version: int, run_id: str = "") -> Profile:
    """The stored whole-table profile of ``table@version`` when it covers every row of that
    version; else a new one, stored for the next run."""
    rows = lake.count(table, version)
    if version in stored_versions(lake, table):
        stored = load_profile(lake, table, [version])
        # An append's ingest profiles the rows it added, not the version's: use a stored
        # profile only when it is of the whole version.
        if stored.rows == rows:
            return stored
    profile = _profile_batches(lake, table, version)
    save_profiles(lake, table, version, {"": profile}, run_id=run_id)
    return profile


def _profile_batches(lake: Lake, table: str, version: int) -> Profile:
    """Every column of ``table@version``, profiled a batch at a time on this process."""
    profile = Profile.empty()
    for batch in lake.dataset(table, version).to_batches(batch_size=BATCH_ROWS):
        if batch.num_rows:
            profile = profile.merge(Profile.of(pa.Table.from_batches([batch])))
    return profile


def prediction_key(mv: ModelVersion, table: str) -> str:
    """The ``_profiles`` table name under which ``mv``'s scores on ``table`` are kept (the
    version column holds the reference's version)."""
    return f"_model/{mv.name}/{mv.version}/{table}"


def prediction_profile(lake: Lake, mv: ModelVersion, spec: FeatureSpec, table: str,
                       version: int, run_id: str = "") -> Profile:
    """The profile of ``mv``'s scores on a sample of ``table@version`` (column
    ``_prediction``), stored on first use."""
    key = prediction_key(mv, table)
    if version in stored_versions(lake, key):
        return load_profile(lake, key, [version])
    scores = score_sample(lake, mv, spec, table, version)
    profile = Profile.of(pa.table({PREDICTION: pa.array(scores, pa.float64())}))
    save_profiles(lake, key, version, {"": profile}, run_id=run_id)
    return profile


def score_sample(lake: Lake, mv: ModelVersion, spec: FeatureSpec, table: str,
                 version: int, max_rows: int = MAX_SCORED_ROWS) -> np.ndarray:
    """``mv``'s scores on at most ``max_rows`` rows of ``table@version``, evenly spaced
    (the same rows every time: the sample is deterministic)."""
    from raylake.models.flavors import get_flavor

    data = lake.dataset(table, version).to_table(columns=spec.names)
    if data.num_rows > max_rows:
        data = data.take(pa.array(np.linspace(0, data.num_rows - 1, max_rows).astype(np.int64)))
    try:
        _, model = ModelRegistry(lake).load(mv.name, mv.version)
        flavor = get_flavor(mv.flavor)
        parts = [np.asarray(flavor.predict(model, spec, data.slice(i, BATCH_ROWS)), np.float64)
                 for i in range(0, data.num_rows, BATCH_ROWS)]
    except RaylakeError:
        raise
    except Exception as exc:  # a flavor's own error: say which model and reference
        raise MonitorError(f"Scoring the reference {table}@{version} with {mv.ref} failed: "
                           f"{exc}") from exc
    return np.concatenate(parts) if parts else np.empty(0)
