"""SPECTRA's optional pre-clipping of raw gradients (arXiv 2603.14315;
mlolab/llm-spectral-clipping src/optim/base.py; the map is derived in
docs/derivations.md#spectral-clipping).

It must run *before* global gradient-norm clipping, i.e. outside any optimizer step, so it is a
function for the training loop rather than a stage of a spec::

    loss.backward()
    optloom.spectral_preclip_(model.parameters(), c=0.1)
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
"""
from __future__ import annotations

from typing import Iterable

import torch


@torch.no_grad()
def spectral_preclip_(params: Iterable[torch.Tensor], c: float = 0.1, iters: int = 10,
                      dtype: str = "bfloat16") -> None:
    """``G ← H_c(G) = (I + GGᵀ/c²)^{−1/2} G`` in place for the gradient of every parameter with
    two or more dims (viewed as ``(shape[0], −1)``): each singular value ``σ ↦ σ/sqrt(1 + σ²/c²)``.
    Computed as the ``clip_spectral`` primitive (``iters`` coupled Newton–Schulz steps in
    ``dtype``). Vectors and parameters without a gradient are left alone. SPECTRA's default
    threshold is ``c = 0.1``; with a warm-up, pass ``c·η₀/η_t`` to keep ``c·lr`` constant."""
    from .primitives import Ctx, lookup

    prim = lookup("clip_spectral")
    assert prim is not None
    for name, value in (("c", c), ("iters", iters), ("dtype", dtype)):
        prim.args[name].validate(value)  # a clear ValueError for a bad threshold, count or dtype
    for p in params:
        g = p.grad
        if g is None or p.ndim < 2:
            continue
        if g.is_sparse:
            raise ValueError(f"spectral_preclip_: sparse gradients are not supported (shape {tuple(p.shape)})")
        ctx = Ctx(layout="single", param=p.detach(), step=1, states={})
        g.copy_(prim.fn(ctx, g, c=c, iters=iters, dtype=dtype).reshape(g.shape))
