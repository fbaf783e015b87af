"""Precision: casts to a named dtype (round-to-nearest or stochastic rounding) and the once-rounded
multiply-add of ``torch.addcmul_``, so that a spec can keep low-precision state and round it the
way the reference implementations do.

Stochastic rounding (Gupta et al., "Deep Learning with Limited Numerical Precision", arXiv
1502.02551, §3; for bf16 optimizer state as in Zamirai et al., arXiv 2010.06192, §4) draws its
random bits from optloom's counter-based streams (:mod:`.streams`): a pure function of ``(seed,
step, parameter id, entry index)``, so a draw traces into step graphs, needs no RNG state in
``state_dict`` and a resumed run rounds bitwise as the uninterrupted one.
"""
from __future__ import annotations

import math
from typing import Literal

import torch

from .. import shapes
from .context import Ctx
from .registry import Tensor, primitive
from .streams import Seed, hash_key, hash_stream, py_hash_stream

DType = Literal["float32", "bfloat16", "float16", "float64"]
Rounding = Literal["nearest", "stochastic"]

LOW16 = 0xFFFF


def _acc(dtype: torch.dtype) -> torch.dtype:
    """The dtype reduced-precision arithmetic runs in: float32, or float64 for float64."""
    return torch.float64 if dtype == torch.float64 else torch.float32


@primitive(family="precision", elementwise=False, shape=shapes.same,
           examples=("cast(\"bfloat16\")", "cast(\"float16\")", "cast(\"float32\")",
                     "cast(\"bfloat16\", \"stochastic\")", "cast(\"bfloat16\", \"stochastic\", seed = 7)"))
def cast(ctx: Ctx, x: Tensor, dtype: DType = "bfloat16", rounding: Rounding = "nearest", seed: Seed = 0) -> Tensor:
    """Round ``x`` to the named ``dtype``.

    ``rounding = "nearest"``: IEEE round-to-nearest-even (``x.to(dtype)``).
    ``rounding = "stochastic"`` (``dtype = "bfloat16"`` only): ``x`` is first rounded to float32
    (exact for float32 inputs), then rounded to one of its two bf16 neighbours ``lo ≤ |x| < hi``
    (towards zero and away from it) with ``P(hi) = (|x| − lo)/(hi − lo)``, so ``E[cast(x)] = x``
    (Gupta et al., arXiv 1502.02551, eq. 3). Bitwise: the low 16 bits ``f`` of the float32 pattern
    are added to a random 16-bit ``r`` and the pattern truncated, i.e. the magnitude rounds up
    iff ``r ≥ 2¹⁶ − f``. ``r`` is the low half of ``hash_stream(hash_key(seed, step, id), N)[j]``
    for entry ``j`` (row-major) of the parameter with id ``id`` (``N`` its entry count):
    reproducible, and a resumed run draws the same. Non-finite entries stay as they are; a value
    within a bf16 ulp of bf16's largest may round to ``inf``.
    Example: ``1 + 2⁻⁹`` lies a quarter of the way from bf16's ``1`` to ``1 + 2⁻⁷``: it becomes
    ``1 + 2⁻⁷`` with probability 1/4, else ``1``.
    """
    target = getattr(torch, dtype)
    if rounding == "nearest":
        return x.to(target)
    if dtype != "bfloat16":
        raise ValueError(f"cast: stochastic rounding is provided to bfloat16 only, not {dtype}")
    x32 = x.to(torch.float32)
    flat = x32.reshape(x32.shape[0], -1) if ctx.batched else x32.reshape(1, -1)
    ids = ctx.ids if ctx.batched else torch.as_tensor([int(ctx.ids)])
    r = hash_stream(hash_key(seed, ctx.step, ids), flat.shape[-1]) & LOW16  # (B, N) int64
    bits = flat.view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    rounded = ((bits + r) & 0xFFFF0000)
    rounded = torch.where(rounded >= 2**31, rounded - 2**32, rounded).to(torch.int32).view(torch.float32)
    out = torch.where(torch.isfinite(flat), rounded, flat)
    return out.reshape(x.shape).to(torch.bfloat16)


@cast.reference
def _(ctx, x, dtype, rounding, seed):
    target = getattr(torch, dtype)
    if rounding == "nearest":
        return x.to(target)
    if dtype != "bfloat16":
        raise ValueError(f"cast: stochastic rounding is provided to bfloat16 only, not {dtype}")
    vals = x.to(torch.float32).to(torch.float64).flatten().tolist()
    r = py_hash_stream(seed, int(ctx.step), int(ctx.ids), len(vals))
    out = []
    for v, ri in zip(vals, r):
        if not math.isfinite(v) or v == 0.0:
            out.append(v)
            continue
        m, e = math.frexp(abs(v))  # |v| = m·2^e, m ∈ [0.5, 1): bf16 keeps 8 significant bits
        ulp = 2.0 ** (e - 8)
        lo = math.floor(abs(v) / ulp) * ulp
        f = round((abs(v) - lo) / ulp * 2**16)  # the float32 pattern's low 16 bits
        up = f > 0 and (ri & LOW16) >= 2**16 - f
        out.append(math.copysign(lo + (ulp if up else 0.0), v))
    return torch.tensor(out, dtype=torch.float64).reshape(x.shape).to(torch.bfloat16)


@primitive(family="precision", examples=("addcmul(grad, grad, 0.001)", "addcmul(grad, grad)"))
def addcmul(ctx: Ctx, x: Tensor, t1: Tensor, t2: Tensor, value: float = 1.0) -> Tensor:
    """``x + value·t1·t2`` rounded as ``torch.addcmul_``: ``v = value·t1`` is rounded to float32
    (float64 for float64 inputs), then ``x + v·t2`` is one fused multiply-add — one rounding —
    and the result is rounded to ``x``'s dtype (for bf16/fp16 state: a second, final rounding,
    as torch's reduced-precision kernels). ``v ← β₂v + (1−β₂)g²`` written
    ``addcmul(v * beta2, grad, grad, 1.0 - beta2)`` rounds as torch.optim.AdamW's
    ``exp_avg_sq.mul_(β₂).addcmul_(g, g, value=1−β₂)``; a bf16 second moment written with ``*``
    and ``+`` would round three times in bf16. ``value`` may be a per-parameter scalar.
    """
    acc = _acc(x.dtype)
    v = t1.to(acc) * ctx.bcast(value, t1)
    return torch.addcmul(x.to(acc), v.to(acc), t2.to(acc)).to(x.dtype)


@addcmul.reference
def _(ctx, x, t1, t2, value):
    acc = _acc(x.dtype)
    v = (t1.to(acc) * torch.tensor(value, dtype=torch.float64).to(acc)).to(torch.float64)
    exact = x.to(torch.float64) + v * t2.to(acc).to(torch.float64)  # exact below float64 (48-bit products)
    return exact.to(acc).to(x.dtype)
