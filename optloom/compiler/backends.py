"""Backends turn a lowered step graph into a callable: ``eager`` runs the GraphModule as is (the
debugging ground truth); ``inductor`` compiles it with ``torch.compile(fullgraph=True)``."""
from __future__ import annotations

from typing import Callable

import torch
import torch.fx as fx

BACKENDS = ("eager", "inductor")


def build(gm: fx.GraphModule, backend: str) -> Callable[..., torch.Tensor]:
    if backend == "eager":
        return gm
    if backend == "inductor":
        # emulate_precision_casts: round low-precision intermediates (bf16 Newton–Schulz) as eager does
        return torch.compile(gm, backend="inductor", fullgraph=True, dynamic=False,
                             options={"emulate_precision_casts": True})
    raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
