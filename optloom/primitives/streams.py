"""Seeded, counter-based random streams for the primitives that draw (``range_sketch``,
``sample_layers``).

Every random number is a pure function of ``(seed, step, parameter id, index)``: MurmurHash3's
32-bit finalizer ``fmix32`` (Appleby, github aappleby/smhasher ``src/MurmurHash3.cpp``) over a
Weyl sequence with the golden-ratio increment, computed with int64 tensor ops. No
``torch.Generator``: a draw traces into torch.fx / torch.compile graphs, needs no RNG state in
``state_dict``, and a run resumed at the same step with the same parameter ids draws the same.
"""
from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field

Tensor = torch.Tensor
Seed = Annotated[int, Field(ge=0, le=2**31 - 1)]

M32 = 0xFFFFFFFF
GOLDEN = 0x9E3779B9  # ⌊2³²/φ⌋


def _mul32(x: Tensor, c: int) -> Tensor:
    """``(x·c) mod 2³²`` for ``0 ≤ x < 2³²`` without int64 overflow (16-bit split)."""
    lo = (x & 0xFFFF) * c
    hi = (((x >> 16) * c) & 0xFFFF) << 16
    return (lo + hi) & M32


def _fmix(h: Tensor) -> Tensor:
    h = h ^ (h >> 16)
    h = _mul32(h, 0x85EBCA6B)
    h = h ^ (h >> 13)
    h = _mul32(h, 0xC2B2AE35)
    return h ^ (h >> 16)


def hash_key(seed: int, step, ids) -> Tensor:
    """Per-parameter 32-bit key from ``(seed, step, id)``: shape of ``ids`` (``(B,)`` or ``()``)."""
    ids = torch.as_tensor(ids, dtype=torch.int64)
    step = torch.as_tensor(step).to(torch.int64)
    h = _fmix(torch.full_like(ids, (seed ^ GOLDEN) & M32))
    h = _fmix(h ^ (ids & M32))
    return _fmix(h ^ (step & M32))


def hash_stream(key: Tensor, count: int) -> Tensor:
    """``count`` 32-bit values per key: ``fmix(key + GOLDEN·j)``, shape ``(*key.shape, count)``."""
    j = torch.arange(count, dtype=torch.int64, device=key.device)
    return _fmix((key.unsqueeze(-1) + _mul32(j, GOLDEN)) & M32)


def py_hash_stream(seed: int, step: int, pid: int, count: int) -> list[int]:
    """The same stream in plain Python integers (used by the references)."""
    def fmix(h: int) -> int:
        h ^= h >> 16
        h = (h * 0x85EBCA6B) & M32
        h ^= h >> 13
        h = (h * 0xC2B2AE35) & M32
        return h ^ (h >> 16)
    key = fmix(fmix(fmix((seed ^ GOLDEN) & M32) ^ (pid & M32)) ^ (int(step) & M32))
    return [fmix((key + GOLDEN * j) & M32) for j in range(count)]


def uniform(bits: Tensor, dtype: torch.dtype) -> Tensor:
    """Uniform in (0, 1) from the top 24 bits of 32-bit stream values."""
    return ((bits >> 8).to(dtype) + 0.5) / float(1 << 24)
