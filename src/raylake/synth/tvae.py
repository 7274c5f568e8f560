"""TVAE: the CTGAN paper's variational autoencoder for tables (Xu et al., NeurIPS 2019).

An encoder maps an encoded row (see :mod:`raylake.synth.transformer`) to a Gaussian
posterior over a latent vector; a decoder maps the latent vector back. The likelihood of
a row is Gaussian on each continuous offset (tanh of the decoder's output, a learned
standard deviation per column, clamped to [0.01, 1]) and categorical on each one-hot
span; the loss is ``loss_factor`` times the negative log-likelihood plus the KL
divergence, per row. Sampling decodes standard normal latents, adds each offset's
learned noise and takes the largest entry of each one-hot span.

The loss is computed for all spans at once: the softmax spans are grouped by width, so an
epoch costs a few tensor operations per batch whatever the number of columns.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from raylake.errors import SynthError
from raylake.synth.base import EpochHook, Trainable, Wrap, chunks, derived_seed
from raylake.synth.transformer import Span


class SpanLayout:
    """The networks' column order: the tanh columns first, then the softmax spans grouped
    by width, so that each group is one contiguous [rows, spans, width] view (no gathers
    in the loss or the activations). ``order`` takes an encoded array to this layout,
    ``inverse`` back; ``groups`` are (width, start, spans) in the layout."""

    def __init__(self, spans: Sequence[Span]) -> None:
        pos = 0
        tanh: list[int] = []
        soft: list[tuple[Span, int]] = []
        for s in spans:
            if s.kind == "tanh":
                tanh.extend(range(pos, pos + s.dim))
            else:
                soft.append((s, pos))
            pos += s.dim
        self.dim = pos
        self.n_tanh = len(tanh)
        order = list(tanh)
        self.groups: list[tuple[int, int, int]] = []
        for w in sorted({s.dim for s, _ in soft}):
            members = [p for s, p in soft if s.dim == w]
            self.groups.append((w, len(order), len(members)))
            order.extend(p + i for p in members for i in range(w))
        self.order = torch.tensor(order, dtype=torch.long)
        self.inverse = torch.empty(pos, dtype=torch.long)
        self.inverse[self.order] = torch.arange(pos)

    def views(self, x: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
        """(width, [rows, spans, width] view of ``x``) per group of a layout-ordered
        ``x``."""
        for w, start, k in self.groups:
            yield w, x[:, start:start + w * k].reshape(len(x), k, w)

    def targets(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per group, the hot index of each span of each row of a layout-ordered ``x``:
        [rows, spans]."""
        return [v.argmax(-1) for _, v in self.views(x)]


class _Encoder(nn.Module):
    def __init__(self, data_dim: int, hidden: Sequence[int], embedding_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        dim = data_dim
        for h in hidden:
            layers += [nn.Linear(dim, h), nn.ReLU()]
            dim = h
        self.seq = nn.Sequential(*layers)
        self.mu = nn.Linear(dim, embedding_dim)
        self.logvar = nn.Linear(dim, embedding_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.seq(x)
        return self.mu(h), self.logvar(h)


class _Decoder(nn.Module):
    def __init__(self, embedding_dim: int, hidden: Sequence[int], data_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        dim = embedding_dim
        for h in hidden:
            layers += [nn.Linear(dim, h), nn.ReLU()]
            dim = h
        layers.append(nn.Linear(dim, data_dim))
        self.seq = nn.Sequential(*layers)
        self.sigma = nn.Parameter(torch.ones(data_dim) * 0.1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.seq(z)


class _VAE(nn.Module):
    """Encoder and decoder as one module (one DDP wrapper); ``forward`` returns the
    reconstruction, the noise scales and the posterior's mean and log-variance."""

    def __init__(self, data_dim: int, hidden: Sequence[int], embedding_dim: int) -> None:
        super().__init__()
        self.encoder = _Encoder(data_dim, hidden, embedding_dim)
        self.decoder = _Decoder(embedding_dim, list(reversed(hidden)), data_dim)

    def forward(self, x: torch.Tensor, eps: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x)
        z = eps * torch.exp(0.5 * logvar) + mu
        return self.decoder(z), self.decoder.sigma, mu, logvar


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Torch's global generator seeded with ``seed`` inside, the caller's state restored
    after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def place(module: nn.Module, wrap: Wrap | None, device: str) -> nn.Module:
    """``wrap(module)`` (it places the module, e.g. Ray Train's ``prepare_model``), else the
    module on ``device``."""
    return wrap(module) if wrap is not None else module.to(device)


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DDP (or similar) wrapper."""
    return getattr(module, "module", module)


def epochs_done(start: Mapping[str, Any] | None, epochs: int) -> int:
    """The epoch a start state was taken after; SynthError when it is past ``epochs``."""
    done = int(start["epoch"]) if start else 0
    if done > epochs:
        raise SynthError(f"The start state is after epoch {done}, past epochs={epochs}: "
                         "resume with epochs at least that, or start afresh.")
    return done


class TVAE(Trainable):
    """The CTGAN paper's TVAE; SDV's defaults: embedding 128, hidden (128, 128), batch 500,
    learning rate 1e-3, L2 1e-5, loss factor 2, 300 epochs."""

    kind = "tvae"
    default_lr = 1e-3
    default_hidden = (128, 128)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.decoder: _Decoder | None = None

    def _network(self) -> _VAE:
        tr = self._fitted()
        p = self.params
        assert p.hidden is not None
        return _VAE(tr.output_dim, p.hidden, p.embedding_dim)

    def train_loop(self, data: np.ndarray, *, seed: int = 0, wrap: Wrap | None = None,
                   on_epoch: EpochHook | None = None,
                   start: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """See :meth:`Trainable.train_loop`; losses are ``recon`` and ``kld`` (epoch
        means per row)."""
        tr = self._fitted()
        p = self.params
        data = self._encoded(data)
        done = epochs_done(start, p.epochs)
        with seeded(derived_seed(seed, 0)):
            net = self._network()
            if start:
                net.load_state_dict(start["model"])
            model = place(net, wrap, p.device)
            device = next(model.parameters()).device
            layout = SpanLayout(tr.spans)
            x_all = torch.from_numpy(data)[:, layout.order].to(device)  # the layout order
            targets_all = layout.targets(x_all)
            opt = torch.optim.Adam(model.parameters(), lr=float(p.learning_rate or 1e-3),
                                   weight_decay=p.l2scale)
            if start:
                opt.load_state_dict(start["optimizer"])
            n = len(x_all)
            batch = min(p.batch_size, n)
            state: dict[str, Any] = self._train_state(net, opt, done)
            for epoch in range(done + 1, p.epochs + 1):
                # Each epoch draws from its own seed: a resumed run draws what the
                # uninterrupted one would have, and DDP ranks (distinct seeds) differ.
                torch.manual_seed(derived_seed(seed, 1, epoch))
                model.train()
                perm = torch.randperm(n, device=device)
                x_ep, t_ep = x_all[perm], [t[perm] for t in targets_all]
                tot_r = tot_k = 0.0
                for s in range(0, n, batch):
                    x = x_ep[s:s + batch]
                    eps = torch.randn(len(x), p.embedding_dim, device=device)
                    recon, sigma, mu, logvar = model(x, eps)
                    rec = _reconstruction(x, recon, sigma, layout,
                                          [t[s:s + batch] for t in t_ep])
                    kld = -0.5 * torch.sum(1 + logvar - mu ** 2 - logvar.exp())
                    loss = (rec * p.loss_factor + kld) / len(x)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    net.decoder.sigma.data.clamp_(0.01, 1.0)
                    tot_r += float(rec.detach())
                    tot_k += float(kld.detach())
                state = self._train_state(net, opt, epoch)
                if on_epoch is not None:
                    on_epoch(epoch, {"recon": tot_r / n, "kld": tot_k / n}, state)
        return state

    @staticmethod
    def _train_state(net: nn.Module, opt: torch.optim.Optimizer, epoch: int) -> dict[str, Any]:
        return {"model": unwrap(net).state_dict(), "optimizer": opt.state_dict(),
                "epoch": epoch}

    def adopt(self, state: Mapping[str, Any]) -> None:
        """Keep the trained decoder (the encoder is only needed to train)."""
        net = self._network()
        net.load_state_dict(state["model"])
        self.decoder = net.decoder.cpu().eval()

    def _sample_raw(self, n: int, seed: int, conds: list[tuple[int, int]]) -> np.ndarray:
        tr = self._fitted()
        if self.decoder is None:
            raise SynthError("This TVAE has no trained decoder: fit it first.")
        gen = torch.Generator().manual_seed(derived_seed(seed, 2))
        layout = SpanLayout(tr.spans)
        k = layout.n_tanh
        sigma = self.decoder.sigma.detach()[:k]
        out = []
        with torch.no_grad():
            for m in chunks(n):
                z = torch.randn(m, self.params.embedding_dim, generator=gen)
                fake = self.decoder(z)
                fake[:, :k] = torch.tanh(fake[:, :k]) + torch.randn(m, k, generator=gen) * sigma
                out.append(tr.decode_raw(fake[:, layout.inverse].numpy()))
        return np.concatenate(out)

    def _tensors(self) -> dict[str, torch.Tensor]:
        if self.decoder is None:
            raise SynthError("This TVAE is not fitted: call fit(frame) first.")
        return {f"decoder.{k}": v.detach().clone() for k, v in self.decoder.state_dict().items()}

    def _load(self, tensors: dict[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
        net = self._network()
        net.decoder.load_state_dict({k.removeprefix("decoder."): v for k, v in tensors.items()
                                     if k.startswith("decoder.")})
        self.decoder = net.decoder.eval()


def _reconstruction(x: torch.Tensor, recon: torch.Tensor, sigma: torch.Tensor,
                    layout: SpanLayout, targets: list[torch.Tensor]) -> torch.Tensor:
    """The negative log-likelihood of layout-ordered ``x`` under the decoder's output,
    summed over the batch: Gaussian on tanh columns, cross-entropy on each softmax span."""
    k = layout.n_tanh
    s = sigma[:k]
    diff = x[:, :k] - torch.tanh(recon[:, :k])
    loss = (diff ** 2 / 2 / s ** 2).sum() + torch.log(s).sum() * len(x)
    for (w, logits), tgt in zip(layout.views(recon), targets):
        loss = loss + F.cross_entropy(logits.reshape(-1, w), tgt.reshape(-1), reduction="sum")
    return loss
