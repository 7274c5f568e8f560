"""The ``torch`` flavor: a network stored as its state dict (tensors only), written
with ``torch.save`` and read with ``torch.load(weights_only=True)``, whose unpickler
accepts tensors and plain containers and refuses any other global (functions,
classes). The network is rebuilt from :mod:`raylake.models.nets` by name. Scoring
standardises a batch with :meth:`FeatureSpec.standardized`, as in training.

torch is imported inside the methods: importing raylake.models does not import it.
(The module is not named ``torch.py`` so that it never stands in for the package.)
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from raylake.errors import ArtifactError, ModelError
from raylake.models.flavors.base import Flavor, SavedModel

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from raylake.models.spec import FeatureSpec


class TorchFlavor(Flavor):
    name = "torch"
    extension = "pt"

    def save(self, model: Any) -> SavedModel:
        """``model``'s state dict, on CPU, as ``torch.save`` bytes, with its architecture's
        name and arguments in ``info``; ModelError unless it is a ``torch.nn.Module`` of
        :mod:`raylake.models.nets`."""
        import torch

        from raylake.models import nets

        if not isinstance(model, torch.nn.Module):
            raise ModelError(f"A torch model must be a torch.nn.Module, got {type(model).__name__}.")
        arch, kwargs = nets.architecture_of(model)
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        buf = io.BytesIO()
        torch.save(state, buf)
        info = {"architecture": arch, "kwargs": kwargs, "torch": torch.__version__}
        return SavedModel(buf.getvalue(), self.extension, info)

    def load(self, data: bytes, info: dict[str, Any]) -> Any:
        """The network rebuilt from ``info``'s architecture with the weights in ``data``, on
        CPU in eval mode; ``weights_only=True`` runs no code from the artifact.
        ArtifactError when the bytes are refused or do not fit the architecture."""

        from raylake.models import nets

        state = tensors_from_bytes(data, "torch")
        net = nets.build(str(info.get("architecture")), dict(info.get("kwargs") or {}))
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ArtifactError(
                f"The torch artifact does not fit {info.get('architecture')}"
                f"({info.get('kwargs')}): {exc}"
            ) from exc
        return net.eval()

    def predict(self, model: Any, spec: FeatureSpec, table: pa.Table,
                batch_size: int = 65536) -> np.ndarray:
        """Probabilities of the positive class, standardised as in training, scored in
        slices of ``batch_size`` rows on the model's device."""
        import numpy as np
        import torch

        num, cat = spec.standardized(table)
        device = next(model.parameters()).device
        out = np.empty(table.num_rows, np.float32)
        model.eval()
        with torch.inference_mode():
            for s in range(0, table.num_rows, batch_size):
                logits = model(torch.from_numpy(num[s:s + batch_size]).to(device),
                               torch.from_numpy(cat[s:s + batch_size]).to(device))
                out[s:s + batch_size] = torch.sigmoid(logits).float().cpu().numpy()
        return out


def tensors_from_bytes(data: bytes, flavor: str) -> dict[str, Any]:
    """The dict of named tensors in ``data`` (``torch.save`` bytes), read on CPU with
    ``weights_only=True``, whose unpickler accepts tensors and plain containers and refuses
    any other global, so no code from the artifact runs. ArtifactError (naming ``flavor``)
    for bytes it refuses or anything but a dict of named tensors. Every flavor that stores
    torch weights (torch, image_classifier, synthesizer) loads through here."""
    import torch

    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    # The unpickler raises UnpicklingError for a forbidden global but also
    # RuntimeError, EOFError, ... for damaged bytes: all mean "not loadable".
    except Exception as exc:
        raise ArtifactError(
            f"The {flavor} artifact is not a plain state dict of tensors and was refused by "
            f"torch.load(weights_only=True): {str(exc).splitlines()[0]} Do not load it with "
            "weights_only=False: that can run code stored in the file."
        ) from exc
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ArtifactError(f"The {flavor} artifact is not a state dict of named tensors.")
    return state
