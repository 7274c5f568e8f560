"""The model registry: versioned models in the lake, with lineage and stages; the
flavor registry (:mod:`raylake.models.flavors`) that saves, loads and scores each kind
of model; and :class:`~raylake.models.spec.FeatureSpec`, a model's input contract.

torch and xgboost are imported only when a model of their flavor is saved, loaded or
scored (and ``TabularMLP`` only when asked for), so importing this package is cheap.
"""

from typing import Any

from raylake.models.flavors import Flavor, flavor_names, get_flavor, register_flavor
from raylake.models.registry import (
    STAGES,
    ModelRegistry,
    ModelVersion,
    parse_model_ref,
    validate_model_name,
)

__all__ = [
    "STAGES",
    "Flavor",
    "ModelRegistry",
    "ModelVersion",
    "TabularMLP",
    "flavor_names",
    "get_flavor",
    "parse_model_ref",
    "register_flavor",
    "validate_model_name",
]


def __getattr__(name: str) -> Any:
    if name == "TabularMLP":
        from raylake.models.nets import TabularMLP

        return TabularMLP
    raise AttributeError(f"module 'raylake.models' has no attribute {name!r}")
