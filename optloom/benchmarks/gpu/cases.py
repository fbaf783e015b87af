"""One (spec, parameter set) case of the GPU benchmark: the optloom step against torch's own
optimizers on the same tensors, interleaved (``timing.interleave``: fresh N(0, 1) gradients each
round, device synchronised around every step, medians), with the floors of ``steps.floors`` and
the static cost model (``optloom.lowering.cost``) printed next to the measured step.

Candidates, in this order (each one optional per case):

- ``optloom SPEC (inductor)``: what a user gets (the non-finite gradient check on);
- ``optloom SPEC (eager)``: the same graphs uncompiled;
- ``optloom SPEC (inductor, nonfinite=ignore)``: without the check (torch.optim does not check);
- ``optloom SPEC (inductor, nonfinite=ignore, CUDA graph)``: that step captured once in a CUDA
  graph and replayed (no Python, no launch gaps); checked bitwise against the uncaptured step
  before it is timed;
- torch's optimizers from ``baselines.for_spec`` (kept by label; ``extra_baselines`` adds another
  spec's, e.g. torch's AdamW next to Lion: the same traffic class), and for adamw
  ``torch AdamW fused=True capturable (CUDA graph)``.

A candidate that fails (an error, out of memory) is dropped with its error and the others go on.
With ``memory_gate`` (the ~1B sets) candidates are built only while their estimated footprint
(parameters, gradients, state) fits in 80 % of the free device memory.
"""
from __future__ import annotations

import gc
import traceback
from dataclasses import dataclass
from typing import Any, Callable

import torch

import optloom
from optloom.backends import compile_cache
from optloom.lowering import cost

from .. import baselines, memory, steps
from ..machine import sync
from ..timing import Candidate, interleave, refill, unique_graphs
from . import paramsets


@dataclass(frozen=True)
class CaseConfig:
    spec: str
    params: str
    variants: tuple[str, ...] = ("eager", "nonfinite=ignore", "cudagraph")
    baselines: tuple[str, ...] | None = None  # substrings of the baseline labels to keep; None: all
    extra_baselines: tuple[str, ...] = ()      # other specs' baselines too (lion: torch's AdamW)
    torch_graph: bool = False                  # + torch AdamW(fused, capturable) in a CUDA graph
    memory_gate: bool = False
    with_memory: bool = True


class Guarded:
    """A candidate's step that records its first error instead of raising (then does nothing),
    and counts the steps compiled or loaded during the timed calls (``compile_cache.events``)."""

    def __init__(self, fn: Callable[[], Any], warmup: int):
        self.fn, self.warmup, self.calls = fn, max(1, warmup), 0
        self.error: str | None = None
        self.timed_compiles = 0

    def __call__(self) -> None:
        if self.error:
            return
        before = len(compile_cache.events) + unique_graphs()
        try:
            self.fn()
        except Exception as e:  # noqa: BLE001 - reported per candidate
            self.error = f"{type(e).__name__}: {e}"[:1500] + "\n" + traceback.format_exc()[-1500:]
        if self.calls >= self.warmup:
            self.timed_compiles += len(compile_cache.events) + unique_graphs() - before
        self.calls += 1


def capture(step: Callable[[], Any], grads: Callable[[], list[torch.Tensor]], device: torch.device,
            seed: int, warm: int = 3) -> torch.cuda.CUDAGraph:
    """Warm ``step`` up on a side stream (compiles, allocates state, makes gradient views), then
    capture one call of it in a CUDA graph (captured, not run)."""
    gen = torch.Generator(device=device)
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for i in range(warm):
            refill(grads(), gen, seed + i)
            step()
    torch.cuda.current_stream(device).wait_stream(side)
    sync(device)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    sync(device)
    return graph


def graphed_optloom(spec: str, make: Callable[[], list], device: torch.device, seed: int) -> tuple[Any, Any, dict]:
    """(named params, the captured graph, check): optloom's step (inductor, nonfinite=ignore) in a
    CUDA graph, compared after 3 replays with 3 ordinary steps of a twin on the same gradients."""
    named = make()
    opt = optloom.optimizer(spec, named, backend="inductor", nonfinite="ignore")
    graph = capture(opt.step, lambda: [p.grad for _, p in named], device, seed)
    twin = make()
    topt = optloom.optimizer(spec, twin, backend="inductor", nonfinite="ignore")
    gen = torch.Generator(device=device)
    for i in range(3):
        refill([p.grad for _, p in twin], gen, seed + i)
        topt.step()
    for k in range(3):
        refill([p.grad for _, p in named], gen, 7_000 + k)
        refill([p.grad for _, p in twin], gen, 7_000 + k)
        graph.replay()
        topt.step()
    sync(device)
    diff = max(float((p - q).abs().max()) for (_, p), (_, q) in zip(named, twin))
    check = {"bitwise": all(torch.equal(p, q) for (_, p), (_, q) in zip(named, twin)), "max_abs_diff": diff,
             "replays": 3}
    del twin, topt
    return named, graph, check


def graphed_torch_adamw(program: Any, make: Callable[[], list], device: torch.device, seed: int) -> tuple[Any, Any]:
    d = program.defaults()
    params = [p for _, p in make()]
    opt = torch.optim.AdamW(params, lr=d["lr"], betas=tuple(d["betas"]), eps=d["eps"],
                            weight_decay=d["weight_decay"], fused=True, capturable=True)
    graph = capture(opt.step, lambda: [p.grad for p in params], device, seed)
    return opt, graph


def run(cc: CaseConfig, device: torch.device, backend: str, rounds: int, warmup: int, mach: dict | None,
        seed: int = 0, log: Callable[[str], None] = print) -> dict:
    ps = paramsets.get(cc.params)
    program = optloom.compile(cc.spec)
    make = lambda: ps.make(device, seed=seed)  # noqa: E731 - identical initial values per candidate
    named = make()
    work = steps.step_work(program, named)
    cuda = device.type == "cuda"
    footprint = ps.numel * 8 + work["state_bytes"]  # parameters, gradients, state
    budget = [torch.cuda.mem_get_info(device)[0] * 0.8 if cuda and cc.memory_gate else None]
    cands: list[Candidate] = []
    guards: list[Guarded] = []
    failed: dict[str, str] = {}
    notes: list[str] = []
    extra: dict[str, Any] = {}

    def fits(name: str) -> bool:
        if budget[0] is None:
            return True
        if budget[0] < footprint:
            notes.append(f"{name}: left out, its ~{footprint / 2**30:.1f} GiB would not fit in 80% of free memory")
            return False
        budget[0] -= footprint
        return True

    def add(name: str, build: Callable[[], tuple], optloom_row: bool) -> None:
        if not fits(name):
            return
        try:
            step, grads, opt = build()
        except Exception as e:  # noqa: BLE001
            failed[name] = f"{type(e).__name__}: {e}"[:1500]
            log(f"    {name}: failed to build: {failed[name][:300]}")
            return
        g = Guarded(step, warmup)
        guards.append(g)
        cands.append(Candidate(name, g, grads, opt, optloom_row))

    opt0 = optloom.optimizer(cc.spec, named, backend=backend)
    budget[0] = None if budget[0] is None else budget[0] - footprint
    main = f"optloom {cc.spec} ({backend})"
    g0 = Guarded(opt0.step, warmup)
    guards.append(g0)
    cands.append(Candidate(main, g0, lambda: [p.grad for _, p in named], opt0, True))
    dtype = steps.ns_dtype(program, device)
    bases = baselines.for_spec(program.name, named, program, make, compiled=False)
    for other in cc.extra_baselines:  # another spec's baselines at that spec's defaults
        bases += baselines.for_spec(other, named, optloom.compile(other), make, compiled=False)
    keep = [b for b in bases if cc.baselines is None or any(k in b[0] for k in cc.baselines)]
    del bases
    gc.collect()
    for label, bopt, bstep in keep:
        params = [p for grp in _groups(bopt) for p in grp["params"]]
        add(label, lambda s=bstep, o=bopt, ps_=params: (s, [p.grad for p in ps_], o), False)
    del keep
    for v in cc.variants:
        if v == "eager" and backend != "eager":
            add(f"optloom {cc.spec} (eager)", lambda: _built(cc.spec, make, backend="eager"), True)
        elif v == "nonfinite=ignore" and all(r.elementwise for r in program.rules):
            add(f"optloom {cc.spec} ({backend}, nonfinite=ignore)",
                lambda: _built(cc.spec, make, backend=backend, nonfinite="ignore"), True)
        elif v == "cudagraph" and cuda and backend == "inductor":
            name = f"optloom {cc.spec} (inductor, nonfinite=ignore, CUDA graph)"

            def build_graph(name=name):
                gnamed, graph, check = graphed_optloom(cc.spec, make, device, seed + 50_000)
                extra.setdefault("cuda_graph_check", {})[name] = check
                return graph.replay, [p.grad for _, p in gnamed], None
            add(name, build_graph, True)
    if cc.torch_graph and cuda and program.name == "adamw":
        def build_torch_graph():
            topt, graph = graphed_torch_adamw(program, make, device, seed + 60_000)
            return graph.replay, [p.grad for grp in topt.param_groups for p in grp["params"]], topt
        add("torch AdamW fused=True capturable (CUDA graph)", build_torch_graph, False)

    log(f"    {len(cands)} candidates: {', '.join(c.name for c in cands)}")
    interleave(cands, rounds, warmup, device, seed)
    sync(device)
    for c, g in zip(cands, guards):
        if g.error:
            failed[c.name] = g.error
            log(f"    {c.name}: failed: {g.error.splitlines()[0][:300]}")
    ok = [(c, g) for c, g in zip(cands, guards) if not g.error and c.times]
    stats = []
    for c, g in ok:
        s = c.stats()
        s["step_compiles_timed"] = g.timed_compiles
        stats.append(s)
    ours = stats[0]["median_ms"] if stats and stats[0]["name"] == main else None
    for s in stats[1:]:
        s["optloom_over_this"] = ours / s["median_ms"] if ours else None
    case: dict[str, Any] = {"spec": cc.spec, "params": ps.summary(), "backend": backend, "candidates": stats,
                            "rounds": {"warmup": warmup, "timed": rounds}, "failed": failed,
                            "note": "; ".join(notes) or None, "buckets": len(opt0.buckets()), **extra}
    if ours:
        case["floors"] = steps.floors(work, ours / 1e3, mach, dtype)
        _derived(case, work, ours / 1e3, mach)
    case["cost"] = _cost(opt0, mach, ours)
    if cc.with_memory and ours:
        case["memory"] = _memory(work["state_bytes"], [c for c, _ in ok], device)
    del cands, guards, ok, opt0, named
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return case


def _built(spec: str, make: Callable[[], list], **kw: Any) -> tuple:
    named = make()
    opt = optloom.optimizer(spec, named, **kw)
    return opt.step, (lambda: [p.grad for _, p in named]), opt


def _groups(opt: Any) -> list[dict]:
    if isinstance(opt, baselines.Pair):
        return [g for o in (opt.muon, opt.aux) if o for g in o.param_groups]
    return opt.param_groups


def _derived(case: dict, work: dict, median_s: float, mach: dict | None) -> None:
    """The issue's quantities: bandwidth as a fraction of the *copy* bandwidth, Newton–Schulz TFLOP/s."""
    f = case["floors"]
    if mach:
        copy = mach["bandwidth"]["kernels"]["copy"]["gbps"]
        f["fraction_of_copy_bandwidth"] = work["bytes"] / median_s / 1e9 / copy
    if work["ns_flops"]:
        f["ns_tflops"] = work["ns_flops"] / median_s / 1e12


def _cost(opt: Any, mach: dict | None, median_ms: float | None) -> dict:
    try:
        c = cost.of_optimizer(opt)
        peaks = cost.Peaks.from_machine(mach) if mach else None
        out = c.as_dict(peaks)
        out["text"] = c.render(peaks)
        if peaks is not None and median_ms:
            out["measured_over_floor"] = median_ms / 1e3 / out["floor_s"] if out["floor_s"] else None
        return out
    except Exception as e:  # noqa: BLE001 - the cost model must not cost the case
        return {"error": f"{type(e).__name__}: {e}"[:1000]}


def _memory(predicted: int, cands: list[Candidate], device: torch.device) -> dict:
    """Persistent state against ``Program.state_bytes`` and each candidate's step peak (CUDA:
    ``max_memory_allocated``; skipped elsewhere: the CPU profiler is slow)."""
    ours = cands[0].optimizer
    out: dict = {"state_bytes": memory.bucket_state_bytes(ours), "predicted_state_bytes": predicted,
                 "largest_bucket_param_bytes": memory.largest_bucket_bytes(ours), "peak": {}}
    out["state_matches_prediction"] = out["state_bytes"] == predicted
    for c in cands:
        if not c.is_optloom and c.optimizer is not None:
            out.setdefault("baseline_state_bytes", {})[c.name] = memory.baseline_state_bytes(c.optimizer)
        if device.type == "cuda":
            out["peak"][c.name] = memory.peak_extra(c.step, device)
        else:
            out["peak"][c.name] = {"method": "not measured off CUDA", "peak_extra_bytes": None}
    peak = out["peak"][cands[0].name]["peak_extra_bytes"]
    if peak is not None and out["largest_bucket_param_bytes"]:
        out["peak_over_largest_bucket"] = peak / out["largest_bucket_param_bytes"]
    return out
