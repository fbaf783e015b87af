"""The precision policy as a contestant axis of ``optloom bench --precision POLICY``.

Each policy adds a candidate ``optloom SPEC (BACKEND, state_precision=POLICY)`` on the same
parameters; for ``adamw`` the low-precision optimizers a user would pick instead are added where
they import (optional dependencies, ``pip install optloom[lowbit]``): ``torchao.optim.AdamW8bit``
and ``AdamW4bit`` (block-quantized moments, block 256 / 128), ``torchao.optim._AdamW`` with
``bf16_stochastic_round=True`` on bfloat16 parameters (beside an optloom candidate on the same
bf16 parameters with ``param_precision="bf16_sr"``), and ``bitsandbytes.optim.AdamW8bit``.
Persistent state of every optloom candidate is compared with the prediction under its policy.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

import optloom

from . import memory
from .timing import Candidate

Named = list[tuple[str, torch.nn.Parameter]]


def parse(values: list[str] | None) -> list[str]:
    """``--precision`` values: a policy with ``:`` is one policy; otherwise comma-separated ones."""
    out: list[str] = []
    for v in values or []:
        out += [v] if ":" in v or "=" in v else [x.strip() for x in v.split(",") if x.strip()]
    return out


def _bf16(named: Named) -> Named:
    out = []
    for n, p in named:
        q = torch.nn.Parameter(p.detach().to(torch.bfloat16))
        q.grad = torch.zeros_like(q)
        out.append((n, q))
    return out


def candidates(spec: str, make: Callable[[], Named], backend: str, policies: list[str],
               with_baselines: bool) -> list[Candidate]:
    """optloom candidates under each policy, and the low-precision baselines of ``adamw``."""
    out: list[Candidate] = []
    for pol in policies:
        named = make()
        opt = optloom.optimizer(spec, named, backend=backend, state_precision=pol)
        out.append(Candidate(f"optloom {spec} ({backend}, state_precision={pol})", opt.step,
                             lambda n=named: [p.grad for _, p in n], opt, True))
    if spec == "adamw" and any(p.startswith("bf16") for p in policies):
        named = _bf16(make())
        opt = optloom.optimizer(spec, named, backend=backend, state_precision="bf16_sr", param_precision="bf16_sr")
        out.append(Candidate(f"optloom {spec} ({backend}, bf16 params, param_precision=bf16_sr, "
                             "state_precision=bf16_sr)", opt.step, lambda n=named: [p.grad for _, p in n], opt, True))
    if spec == "adamw" and with_baselines:
        out += baselines(make, policies)
    return out


def baselines(make: Callable[[], Named], policies: list[str]) -> list[Candidate]:
    """The low-precision AdamW implementations that import here (each optional)."""
    out: list[Candidate] = []
    kinds = {p.split("_")[0].split("/")[0] for p in policies}

    def add(label: str, build: Callable[[list[torch.nn.Parameter]], Any], bf16: bool = False) -> None:
        try:
            named = _bf16(make()) if bf16 else make()
            params = [p for _, p in named]
            opt = build(params)
        except Exception as e:  # noqa: BLE001 - not installed, or no CPU support
            print(f"bench: baseline {label} left out ({type(e).__name__}: {str(e)[:120]})")
            return
        out.append(Candidate(label, opt.step, [p.grad for p in params], opt))

    if "q8" in kinds:
        add("torchao AdamW8bit", lambda ps: _torchao().AdamW8bit(ps, lr=1e-3, weight_decay=0.01))
        add("bitsandbytes AdamW8bit", lambda ps: _bnb().optim.AdamW8bit(ps, lr=1e-3, weight_decay=0.01))
    if "q4" in kinds:
        add("torchao AdamW4bit", lambda ps: _torchao().AdamW4bit(ps, lr=1e-3, weight_decay=0.01))
    if "bf16" in kinds:
        add("torchao _AdamW bf16 params, bf16_stochastic_round=True",
            lambda ps: _torchao()._AdamW(ps, lr=1e-3, weight_decay=0.01, bf16_stochastic_round=True), bf16=True)
    return out


def _torchao() -> Any:
    import torchao.optim

    return torchao.optim


def _bnb() -> Any:
    import bitsandbytes

    return bitsandbytes


def state_memory(cands: list[Candidate], named_of: Callable[[Candidate], Named]) -> list[dict]:
    """Persistent state of each optloom policy candidate against its prediction."""
    from optloom.lowering.states import predict_state_bytes

    rows = []
    for c in cands:
        opt = c.optimizer
        if not c.is_optloom or not hasattr(opt, "precision"):
            continue
        named = named_of(c)
        numel = sum(p.numel() for _, p in named)
        pol = opt.precision
        predicted = predict_state_bytes(opt.program, named, dict((k, f.name) for k, f in pol.states) or None,
                                        pol.param)
        measured = memory.bucket_state_bytes(opt)
        rows.append({"name": c.name, "state_bytes": measured, "predicted_state_bytes": predicted,
                     "state_matches_prediction": measured == predicted, "bytes_per_param": measured / max(numel, 1)})
    return rows


def targets(report: dict) -> list[dict]:
    """Issue 15's targets on adamw-10m (step ratios and bytes) from a report's cases."""
    out: list[dict] = []
    case = next((c for c in report.get("cases", []) if c["spec"] == "adamw" and c["params"]["name"] == "adamw-10m"
                 and "candidates" in c), None)

    def median(part: str) -> float | None:
        if case is None:
            return None
        for s in case["candidates"]:
            if part in s["name"]:
                return s["median_ms"]
        return None

    def ratio(a: str | None, b: str) -> float | None:
        x, y = (median(a) if a else None), median(b)
        return None if x is None or y is None else x / y

    def add(name: str, value: float | None, op: str, threshold: float) -> None:
        met = None if value is None else (value <= threshold)
        out.append({"target": name, "value": value, "op": op, "threshold": threshold, "met": met})

    mem = {r["name"]: r for r in (case or {}).get("precision_memory", [])}

    def bpp(part: str) -> float | None:
        return next((r["bytes_per_param"] for n, r in mem.items() if part in n), None)

    bf, q8 = "state_precision=bf16_sr)", "state_precision=q8)"
    add("adamw bf16_sr moments step / torch AdamW fused=True (adamw-10m)", ratio(bf, "torch AdamW fused=True"),
        "<=", 0.80)
    add("adamw bf16_sr moments: state bytes per parameter", bpp(bf), "<=", 4.0)
    add("adamw q8 moments step / torch AdamW fused=True (adamw-10m)", ratio(q8, "torch AdamW fused=True"), "<=", 0.75)
    add("adamw q8 moments step / torchao AdamW8bit (adamw-10m)", ratio(q8, "torchao AdamW8bit"), "<=", 0.10)
    add("adamw q8 moments: state bytes per parameter", bpp(q8), "<=", 2.1)
    for r in mem.values():
        out.append({"target": f"{r['name']}: state bytes == predicted", "value": r["state_bytes"], "op": "==",
                    "threshold": r["predicted_state_bytes"], "met": r["state_matches_prediction"]})
    return out
