"""``digits``: a small conv net on scikit-learn's bundled 8x8 digits (1797 images, no download).

Split: a fixed permutation (seed 0) puts 1438 images in training and 359 in validation.
Needs the optional extra ``pip install 'optloom[train]'`` (scikit-learn).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .registry import Task, TaskError, register_task


class DigitsNet(nn.Module):
    """Two 3x3 convolutions (``conv1``, ``conv2``), then a linear ``head``."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.head = nn.Linear(2 * width * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.head(x.flatten(1))


@register_task
class Digits(Task):
    name = "digits"
    description = "conv net on scikit-learn's bundled 8x8 digits"
    steps = 300
    eval_every = 20
    target = 0.2
    batch = 64

    def prepare(self) -> None:
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise TaskError("the digits task needs scikit-learn: pip install 'optloom[train]' "
                            "(or pip install scikit-learn)") from None
        data = load_digits()
        x = torch.tensor(data.images, dtype=torch.float32)[:, None] / 16.0
        y = torch.tensor(data.target, dtype=torch.long)
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
        n_val = len(y) // 5
        self.val_x, self.val_y = x[perm[:n_val]].to(self.device), y[perm[:n_val]].to(self.device)
        self.train_x, self.train_y = x[perm[n_val:]].to(self.device), y[perm[n_val:]].to(self.device)

    def model(self) -> nn.Module:
        return DigitsNet()

    def loss(self, model: nn.Module, gen: torch.Generator) -> torch.Tensor:
        idx = torch.randint(0, len(self.train_y), (self.batch,), generator=gen).to(self.device)
        return F.cross_entropy(model(self.train_x[idx]), self.train_y[idx])

    def val_loss(self, model: nn.Module) -> float:
        return F.cross_entropy(model(self.val_x), self.val_y).item()

    def info(self) -> dict[str, Any]:
        return {**super().info(), "train": len(self.train_y), "val": len(self.val_y), "batch": self.batch}
