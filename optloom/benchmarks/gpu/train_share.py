"""The optimizer's share of a training step: ``charlm``'s transformer (``CharTransformer``) scaled
to GPT-2-small — 12 layers, d = 768, 12 heads, context 1024, GPT-2's vocabulary of 50,257 with the
head tied to the embedding (124.4M parameters, the ``gpt2-small`` set's shapes and order) — on
random tokens, forward + backward under bf16 autocast (CUDA), against each optimizer's step.

The batch is the largest of ``batches`` whose forward + backward runs within 60 % of the card's
memory (the rest holds the optimizers' model copies; an out-of-memory error moves to the next), so
the step is as large as the card allows. Each optimizer steps its own
copy of the model; every round runs, for each of them in rotated order, ``zero_grad`` → forward +
backward → ``step``, each phase timed between device synchronisations. Share = median step ÷
(median forward + backward + median step). With ``compile_model`` the forward + backward is also
timed through ``torch.compile(model)`` (one copy, no optimizer), and the shares are given against
it too: a fast training loop compiles its model, which makes the optimizer's share larger.
"""
from __future__ import annotations

import copy
import gc
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

import optloom
from optloom.train.tasks.charlm import CharTransformer

from .. import baselines
from ..machine import sync


@dataclass(frozen=True)
class ShareConfig:
    vocab: int = 50257
    d: int = 768
    layers: int = 12
    heads: int = 12
    context: int = 1024
    batches: tuple[int, ...] = (64, 32, 16, 8, 4, 2, 1)
    rounds: int = 10
    warmup: int = 3
    backend: str = "inductor"
    optimizers: tuple[str, ...] = ("optloom adamw", "torch AdamW fused=True", "optloom muon", "torch Muon")
    compile_model: bool = False


SMOKE = ShareConfig(vocab=64, d=32, layers=2, heads=2, context=32, batches=(4, 2), rounds=2, warmup=1,
                    backend="eager")


def build_model(cfg: ShareConfig, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    model = CharTransformer(cfg.vocab, cfg.d, cfg.layers, cfg.heads, cfg.context).to(device)
    model.lm_head.weight = model.wte.weight  # tied, as GPT-2
    return model


def fwd_bwd(model: Any, x: torch.Tensor, y: torch.Tensor) -> None:
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=x.device.type == "cuda"):
        logits = model(x)
    F.cross_entropy(logits.float().flatten(0, 1), y.flatten()).backward()


def pick_batch(model: torch.nn.Module, cfg: ShareConfig, device: torch.device) -> tuple[int, list[str]]:
    tried = []
    for b in cfg.batches:
        x, y = tokens(cfg, b, device, 0)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        try:
            fwd_bwd(model, x, y)
            sync(device)
            model.zero_grad(set_to_none=True)
            if device.type == "cuda":  # leave room for the optimizers' model copies and their state
                peak, total = torch.cuda.max_memory_allocated(device), torch.cuda.get_device_properties(device).total_memory
                if peak > 0.6 * total and b != cfg.batches[-1]:
                    tried.append(f"batch {b}: forward + backward peaks at {peak / 2**30:.0f} of {total / 2**30:.0f} GiB")
                    continue
            return b, tried
        except torch.OutOfMemoryError:
            tried.append(f"batch {b}: out of memory")
            del x, y
            model.zero_grad(set_to_none=True)
            gc.collect()
            torch.cuda.empty_cache()
    raise RuntimeError("no batch fits: " + "; ".join(tried))


def tokens(cfg: ShareConfig, batch: int, device: torch.device, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator(device=device).manual_seed(seed)
    t = torch.randint(0, cfg.vocab, (batch, cfg.context + 1), device=device, generator=g)
    return t[:, :-1], t[:, 1:]


def make_optimizer(label: str, model: torch.nn.Module, backend: str) -> Any:
    named = list(model.named_parameters())
    if label == "optloom adamw":
        return optloom.optimizer("adamw", named, backend=backend)
    if label == "optloom muon":
        return optloom.optimizer("muon", named, backend=backend)
    if label == "torch AdamW fused=True":
        return torch.optim.AdamW([p for _, p in named], fused=named[0][1].is_cuda)
    if label == "torch Muon":  # + fused AdamW on the rest, split by the muon spec's own routing
        return baselines.muon(named, optloom.compile("muon"), lambda: named)[0][1]
    raise ValueError(f"unknown optimizer {label!r}")


def run(cfg: ShareConfig, device: torch.device, write: Callable[[dict], None], log: Callable[[str], None] = print) -> dict:
    base = build_model(cfg, device)
    out: dict[str, Any] = {"model": {"layers": cfg.layers, "d": cfg.d, "heads": cfg.heads, "context": cfg.context,
                                     "vocab": cfg.vocab, "tied_head": True,
                                     "params": sum(p.numel() for p in base.parameters()),
                                     "autocast": "bf16" if device.type == "cuda" else "off (fp32)"},
                           "backend": cfg.backend, "rows": [], "failed": {}}
    batch, tried = pick_batch(base, cfg, device)
    out["batch"], out["tokens_per_step"], out["batch_notes"] = batch, batch * cfg.context, tried
    if device.type == "cuda":
        out["fwd_bwd_peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    log(f"    batch {batch} ({batch * cfg.context:,} tokens per step); {', '.join(tried) or 'first batch fit'}")
    runs: list[dict] = []
    for label in cfg.optimizers:
        model = copy.deepcopy(base)
        try:
            runs.append({"name": label, "model": model, "opt": make_optimizer(label, model, cfg.backend),
                         "fb": [], "step": [], "first_step_s": None})
        except Exception as e:  # noqa: BLE001
            out["failed"][label] = f"{type(e).__name__}: {e}"[:1000]
    x, y = tokens(cfg, batch, device, 1)
    for r in range(cfg.warmup + cfg.rounds):
        for run_ in runs[r % max(len(runs), 1):] + runs[: r % max(len(runs), 1)]:
            if run_["name"] in out["failed"]:
                continue
            try:
                fb, st = _round(run_["model"], run_["opt"], x, y, device)
            except Exception as e:  # noqa: BLE001
                out["failed"][run_["name"]] = f"{type(e).__name__}: {e}"[:1000]
                continue
            if r == 0:
                run_["first_step_s"] = st
            if r >= cfg.warmup:
                run_["fb"].append(fb)
                run_["step"].append(st)
    for run_ in runs:
        if run_["name"] in out["failed"] or not run_["step"]:
            continue
        fb, st = statistics.median(run_["fb"]), statistics.median(run_["step"])
        out["rows"].append({"optimizer": run_["name"], "fwd_bwd_ms": fb * 1e3, "step_ms": st * 1e3,
                            "min_step_ms": min(run_["step"]) * 1e3, "first_step_s": run_["first_step_s"],
                            "share": st / (fb + st), "rounds": len(run_["step"])})
    write(out)
    del runs
    gc.collect()
    if cfg.compile_model:
        log("    forward + backward through torch.compile(model)")
        try:
            out["compiled_model"] = _compiled_fwd_bwd(base, x, y, device, cfg.rounds)
            fb = out["compiled_model"]["fwd_bwd_ms"]
            for row in out["rows"]:
                row["share_compiled_model"] = row["step_ms"] / (fb + row["step_ms"])
        except Exception as e:  # noqa: BLE001
            out["compiled_model"] = {"error": f"{type(e).__name__}: {e}"[:1000]}
        write(out)
    return out


def _round(model: Any, opt: Any, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> tuple[float, float]:
    if hasattr(opt, "zero_grad"):
        opt.zero_grad()  # optloom's keeps the gradients as views of its bucket buffers
    else:  # baselines.Pair (torch Muon + AdamW)
        model.zero_grad(set_to_none=True)
    sync(device)
    t0 = time.perf_counter()
    fwd_bwd(model, x, y)
    sync(device)
    t1 = time.perf_counter()
    opt.step()
    sync(device)
    return t1 - t0, time.perf_counter() - t1


def _compiled_fwd_bwd(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device,
                      rounds: int) -> dict:
    compiled = torch.compile(model)
    t0 = time.perf_counter()
    fwd_bwd(compiled, x, y)
    sync(device)
    first = time.perf_counter() - t0
    times = []
    for _ in range(2 + rounds):
        model.zero_grad(set_to_none=False)
        sync(device)
        t0 = time.perf_counter()
        fwd_bwd(compiled, x, y)
        sync(device)
        times.append(time.perf_counter() - t0)
    return {"first_call_s": first, "fwd_bwd_ms": statistics.median(times[2:]) * 1e3}
