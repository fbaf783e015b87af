"""Optimizer memory: persistent state and a step's peak extra allocation.

Persistent state is the sum of the bytes of every bucket's state buffers (``optimizer.buckets()[i]
.states``), compared with ``program.state_bytes(params)``; for torch.optim baselines it is the sum
of the tensors in ``optimizer.state`` (including 0-d step counts).

Peak extra memory of one step (bytes allocated above what was live when the step began):
- CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (caching allocator;
  exact for tensors, excludes cuBLAS workspaces and allocator fragmentation).
- CPU: the PyTorch profiler with ``profile_memory=True`` records every allocation and free made
  through c10's CPU allocator (eager ops and Inductor's generated code alike); the peak is the
  maximum running sum of those events. It does not see memory the C++ kernels take outside the
  allocator (OpenMP thread stacks, scratch on the stack, Inductor's compiled-module code), nor
  glibc's retention of freed pages: it is the tensor working set, not RSS. ``tracemalloc`` sees
  none of this, and RSS deltas are dominated by allocator caching, so neither is used.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from typing import Any, Callable

import torch

from .machine import sync


def tensor_bytes(obj: Any) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def bucket_state_bytes(opt: Any) -> int:
    return sum(tensor_bytes(b.states) for b in opt.buckets())


def largest_bucket_bytes(opt: Any) -> int:
    """Bytes of the parameters of the largest bucket (the unit for 'one bucket's temporaries')."""
    return max((sum(p.numel() * p.element_size() for p in b.params) for b in opt.buckets()), default=0)


def baseline_state_bytes(opt: Any) -> int:
    return sum(tensor_bytes(st) for st in opt.state.values())


@contextlib.contextmanager
def _quiet_stderr():
    """Kineto prints profiler start/stop lines on file descriptor 2; silence them."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_extra(step: Callable[[], Any], device: torch.device) -> dict:
    """Peak bytes allocated above the starting level during one call of ``step``."""
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        step()
        sync(device)
        return {"method": "torch.cuda.max_memory_allocated",
                "peak_extra_bytes": torch.cuda.max_memory_allocated(device) - base,
                "net_bytes": torch.cuda.memory_allocated(device) - base}
    if device.type != "cpu":
        return {"method": f"unsupported on {device.type}", "peak_extra_bytes": None, "net_bytes": None}
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f).get("traceEvents", [])
    finally:
        os.unlink(path)
    mem = sorted((e for e in events if e.get("name") == "[memory]" and e.get("args", {}).get("Device Type", 0) == 0),
                 key=lambda e: (e.get("ts", 0), e["args"].get("Ev Idx", 0)))
    level = peak = 0
    for e in mem:
        level += int(e["args"].get("Bytes", 0))
        peak = max(peak, level)
    return {"method": "torch.profiler(profile_memory=True), running sum of CPU allocator events",
            "peak_extra_bytes": peak, "net_bytes": level, "events": len(mem)}
