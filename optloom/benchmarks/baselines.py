"""The nearest hand-written optimizers a user would pick instead of a spec, on the same tensors.

Each factory takes ``[(name, Parameter)]`` plus the optloom program (for routing) and returns
``[(label, optimizer, step_fn)]``. Hyperparameters equal the spec defaults, so trajectories match.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

Named = list[tuple[str, torch.nn.Parameter]]
Baseline = tuple[str, Any, Callable[[], Any]]


class ForeachLion(torch.optim.Optimizer):
    """Lion (Chen et al. 2023) written with ``torch._foreach_*`` ops, the way torch.optim writes its
    foreach paths: u = sign(β₁m + (1−β₁)g); m ← β₂m + (1−β₂)g; W ← W(1 − lr·λ) − lr·u."""

    def __init__(self, params, lr: float = 1e-4, betas=(0.9, 0.99), weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            for p in params:
                if "exp_avg" not in self.state[p]:
                    self.state[p]["exp_avg"] = torch.zeros_like(p)
            ms = [self.state[p]["exp_avg"] for p in params]
            lr, (b1, b2), wd = group["lr"], group["betas"], group["weight_decay"]
            if wd:
                torch._foreach_mul_(params, 1 - lr * wd)
            u = torch._foreach_lerp(ms, grads, 1 - b1)
            torch._foreach_sign_(u)
            torch._foreach_add_(params, u, alpha=-lr)
            torch._foreach_lerp_(ms, grads, 1 - b2)
        return None


def _params(named: Named) -> list[torch.nn.Parameter]:
    return [p for _, p in named]


def compiled_step(opt: torch.optim.Optimizer) -> Callable[[], Any]:
    """``torch.compile`` around ``opt.step()`` as the torch.compile optimizer tutorial does. lr stays a
    constant Python float and no scheduler runs, so Dynamo's guards hold: it compiles on the first
    step (state initialisation) and once more on the second, then never again (the runner counts
    recompiles during the timed steps and reports them)."""

    @torch.compile(fullgraph=False)
    def step() -> None:
        opt.step()

    return step


def adamw(named: Named, program: Any, make: Callable[[], Named], compiled: bool = True) -> list[Baseline]:
    out: list[Baseline] = []
    for label, kw in [("torch AdamW foreach=False", dict(foreach=False)),
                      ("torch AdamW foreach=True", dict(foreach=True)),
                      ("torch AdamW fused=True", dict(fused=True))]:
        opt = torch.optim.AdamW(_params(make()), **kw)
        out.append((label, opt, opt.step))
    if not compiled:
        return out
    opt = torch.optim.AdamW(_params(make()), foreach=True)
    out.append(("torch.compile(AdamW foreach=True .step)", opt, compiled_step(opt)))
    return out


def ns_names(program: Any, named: Named) -> set[str]:
    """Names of the parameters the spec routes to a Newton–Schulz rule."""
    from optloom.check.selectors import ParamInfo

    hypers = program.defaults()
    out = set()
    for name, p in named:
        rule = program.route(ParamInfo(name, tuple(p.shape), 0), hypers)
        if rule is not None and any("newton_schulz" in prim for prim in rule.primitives):
            out.add(name)
    return out


class Pair:
    """torch.optim.Muon for the Newton–Schulz matrices plus AdamW for the rest (MuonWithAuxAdam)."""

    def __init__(self, muon, aux):
        self.muon, self.aux = muon, aux
        self.state = {**(muon.state if muon else {}), **(aux.state if aux else {})}

    def step(self) -> None:
        if self.muon:
            self.muon.step()
        if self.aux:
            self.aux.step()


def muon(named: Named, program: Any, make: Callable[[], Named], compiled: bool = True) -> list[Baseline]:
    d = program.defaults()
    fresh = make()
    hidden = ns_names(program, fresh)
    mats = [p for n, p in fresh if n in hidden]
    rest = [p for n, p in fresh if n not in hidden]
    adjust = d.get("adjust_lr_fn", "original")
    m = torch.optim.Muon(mats, lr=d["lr"], weight_decay=d["weight_decay"], momentum=d["momentum"],
                         nesterov=d["nesterov"], ns_steps=d["ns_steps"],
                         ns_coefficients=tuple(d["ns_coefficients"]),
                         adjust_lr_fn=None if adjust == "original" else adjust) if mats else None
    a = torch.optim.AdamW(rest, lr=d["adam_lr"], betas=tuple(d["adam_betas"]), eps=d["adam_eps"],
                          weight_decay=d["weight_decay"], fused=True) if rest else None
    pair = Pair(m, a)
    label = "torch Muon" + (" + AdamW(fused) for the rest" if rest else "")
    return [(label, pair, pair.step)]


def lion(named: Named, program: Any, make: Callable[[], Named], compiled: bool = True) -> list[Baseline]:
    d = program.defaults()
    opt = ForeachLion(_params(make()), lr=d["lr"], betas=tuple(d["betas"]), weight_decay=d["weight_decay"])
    return [("foreach Lion (benchmark)", opt, opt.step)]


def sgd(named: Named, program: Any, make: Callable[[], Named], compiled: bool = True) -> list[Baseline]:
    d = program.defaults()
    kw = dict(lr=d["lr"], momentum=d["momentum"], dampening=d["dampening"],
              weight_decay=d["weight_decay"], nesterov=d["nesterov"])
    out: list[Baseline] = []
    for label, extra in [("torch SGD foreach=False", dict(foreach=False)),
                         ("torch SGD foreach=True", dict(foreach=True))]:
        opt = torch.optim.SGD(_params(make()), **kw, **extra)
        out.append((label, opt, opt.step))
    return out


BASELINES: dict[str, Callable[..., list[Baseline]]] = {"adamw": adamw, "muon": muon, "lion": lion, "sgd": sgd}


def for_spec(spec: str, named: Named, program: Any, make: Callable[[], Named], compiled: bool = True) -> list[Baseline]:
    """Baselines for a shipped spec name; none for other specs (their step is reported alone).
    ``compiled=False`` leaves out the torch.compile'd baselines (they compile for tens of seconds)."""
    fn = BASELINES.get(spec)
    return fn(named, program, make, compiled) if fn else []
