"""One (spec, parameter set) case: the optloom step against its baselines, interleaved, plus the
floors (bandwidth and matmul) and memory of the optloom optimizer.

Bandwidth floor. An elementwise step must at least read the parameter, the gradient and every
state buffer once and write the parameter and every state buffer once:
    bytes = P·(3·4) + 2·state_bytes           (fp32 parameters and gradients)
which is 28 B/parameter for AdamW (read p, g, m, v; write p, m, v), 20 for Lion, Signum and SGD with
momentum. floor = bytes / (best streaming bandwidth measured in the same run: copy, triad or
in-place add). "fraction of bandwidth" = (bytes / median step time) / best bandwidth.

Matmul floor. Newton–Schulz with k quintic steps on an r×l matrix (r = min, l = max dims) costs
k·(4r²l + 2r³) FLOPs (X Xᵀ: 2r²l, A·A: 2r³, B·X: 2r²l), i.e. 20r²l + 10r³ for k = 5. Its fraction of
peak = NS FLOPs / median step time / matmul peak of the dtype it runs in (the spec's ``ns_dtype``:
``"auto"`` is float32 on a CPU without bf16 units; torch.optim.Muon always bf16). The step also does
elementwise work (momentum, update, AdamW for non-matrix params), so this is a lower bound on how
close the Newton–Schulz itself runs to peak; "fraction of floor" combines both floors.
"""
from __future__ import annotations

import gc
import math
from typing import Any

import torch

import optloom

from . import baselines, memory, precision
from .paramsets import ParamSet
from .timing import Candidate, interleave


def ns_flops(program: Any, named) -> tuple[int, int]:
    """(FLOPs of the spec's Newton–Schulz over these params, parameters that take it)."""
    steps = int(program.defaults().get("ns_steps", 5))
    hidden = baselines.ns_names(program, named)
    flops = numel = 0
    for name, p in named:
        if name in hidden:
            rows, cols = p.shape[0], math.prod(p.shape[1:])
            r, l = min(rows, cols), max(rows, cols)
            flops += steps * (4 * r * r * l + 2 * r ** 3)
            numel += p.numel()
    return flops, numel


def ns_dtype(program: Any, device: torch.device, overrides: dict | None = None) -> str:
    """The dtype the spec's Newton–Schulz runs in on ``device`` (its ``ns_dtype`` hyperparameter)."""
    from optloom.primitives.linalg import resolve_dtype

    name = {**program.defaults(), **(overrides or {})}.get("ns_dtype", "auto")
    return str(resolve_dtype(name, device)).removeprefix("torch.")


def step_work(program: Any, named) -> dict:
    """What one step must at least move and compute on these parameters (computed once per case:
    ``state_bytes`` runs the spec's rules on fake tensors)."""
    state_bytes = program.state_bytes(named)
    numel = sum(p.numel() for _, p in named)
    flops, ns_numel = ns_flops(program, named)
    return {"numel": numel, "state_bytes": state_bytes, "bytes": numel * 12 + 2 * state_bytes,
            "ns_flops": flops, "ns_params": ns_numel}


def floor_seconds(work: dict, machine: dict | None, dtype: str) -> tuple[float, float | None] | None:
    """(bandwidth floor, Newton–Schulz matmul floor in ``dtype`` or None) of one step, in seconds;
    None without machine numbers."""
    if not machine:
        return None
    peak = machine["matmul"]["peak_gflops"].get(dtype)
    ns_s = work["ns_flops"] / (peak * 1e9) if work["ns_flops"] and peak else None
    return work["bytes"] / (machine["bandwidth"]["best_gbps"] * 1e9), ns_s


def floors(work: dict, median_s: float, machine: dict | None, dtype: str) -> dict:
    moved, flops = work["bytes"], work["ns_flops"]
    out: dict = {"bytes": moved, "bytes_per_param": moved / work["numel"], "state_bytes": work["state_bytes"],
                 "effective_gbps": moved / median_s / 1e9, "ns_flops": flops, "ns_params": work["ns_params"],
                 "ns_dtype": dtype if flops else None}
    floor = floor_seconds(work, machine, dtype)
    if floor:
        bw_s, ns_s = floor
        out["bw_floor_ms"] = bw_s * 1e3
        out["fraction_of_bandwidth"] = bw_s / median_s
        if ns_s is not None:
            out["ns_floor_ms"] = ns_s * 1e3
            out["ns_fraction_of_peak"] = ns_s / median_s
        total = bw_s + (ns_s or 0.0)
        out["floor_ms"] = total * 1e3
        out["fraction_of_floor"] = total / median_s
    return out


def plan_rounds(steps: int, warmup: int, round_s: float | None, budget_s: float | None):
    """(steps, warmup, note, skip): fewer rounds when the floor estimate exceeds the case budget."""
    if not round_s or not budget_s or round_s * (steps + warmup) <= budget_s:
        return steps, warmup, None, False
    w = min(warmup, 2)
    n = max(3, int(budget_s / round_s) - w)
    note = (f"rounds reduced from {warmup}+{steps} to {w}+{n}: the floor estimate is {round_s:.1f} s per "
            f"round, over the case budget of {budget_s:.0f} s")
    if round_s * (n + w) > 3 * budget_s:
        return n, w, f"skipped: the floor estimate is {round_s:.1f} s per round, {n + w} rounds would exceed " \
                     f"3x the case budget of {budget_s:.0f} s", True
    return n, w, note, False


def run_case(spec: str, ps: ParamSet, device: torch.device, backend: str, steps: int, warmup: int,
             machine: dict | None, seed: int = 0, with_memory: bool = True, with_baselines: bool = True,
             compiled_baselines: bool = True, budget_s: float | None = None, policies: list[str] = ()) -> dict:
    program = optloom.compile(spec)
    make = lambda: ps.make(device, seed=seed)  # noqa: E731 - identical initial values per candidate
    named = make()
    opt = optloom.optimizer(spec, named, backend=backend)
    # gradients are looked up each round: the optimizer re-points p.grad at its bucket's gradient
    # buffer on the first step (what backward then accumulates into), so the refill must follow
    dtype = ns_dtype(program, device)
    cands = [Candidate(f"optloom {spec} ({backend})", opt.step, lambda: [p.grad for _, p in named], opt, True)]
    dtypes = [dtype]  # the dtype each candidate's Newton–Schulz runs in (its matmul floor)
    for label, kwargs in _variants(program, backend, dtype):
        vnamed = make()
        vopt = optloom.optimizer(spec, vnamed, **kwargs)
        cands.append(Candidate(f"optloom {spec} ({label})", vopt.step, lambda n=vnamed: [p.grad for _, p in n],
                               vopt, True))
        dtypes.append(ns_dtype(program, device, kwargs))
    for c in precision.candidates(spec, make, backend, list(policies), with_baselines):  # --precision
        cands.append(c)
        dtypes.append(dtype)
    if with_baselines:
        for label, bopt, step in baselines.for_spec(program.name, named, program, make, compiled_baselines):
            grads = [p.grad for g in _groups(bopt) for p in g["params"]]
            cands.append(Candidate(label, step, grads, bopt))
            dtypes.append("bfloat16")  # torch.optim.Muon orthogonalizes in bf16 (elementwise specs: no NS)
    work = step_work(program, named)
    est = [sum(f for f in floor if f) if floor else None
           for floor in (floor_seconds(work, machine, d) for d in dtypes)]
    cands, est, dropped = _drop_slow(cands, est, steps + warmup, budget_s)
    steps, warmup, note, skip = plan_rounds(steps, warmup, est[0] and sum(est), budget_s)
    note = "; ".join(x for x in (note, dropped) if x) or None
    if skip:
        return {"spec": spec, "params": ps.summary(), "backend": backend, "skipped": note}
    interleave(cands, steps, warmup, device, seed)
    stats = [c.stats() for c in cands]
    ours = stats[0]["median_ms"]
    for s in stats[1:]:
        s["optloom_over_this"] = ours / s["median_ms"]
    case: dict = {"spec": spec, "params": ps.summary(), "backend": backend, "candidates": stats,
                  "rounds": {"warmup": warmup, "timed": steps}, "note": note,
                  "buckets": len(opt.buckets()),
                  "floors": floors(work, ours / 1e3, machine, dtype)}
    if with_memory:
        case["memory"] = _memory(work["state_bytes"], cands, device)
    if policies:
        case["precision_memory"] = precision.state_memory(
            cands, lambda c: [(n, p) for g in c.optimizer.param_groups
                              for n, p in zip(g.get("param_names") or [None] * len(g["params"]), g["params"])])
    del cands, opt, named
    gc.collect()
    return case


def _variants(program: Any, backend: str, dtype: str) -> list[tuple[str, dict]]:
    """Other optloom configurations timed next to the default one: the same spec eager (what the
    compiled step gains); for elementwise specs, without the non-finite gradient check (torch.optim's
    optimizers do not check; the check costs one extra read of the gradients); for specs whose
    Newton–Schulz runs in another dtype here, in bf16 (torch.optim.Muon's precision)."""
    out: list[tuple[str, dict]] = []
    if backend != "eager":
        out.append(("eager", dict(backend="eager")))
    if all(r.elementwise for r in program.rules):
        out.append((f"{backend}, nonfinite=ignore", dict(backend=backend, nonfinite="ignore")))
    if "ns_dtype" in program.hyperparams and dtype != "bfloat16":
        out.append((f"{backend}, ns_dtype=bfloat16", dict(backend=backend, ns_dtype="bfloat16")))
    return out


def _drop_slow(cands: list, est: list, rounds: int, budget_s: float | None) -> tuple[list, list, str | None]:
    """Leave out the contestants (never the first) whose floor estimate alone exceeds 3x the case
    budget over ``rounds`` rounds, e.g. bf16 Newton–Schulz on a CPU without bf16 units."""
    if not budget_s:
        return cands, est, None
    keep = [i for i, e in enumerate(est) if i == 0 or not e or e * rounds <= 3 * budget_s]
    gone = [f"{cands[i].name} (floor {est[i]:.0f} s per step)" for i in range(len(cands)) if i not in keep]
    note = f"left out, over 3x the case budget of {budget_s:.0f} s: " + ", ".join(gone) if gone else None
    return [cands[i] for i in keep], [est[i] for i in keep], note


def _groups(opt: Any) -> list[dict]:
    if isinstance(opt, baselines.Pair):
        return [g for o in (opt.muon, opt.aux) if o for g in o.param_groups]
    return opt.param_groups


def _memory(predicted: int, cands: list[Candidate], device: torch.device) -> dict:
    """Persistent state against ``Program.state_bytes`` (``predicted``) and each step's peak."""
    ours = cands[0].optimizer
    persistent = memory.bucket_state_bytes(ours)
    out: dict = {"state_bytes": persistent, "predicted_state_bytes": predicted,
                 "state_matches_prediction": persistent == predicted,
                 "largest_bucket_param_bytes": memory.largest_bucket_bytes(ours), "peak": {}}
    for c in cands:
        if not c.is_optloom:
            out.setdefault("baseline_state_bytes", {})[c.name] = memory.baseline_state_bytes(c.optimizer)
        out["peak"][c.name] = memory.peak_extra(c.step, device)
    peak = out["peak"][cands[0].name]["peak_extra_bytes"]
    if peak is not None and out["largest_bucket_param_bytes"]:
        out["peak_over_largest_bucket"] = peak / out["largest_bucket_param_bytes"]
    return out
