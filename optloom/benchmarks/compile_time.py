"""Compile time of the inductor backend, measured in fresh subprocesses.

Cold: a new interpreter with ``TORCHINDUCTOR_CACHE_DIR`` set to a fresh empty directory times the
first ``step()`` (Dynamo tracing, AOT, Inductor codegen and the C++ compiler, plus one step's
work), then ``--steps`` more steps for the steady time; compile ≈ first − steady, and Dynamo's own
compile timer gives compile time without the step's work (use it where a step is slow: bf16 matmul
without hardware support, or the ``gpt2-tiny`` set with GPT-2-small's 148-tensor structure). Warm second process:
the same command again with the same cache directory (Inductor's FX-graph and AOT caches are hit,
Dynamo still traces). Subprocesses rather than this process so that no in-memory cache of an
earlier compile can leak into a "cold" number; the parent waits idle (2 cores: never two torch
processes at once). Each subprocess uses the parent's thread count (changing it forces a compile).

Run as a probe: ``python -m benchmarks.compile_time --spec adamw --params gpt2-small --count 50``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def compile_s() -> float | None:
    """Seconds spent compiling steps so far in this process, without the steps' own work: optloom's
    ahead-of-time compile of the whole step (Dynamo + AOTAutograd + Inductor + C++ build, timed by
    ``compile_cache``) plus Dynamo's ``_compile.compile_inner`` timer (lazily compiled fallbacks)."""
    try:
        from torch._dynamo.utils import compilation_time_metrics

        from optloom.backends import compile_cache

        return compile_cache.seconds["compile"] + float(sum(compilation_time_metrics.get("_compile.compile_inner", [])))
    except Exception:  # pragma: no cover - dynamo internals moved
        return None


def probe(spec: str, params: str, count: int | None, device: str | None, steps: int = 1) -> dict:
    """In this process: build the optimizer on ``params[:count]``, time the first and later steps."""
    import torch

    import optloom

    from . import paramsets
    from .machine import pick_device, sync
    from .timing import unique_graphs, refill

    dev = pick_device(device)
    ps = paramsets.get(params)
    if count:
        ps = ps.prefix(count)
    named = ps.make(dev)
    t0 = time.perf_counter()
    opt = optloom.optimizer(spec, named, backend="inductor")
    build_s = time.perf_counter() - t0
    gen = torch.Generator(device=dev)
    times, cpu = [], []
    for i in range(1 + steps):
        refill([p.grad for _, p in named], gen, i)  # p.grad: the optimizer may re-point it at its buffer
        sync(dev)
        t0, c0 = time.perf_counter(), time.process_time()
        opt.step()
        sync(dev)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    steady = min(times[1:]) if steps else None
    return {"compile_s": compile_s(), "spec": spec, "params": ps.name, "tensors": ps.tensors, "numel": ps.numel,
            "buckets": len(opt.buckets()), "graphs": unique_graphs(), "threads": torch.get_num_threads(),
            "build_s": build_s, "first_step_s": times[0], "first_step_cpu_s": cpu[0],
            "step_cache": _cache_events(),
            "steady_step_ms": None if steady is None else steady * 1e3}


def _cache_events() -> list[str]:
    """What optloom's compiled-step cache did in this process (loaded / saved / compiled)."""
    try:
        from optloom.backends import compile_cache

        return list(compile_cache.events)
    except ImportError:  # pragma: no cover
        return []


def run_probe(spec: str, params: str, count: int | None, cache_dir: str, threads: int,
              device: str | None, steps: int = 1, timeout: float = 3600, env: dict | None = None) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.compile_time", "--spec", spec, "--params", params,
           "--threads", str(threads), "--steps", str(steps)]
    if count:
        cmd += ["--count", str(count)]
    if device:
        cmd += ["--device", device]
    env = dict(os.environ, **(env or {}), TORCHINDUCTOR_CACHE_DIR=cache_dir,
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        return {"spec": spec, "params": params, "count": count, "error": res.stderr.strip()[-2000:]}
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["process_wall_s"] = wall
    return out


def compile_table(specs: list[str], params: str, counts: list[int | None], threads: int,
                  device: str | None, log=print, steps: int = 1) -> dict:
    """Cold compile per (spec, tensor count); warm second process for the full set (count None)."""
    rows = []
    for spec in specs:
        for count in counts:
            cache = tempfile.mkdtemp(prefix="optloom-bench-compile-")
            try:
                log(f"  compile {spec} on {params}[:{count or 'all'}] (cold, fresh cache dir)")
                row = run_probe(spec, params, count, cache, threads, device, steps)
                if count is None and "error" not in row:
                    log(f"  compile {spec} on {params} (warm second process, same cache dir)")
                    warm = run_probe(spec, params, count, cache, threads, device, 0)
                    row["warm_first_step_s"] = warm.get("first_step_s")
                    row["warm_compile_s"] = warm.get("compile_s")
                    row["warm_process_wall_s"] = warm.get("process_wall_s")
                    if "error" in warm:
                        row["warm_error"] = warm["error"]
                row["spec"], row["count"], row["cold"] = spec, count, True
                rows.append(row)
            finally:
                shutil.rmtree(cache, ignore_errors=True)
    return {"params": params, "threads": threads, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spec", required=True)
    p.add_argument("--params", required=True)
    p.add_argument("--count", type=int)
    p.add_argument("--threads", type=int)
    p.add_argument("--device")
    p.add_argument("--steps", type=int, default=1, help="steps after the first (for the steady time)")
    a = p.parse_args(argv)
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    print(json.dumps(probe(a.spec, a.params, a.count, a.device, a.steps)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
