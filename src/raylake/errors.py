"""The one exception hierarchy of raylake.

Every error a user can meet derives from :class:`RaylakeError`. Foreign
exceptions (deltalake, pyarrow, Ray, Hydra) are wrapped once, at the boundary
where raylake calls them, with ``raise ... from exc`` so the cause stays visible.
Messages name the bad value and say what to do about it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class RaylakeError(Exception):
    """Root of every raylake error."""


class JobError(RaylakeError):
    """A job failed on an exception raylake did not anticipate; the message names the
    job, the root cause and the run record marked failed."""


class ConfigError(RaylakeError):
    """A configuration value is missing, misspelled or invalid."""


class ConfigValueError(ConfigError, ValueError):
    """A config dataclass rejects a value (raised in ``__post_init__``). A ValueError
    too: that is what OmegaConf and dataclass callers expect from a constructor."""


class TableNameError(RaylakeError, ValueError):
    """A table name is not a safe, relative name inside the lake."""


class TableNotFoundError(RaylakeError, LookupError):
    """A table does not exist in the lake."""


class VersionNotFoundError(RaylakeError, LookupError):
    """A table version, timestamp or tag does not resolve to a version."""


class LakeError(RaylakeError):
    """A Delta Lake operation failed (storage, commit, protocol)."""


class ConcurrentWriteError(LakeError):
    """Another writer changed the same thing (a tag, a table) between this writer's
    read and its commit; nothing of this write was committed."""


class UnsafeOperationError(RaylakeError):
    """An operation could lose data and needs an explicit ``force``."""


class SourceError(RaylakeError):
    """An ingestion source cannot be found or read."""


class IngestError(RaylakeError):
    """An ingestion run could not complete; nothing was committed for the table."""


class CountMismatchError(IngestError):
    """Rows read differ from rows written plus rows quarantined."""


class RunNotFoundError(RaylakeError, LookupError):
    """No run record has the given run id."""


class GovernanceError(RaylakeError):
    """A governance rule cannot be applied (a missing key, a policy that does not fit
    its column, an erasure that matches nothing); nothing was written."""


class RuntimeConnectError(RaylakeError):
    """Ray could not be started or reached."""


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the nearest candidate, or ``""``."""
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" Did you mean '{matches[0]}'?" if matches else ""


class ValidationError(RaylakeError):
    """A table version breaks a constraint whose policy is ``fail``."""


class FeatureNotFoundError(ConfigError, LookupError):
    """A feature, feature view or feature service is not defined."""


class TransformError(RaylakeError):
    """An on-demand feature function failed or returned the wrong columns."""


class FeatureRequestError(RaylakeError):
    """A feature server request is malformed, names an unknown key or is too large;
    ``status`` is the HTTP status the server answers it with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status

    # Crosses processes (Serve handles) with its status.
    def __reduce__(self) -> tuple[type[RaylakeError], tuple[object, ...]]:
        return type(self), (self.status, str(self))


class ModelError(RaylakeError):
    """A model cannot be registered, built or loaded as given."""


class ModelNotFoundError(RaylakeError, LookupError):
    """No registered model has the given name."""


class ModelVersionNotFoundError(ModelNotFoundError):
    """A model exists but has no such version, or no champion."""


class ModelStageError(ModelError, ValueError):
    """A stage name is not one a model version can be moved to."""


class ArtifactError(ModelError):
    """A model artifact is missing, unreadable or not in a safe format."""


class ArtifactIntegrityError(ArtifactError):
    """A model artifact's bytes differ from the hash recorded when it was registered."""


class TuneError(RaylakeError):
    """A tuning sweep produced no usable trial."""


class ModelRequestError(RaylakeError):
    """A model server request is malformed, misses or mistypes a feature, or is too
    large; ``status`` is the HTTP status the server answers it with, ``kind`` the
    error kind counted in the server's metrics."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request") -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind

    # Crosses processes (Serve handles) with its status.
    def __reduce__(self) -> tuple[type[RaylakeError], tuple[object, ...]]:
        return type(self), (self.status, str(self), self.kind)


class AuthError(RaylakeError):
    """An HTTP request has no API key, a wrong one, or one without the route's scope (or
    the route is off until a key is configured); ``status`` is 401 or 403."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status

    def __reduce__(self) -> tuple[type[RaylakeError], tuple[object, ...]]:
        return type(self), (self.status, str(self))


class SynthError(RaylakeError):
    """Synthetic data cannot be made as asked: a table a synthesizer cannot learn from (no
    rows, an all-null column), an unknown synthesizer or parameter, a condition on a value
    never seen at fit; the message names the value and the fix."""


class MonitorError(RaylakeError):
    """Model monitoring, outcomes, alerts or continuous training cannot go on: a model
    without training lineage, a bad reference, an outcomes file that does not fit."""


class ImageError(RaylakeError):
    """An image cannot be used: undecodable bytes, a mode or size other than the declared
    one. Ingestion quarantines the image with this message as the reason."""


class VisionError(RaylakeError):
    """A computer-vision job cannot go on as configured: an empty class folder, no images
    to train on, a model that does not fit the table; the message names the fix."""
