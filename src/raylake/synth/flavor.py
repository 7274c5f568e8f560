"""The ``synthesizer`` model flavor: a fitted copula, TVAE or CTGAN in the registry.

Stored as a state dict of tensors (``torch.save``, read back with
``torch.load(weights_only=True)``, which refuses any code) and, in the registry's
``flavor_info``, the synthesizer's kind and its JSON metadata (the fitted transformer,
hyperparameters, column order). Registered when :mod:`raylake.synth.flavor` is imported
(the synth jobs do), as a plug-in flavor from outside ``models/``: synth sits above
models in the layers. A synthesizer generates rows; it scores none, so ``predict`` says
which command to use instead.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from raylake.errors import ArtifactError, ModelError
from raylake.models.flavors import Flavor, SavedModel, register_flavor
from raylake.models.flavors.torch_flavor import tensors_from_bytes

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from raylake.models.spec import FeatureSpec

NAME = "synthesizer"


class SynthesizerFlavor(Flavor):
    name = NAME
    extension = "pt"

    def save(self, model: Any) -> SavedModel:
        """The synthesizer's tensors as ``torch.save`` bytes; its kind and metadata in
        ``info``. ModelError unless ``model`` is a fitted raylake synthesizer."""
        import torch

        from raylake.synth.base import Synthesizer

        if not isinstance(model, Synthesizer):
            raise ModelError(f"A synthesizer model must be a raylake.synth Synthesizer, got "
                             f"{type(model).__name__}.")
        tensors, meta = model.state()
        buf = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in tensors.items()}, buf)
        return SavedModel(buf.getvalue(), self.extension,
                          {"kind": model.kind, "meta": meta, "torch": torch.__version__})

    def load(self, data: bytes, info: dict[str, Any]) -> Any:
        """The synthesizer rebuilt from ``info`` with the tensors in ``data``; the bytes are
        read with ``weights_only=True``, so they can hold no code."""

        from raylake.synth.base import synthesizer_class

        tensors = tensors_from_bytes(data, NAME)
        cls = synthesizer_class(str(info.get("kind")))
        try:
            return cls.from_state(tensors, dict(info.get("meta") or {}))
        except (KeyError, RuntimeError, ValueError) as exc:
            raise ArtifactError(f"The synthesizer artifact does not fit its metadata "
                                f"({info.get('kind')}): {exc}") from exc

    def predict(self, model: Any, spec: FeatureSpec, table: pa.Table) -> np.ndarray:
        """A synthesizer scores no rows: ModelError naming the command that samples."""
        raise ModelError("A synthesizer generates rows and scores none: sample it with "
                         "`raylake synth sample model=NAME:VERSION rows=N`, not batch-predict "
                         "or the model server.")


FLAVOR = register_flavor(SynthesizerFlavor(), replace=True)
