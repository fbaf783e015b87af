"""The seeded draws of optloom's ``range_sketch`` and ``sample_layers``, restated from their
documentation (not imported): every random number is a pure function of (seed, step, parameter
id, index), murmur3's 32-bit finalizer ``fmix`` (github aappleby/smhasher
``src/MurmurHash3.cpp``, ``fmix32``) over a Weyl sequence with φ = 0x9E3779B9:

    key = fmix(fmix(fmix(seed ⊕ φ) ⊕ id) ⊕ step),   h_j = fmix(key + φ·j mod 2³²)
"""
from __future__ import annotations

M32, GOLDEN = 0xFFFFFFFF, 0x9E3779B9


def fmix(h: int) -> int:
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & M32
    return h ^ (h >> 16)


def hash_stream(seed: int, step: int, pid: int, count: int) -> list[int]:
    """h_0 … h_{count−1} of (seed, step, id)."""
    key = fmix(fmix(fmix((seed ^ GOLDEN) & M32) ^ (pid & M32)) ^ (step & M32))
    return [fmix((key + GOLDEN * j) & M32) for j in range(count)]


def sketch_columns(seed: int, step: int, pid: int, n: int, r: int) -> list[int]:
    """range_sketch's column choice: the r smallest h_j of (seed, step, parameter id), ties by j."""
    h = hash_stream(seed, step, pid, n)
    return sorted(range(n), key=lambda j: (h[j], j))[:r]


def suffix_start(t: int, b: int, period: int = 1, seed: int = 0) -> int:
    """sample_layers(order = "suffix") at step t over b layers: draw k = ⌊(t−1)/period⌋,
    s = ⌊h₀·b/2³²⌋ with h₀ the first value of the stream of (seed, k, 0); active iff position ≥ s."""
    return hash_stream(seed, (t - 1) // period, 0, 1)[0] * b // 2**32
