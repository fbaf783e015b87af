"""This machine: device, threads, streaming bandwidth and matmul throughput (best of several)."""
from __future__ import annotations

import os
import platform
import time
from typing import Callable

import torch


def pick_device(name: str | None = None) -> torch.device:
    """``name`` if given, else cuda when available, else cpu."""
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def set_threads(n: int | None) -> int:
    if n:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def describe(device: torch.device) -> dict:
    info = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "device": str(device),
    }
    info.update(_cpu_info())
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _cpu_info() -> dict:
    """CPU model, the vector ISA torch dispatches to, and the flags that decide bf16 matmul speed
    (without avx512_bf16 / amx_bf16, bf16 matmuls take a slow fallback path)."""
    out: dict = {"cpu_capability": getattr(torch.backends.cpu, "get_cpu_capability", lambda: None)()}
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return out
    for line in text.splitlines():
        if line.startswith("model name"):
            out["cpu_model"] = line.split(":", 1)[1].strip()
            break
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    out["cpu_flags"] = sorted(f for f in flags if f in {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "fma"})
    return out


def best_time(fn: Callable[[], object], device: torch.device, reps: int, warmup: int = 1) -> float:
    """Fastest of ``reps`` timed calls (seconds), after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    sync(device)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def bandwidth(device: torch.device, n_floats: int = 100_000_000, reps: int = 5) -> dict:
    """Streaming bandwidth over fp32 vectors of ``n_floats`` entries.

    Bytes counted are those a kernel must move: copy b→a reads 4n and writes 4n (8n); triad
    a = b + s·c reads 8n and writes 4n (12n); in-place add a += b reads 8n and writes 4n (12n).
    Write-allocate traffic is not counted (it would make the numbers look higher).
    """
    n = int(n_floats)
    a = torch.empty(n, device=device).fill_(1.0)
    b = torch.empty(n, device=device).fill_(2.0)
    c = torch.empty(n, device=device).fill_(0.5)
    kernels = {
        "copy": (lambda: a.copy_(b), 8 * n),
        "triad": (lambda: torch.add(b, c, alpha=1.5, out=a), 12 * n),
        "inplace_add": (lambda: a.add_(b, alpha=1e-9), 12 * n),
    }
    out: dict = {"floats": n, "reps": reps, "kernels": {}}
    for name, (fn, nbytes) in kernels.items():
        t = best_time(fn, device, reps)
        out["kernels"][name] = {"bytes": nbytes, "best_s": t, "gbps": nbytes / t / 1e9}
    out["best_gbps"] = max(k["gbps"] for k in out["kernels"].values())
    del a, b, c
    return out


# (m, k, n): a square reference and the three products of one Newton–Schulz step on a 768x3072
# matrix X (r=768, l=3072): A = X Xᵀ (r, l, r); A·A (r, r, r); B·X (r, r, l).
DEFAULT_SHAPES = [(1024, 1024, 1024), (768, 3072, 768), (768, 768, 768), (768, 768, 3072)]


def matmul(device: torch.device, shapes=None, dtypes=(torch.float32, torch.bfloat16), reps: int = 8,
           budget_s: float = 10.0) -> dict:
    """GFLOP/s of ``(m,k) @ (k,n)`` (2mkn FLOPs), best of ``reps``; peak per dtype = best shape.

    Time-bounded: the untimed first call of each shape sets the repetitions (about ``budget_s`` per
    shape, at least one); a shape whose first call alone exceeds the budget keeps that one timing
    (``reps`` = 1 in its row). A dtype without fast hardware (bf16 without AVX512-BF16/AMX) shows up
    as a low peak rather than a stalled benchmark."""
    shapes = [tuple(s) for s in (shapes or DEFAULT_SHAPES)]
    rows = []
    gen = torch.Generator(device=device).manual_seed(0)
    for dtype in dtypes:
        for m, k, n in shapes:
            x = torch.randn(m, k, device=device, generator=gen).to(dtype)
            y = torch.randn(k, n, device=device, generator=gen).to(dtype)
            out = torch.empty(m, n, device=device, dtype=dtype)
            fn = lambda: torch.mm(x, y, out=out)  # noqa: E731
            first = best_time(fn, device, 1, warmup=0)
            r = 0 if first > budget_s else max(1, min(reps, int(budget_s / max(first, 1e-9))))
            t = min(first, best_time(fn, device, r, warmup=0)) if r else first
            rows.append({"dtype": str(dtype).replace("torch.", ""), "shape": [m, k, n], "reps": max(r, 1),
                         "best_s": t, "gflops": 2 * m * k * n / t / 1e9})
    peak: dict[str, float] = {}
    for r in rows:
        peak[r["dtype"]] = max(peak.get(r["dtype"], 0.0), r["gflops"])
    return {"reps": reps, "rows": rows, "peak_gflops": peak}
