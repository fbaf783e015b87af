"""Which of a rule's hyperparameters a step graph bakes in and which it takes as inputs — the one
place this is decided.

Floats are inputs (0-d tensors). Ints, bools and strings are baked. A tuple is an input (a tuple
of 0-d tensors) when it holds only floats (:func:`optloom.kinds.structural_value`) and the rule
uses it only as runtime arguments of primitives (``adam(betas)``; ``RuleIR.runtime_args_only``),
so ``OneCycleLR`` cycling ``betas`` never recompiles; otherwise it is baked (a Newton–Schulz
coefficient table, a tuple indexed by an operator).
"""
from __future__ import annotations

from typing import Any

import torch

from .. import kinds
from ..check import ir


def fed_at_runtime(rule: ir.RuleIR, h: ir.HyperParam) -> bool:
    """Is hyperparameter ``h`` a graph input of ``rule``'s step graphs (else baked in)?"""
    if not h.structural:
        return True
    return h.type == "tuple" and not kinds.structural_value(h.default) and h.name in rule.runtime_args_only


def split_names(rule: ir.RuleIR, hyperparams: dict[str, ir.HyperParam]) -> tuple[list[str], list[str]]:
    """The hyperparameters the rule reads, sorted: (baked, fed at run time)."""
    names = sorted(rule.hyper_names)
    return ([n for n in names if not fed_at_runtime(rule, hyperparams[n])],
            [n for n in names if fed_at_runtime(rule, hyperparams[n])])


def structural_values(rule: ir.RuleIR, hyperparams: dict[str, ir.HyperParam], group: dict[str, Any]) -> dict[str, Any]:
    """The baked hyperparameters the rule reads, with the group's values (lists as tuples): part
    of a step graph's identity."""
    return {n: freeze(group[n]) for n in split_names(rule, hyperparams)[0]}


def runtime_values(rule: ir.RuleIR, hyperparams: dict[str, ir.HyperParam], group: dict[str, Any]) -> dict[str, Any]:
    """The runtime hyperparameters the rule reads, with the group's values (fed as 0-d tensors)."""
    return {n: group[n] for n in split_names(rule, hyperparams)[1]}


def fake_runtime(runtime: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Runtime values as the graph sees them: 0-d float64 tensors (tuples of them)."""
    def leaf(v: Any) -> torch.Tensor:
        return torch.tensor(float(v), dtype=torch.float64, device=device)

    return {k: kinds.rebuild(v, iter([leaf(x) for x in kinds.runtime_leaves(v)])) for k, v in runtime.items()}


def freeze(v: Any) -> Any:
    """A hyperparameter value as a graph-key part (lists as tuples, recursively)."""
    return tuple(freeze(x) for x in v) if isinstance(v, (list, tuple)) else v
