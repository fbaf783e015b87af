"""``lsq``: synthetic ill-conditioned matrix regression (seconds to run).

Inputs ``x ~ N(0, Σ)`` with the eigenvalues of Σ spread log-uniformly over ``1 .. 1/cond²``
(condition number ``cond`` of the data matrix), targets ``y = x A*`` with a random ``A*``.
The model is a two-layer linear network ``x W1 W2 + b``: the loss landscape is the same
ill-conditioned quadratic seen through a product of matrices, where orthogonalizing methods
(Muon and kin) and diagonal ones (Adam, sign methods) behave very differently.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .registry import Task, register_task


@register_task
class LeastSquares(Task):
    name = "lsq"
    description = "two-layer linear regression on ill-conditioned synthetic data"
    steps = 300
    eval_every = 10
    target = 0.05
    dim, out, hidden, cond, batch, n_val = 64, 32, 64, 100.0, 256, 2048

    def prepare(self) -> None:
        g = torch.Generator().manual_seed(0)  # the problem is fixed; runs differ by seed only
        q, _ = torch.linalg.qr(torch.randn(self.dim, self.dim, generator=g))
        scales = torch.logspace(0, -torch.log10(torch.tensor(self.cond)).item(), self.dim)
        self.mix = (q * scales) @ q.T                       # x = z @ mix, z ~ N(0, I)
        self.a_star = torch.randn(self.dim, self.out, generator=g) / self.dim ** 0.5
        self.a_star = self.a_star / (self.mix @ self.a_star).pow(2).sum(0).mean().sqrt()  # unit target scale
        z = torch.randn(self.n_val, self.dim, generator=g)
        self.val_x, self.val_y = self._xy(z)

    def _xy(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = z @ self.mix
        return x.to(self.device), (x @ self.a_star).to(self.device)

    def model(self) -> nn.Module:
        return nn.Sequential(nn.Linear(self.dim, self.hidden, bias=False), nn.Linear(self.hidden, self.out))

    def loss(self, model: nn.Module, gen: torch.Generator) -> torch.Tensor:
        x, y = self._xy(torch.randn(self.batch, self.dim, generator=gen))
        return F.mse_loss(model(x), y) / F.mse_loss(torch.zeros_like(y), y).detach()

    def val_loss(self, model: nn.Module) -> float:
        return (F.mse_loss(model(self.val_x), self.val_y) / self.val_y.pow(2).mean()).item()

    def info(self) -> dict[str, Any]:
        return {**super().info(), "dim": self.dim, "out": self.out, "hidden": self.hidden, "cond": self.cond,
                "batch": self.batch, "n_val": self.n_val, "loss": "MSE relative to predicting zero"}
