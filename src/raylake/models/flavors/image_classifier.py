"""The ``image_classifier`` flavor: a :class:`~raylake.models.flavors.image_net.SmallResNet`
with what it needs to read an image (classes, channels, size, normalisation).

Stored as the network's state dict (``torch.save``, read back with
``torch.load(weights_only=True)``: tensors only, no code) and, in ``flavor_info``, the
architecture and the image contract. Scoring reads the ``image`` column (encoded PNG or
JPEG bytes, as the lake's image tables hold them), decodes and normalises it exactly as
training did, and returns the index of the predicted class in ``classes``.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from raylake.errors import ArtifactError, ImageError, ModelError
from raylake.models.flavors.base import Flavor, SavedModel
from raylake.models.flavors.torch_flavor import tensors_from_bytes

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from raylake.models.spec import FeatureSpec

NAME = "image_classifier"
IMAGE_COLUMN = "image"


@dataclass
class ImageModel:
    """A trained network and its image contract (JSON values only besides ``net``)."""

    net: Any  # SmallResNet
    classes: list[str]
    height: int
    width: int
    mean: list[float]
    std: list[float]
    channels: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def info(self) -> dict[str, Any]:
        """The image contract as JSON values (the registry's ``flavor_info``)."""
        return {"classes": list(self.classes), "height": self.height, "width": self.width,
                "mean": list(self.mean), "std": list(self.std), "channels": self.channels}

    def scores(self, images: list[bytes], batch_size: int = 512) -> np.ndarray:
        """Class probabilities (n, classes) of encoded images; ImageError for one that does
        not decode to the model's channels and size."""
        import numpy as np
        import torch

        from raylake.lake.image_codec import decode_batch, normalize

        out = np.empty((len(images), len(self.classes)), np.float32)
        self.net.eval()
        with torch.inference_mode():
            for s in range(0, len(images), batch_size):
                px = decode_batch(images[s:s + batch_size], self.channels, self.height, self.width)
                x = torch.from_numpy(normalize(px, self.mean, self.std))
                out[s:s + len(px)] = torch.softmax(self.net(x).float(), 1).numpy()
        return out


class ImageClassifierFlavor(Flavor):
    name = NAME
    extension = "pt"

    def save(self, model: Any) -> SavedModel:
        """The network's state dict as ``torch.save`` bytes; architecture and image contract
        in ``info``. ModelError unless ``model`` is an :class:`ImageModel`."""
        import torch

        if not isinstance(model, ImageModel):
            raise ModelError(f"An image_classifier model must be an ImageModel (network plus "
                             f"classes, size, normalisation), got {type(model).__name__}.")
        buf = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in model.net.state_dict().items()}, buf)
        return SavedModel(buf.getvalue(), self.extension,
                          {**model.info(), "architecture": "SmallResNet",
                           "kwargs": dict(model.net.kwargs), "torch": torch.__version__})

    def load(self, data: bytes, info: dict[str, Any]) -> ImageModel:
        """The network rebuilt from ``info`` with the weights in ``data`` (read with
        ``weights_only=True``: no code from the artifact runs), on CPU in eval mode."""

        from raylake.models.flavors.image_net import SmallResNet

        state = tensors_from_bytes(data, NAME)
        try:
            net = SmallResNet(**dict(info.get("kwargs") or {}))
            net.load_state_dict(state, strict=True)
            return ImageModel(net.eval(), [str(c) for c in info["classes"]], int(info["height"]),
                              int(info["width"]), [float(m) for m in info["mean"]],
                              [float(s) for s in info["std"]], int(info.get("channels", 1)))
        except (KeyError, TypeError, RuntimeError) as exc:
            raise ArtifactError(f"The image_classifier artifact does not fit its flavor_info "
                                f"({info.get('kwargs')}): {exc}") from exc

    def predict(self, model: Any, spec: FeatureSpec, table: pa.Table) -> np.ndarray:
        """The predicted class index (into ``classes``) of every row's ``image`` bytes."""
        return self.predictor(model, spec)(table)

    def predictor(self, model: Any, spec: FeatureSpec,
                  threads: int = 1) -> Callable[[pa.Table], np.ndarray]:
        """``table -> class indices`` with ``threads`` torch threads set once."""
        import torch

        if threads:
            torch.set_num_threads(max(1, int(threads)))

        def score(table: pa.Table) -> np.ndarray:
            if IMAGE_COLUMN not in table.column_names:
                raise ModelError(f"An image_classifier scores the {IMAGE_COLUMN!r} column "
                                 f"(encoded PNG/JPEG bytes); the rows have "
                                 f"{table.column_names}. Score an image table "
                                 "(`raylake ingest`).")
            images = table.column(IMAGE_COLUMN).to_pylist()
            if any(v is None for v in images):
                raise ImageError("a row has no image bytes (null); quarantine it before scoring")
            return model.scores(images).argmax(1).astype("float64")

        return score
