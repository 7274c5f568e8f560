"""What a model flavor is, and the registry that finds one by name.

A flavor is one kind of model (a tree ensemble, a torch network, ...) and owns
everything that depends on it: the bytes it is stored as (formats that hold no code),
loading them back, and scoring an Arrow batch encoded by the model's
:class:`~raylake.models.spec.FeatureSpec`. Training registers a model with a flavor
name; the registry, batch inference and the model server look the flavor up by that
name, so only the flavor's own module imports its framework.
"""

from __future__ import annotations

import functools
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from raylake.errors import ModelError, did_you_mean

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from raylake.models.spec import FeatureSpec

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class SavedModel:
    """A model as bytes, plus what loading needs besides the bytes (JSON values)."""

    data: bytes
    extension: str
    info: dict[str, Any] = field(default_factory=dict)


class Flavor(ABC):
    """One kind of model: saving, loading and scoring it.

    A flavor module imports its framework inside these methods, never at the top:
    importing :mod:`raylake.models` stays cheap and framework-free."""

    #: The name models are registered with (``ModelVersion.flavor``).
    name: str
    #: The artifact's file extension in the model store.
    extension: str

    @abstractmethod
    def save(self, model: Any) -> SavedModel:
        """``model`` as artifact bytes in a format that holds no code; ModelError if
        ``model`` is not of this flavor."""

    @abstractmethod
    def load(self, data: bytes, info: dict[str, Any]) -> Any:
        """The model in ``data`` (``info``: what :meth:`save` recorded); runs no code
        from the artifact, ArtifactError if the bytes are not a model of this flavor."""

    @abstractmethod
    def predict(self, model: Any, spec: FeatureSpec, table: pa.Table) -> np.ndarray:
        """Scores of every row of ``table`` (one-off: evaluation, tests)."""

    def predictor(self, model: Any, spec: FeatureSpec,
                  threads: int = 1) -> Callable[[pa.Table], np.ndarray]:
        """The scoring function ``table -> scores`` of a process that scores many
        batches with one model (Serve replicas, batch actors), with ``threads`` scoring
        threads where the flavor sets them. Set-up done once goes here, not in every
        call; by default it is :meth:`predict` with the model and spec bound."""
        return functools.partial(self.predict, model, spec)

    def __repr__(self) -> str:
        return f"<flavor {self.name!r} ({type(self).__module__}.{type(self).__name__})>"


_FLAVORS: dict[str, Flavor] = {}


def register_flavor(flavor: Flavor, *, replace: bool = False) -> Flavor:
    """Make ``flavor`` findable by its name; returns it. A second flavor with a name
    already taken is refused unless ``replace=True``."""
    if not isinstance(flavor, Flavor):
        raise ModelError(f"register_flavor takes a raylake.models.flavors.Flavor instance, got "
                         f"{type(flavor).__name__}; subclass Flavor and register an instance.")
    name = getattr(flavor, "name", None)
    if not isinstance(name, str) or not _NAME.match(name):
        raise ModelError(f"Flavor name {name!r} of {type(flavor).__name__} is not a lowercase "
                         "identifier (letters, digits, '_'); set the class's `name`.")
    ext = getattr(flavor, "extension", None)
    if not isinstance(ext, str) or not _NAME.match(ext):
        raise ModelError(f"Flavor {name!r}: extension {ext!r} is not a plain file extension "
                         "(e.g. 'ubj', 'pt'); set the class's `extension`.")
    taken = _FLAVORS.get(name)
    if taken is not None and taken is not flavor and not replace:
        raise ModelError(f"A flavor named {name!r} is already registered ({taken!r}); pick "
                         "another name, or pass replace=True to replace it.")
    _FLAVORS[name] = flavor
    return flavor


def unregister_flavor(name: str) -> None:
    """Forget flavor ``name`` (a plug-in's or a test's); unknown names are ignored."""
    _FLAVORS.pop(name, None)


def get_flavor(name: str) -> Flavor:
    """The registered flavor ``name``; ModelError naming the known ones otherwise."""
    try:
        return _FLAVORS[name]
    except (KeyError, TypeError):
        known = flavor_names()
        raise ModelError(
            f"Unknown model flavor {name!r}.{did_you_mean(str(name), known)} "
            f"Use one of: {', '.join(known)}."
        ) from None


def flavor_names() -> tuple[str, ...]:
    """The names of the registered flavors, in registration order."""
    return tuple(_FLAVORS)
