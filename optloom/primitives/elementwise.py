"""Stateless elementwise primitives. Scalars may be per-parameter."""
from __future__ import annotations

import torch

from .context import Ctx
from .registry import NonNegative, Tensor, primitive


def _unary(name: str, op, doc: str):
    def impl(ctx: Ctx, x: Tensor) -> Tensor:
        return op(x)

    impl.__doc__ = doc
    impl.__name__ = name
    prim = primitive(family="elementwise", name=name, examples=(name,))(impl)
    prim.reference(lambda ctx, x: op(x))
    return prim


sign = _unary("sign", torch.sign, "Elementwise sign: ``sign(x)`` ∈ {−1, 0, 1} (signSGD, Lion, Signum).")
abs_ = _unary("abs", torch.abs, "Elementwise absolute value ``|x|``.")
sqrt = _unary("sqrt", torch.sqrt, "Elementwise square root ``√x``.")
square = _unary("square", torch.square, "Elementwise square ``x²``.")
exp = _unary("exp", torch.exp, "Elementwise exponential ``eˣ``.")
log = _unary("log", torch.log, "Elementwise natural logarithm ``ln x``.")
cosh = _unary("cosh", torch.cosh, "Elementwise hyperbolic cosine (AuON's brake, arXiv 2509.24320).")
relu = _unary("relu", torch.relu, "Elementwise ``max(x, 0)``.")


@primitive(family="elementwise", examples=("scale(0.5)",))
def scale(ctx: Ctx, x: Tensor, s: float = 1.0) -> Tensor:
    """Multiply by a scalar: ``s · x`` (``s`` may be a hyperparameter or a per-parameter scalar)."""
    return x * ctx.bcast(s, x)


@scale.reference
def _(ctx, x, s):
    return x * s


@primitive(family="elementwise", examples=("clamp(-1.0, 1.0)",))
def clamp(ctx: Ctx, x: Tensor, lo: float = -1.0, hi: float = 1.0) -> Tensor:
    """Clip elementwise into ``[lo, hi]`` (bounds may be per-parameter scalars, as in ROOT)."""
    return torch.minimum(torch.maximum(x, _t(ctx.bcast(lo, x), x)), _t(ctx.bcast(hi, x), x))


@clamp.reference
def _(ctx, x, lo, hi):
    return x.clamp(min=float(lo), max=float(hi))


def _bound(name: str, op, clamp_side: str, doc: str):
    def impl(ctx: Ctx, x: Tensor, other: float = 0.0) -> Tensor:
        return op(x, _t(ctx.bcast(other, x), x))

    impl.__doc__ = doc
    impl.__name__ = name
    prim = primitive(family="elementwise", name=name, examples=(f"{name}(0.5)",))(impl)
    prim.reference(lambda ctx, x, other: x.clamp(**{clamp_side: float(other)}))
    return prim


min_ = _bound("min", torch.minimum, "max", "Elementwise minimum ``min(x, other)``.")
max_ = _bound("max", torch.maximum, "min", "Elementwise maximum ``max(x, other)``.")


@primitive(family="elementwise", examples=("soft_threshold(0.1)",))
def soft_threshold(ctx: Ctx, x: Tensor, tau: NonNegative = 0.0) -> Tensor:
    """Soft thresholding ``sign(x)·max(|x| − τ, 0)`` (ROOT's outlier part, arXiv 2511.20626;
    huawei-noah/noah-research ``ROOT/examples/example_train.py``)."""
    return torch.sign(x) * torch.relu(x.abs() - ctx.bcast(tau, x))


@soft_threshold.reference
def _(ctx, x, tau):
    return torch.sign(x) * (x.abs() - tau).clamp(min=0)


def _t(v, like: Tensor) -> Tensor:
    return v if isinstance(v, Tensor) else torch.tensor(v, dtype=like.dtype, device=like.device)


# ---- tensor–tensor choices ------------------------------------------------------------------------

@primitive(family="elementwise", examples=("where(grad, abs(grad))", "where(sign(grad), grad)"))
def where(ctx: Ctx, cond: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``a`` where ``cond ≠ 0``, else ``b``, entry by entry (``torch.where``): the value of a
    branch in an update rule, such as RAdam's rectified step (``where(rho > 5.0, rectified,
    plain)``, arXiv 1908.03265, Alg. 2). ``cond`` is a comparison's 0/1 (or any number: nonzero is
    true), a tensor, a per-parameter scalar or a runtime value; the three broadcast. The branch not
    taken may hold NaN or ±inf (a square root of a negative number): it does not leak into the
    result. Example: ``where(g > 0.0, g, zeros(g))`` is ``relu(g)``."""
    like = next((t for t in (a, b, cond) if isinstance(t, Tensor) and t.ndim > 1), a)
    c = ctx.bcast(cond, like)
    c = c != 0 if isinstance(c, Tensor) else bool(c)
    return torch.where(c, ctx.bcast(a, like), ctx.bcast(b, like))


@where.reference
def _(ctx, cond, a, b):
    return torch.where(torch.as_tensor(cond) != 0, a, b)


def _pairwise(name: str, op, doc: str):
    def impl(ctx: Ctx, x: Tensor, y: Tensor) -> Tensor:
        like = x if x.ndim >= y.ndim else y
        return op(ctx.bcast(x, like), ctx.bcast(y, like))

    impl.__doc__ = doc
    impl.__name__ = name
    prim = primitive(family="elementwise", name=name, examples=(f"{name}(abs(grad))", f"{name}(sign(grad))"))(impl)
    prim.reference(lambda ctx, x, y: op(x, y))
    return prim


maximum = _pairwise("maximum", torch.maximum, """Entrywise maximum of two values ``max(x, y)`` (both
may be tensors; scalars broadcast; NaN propagates, as ``torch.maximum``): AMSGrad's
``v̂ ← max(v̂, v)`` (Reddi et al., arXiv 1904.09237, Alg. 2). ``max(x, c)`` takes a number ``c``.""")
minimum = _pairwise("minimum", torch.minimum, """Entrywise minimum of two values ``min(x, y)`` (both
may be tensors; scalars broadcast; NaN propagates, as ``torch.minimum``). ``min(x, c)`` takes a
number ``c``.""")
