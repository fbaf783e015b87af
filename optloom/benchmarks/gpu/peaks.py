"""The device's two ceilings, measured in the run that uses them (docs/performance.md, "GPU"):
streaming bandwidth (``machine.bandwidth``: copy, triad, in-place add; bytes read + written) and
``torch.mm`` throughput per dtype (``machine.matmul``) on a large square product and on the
products of one Newton–Schulz step on GPT-2-small's matrices. A burst of bf16 products first
brings the clocks up, so the first shape timed is not timed on an idle card."""
from __future__ import annotations

import time

import torch

from .. import machine

# (m, k, n): a square peak, then X·Xᵀ, A·A and B·X of one Newton–Schulz step on 768x2304 (qkv)
# and 768x3072 (mlp) matrices
GPU_SHAPES = [(8192, 8192, 8192), (768, 2304, 768), (768, 768, 768), (768, 768, 2304),
              (768, 3072, 768), (768, 768, 3072)]
SMOKE_SHAPES = [(64, 64, 64), (32, 64, 32)]


def warm_clocks(device: torch.device, seconds: float) -> None:
    """Run bf16 (CUDA) products for about ``seconds`` so clocks leave their idle state."""
    if device.type != "cuda" or seconds <= 0:
        return
    a = torch.randn(4096, 4096, device=device, dtype=torch.bfloat16)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(20):
            a @ a
        torch.cuda.synchronize(device)


def measure(device: torch.device, smoke: bool = False) -> dict:
    """``{"bandwidth", "matmul", "tf32", "peaks"}``; ``peaks``: copy GB/s, best-of-three GB/s and
    each dtype's TFLOP/s (the best shape)."""
    warm_clocks(device, 0.0 if smoke else 1.5)
    floats = 100_000 if smoke else 1 << 28  # 1 GiB per fp32 vector on the GPU
    bw = machine.bandwidth(device, floats, reps=3 if smoke else 20)
    mm = machine.matmul(device, SMOKE_SHAPES if smoke else GPU_SHAPES, reps=3 if smoke else 20,
                        budget_s=0.5 if smoke else 3.0)
    tf32 = bool(torch.backends.cuda.matmul.allow_tf32) if device.type == "cuda" else None
    return {"bandwidth": bw, "matmul": mm, "tf32": tf32,
            "peaks": {"copy_gbps": bw["kernels"]["copy"]["gbps"], "best_gbps": bw["best_gbps"],
                      "matmul_tflops": {k: v / 1e3 for k, v in mm["peak_gflops"].items()}}}
