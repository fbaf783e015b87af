"""First-step (compile) time of one optimizer in this fresh process: ``python -m
optloom.benchmarks.gpu.compile_probe --spec adamw --params gpt2-small``. The GPU check runs it
twice on one ``TORCHINDUCTOR_CACHE_DIR``: cold (an empty directory: Dynamo, AOTAutograd, Inductor
and Triton's compile of every kernel) and warm (a second process loading optloom's compiled-step
cache, which lives in that directory). Prints one JSON line: the first step, the seconds optloom's
step cache spent compiling and loading (``compile_cache.seconds``, ``events``), Dynamo's compile
timer, and the steady step after it."""
from __future__ import annotations

import argparse
import json
import sys
import time

T0 = time.perf_counter()


def probe(spec: str, params: str, backend: str, device: str | None, steps: int) -> dict:
    import torch

    import optloom
    from optloom.backends import compile_cache

    from ..compile_time import compile_s
    from ..machine import pick_device, sync
    from ..timing import refill, unique_graphs
    from .paramsets import get

    imported = time.perf_counter() - T0
    dev = pick_device(device)
    ps = get(params)
    named = ps.make(dev)
    opt = optloom.optimizer(spec, named, backend=backend)
    gen = torch.Generator(device=dev)
    times = []
    for i in range(1 + steps):
        refill([p.grad for _, p in named], gen, i)  # p.grad: the optimizer re-points it at its buffer
        sync(dev)
        t0 = time.perf_counter()
        opt.step()
        sync(dev)
        times.append(time.perf_counter() - t0)
    return {"spec": spec, "params": ps.name, "tensors": ps.tensors, "numel": ps.numel, "backend": backend,
            "device": str(dev), "buckets": len(opt.buckets()), "import_s": imported, "first_step_s": times[0],
            "steady_step_ms": min(times[1:]) * 1e3 if steps else None, "compile_s": compile_s(),
            "step_cache": list(compile_cache.events), "step_cache_seconds": dict(compile_cache.seconds),
            "dynamo_graphs": unique_graphs(), "process_s": time.perf_counter() - T0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spec", required=True)
    p.add_argument("--params", required=True)
    p.add_argument("--backend", default="inductor")
    p.add_argument("--device")
    p.add_argument("--steps", type=int, default=2, help="steps after the first (the steady time)")
    a = p.parse_args(argv)
    print(json.dumps(probe(a.spec, a.params, a.backend, a.device, a.steps)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
