"""Can a stacked Newton–Schulz step stay under one bucket of temporaries? Three layouts of the
same muon step (momentum, Nesterov, 5 quintic NS iterations, in-place update) on a stack of
``B`` matrices, each compiled with Inductor; peak extra memory per step (as ``optloom bench``:
profiler allocator events) over the stack's bytes, first-call (compile) time and step time:

- ``whole``: the stack in one go (what optloom lowers). An out-of-place iteration keeps the
  current and the next iterate, two stacks, plus the Gram matrices.
- ``chunks-in-graph K``: the NS of each chunk of B/K matrices, concatenated, in the same graph.
  The iterates shrink to 2/K of a stack, but the concatenated result is a whole stack again,
  and the graph is K times larger (compile time).
- ``nested-region K``: the whole step per chunk as a ``torch.compiler.nested_compile_region``
  called K times on views (compiled once, parameters and state updated per chunk).

    python -m benchmarks.ns_chunking --shape 96x64x256 --chunks 8 --threads 2
"""
from __future__ import annotations

import argparse
import time
from typing import Callable

import torch

from .memory import peak_extra

A, B, C = 3.4445, -4.7750, 2.0315


def _ns(x: torch.Tensor) -> torch.Tensor:
    X = x / torch.linalg.vector_norm(x, dim=(-2, -1), keepdim=True).clamp(min=1e-7)
    for _ in range(5):
        G = torch.bmm(X, X.mT)
        X = torch.baddbmm(X, torch.baddbmm(G, G, G, beta=B, alpha=C), X, beta=A)
    return X


def _ns_chunks(x: torch.Tensor, k: int) -> torch.Tensor:
    return torch.cat([_ns(part) for part in x.chunk(k)])


def _step(ns: Callable[[torch.Tensor], torch.Tensor]) -> Callable[..., None]:
    def step(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor) -> None:
        m.mul_(0.95).add_(g)
        p.add_(ns(g + 0.95 * m), alpha=-0.02)
    return step


def layouts(k: int) -> dict[str, Callable[..., None]]:
    region = torch.compiler.nested_compile_region(_step(_ns))

    def per_chunk(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor) -> None:
        c = -(-p.shape[0] // k)
        for s in range(0, p.shape[0], c):
            region(p[s:s + c], g[s:s + c], m[s:s + c])

    return {"whole": _step(_ns), f"chunks-in-graph {k}": _step(lambda x: _ns_chunks(x, k)),
            f"nested-region {k}": per_chunk}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", default="96x64x256", help="BxMxN: B matrices of M x N")
    ap.add_argument("--chunks", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    shape = tuple(int(v) for v in args.shape.split("x"))
    print(f"stack {args.shape} fp32, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{'layout':<20} {'peak extra / stack':>18} {'first call s':>13} {'step ms (min)':>14} {'max |diff| vs whole':>20}")
    ref = None
    for name, fn in layouts(args.chunks).items():
        torch.manual_seed(0)
        p, g, m = (torch.randn(shape) for _ in range(3))
        compiled = torch.compile(fn, fullgraph=True)
        t = time.perf_counter()
        compiled(p, g, m)
        first = time.perf_counter() - t
        ref = p.clone() if ref is None else ref
        diff = float((p - ref).abs().max())
        peak = peak_extra(lambda: compiled(p, g, m), p.device)["peak_extra_bytes"] / (p.numel() * p.element_size())
        times = []
        for _ in range(args.steps):
            t = time.perf_counter()
            compiled(p, g, m)
            times.append(time.perf_counter() - t)
        print(f"{name:<20} {peak:>18.2f} {first:>13.1f} {min(times) * 1e3:>14.2f} {diff:>20.2e}")


if __name__ == "__main__":
    main()
