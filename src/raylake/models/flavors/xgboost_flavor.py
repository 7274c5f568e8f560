"""The ``xgboost`` flavor: a Booster stored as its UBJSON model (``save_raw("ubj")``),
which holds trees and parameters only, and loaded into a new ``xgboost.Booster`` from
memory. Scoring is ``inplace_predict`` on :meth:`FeatureSpec.matrix`.

xgboost is imported inside the methods: importing raylake.models does not import it.
(The module is not named ``xgboost.py`` so that it never stands in for the package.)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from raylake.errors import ArtifactError, ModelError
from raylake.models.flavors.base import Flavor, SavedModel

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from raylake.models.spec import FeatureSpec


class XGBoostFlavor(Flavor):
    name = "xgboost"
    extension = "ubj"

    def save(self, model: Any) -> SavedModel:
        """The Booster of ``model`` (a Booster or a scikit-learn XGBModel) as UBJSON bytes;
        ModelError for anything else."""
        import xgboost as xgb

        # The scikit-learn wrappers (XGBClassifier, ...) hold a Booster; the
        # registry stores the Booster, which is what loading returns.
        booster = model.get_booster() if hasattr(model, "get_booster") else model
        if not isinstance(booster, xgb.Booster):
            raise ModelError(
                f"An xgboost model must be an xgboost.Booster or an XGBModel, got "
                f"{type(model).__name__}."
            )
        data = bytes(booster.save_raw(raw_format="ubj"))
        return SavedModel(data, self.extension, {"format": "ubj", "xgboost": xgb.__version__})

    def load(self, data: bytes, info: dict[str, Any]) -> Any:
        """A new Booster read from ``data`` (UBJSON, or JSON per ``info["format"]``);
        ArtifactError for another format or bytes xgboost cannot load."""
        import xgboost as xgb

        fmt = info.get("format", "ubj")
        if fmt not in ("ubj", "json"):
            raise ArtifactError(
                f"xgboost artifact format {fmt!r} is not JSON or UBJSON; raylake loads only those."
            )
        booster = xgb.Booster()
        try:
            booster.load_model(bytearray(data))
        except xgb.core.XGBoostError as exc:
            raise ArtifactError(f"Not a valid xgboost {fmt} model: {exc}") from exc
        return booster

    def predict(self, model: Any, spec: FeatureSpec, table: pa.Table) -> np.ndarray:
        """Probabilities, scored with one thread."""
        model.set_param({"nthread": 1})
        return _inplace(model, spec, table)

    def predictor(self, model: Any, spec: FeatureSpec,
                  threads: int = 1) -> Callable[[pa.Table], np.ndarray]:
        """``inplace_predict`` with ``model`` and ``spec`` bound. Sets the booster's
        ``nthread`` to ``threads`` once, here, for every user of ``model``."""
        # The booster's threads are set once here: `set_param` on every call cost more
        # than scoring a small batch (benchmarks/serve.py).
        model.set_param({"nthread": threads})
        return functools.partial(_inplace, model, spec)


def _inplace(booster: Any, spec: FeatureSpec, table: pa.Table) -> np.ndarray:
    # `inplace_predict` on the encoded matrix: the same trees on the same numbers as a
    # DMatrix (categorical splits live in the trees), without building one.
    return booster.inplace_predict(spec.matrix(table))
