"""Saving and loading models per flavor, in formats that hold no code.

- ``xgboost``: the Booster's UBJSON model (``save_raw("ubj")``), loaded into a
  new ``xgboost.Booster`` from memory. UBJSON holds trees and parameters only.
- ``torch``: a state dict (tensors only) written with ``torch.save`` and read
  with ``torch.load(weights_only=True)``, whose unpickler accepts tensors and
  plain containers and refuses any other global (functions, classes). The
  network is rebuilt from :mod:`raylake.models.nets` by name.

Nothing here pickles a model object. xgboost and torch are imported only when
a model of their flavor is saved or loaded.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

from raylake.errors import ArtifactError, ModelError, did_you_mean

FLAVORS = ("xgboost", "torch")
_EXTENSIONS = {"xgboost": "ubj", "torch": "pt"}


@dataclass(frozen=True)
class SavedModel:
    """A model as bytes, plus what loading needs besides the bytes (JSON values)."""

    data: bytes
    extension: str
    info: dict[str, Any] = field(default_factory=dict)


def check_flavor(flavor: str) -> str:
    if flavor not in FLAVORS:
        raise ModelError(
            f"Unknown model flavor {flavor!r}.{did_you_mean(str(flavor), FLAVORS)} "
            f"Use one of: {', '.join(FLAVORS)}."
        )
    return flavor


def save_model(flavor: str, model: Any) -> SavedModel:
    """``model`` as artifact bytes of ``flavor``."""
    check_flavor(flavor)
    return _save_xgboost(model) if flavor == "xgboost" else _save_torch(model)


def load_model(flavor: str, data: bytes, info: dict[str, Any]) -> Any:
    """The model in ``data``; runs no code from the artifact."""
    check_flavor(flavor)
    return _load_xgboost(data, info) if flavor == "xgboost" else _load_torch(data, info)


# -- xgboost -----------------------------------------------------------------


def _save_xgboost(model: Any) -> SavedModel:
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
    return SavedModel(data, _EXTENSIONS["xgboost"], {"format": "ubj", "xgboost": xgb.__version__})


def _load_xgboost(data: bytes, info: dict[str, Any]) -> Any:
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


# -- torch -------------------------------------------------------------------


def _save_torch(model: Any) -> SavedModel:
    import torch

    from raylake.models import nets

    if not isinstance(model, torch.nn.Module):
        raise ModelError(f"A torch model must be a torch.nn.Module, got {type(model).__name__}.")
    arch, kwargs = nets.architecture_of(model)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    buf = io.BytesIO()
    torch.save(state, buf)
    info = {"architecture": arch, "kwargs": kwargs, "torch": torch.__version__}
    return SavedModel(buf.getvalue(), _EXTENSIONS["torch"], info)


def _load_torch(data: bytes, info: dict[str, Any]) -> Any:
    import torch

    from raylake.models import nets

    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    # The unpickler raises UnpicklingError for a forbidden global but also
    # RuntimeError, EOFError, ... for damaged bytes: all mean "not loadable".
    except Exception as exc:
        raise ArtifactError(
            "The torch artifact is not a plain state dict of tensors and was refused by "
            f"torch.load(weights_only=True): {str(exc).splitlines()[0]} Do not load it with "
            "weights_only=False: that can run code stored in the file."
        ) from exc
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ArtifactError("The torch artifact is not a state dict of named tensors.")
    net = nets.build(str(info.get("architecture")), dict(info.get("kwargs") or {}))
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ArtifactError(
            f"The torch artifact does not fit {info.get('architecture')}"
            f"({info.get('kwargs')}): {exc}"
        ) from exc
    return net.eval()
