"""CTGAN: the CTGAN paper's conditional GAN for tables (Xu et al., NeurIPS 2019).

- **Conditional vector.** The one-hots of all discrete columns side by side; a training
  step picks, per row, a discrete column uniformly and a category of it with probability
  proportional to the log of its frequency, sets that one entry, and feeds the vector to
  the generator (after the noise) and to the discriminator (after the row).
- **Training-by-sampling.** The real rows of a step are drawn among those having the
  category each conditional vector asks for, so rare categories are learned, and the
  generator is penalised (cross-entropy) when its output lacks the asked-for category.
- **PacGAN.** The discriminator judges ``pac`` rows at once (mode collapse shows in a
  pack), with a WGAN-GP loss (gradient penalty 10 on packs of interpolated rows).
- **Generator.** Residual blocks (linear, batch norm, ReLU, concatenated with the input),
  then tanh on continuous offsets and Gumbel-softmax (tau 0.2) on each one-hot span.

The row draws of training-by-sampling are vectorised: per discrete column the rows are
ordered by category once, so a batch's rows are a gather, not a per-row choice. Sampling
draws the conditional vector from the categories' real frequencies; a condition sets it
(rows then checked, since a generator can ignore its condition).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from raylake.errors import SynthError
from raylake.synth.base import EpochHook, Trainable, Wrap, chunks, derived_seed
from raylake.synth.transformer import DataTransformer
from raylake.synth.tvae import SpanLayout, epochs_done, place, seeded, unwrap

TAU = 0.2  # Gumbel-softmax temperature


class _Residual(nn.Module):
    def __init__(self, i: int, o: int) -> None:
        super().__init__()
        self.fc = nn.Linear(i, o)
        self.bn = nn.BatchNorm1d(o)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.relu(self.bn(self.fc(x))), x], dim=1)


class _Generator(nn.Module):
    def __init__(self, in_dim: int, hidden: Sequence[int], data_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        dim = in_dim
        for h in hidden:
            layers.append(_Residual(dim, h))
            dim += h
        layers.append(nn.Linear(dim, data_dim))
        self.seq = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.seq(z)


class _Discriminator(nn.Module):
    def __init__(self, in_dim: int, hidden: Sequence[int], pac: int) -> None:
        super().__init__()
        self.pac = pac
        self.pac_dim = in_dim * pac
        layers: list[nn.Module] = []
        dim = self.pac_dim
        for h in hidden:
            layers += [nn.Linear(dim, h), nn.LeakyReLU(0.2), nn.Dropout(0.5)]
            dim = h
        layers.append(nn.Linear(dim, 1))
        self.seq = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x.reshape(-1, self.pac_dim))


def gradient_penalty(disc: nn.Module, real: torch.Tensor, fake: torch.Tensor, pac: int,
                     weight: float) -> torch.Tensor:
    """WGAN-GP on packs: one interpolation weight per pack; the penalty on the norm of the
    gradient with respect to each pack's input."""
    n, d = real.shape
    alpha = torch.rand(n // pac, 1, 1, device=real.device).expand(n // pac, pac, d)
    alpha = alpha.reshape(n, d)
    mix = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    out = disc(mix)
    (grad,) = torch.autograd.grad(out.sum(), mix, create_graph=True)
    norm = grad.reshape(-1, pac * d).norm(2, dim=1)
    return ((norm - 1) ** 2).mean() * weight


class CondSampler:
    """Training-by-sampling over an encoded array: conditional vectors and real rows
    matching them, all as tensor gathers."""

    def __init__(self, tr: DataTransformer, data: torch.Tensor, log_frequency: bool) -> None:
        pos, cond = 0, 0
        offsets: list[int] = []
        sizes: list[int] = []
        out_pos: list[int] = []
        for s in tr.spans:
            if s.role == "category":
                offsets.append(cond)
                sizes.append(s.dim)
                out_pos.extend(range(pos, pos + s.dim))
                cond += s.dim
            pos += s.dim
        device = data.device
        self.n_cols = len(sizes)
        self.dim = cond
        self.n = len(data)
        self.out_pos = torch.tensor(out_pos, dtype=torch.long, device=device)
        if not self.n_cols:
            return
        self.col_off = torch.tensor(offsets, dtype=torch.long, device=device)
        self.col_size = torch.tensor(sizes, dtype=torch.long, device=device)
        flat_col = torch.repeat_interleave(torch.arange(self.n_cols, device=device),
                                           self.col_size)
        self.flat_col = flat_col
        # Each row's category per discrete column, as a global category id.
        ids = torch.stack([data[:, self.out_pos[o:o + k]].argmax(1) + o
                           for o, k in zip(offsets, sizes)], 1)  # [n, cols]
        counts = torch.bincount(ids.reshape(-1), minlength=cond).double()
        self.counts = counts
        # Rows ordered by category within each column: category g's rows are
        # order[start[g]:start[g] + counts[g]].
        self.order = torch.cat([torch.argsort(ids[:, j], stable=True)
                                for j in range(self.n_cols)])
        within = torch.cumsum(counts, 0) - counts  # global exclusive cumsum
        col_start = within[self.col_off][flat_col]
        self.start = (within - col_start).long() + flat_col * self.n
        self.train_cum = self._cumulative(torch.log1p(counts) if log_frequency else counts)
        self.real_cum = self._cumulative(counts)

    def to_layout(self, layout: SpanLayout) -> None:
        """Category positions in the networks' column order instead of the encoding's."""
        self.out_pos = layout.inverse[self.out_pos]

    def move(self, device: torch.device) -> None:
        """Every index tensor to ``device``."""
        for name, value in list(vars(self).items()):
            if isinstance(value, torch.Tensor):
                setattr(self, name, value.to(device))

    def _cumulative(self, weight: torch.Tensor) -> torch.Tensor:
        """Per column, the cumulative shares of its categories plus the column's index, so
        one ``searchsorted`` of ``column + uniform`` serves all columns."""
        total = torch.zeros(self.n_cols, dtype=weight.dtype, device=weight.device)
        total.index_add_(0, self.flat_col, weight)
        share = weight / total[self.flat_col]
        incl = torch.cumsum(share, 0)
        before = (incl - share)[self.col_off]  # the running sum where each column starts
        cum = incl - before[self.flat_col] + self.flat_col.to(weight.dtype)
        last = self.col_off + self.col_size - 1
        cum[last] = torch.arange(1, self.n_cols + 1, dtype=weight.dtype, device=weight.device)
        return cum

    def draw(self, n: int, cum: torch.Tensor, gen: torch.Generator | None = None
             ) -> torch.Tensor:
        """``n`` global category ids: a column uniformly, then a category by ``cum``."""
        device = cum.device
        col = torch.randint(0, self.n_cols, (n,), device=device, generator=gen)
        u = torch.rand(n, device=device, generator=gen, dtype=cum.dtype)
        g = torch.searchsorted(cum, col.to(cum.dtype) + u, right=True)
        lo = self.col_off[col]
        return torch.minimum(torch.maximum(g, lo), lo + self.col_size[col] - 1)

    def onehot(self, g: torch.Tensor) -> torch.Tensor:
        """The conditional vectors of category ids ``g``."""
        c = torch.zeros(len(g), self.dim, device=g.device)
        c[torch.arange(len(g), device=g.device), g] = 1.0
        return c

    def rows(self, g: torch.Tensor) -> torch.Tensor:
        """A real row index having category ``g``, per entry."""
        cnt = self.counts[g]
        pick = (torch.rand(len(g), device=g.device, dtype=cnt.dtype) * cnt).long()
        return self.order[self.start[g] + torch.minimum(pick, cnt.long() - 1)]


class CTGAN(Trainable):
    """The CTGAN paper's conditional GAN; SDV's defaults: embedding 128, generator and
    discriminator (256, 256), batch 500 in packs of 10, learning rate 2e-4 (Adam, betas
    0.5 and 0.9, weight decay 1e-6), one discriminator step, 300 epochs."""

    kind = "ctgan"
    default_lr = 2e-4
    default_hidden = (256, 256)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        p = self.params
        if p.batch_size % p.pac:
            raise SynthError(f"batch_size={p.batch_size} must be a multiple of pac={p.pac} "
                             f"(the discriminator judges packs of {p.pac} rows), e.g. "
                             f"batch_size={max(p.pac, p.batch_size // p.pac * p.pac)}.")
        self.generator: _Generator | None = None

    def _cond_dim(self) -> int:
        return sum(s.dim for s in self._fitted().spans if s.role == "category")

    def _networks(self) -> tuple[_Generator, _Discriminator]:
        tr = self._fitted()
        p = self.params
        assert p.hidden is not None
        cond = self._cond_dim()
        gen = _Generator(p.embedding_dim + cond, p.hidden, tr.output_dim)
        dis = _Discriminator(tr.output_dim + cond, p.hidden, p.pac)
        return gen, dis

    def train_loop(self, data: np.ndarray, *, seed: int = 0, wrap: Wrap | None = None,
                   on_epoch: EpochHook | None = None,
                   start: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """See :meth:`Trainable.train_loop`; losses are ``generator`` and
        ``discriminator`` (epoch means), steps per epoch ``rows // batch_size`` (at least
        one), as in the paper's code. The gradient penalty runs through the unwrapped
        discriminator (DDP does not support double backward); its gradients are summed
        with the wrapped loss's in one backward pass, so DDP reduces them together."""
        tr = self._fitted()
        p = self.params
        data = self._encoded(data)
        done = epochs_done(start, p.epochs)
        with seeded(derived_seed(seed, 0)):
            gen_net, dis_net = self._networks()
            if start:
                gen_net.load_state_dict(start["generator"])
                dis_net.load_state_dict(start["discriminator"])
            gen = place(gen_net, wrap, p.device)
            dis = place(dis_net, wrap, p.device)
            device = next(gen.parameters()).device
            layout = SpanLayout(tr.spans)
            encoded = torch.from_numpy(data)
            sampler = CondSampler(tr, encoded, p.log_frequency)
            sampler.to_layout(layout)
            sampler.move(device)
            x_all = encoded[:, layout.order].to(device)  # the networks' column order
            betas = (0.5, 0.9)
            lr = float(p.learning_rate or 2e-4)
            opt_g = torch.optim.Adam(gen.parameters(), lr=lr, betas=betas,
                                     weight_decay=p.weight_decay)
            opt_d = torch.optim.Adam(dis.parameters(), lr=lr, betas=betas,
                                     weight_decay=p.weight_decay)
            if start:
                opt_g.load_state_dict(start["optimizer_g"])
                opt_d.load_state_dict(start["optimizer_d"])
            batch = p.batch_size
            steps = max(len(x_all) // batch, 1)
            state = self._train_state(gen_net, dis_net, opt_g, opt_d, done)
            for epoch in range(done + 1, p.epochs + 1):
                # Each epoch draws from its own seed: a resumed run draws what the
                # uninterrupted one would have, and DDP ranks (distinct seeds) differ.
                torch.manual_seed(derived_seed(seed, 1, epoch))
                gen.train()
                dis.train()
                tot_g = tot_d = 0.0
                for _ in range(steps):
                    for _ in range(p.discriminator_steps):
                        z = torch.randn(batch, p.embedding_dim, device=device)
                        if sampler.n_cols:
                            g = sampler.draw(batch, sampler.train_cum)
                            c1 = sampler.onehot(g)
                            perm = torch.randperm(batch, device=device)
                            real = x_all[sampler.rows(g[perm])]
                            c2 = c1[perm]
                            z = torch.cat([z, c1], 1)
                        else:
                            real = x_all[torch.randint(0, len(x_all), (batch,), device=device)]
                            c1 = c2 = x_all.new_zeros(batch, 0)
                        with torch.no_grad():  # the generator is not trained here
                            fake = _activate(gen(z), layout)
                        fake_c = torch.cat([fake, c1], 1)
                        real_c = torch.cat([real, c2], 1)
                        loss_d = dis(fake_c).mean() - dis(real_c).mean()
                        pen = gradient_penalty(unwrap(dis), real_c, fake_c, p.pac,
                                               p.gradient_penalty)
                        opt_d.zero_grad(set_to_none=True)
                        (loss_d + pen).backward()
                        opt_d.step()
                    z = torch.randn(batch, p.embedding_dim, device=device)
                    if sampler.n_cols:
                        g = sampler.draw(batch, sampler.train_cum)
                        c1 = sampler.onehot(g)
                        z = torch.cat([z, c1], 1)
                    else:
                        c1 = x_all.new_zeros(batch, 0)
                    raw = gen(z)
                    fake = _activate(raw, layout)
                    loss_g = -dis(torch.cat([fake, c1], 1)).mean()
                    if sampler.n_cols:
                        loss_g = loss_g + _cond_loss(raw, g, sampler, layout)
                    opt_g.zero_grad(set_to_none=True)
                    loss_g.backward()
                    opt_g.step()
                    tot_g += float(loss_g.detach())
                    tot_d += float(loss_d.detach())
                state = self._train_state(gen_net, dis_net, opt_g, opt_d, epoch)
                if on_epoch is not None:
                    on_epoch(epoch, {"generator": tot_g / steps, "discriminator": tot_d / steps},
                             state)
        return state

    @staticmethod
    def _train_state(gen: nn.Module, dis: nn.Module, opt_g: torch.optim.Optimizer,
                     opt_d: torch.optim.Optimizer, epoch: int) -> dict[str, Any]:
        return {"generator": unwrap(gen).state_dict(), "discriminator": unwrap(dis).state_dict(),
                "optimizer_g": opt_g.state_dict(), "optimizer_d": opt_d.state_dict(),
                "epoch": epoch}

    def adopt(self, state: Mapping[str, Any]) -> None:
        """Keep the trained generator (the discriminator is only needed to train)."""
        gen, _ = self._networks()
        gen.load_state_dict(state["generator"])
        self.generator = gen.cpu().eval()

    def _sample_raw(self, n: int, seed: int, conds: list[tuple[int, int]]) -> np.ndarray:
        tr = self._fitted()
        if self.generator is None:
            raise SynthError("This CTGAN has no trained generator: fit it first.")
        gen = torch.Generator().manual_seed(derived_seed(seed, 2))
        layout = SpanLayout(tr.spans)
        cat_cols = [j for j, c in enumerate(tr.columns) if c.kind == "discrete"]
        offsets = np.concatenate([[0], np.cumsum([len(tr.columns[j].categories)
                                                  for j in cat_cols])])
        fixed = None
        if conds and cat_cols:
            j, code = conds[0]
            fixed = int(offsets[cat_cols.index(j)] + code)
        real_cum = self._real_cum(tr)
        out = []
        with torch.no_grad():
            for m in chunks(n):
                z = torch.randn(m, self.params.embedding_dim, generator=gen)
                if cat_cols:
                    if fixed is not None:
                        g = torch.full((m,), fixed, dtype=torch.long)
                    else:
                        g = _draw(real_cum, m, gen, offsets)
                    c = torch.zeros(m, int(offsets[-1]))
                    c[torch.arange(m), g] = 1.0
                    z = torch.cat([z, c], 1)
                raw = self.generator(z)
                fake = _activate(raw, layout, gen=gen)
                out.append(tr.decode_raw(fake[:, layout.inverse].numpy()))
        return np.concatenate(out)

    @staticmethod
    def _real_cum(tr: DataTransformer) -> torch.Tensor:
        cums = []
        for k, c in enumerate(col for col in tr.columns if col.kind == "discrete"):
            counts = np.asarray(c.counts, dtype=np.float64)
            cum = np.cumsum(counts) / counts.sum() + k
            cum[-1] = k + 1
            cums.append(cum)
        return torch.from_numpy(np.concatenate(cums)) if cums else torch.zeros(0)

    def _tensors(self) -> dict[str, torch.Tensor]:
        if self.generator is None:
            raise SynthError("This CTGAN is not fitted: call fit(frame) first.")
        return {f"generator.{k}": v.detach().clone()
                for k, v in self.generator.state_dict().items()}

    def _load(self, tensors: dict[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
        gen, _ = self._networks()
        gen.load_state_dict({k.removeprefix("generator."): v for k, v in tensors.items()
                             if k.startswith("generator.")})
        self.generator = gen.eval()


def _draw(cum: torch.Tensor, n: int, gen: torch.Generator, offsets: np.ndarray
          ) -> torch.Tensor:
    """``n`` global category ids: a discrete column uniformly, a category by ``cum``."""
    k = len(offsets) - 1
    col = torch.randint(0, k, (n,), generator=gen)
    u = torch.rand(n, generator=gen, dtype=cum.dtype)
    g = torch.searchsorted(cum, col.to(cum.dtype) + u, right=True)
    off = torch.from_numpy(offsets)
    return torch.minimum(torch.maximum(g, off[col]), off[col + 1] - 1)


def _activate(raw: torch.Tensor, layout: SpanLayout,
              gen: torch.Generator | None = None) -> torch.Tensor:
    """tanh on continuous offsets, Gumbel-softmax (tau 0.2) on each softmax span, all
    spans of a width at once (``raw`` in the layout order)."""
    parts = [torch.tanh(raw[:, :layout.n_tanh])]
    for _, logits in layout.views(raw):
        u = torch.rand(logits.shape, device=raw.device, generator=gen).clamp_(1e-10, 1 - 1e-7)
        gumbel = -torch.log(-torch.log(u))
        parts.append(torch.softmax((logits + gumbel) / TAU, -1).reshape(len(raw), -1))
    return torch.cat(parts, 1)


def _cond_loss(raw: torch.Tensor, g: torch.Tensor, sampler: CondSampler,
               layout: SpanLayout) -> torch.Tensor:
    """Cross-entropy of the generator's asked-for category (its raw logits, softmax over
    that category's column), averaged over the batch."""
    logp = torch.cat([torch.log_softmax(v, -1).reshape(len(raw), -1)
                      for _, v in layout.views(raw)], 1)
    pos = sampler.out_pos[g] - layout.n_tanh
    return -logp[torch.arange(len(raw), device=raw.device), pos].mean()
