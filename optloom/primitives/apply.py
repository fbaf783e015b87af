"""Parameter-side primitives: they read or write the parameter and pass the update through.
Effects happen in pipeline order, so ``decay(wd) |> apply(lr)`` is ``W ← W(1 − lr·λ) − lr·u``
(the Muon family's order, e.g. KellerJordan/Muon ``muon.py``) and ``apply(lr) |> decay(wd)``
decays after (Conda's ``conda_torch/conda.py``)."""
from __future__ import annotations

from .context import Ctx
from .registry import NonNegative, Tensor, primitive


@primitive(family="apply", writes_param=True, examples=("apply(0.01)",))
def apply(ctx: Ctx, x: Tensor, lr: NonNegative = 1e-3) -> Tensor:
    """Apply the update: ``W ← W − lr · u`` (the update is viewed back to the parameter's shape)."""
    ctx.param = ctx.param - ctx.bcast(lr, ctx.param) * x.reshape(ctx.param.shape)
    return x


@apply.reference
def _(ctx, x, lr):
    ctx.param = ctx.param - lr * x.reshape(ctx.param.shape)
    return x


@primitive(family="apply", writes_param=True, lr_from_apply=True, examples=("decay(0.01, lr = 0.1)",))
def decay(ctx: Ctx, x: Tensor, weight_decay: NonNegative = 0.0, lr: NonNegative | None = None) -> Tensor:
    """Decoupled weight decay ``W ← W(1 − lr·λ)`` (Loshchilov & Hutter, arXiv 1711.05101); ``lr``
    defaults to the lr of the rule's ``apply``. Passes the update through unchanged."""
    ctx.param = ctx.param * (1 - ctx.bcast(lr, ctx.param) * weight_decay)
    return x


@decay.reference
def _(ctx, x, weight_decay, lr):
    ctx.param = ctx.param * (1 - lr * weight_decay)
    return x


@primitive(family="apply", reads_param=True, examples=("l2(0.01)",))
def l2(ctx: Ctx, x: Tensor, weight_decay: NonNegative = 0.0) -> Tensor:
    """Coupled (L2) weight decay, as torch.optim.SGD: ``u ← u + λ W``."""
    return x + weight_decay * ctx.param.reshape(x.shape)


@l2.reference
def _(ctx, x, weight_decay):
    return x + weight_decay * ctx.param.reshape(x.shape)
