"""Synthetic tabular data: a Gaussian copula, TVAE and CTGAN written here in numpy and
torch, the CTGAN paper's data transformer, and their evaluation (fidelity, utility,
privacy).

``make_synthesizer("tvae", epochs=300).fit(frame)`` then ``.sample(1000, seed=0)``; see
docs/synth.md. Importing this package imports no torch: the model classes load on first
use (``make_synthesizer``, or ``raylake.synth.TVAE`` and the like).
"""

from __future__ import annotations

from typing import Any

from raylake.synth.base import (
    Params,
    Synthesizer,
    Trainable,
    make_synthesizer,
    memorisation_warning,
    register_synthesizer,
    synthesizer_class,
)
from raylake.synth.transformer import DataTransformer, Span, SynthWarning

__all__ = [
    "CTGAN",
    "TVAE",
    "DataTransformer",
    "GaussianCopula",
    "Params",
    "Span",
    "SynthWarning",
    "Synthesizer",
    "Trainable",
    "make_synthesizer",
    "memorisation_warning",
    "register_synthesizer",
    "synthesizer_class",
]

_LAZY = {"GaussianCopula": "copula", "TVAE": "tvae", "CTGAN": "ctgan"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return synthesizer_class(_LAZY[name])
    raise AttributeError(f"module 'raylake.synth' has no attribute {name!r}")
