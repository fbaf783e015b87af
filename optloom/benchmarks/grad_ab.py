"""A/B of the gradient path in one process, interleaved: optloom with gradients as views of the
bucket buffer (what backward gives after ``zero_grad()``), optloom with fresh gradient tensors
every step (the copy into the buffer that every step paid before), and torch's fused AdamW.

Each round refills the gradients untimed (in place: into the views for "views", into separate
tensors allocated once, re-assigned to ``p.grad``, for "copied" and fused), then times one step of each candidate in rotating order. Reported: min,
median and a low quantile (p10) of wall time, and the ratios to fused AdamW. On a loaded machine
the minimum and p10 are the numbers that other processes disturb least.

    python -m benchmarks.grad_ab --params adamw-10m --rounds 60 --threads 2
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

import optloom

from . import paramsets


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="adamw-10m")
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--spec", default="adamw")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    ps = paramsets.get(a.params)
    dev = torch.device("cpu")
    views_p = ps.make(dev)
    copied_p = ps.make(dev)
    fused_p = ps.make(dev)
    views = optloom.optimizer(a.spec, views_p, backend="inductor")
    copied = optloom.optimizer(a.spec, copied_p, backend="inductor")
    fused = torch.optim.AdamW([p for _, p in fused_p], lr=1e-3, weight_decay=0.01, fused=True)
    gen = torch.Generator().manual_seed(0)
    src = [torch.randn(p.shape, generator=gen) for _, p in views_p]

    def refill_views():
        views.zero_grad()  # zeroes the buffer, keeps the views (after the first step)
        for (_, p), g in zip(views_p, src):
            if p.grad is None:
                p.grad = g.clone()
            else:
                p.grad.add_(g)  # what backward's accumulation does

    # separate gradient tensors, allocated once and refilled in place (no allocator or page-fault
    # effects); assigning them to p.grad each round makes optloom copy them into its buffer
    own = {id(named): [g.clone() for g in src] for named in (copied_p, fused_p)}

    def refill_fresh(named):
        for (_, p), g, mine in zip(named, src, own[id(named)]):
            mine.copy_(g)
            p.grad = mine

    cands = [("optloom, gradients are views", views.step, refill_views),
             ("optloom, separate gradients (copied in)", copied.step, lambda: refill_fresh(copied_p)),
             ("torch AdamW fused=True", fused.step, lambda: refill_fresh(fused_p))]
    times: dict[str, list[float]] = {c[0]: [] for c in cands}
    for r in range(a.warmup + a.rounds):
        order = cands[r % 3:] + cands[: r % 3]
        for name, step, refill in order:
            refill()
            t0 = time.perf_counter()
            step()
            dt = time.perf_counter() - t0
            if r >= a.warmup:
                times[name].append(dt * 1e3)
    ref = times["torch AdamW fused=True"]
    print(f"{a.params} ({ps.numel / 1e6:.2f}M), {a.threads} threads, {a.rounds} interleaved rounds")
    print("| implementation | min ms | p10 ms | median ms | ÷ fused (min) | ÷ fused (p10) | ÷ fused (median) |")
    print("|---|---|---|---|---|---|---|")
    q = lambda v: statistics.quantiles(v, n=10)[0]  # noqa: E731
    for name, v in times.items():
        print(f"| {name} | {min(v):.2f} | {q(v):.2f} | {statistics.median(v):.2f} | {min(v) / min(ref):.2f} | "
              f"{q(v) / q(ref):.2f} | {statistics.median(v) / statistics.median(ref):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
