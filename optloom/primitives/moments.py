"""Stateful stream primitives: moving averages, momentum forms, Adam, Lion."""
from __future__ import annotations

from typing import Literal

import torch

from .context import Ctx
from .registry import Beta, NonNegative, Positive, State, Tensor, primitive


@primitive(family="moments", state=(State("exp_avg", doc="the moving average s"),),
           examples=("ema(0.9)", "ema(0.5, debias = true)"))
def ema(ctx: Ctx, x: Tensor, beta: Beta = 0.9, debias: bool = False) -> Tensor:
    """Exponential moving average: ``s ← β s + (1−β) x``; returns ``s`` (or ``s/(1−βᵗ)`` with debias)."""
    beta = ctx.bcast(beta, x)  # a per-parameter β (AdEMAMix's scheduled β₃) against the stack
    s = torch.lerp(ctx.state("exp_avg", x), x, 1 - beta)
    ctx.set_state("exp_avg", s)
    return s / (1 - beta ** ctx.step) if debias else s


@ema.reference
def _(ctx, x, beta, debias):
    s = beta * ctx.state("exp_avg", x) + (1 - beta) * x
    ctx.set_state("exp_avg", s)
    return s / (1 - beta ** ctx.step) if debias else s


@primitive(family="moments", state=(State("momentum_buffer", doc="the momentum M (ema) or B (sum)"),),
           examples=("nesterov(0.95)", "nesterov(0.9, form = \"sum\")"))
def nesterov(ctx: Ctx, x: Tensor, beta: Beta = 0.95, form: Literal["ema", "sum"] = "ema") -> Tensor:
    """Muon-family Nesterov blend.

    ``form="ema"`` (KellerJordan/Muon ``muon.py``): ``M ← β M + (1−β) x``, returns ``(1−β) x + β M``.
    ``form="sum"`` (Moonlight, arXiv 2502.16982; MoonshotAI/Moonlight ``examples/toy_train.py``):
    ``B ← β B + x``, returns ``x + β B`` (= the ema form × 1/(1−β)).
    """
    buf = ctx.state("momentum_buffer", x)
    if form == "ema":
        buf = torch.lerp(buf, x, 1 - beta)
        out = torch.lerp(x, buf, beta)
    elif form == "sum":
        buf = buf * beta + x
        out = x + beta * buf
    else:
        raise ValueError(f"nesterov: form must be \"ema\" or \"sum\", got {form!r}")
    ctx.set_state("momentum_buffer", buf)
    return out


@nesterov.reference
def _(ctx, x, beta, form):
    buf = ctx.state("momentum_buffer", x)
    buf = beta * buf + (1 - beta) * x if form == "ema" else beta * buf + x
    ctx.set_state("momentum_buffer", buf)
    return (1 - beta) * x + beta * buf if form == "ema" else x + beta * buf


@primitive(family="moments", state=(State("momentum_buffer"),),
           examples=("ema_momentum(0.95)", "ema_momentum(0.9, nesterov = false)"))
def ema_momentum(ctx: Ctx, x: Tensor, beta: Beta = 0.95, nesterov: bool = True) -> Tensor:
    """EMA momentum as ``torch.optim.Muon``: ``M ← β M + (1−β) x``; returns ``(1−β) x + β M``
    (nesterov) or ``M``."""
    buf = torch.lerp(ctx.state("momentum_buffer", x), x, 1 - beta)
    ctx.set_state("momentum_buffer", buf)
    return torch.lerp(x, buf, beta) if nesterov else buf


@ema_momentum.reference
def _(ctx, x, beta, nesterov):
    buf = beta * ctx.state("momentum_buffer", x) + (1 - beta) * x
    ctx.set_state("momentum_buffer", buf)
    return (1 - beta) * x + beta * buf if nesterov else buf


@primitive(family="moments", state=(State("momentum_buffer"),),
           examples=("momentum(0.9)", "momentum(0.9, dampening = 0.1, nesterov = true)"))
def momentum(ctx: Ctx, x: Tensor, beta: Beta = 0.9, dampening: NonNegative = 0.0,
             nesterov: bool = False) -> Tensor:
    """Heavy-ball momentum exactly as ``torch.optim.SGD``.

    ``B₁ = x``; ``B_t = β B_{t−1} + (1−d) x``; returns ``x + β B_t`` (nesterov) or ``B_t``.
    """
    buf = ctx.state("momentum_buffer", x)
    buf = torch.where(ctx.step == 1, x, buf * beta + (1 - dampening) * x)
    ctx.set_state("momentum_buffer", buf)
    return x + beta * buf if nesterov else buf


@momentum.reference
def _(ctx, x, beta, dampening, nesterov):
    buf = x.clone() if ctx.step == 1 else beta * ctx.state("momentum_buffer", x) + (1 - dampening) * x
    ctx.set_state("momentum_buffer", buf)
    return x + beta * buf if nesterov else buf


@primitive(family="moments", state=(State("exp_avg"), State("exp_avg_sq", linear=False)),
           examples=("adam((0.9, 0.999), 1e-8)",))
def adam(ctx: Ctx, x: Tensor, betas: tuple[Beta, Beta] = (0.9, 0.999), eps: Positive = 1e-8) -> Tensor:
    """Adam direction with bias-corrected moments (Kingma & Ba, arXiv 1412.6980, Algorithm 1; as
    torch.optim.AdamW).

    ``m ← β₁m + (1−β₁)x``; ``v ← β₂v + (1−β₂)x²``; returns ``(m/(1−β₁ᵗ)) / (sqrt(v/(1−β₂ᵗ)) + ε)``.
    """
    b1, b2 = betas
    m = torch.lerp(ctx.state("exp_avg", x), x, 1 - b1)
    v = ctx.state("exp_avg_sq", x) * b2 + (1 - b2) * x * x
    ctx.set_state("exp_avg", m)
    ctx.set_state("exp_avg_sq", v)
    bc1 = 1 - b1 ** ctx.step
    bc2 = 1 - b2 ** ctx.step
    return (m / bc1) / (v.sqrt() / bc2 ** 0.5 + eps)


@adam.reference
def _(ctx, x, betas, eps):
    b1, b2 = betas
    m = b1 * ctx.state("exp_avg", x) + (1 - b1) * x
    v = b2 * ctx.state("exp_avg_sq", x) + (1 - b2) * x ** 2
    ctx.set_state("exp_avg", m)
    ctx.set_state("exp_avg_sq", v)
    return (m / (1 - b1 ** ctx.step)) / ((v / (1 - b2 ** ctx.step)).sqrt() + eps)


@primitive(family="moments", state=(State("exp_avg"),), examples=("lion((0.9, 0.99))",))
def lion(ctx: Ctx, x: Tensor, betas: tuple[Beta, Beta] = (0.9, 0.99)) -> Tensor:
    """Lion direction (Chen et al., arXiv 2302.06675, Algorithm 2): ``u = sign(β₁m + (1−β₁)x)``;
    then ``m ← β₂m + (1−β₂)x``."""
    b1, b2 = betas
    m = ctx.state("exp_avg", x)
    u = torch.sign(torch.lerp(m, x, 1 - b1))
    ctx.set_state("exp_avg", torch.lerp(m, x, 1 - b2))
    return u


@lion.reference
def _(ctx, x, betas):
    b1, b2 = betas
    m = ctx.state("exp_avg", x)
    u = torch.sign(b1 * m + (1 - b1) * x)
    ctx.set_state("exp_avg", b2 * m + (1 - b2) * x)
    return u


@primitive(family="moments", examples=("debias(0.9)",))
def debias(ctx: Ctx, x: Tensor, beta: Beta = 0.9) -> Tensor:
    """Bias correction of an EMA started at zero: ``x / (1 − βᵗ)``."""
    return x / (1 - beta ** ctx.step)


@debias.reference
def _(ctx, x, beta):
    return x / (1 - beta ** ctx.step)
