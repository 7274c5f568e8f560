"""The ``torch_int8`` flavor: a network of :mod:`raylake.models.nets` whose ``nn.Linear``
layers are int8 with dynamic activation quantization (weights int8 per output channel,
activations quantized per batch at run time, int32 accumulation), scored on CPU.

Stored without pickle, as plain tensors: each quantized layer's weight as an ``int8``
tensor with its per-channel scales (float64) and zero points (int64), its float bias, and
every other parameter (embeddings) in float, written with ``torch.save`` and read with
``torch.load(weights_only=True)`` (:func:`~raylake.models.flavors.torch_flavor.tensors_from_bytes`).
No quantized tensor type is stored, so the artifact does not depend on torch's quantized
dtypes (deprecated in torch 2.13) and another int8 kernel can read the same files.

Loading rebuilds the float architecture by name (the allowlist), fills it, converts its
linear layers with torch's dynamic quantization and then sets each layer's packed weight
to exactly the stored int8 values: the loaded model computes what was registered.

Why ``torch.ao.quantization.quantize_dynamic`` (deprecated upstream; torch 2.13 warns
"torch.ao.quantization is deprecated and will be removed in 2.10" and "quantized tensor
creation functions ... are deprecated"): it is the only int8 dynamic path in torch 2.13
that runs on the CPU's int8 kernels (fbgemm/x86 or qnnpack). Its announced successor,
torchao's ``quantize_(model, Int8DynamicActivationInt8WeightConfig())`` (torchao 0.18, not
a raylake dependency), measured 13 times slower than the float network on this CPU in
eager mode (107,000 against 1,370,000 rows/s for the ranker MLP at 500 rows, one thread;
weight-only int8: 690,000). The two warnings are silenced only around those calls, here.
The capability is checked at save and at load: :func:`int8_engine` names the quantized
engine (``torch.backends.quantized.supported_engines``), or ModelError says there is none.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from raylake.errors import ArtifactError, ModelError
from raylake.models.flavors.base import Flavor, SavedModel

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from raylake.models.spec import FeatureSpec

# Quantized engines with int8 dynamic linear kernels on CPU, preferred first.
ENGINES = ("x86", "fbgemm", "qnnpack", "onednn")
SCHEME = "per_channel"  # a scale per output channel, zero points 0 (symmetric)


def int8_engine() -> str:
    """The quantized engine torch uses here (the current one if it has int8 kernels, else
    the first supported of :data:`ENGINES`, which it switches to); ModelError when this
    torch build has none."""
    import torch

    supported = list(torch.backends.quantized.supported_engines)
    current = torch.backends.quantized.engine
    if current in ENGINES and current in supported:
        return str(current)
    for name in ENGINES:
        if name in supported:
            torch.backends.quantized.engine = name
            return name
    raise ModelError(
        f"This torch build ({torch.__version__}) has no quantized engine with int8 kernels "
        f"(supported: {supported}; int8 needs one of {', '.join(ENGINES)}), so an int8 model "
        "cannot run here. Score the float version of the model instead (flavor torch).")


@contextmanager
def _deprecated_quantization() -> Iterator[None]:
    """Silences torch 2.13's deprecation warnings of ``torch.ao.quantization`` and the
    quantized dtypes (see the module's docstring) around the calls here only."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated",
                                category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions",
                                category=UserWarning)
        yield


def quantize(model: Any) -> Any:
    """A copy of the float network ``model`` (an allowlisted ``raylake.models.nets``
    network) with its ``nn.Linear`` layers int8 (dynamic activations, per-channel
    weights), in eval mode on CPU."""
    import copy

    import torch

    from raylake.models import nets

    nets.architecture_of(model)  # only allowlisted networks: they can be rebuilt at load
    int8_engine()
    net = copy.deepcopy(model).cpu().eval()
    with _deprecated_quantization():
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        return quantize_dynamic(net, {torch.nn.Linear: per_channel_dynamic_qconfig},
                                dtype=torch.qint8)


def _quantized_layers(model: Any) -> dict[str, Any]:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return {name: m for name, m in model.named_modules() if isinstance(m, DynamicLinear)}


class TorchInt8Flavor(Flavor):
    name = "torch_int8"
    extension = "pt"

    def save(self, model: Any) -> SavedModel:
        """``model`` (from :func:`quantize`) as plain tensors (see the module docstring),
        its float architecture's name and arguments and the quantized layers in ``info``;
        ModelError for a network that is not an int8 allowlisted one."""
        import torch

        from raylake.models import nets

        if not isinstance(model, torch.nn.Module):
            raise ModelError(f"A torch_int8 model must be a torch.nn.Module, got "
                             f"{type(model).__name__}.")
        arch, kwargs = nets.architecture_of(model)
        layers = _quantized_layers(model)
        if not layers:
            raise ModelError(f"The {arch} network has no int8 layer: quantize it first with "
                             "raylake.models.flavors.torch_int8.quantize(model).")
        state: dict[str, torch.Tensor] = {}
        with _deprecated_quantization():
            for name, layer in layers.items():
                w = layer.weight()
                if w.qscheme() not in (torch.per_channel_affine, torch.per_channel_symmetric):
                    raise ModelError(f"Layer {name} of the int8 {arch} is quantized with "
                                     f"{w.qscheme()}; quantize() uses per-channel weights, "
                                     "the only scheme this flavor stores.")
                state[f"{name}.weight_int8"] = w.int_repr().clone()
                state[f"{name}.weight_scale"] = w.q_per_channel_scales().clone()
                state[f"{name}.weight_zero_point"] = w.q_per_channel_zero_points().clone()
                bias = layer.bias()
                if bias is not None:
                    state[f"{name}.bias"] = bias.detach().clone()
        prefixes = tuple(f"{n}." for n in layers)
        for key, value in model.state_dict().items():
            if not key.startswith(prefixes) and isinstance(value, torch.Tensor):
                state[key] = value.detach().cpu()
        buf = io.BytesIO()
        torch.save(state, buf)
        info = {"architecture": arch, "kwargs": kwargs, "layers": sorted(layers),
                "weights": "int8", "activations": "int8 dynamic (per batch)", "scheme": SCHEME,
                "torch": torch.__version__}
        return SavedModel(buf.getvalue(), self.extension, info)

    def load(self, data: bytes, info: dict[str, Any]) -> Any:
        """The float architecture rebuilt by name, its linear layers re-quantized and set to
        the stored int8 weights (exactly), in eval mode on CPU; ``weights_only=True``
        runs no code from the artifact. ModelError when torch has no int8 engine here,
        ArtifactError when the bytes are refused or do not fit the architecture."""
        import torch

        from raylake.models import nets
        from raylake.models.flavors.torch_flavor import tensors_from_bytes

        int8_engine()
        state = tensors_from_bytes(data, self.name)
        arch = str(info.get("architecture"))
        net = nets.build(arch, dict(info.get("kwargs") or {}))
        layers = [str(n) for n in info.get("layers") or []]
        try:
            qparams = {n: (state.pop(f"{n}.weight_int8"), state.pop(f"{n}.weight_scale"),
                           state.pop(f"{n}.weight_zero_point")) for n in layers}
            for name, (q, scale, zero) in qparams.items():
                state[f"{name}.weight"] = (q.double() - zero[:, None]) * scale[:, None]
                state[f"{name}.weight"] = state[f"{name}.weight"].float()
            net.load_state_dict(state, strict=True)
            qnet = quantize(net)
            found = _quantized_layers(qnet)
            if sorted(found) != sorted(layers):
                raise ArtifactError(f"The int8 layers {sorted(found)} of {arch} are not the "
                                    f"recorded ones {layers}.")
            with _deprecated_quantization():
                for name, (q, scale, zero) in qparams.items():
                    # The stored scales and zero points, not re-observed ones: the
                    # dequantized weights quantize back to exactly the stored int8 values.
                    qw = torch.quantize_per_channel(state[f"{name}.weight"], scale, zero, 0,
                                                    torch.qint8)
                    if not torch.equal(qw.int_repr(), q):
                        raise ArtifactError(f"Layer {name}'s int8 weights do not round-trip.")
                    found[name].set_weight_bias(qw, state.get(f"{name}.bias"))
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise ArtifactError(
                f"The torch_int8 artifact does not fit {arch}({info.get('kwargs')}): "
                f"{exc!r}") from exc
        return qnet.eval()

    def predict(self, model: Any, spec: FeatureSpec, table: pa.Table,
                batch_size: int = 65536) -> np.ndarray:
        """Probabilities of the positive class, standardised as in training, on CPU."""
        import numpy as np
        import torch

        num, cat = spec.standardized(table)
        out = np.empty(table.num_rows, np.float32)
        with torch.inference_mode():
            for s in range(0, table.num_rows, batch_size):
                logits = model(torch.from_numpy(num[s:s + batch_size]),
                               torch.from_numpy(cat[s:s + batch_size]))
                out[s:s + batch_size] = torch.sigmoid(logits).float().numpy()
        return out
