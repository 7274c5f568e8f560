"""Torch networks the registry can rebuild, chosen by name from an allowlist.

A torch artifact holds only a state dict (tensors). The network it fills is
built here from the architecture name and keyword arguments recorded in the
registry's metadata, so loading a model runs raylake's code, never code from
the artifact.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from raylake.errors import ArtifactError, ModelError
from raylake.models.two_tower import TwoTower


class TabularMLP(nn.Module):
    """Binary classifier over numeric columns and categorical codes.

    Categorical column ``i`` is given as integer codes: ``1..cardinalities[i]``
    for the known values (e.g. positions in a vocabulary, plus one) and ``0``
    for unknown or null. Its embedding therefore has ``cardinalities[i] + 1``
    rows; codes outside ``0..cardinalities[i]`` are read as unknown, so a value
    first seen at serving time cannot index past the table.
    The embeddings are concatenated with the numeric inputs and fed to an MLP
    with one output: the logit of the positive class.
    """

    _max_code: torch.Tensor  # a buffer (register_buffer in __init__); nn.Module types it loosely

    def __init__(
        self,
        num_numeric: int,
        cardinalities: Sequence[int],
        embedding_dim: int = 8,
        hidden: Sequence[int] = (64, 32),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        cards = [_count(c, "cardinalities[]", minimum=1) for c in cardinalities]
        self.num_numeric = _count(num_numeric, "num_numeric", minimum=0)
        self.cardinalities = cards
        self.embedding_dim = _count(embedding_dim, "embedding_dim", minimum=1)
        self.hidden = [_count(h, "hidden[]", minimum=1) for h in hidden]
        if not 0.0 <= float(dropout) < 1.0:
            raise ModelError(f"TabularMLP dropout={dropout!r} must be in [0, 1).")
        self.dropout = float(dropout)
        if self.num_numeric + len(cards) == 0:
            raise ModelError(
                "TabularMLP needs at least one input: give num_numeric > 0 or one cardinality."
            )
        self.embeddings = nn.ModuleList(nn.Embedding(c + 1, self.embedding_dim) for c in cards)
        layers: list[nn.Module] = []
        width = self.num_numeric + self.embedding_dim * len(cards)
        for h in self.hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(self.dropout)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)
        # Not persistent: it follows from the constructor arguments, and keeping
        # it out of the state dict keeps the artifact to learned weights only.
        self.register_buffer("_max_code", torch.tensor(cards, dtype=torch.long), persistent=False)

    def architecture(self) -> dict[str, Any]:
        """The constructor arguments, as JSON values (stored in the registry)."""
        return {
            "num_numeric": self.num_numeric,
            "cardinalities": list(self.cardinalities),
            "embedding_dim": self.embedding_dim,
            "hidden": list(self.hidden),
            "dropout": self.dropout,
        }

    def forward(
        self, numeric: torch.Tensor | None, categorical: torch.Tensor | None
    ) -> torch.Tensor:
        """``numeric`` [N, num_numeric] floats, ``categorical`` [N, len(cardinalities)]
        integer codes -> logits [N]."""
        parts = []
        rows = None
        if self.num_numeric:
            if numeric is None or numeric.dim() != 2 or numeric.shape[1] != self.num_numeric:
                raise ModelError(
                    f"TabularMLP expects numeric inputs of shape [N, {self.num_numeric}], "
                    f"got {None if numeric is None else tuple(numeric.shape)}."
                )
            parts.append(numeric.float())
            rows = numeric.shape[0]
        if self.cardinalities:
            n_cat = len(self.cardinalities)
            if categorical is None or categorical.dim() != 2 or categorical.shape[1] != n_cat:
                raise ModelError(
                    f"TabularMLP expects categorical codes of shape [N, {n_cat}], "
                    f"got {None if categorical is None else tuple(categorical.shape)}."
                )
            if rows is not None and categorical.shape[0] != rows:
                raise ModelError(
                    f"TabularMLP got {rows} numeric rows but {categorical.shape[0]} categorical rows."
                )
            codes = categorical.long()
            codes = torch.where((codes < 0) | (codes > self._max_code), 0, codes)
            parts += [emb(codes[:, i]) for i, emb in enumerate(self.embeddings)]
        return self.mlp(torch.cat(parts, dim=1)).squeeze(-1)


def _count(value: Any, what: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ModelError(f"TabularMLP {what}={value!r} must be an integer >= {minimum}.")
    return value


# The only classes a torch artifact can be loaded into. Add a network here (by
# name) to make it registrable; the name, not a class path, is what is stored.
ARCHITECTURES: dict[str, type[nn.Module]] = {"TabularMLP": TabularMLP, "TwoTower": TwoTower}


def architecture_of(model: nn.Module) -> tuple[str, dict[str, Any]]:
    """The allowlisted name and constructor arguments of ``model``."""
    for name, cls in ARCHITECTURES.items():
        # Exact type: a subclass may change forward(), which loading would drop.
        if type(model) is cls:
            return name, model.architecture()  # type: ignore[operator]
    raise ModelError(
        f"Cannot register a torch model of type {type(model).__name__}: only the networks in "
        f"raylake.models.nets.ARCHITECTURES ({', '.join(ARCHITECTURES)}) can be rebuilt safely "
        "at load time. Use one of them, or add your network to that allowlist."
    )


def build(name: str, kwargs: dict[str, Any]) -> nn.Module:
    """A fresh network of the allowlisted architecture ``name``."""
    cls = ARCHITECTURES.get(name)
    if cls is None:
        raise ArtifactError(
            f"Unknown torch architecture {name!r} in the model metadata; known: "
            f"{', '.join(ARCHITECTURES)}. The model was registered by a raylake that knows "
            "more networks: load it with that version."
        )
    try:
        return cls(**kwargs)
    except (TypeError, ModelError) as exc:
        raise ArtifactError(
            f"Cannot build {name} from the recorded arguments {kwargs!r}: {exc}"
        ) from exc
