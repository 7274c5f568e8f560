"""The model registry: versioned models in the lake, with lineage and stages.

torch and xgboost are imported only when a model of their flavor is saved or
loaded (and ``TabularMLP`` only when asked for), so importing this package is
cheap.
"""

from typing import Any

from raylake.models.flavors import FLAVORS
from raylake.models.registry import (
    STAGES,
    ModelRegistry,
    ModelVersion,
    parse_model_ref,
    validate_model_name,
)

__all__ = [
    "FLAVORS",
    "STAGES",
    "ModelRegistry",
    "ModelVersion",
    "TabularMLP",
    "parse_model_ref",
    "validate_model_name",
]


def __getattr__(name: str) -> Any:
    if name == "TabularMLP":
        from raylake.models.nets import TabularMLP

        return TabularMLP
    raise AttributeError(f"module 'raylake.models' has no attribute {name!r}")
