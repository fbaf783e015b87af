"""Interleaved step timing.

Every round refills each candidate's gradients with the same fresh N(0, 1) values (seeded by the
round, untimed) and times one ``step()`` of each candidate in turn, rotating the order each round
(A B C, B C A, …) so no candidate always runs right after another's cache pollution. Round 0 is the
first step (compilation for compiled candidates) and is reported separately; the next ``warmup - 1``
rounds are discarded; the remaining ``steps`` rounds give medians and quartiles.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .machine import sync


@dataclass
class Candidate:
    name: str
    step: Callable[[], Any]
    grads: list[torch.Tensor] | Callable[[], list[torch.Tensor]]  # refilled before every timed step
    optimizer: Any = None
    is_optloom: bool = False
    first_s: float | None = None
    times: list[float] = field(default_factory=list)
    recompiles: int = 0

    def stats(self) -> dict:
        t = sorted(self.times)
        q = statistics.quantiles(t, n=4) if len(t) >= 2 else [t[0], t[0], t[0]]
        return {"name": self.name, "optloom": self.is_optloom, "median_ms": statistics.median(t) * 1e3,
                "p25_ms": q[0] * 1e3, "p75_ms": q[2] * 1e3, "min_ms": t[0] * 1e3, "n": len(t),
                "first_step_ms": (self.first_s or 0.0) * 1e3, "recompiles_timed": self.recompiles}


def unique_graphs() -> int:
    """Dynamo graphs compiled so far in this process (all candidates)."""
    try:
        from torch._dynamo.utils import counters

        return int(counters["stats"]["unique_graphs"])
    except Exception:  # pragma: no cover - dynamo internals moved
        return 0


def refill(grads: list[torch.Tensor], gen: torch.Generator, seed: int) -> None:
    gen.manual_seed(seed)
    for g in grads:
        g.normal_(generator=gen)


def interleave(cands: list[Candidate], steps: int, warmup: int, device: torch.device, seed: int = 0) -> None:
    warmup = max(1, warmup)
    gen = torch.Generator(device=device)
    n = len(cands)
    for r in range(warmup + steps):
        order = cands[r % n:] + cands[: r % n]
        for c in order:
            refill(c.grads() if callable(c.grads) else c.grads, gen, seed * 100_003 + r)
            sync(device)
            before = unique_graphs()
            t0 = time.perf_counter()
            c.step()
            sync(device)
            dt = time.perf_counter() - t0
            if r == 0:
                c.first_s = dt
            elif r >= warmup:
                c.times.append(dt)
                c.recompiles += unique_graphs() - before
