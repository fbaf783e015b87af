"""A rule's state buffers on a bucket layout, found by running the rule once on fake tensors."""
from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Iterable

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from ..check import ir
from ..check.selectors import ParamInfo
from ..primitives.context import Ctx
from .hypers import fake_runtime, runtime_values
from . import precision
from .interpret import phases, run_rule
from .specs import BucketMeta, StateSpec


def discover_states(rule: ir.RuleIR, meta: BucketMeta, declared: dict[str, ir.HyperParam], hypers: dict[str, Any],
                    group: tuple[int, ...] = ()) -> list[StateSpec]:
    """Which state buffers the rule needs on this layout, in first-use order (found on a step
    where every period starts, so every cached value is computed). ``declared``: the spec's
    hyperparameters; ``hypers``: their values (a param group's)."""
    found: list[StateSpec] = []

    def init_state(full: str, like: torch.Tensor, spec: Any) -> torch.Tensor:
        value = spec.initial(ctx, like)
        found.append(StateSpec(full, tuple(value.shape), value.dtype, spec))
        return value

    with FakeTensorMode(allow_non_fake_inputs=True):
        p = torch.zeros(meta.shape, dtype=meta.dtype, device=meta.device)
        g = torch.zeros(meta.shape, dtype=meta.dtype, device=meta.device)
        ctx = Ctx(layout=meta.layout, param=p, step=torch.ones((), dtype=torch.float64, device=meta.device),  # type: ignore[arg-type]
                  states={}, init_state=init_state, ids=fake_ids(meta, group), group=group,
                  phases={t: True for t, _ in phases(rule, hypers, 1)})
        values = {**hypers, **fake_runtime(runtime_values(rule, declared, hypers), meta.device)}
        run_rule(rule, ctx, g, values)
    return found


def fake_ids(meta: BucketMeta, group: tuple[int, ...]) -> torch.Tensor:
    """Member ids for tracing: the group's first ids (samplers read them), zeros after."""
    ids = torch.zeros(meta.shape[0], dtype=torch.int64, device=meta.device)  # (a list of N zeros: seconds at 124M)
    head = list(group[: meta.shape[0]])
    if head:
        ids[: len(head)] = torch.tensor(head, dtype=torch.int64, device=meta.device)
    return ids


def predict_state_bytes(program: Any, params: Iterable[Any], state_precision: Any = None,
                        param_precision: str | None = None) -> int:
    """Bytes of persistent state for these parameters (the optimizer's state buffers: what
    ``state_dict`` holds, plus, under a block format, each flat member's padding to a whole
    block), from a fake-tensor run of each rule at the spec's defaults, under the precision policy
    (the spec's, overridden by ``state_precision`` / ``param_precision`` as at construction)."""
    return sum(sum(r["bytes"] for r in rows) for rows in state_layout(program, params, state_precision,
                                                                       param_precision).values())


def state_layout(program: Any, params: Iterable[Any], state_precision: Any = None,
                 param_precision: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """Per parameter (by name or ``#i``): its stored buffers under the policy, each
    ``{state, buffer, format, dtype, bytes}`` (bytes including flat padding to a block)."""
    option = precision.Policy.of(state_precision, param_precision)
    hypers = program.defaults()
    policy = precision.policy_of(option, hypers)
    out: dict[str, list[dict[str, Any]]] = {}
    for i, (name, p) in enumerate(named_params(params)):
        rule = program.route(ParamInfo(name, tuple(p.shape), 0), hypers)
        if rule is None or not p.numel():
            continue
        meta = BucketMeta.of_param(rule, p)
        align = precision.alignment(policy, rule, meta.layout)
        if align > 1:
            meta = dataclasses.replace(meta, shape=(precision.padded(p.numel(), align),))
        wide = policy.param is not None and p.dtype == torch.bfloat16
        compute = dataclasses.replace(meta, dtype=torch.float32) if wide else meta
        logical = discover_states(rule, compute, program.hyperparams, hypers)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", precision.PrecisionWarning)
            formats = precision.resolve(policy, rule, logical, program.name)
        stored = precision.stored_specs(logical, formats, meta.layout, policy.param if wide else None, meta)
        out[name or f"#{i}"] = [{"state": s.logical or s.name, "buffer": s.name,
                                 "format": s.fmt.name if s.fmt is not None else str(s.dtype).removeprefix("torch."),
                                 "dtype": str(s.dtype).removeprefix("torch."), "bytes": s.nbytes, "numel": p.numel(),
                                 "param_bytes": p.numel() * p.element_size(), "rule": rule.label} for s in stored]
    return out


def named_params(params: Iterable[Any]) -> list[tuple[str | None, torch.Tensor]]:
    """``(name or None, tensor)`` of params given as tensors, ``(name, tensor)`` pairs or groups."""
    out: list[tuple[str | None, torch.Tensor]] = []
    for item in params:
        if isinstance(item, dict):
            out += named_params(item["params"])
        elif isinstance(item, tuple):
            out.append((item[0], item[1]))
        else:
            out.append((None, item))
    return out
