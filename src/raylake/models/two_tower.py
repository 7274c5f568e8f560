"""The two-tower retrieval network: a user tower and an item tower that map ids to unit
vectors in one space, trained with in-batch negatives.

Ids reach the towers as codes of a :class:`~raylake.models.spec.FeatureSpec`'s
categorical columns ``[user, item]`` (``1..n`` for ids seen in training, ``0`` for an
unknown id), so the ``torch`` flavor stores, loads and scores it like any network of
:mod:`raylake.models.nets`: a pair's score is the sigmoid of its logit. Retrieval uses
the towers apart: every item's vector goes into an approximate nearest-neighbour index,
and a request's user vector queries it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from raylake.errors import ModelError


class TwoTower(nn.Module):
    """Users and items as unit vectors; the logit of a pair is cosine / temperature."""

    def __init__(self, num_users: int, num_items: int, dim: int = 32,
                 hidden: Sequence[int] = (64,), temperature: float = 0.1) -> None:
        super().__init__()
        for what, v in (("num_users", num_users), ("num_items", num_items), ("dim", dim),
                        *((f"hidden[{i}]", h) for i, h in enumerate(hidden))):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ModelError(f"TwoTower {what}={v!r} must be an integer >= 1.")
        if not 0.0 < float(temperature) <= 1.0:
            raise ModelError(f"TwoTower temperature={temperature!r} must be in (0, 1].")
        self.num_users, self.num_items, self.dim = num_users, num_items, dim
        self.hidden, self.temperature = list(hidden), float(temperature)
        self.user = _tower(num_users + 1, dim, self.hidden)  # code 0: an unknown user
        self.item = _tower(num_items + 1, dim, self.hidden)

    def architecture(self) -> dict[str, Any]:
        """The constructor arguments, as JSON values (stored in the registry)."""
        return {"num_users": self.num_users, "num_items": self.num_items, "dim": self.dim,
                "hidden": list(self.hidden), "temperature": self.temperature}

    def user_vectors(self, codes: torch.Tensor) -> torch.Tensor:
        """Unit vectors [N, dim] of user codes (out of range reads as unknown)."""
        return _embed(self.user, codes, self.num_users)

    def item_vectors(self, codes: torch.Tensor) -> torch.Tensor:
        """Unit vectors [N, dim] of item codes (out of range reads as unknown)."""
        return _embed(self.item, codes, self.num_items)

    def forward(self, numeric: torch.Tensor | None,
                categorical: torch.Tensor | None) -> torch.Tensor:
        """``categorical`` [N, 2] codes (user, item) -> logits [N]; ``numeric`` unused
        (the flavor passes the spec's numeric columns, of which a two-tower has none)."""
        if categorical is None or categorical.dim() != 2 or categorical.shape[1] != 2:
            raise ModelError("TwoTower expects codes of shape [N, 2] (user, item), got "
                             f"{None if categorical is None else tuple(categorical.shape)}.")
        u, i = self.user_vectors(categorical[:, 0]), self.item_vectors(categorical[:, 1])
        return (u * i).sum(-1) / self.temperature


def in_batch_loss(model: TwoTower, users: torch.Tensor, items: torch.Tensor,
                  log_q: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax cross-entropy of each (user, clicked item) pair against the batch's other
    items as negatives. ``log_q``: the log of each item's sampling probability in the
    batch (its share of the clicks); subtracting it (the logQ correction) keeps popular
    items, which are negatives more often than their share of users' interest, from
    being pushed down for being popular."""
    u, i = model.user_vectors(users), model.item_vectors(items)
    logits = u @ i.T / model.temperature
    if log_q is not None:
        logits = logits - log_q[None, :]
    # A repeat of the same item in the batch is a positive, not a negative, for its user.
    same = items[None, :] == items[:, None]
    logits = logits.masked_fill(same & ~torch.eye(len(items), dtype=torch.bool,
                                                  device=items.device), float("-inf"))
    return nn.functional.cross_entropy(logits, torch.arange(len(items), device=items.device))


def _tower(rows: int, dim: int, hidden: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Embedding(rows, dim)]
    width = dim
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, dim))
    return nn.Sequential(*layers)


def _embed(tower: nn.Sequential, codes: torch.Tensor, n: int) -> torch.Tensor:
    codes = codes.long()
    codes = torch.where((codes < 0) | (codes > n), 0, codes)
    return nn.functional.normalize(tower(codes), dim=-1)
