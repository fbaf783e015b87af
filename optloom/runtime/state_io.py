"""``state_dict`` / ``load_state_dict`` for spec optimizers.

The saved dict is torch's (``state`` by parameter index with the spec's state names and
``step``; ``param_groups`` with hyperparameters and ``param_names`` where names were given) plus
``optloom: {format, spec, hash}``. Loading validates everything — spec hash, group and parameter
counts, state names, shapes — before changing anything, and explains what does not fit.
"""
from __future__ import annotations

from typing import Any

import torch

from ..check.program import Program
from ..errors import StateDictError
from ..lowering.layout import Layout, layout_of
from ..lowering.states import BucketMeta, discover_states
from .buckets import scalar_dtype
from .plan import Plan

FORMAT = 1


def stamp(sd: dict[str, Any], program: Program) -> dict[str, Any]:
    """torch's state_dict plus ``optloom: {format, spec, hash}``."""
    sd["optloom"] = {"format": FORMAT, "spec": program.name, "hash": program.hash}
    return sd


def torch_part(sd: dict[str, Any]) -> dict[str, Any]:
    """What torch's ``load_state_dict`` reads (everything but optloom's entry)."""
    return {k: v for k, v in sd.items() if k != "optloom"}


def restore_steps(state: Any) -> None:
    """Loaded ``step`` values as 0-d tensors in the scalar dtype of their parameter's device."""
    for p, st in state.items():
        if "step" in st:
            st["step"] = torch.as_tensor(float(st["step"]), dtype=scalar_dtype(p.device), device=p.device)


def validate(sd: Any, plan: Plan, param_groups: list[dict[str, Any]]) -> None:
    """Raise :class:`StateDictError` unless ``sd`` fits: spec hash, groups, parameters, state names,
    shapes and dtypes are all checked before anything is loaded."""
    prog = plan.program
    if not isinstance(sd, dict) or "state" not in sd or "param_groups" not in sd:
        raise StateDictError("not an optimizer state_dict (expected keys 'state' and 'param_groups')")
    meta = sd.get("optloom")
    if not isinstance(meta, dict):
        raise StateDictError("this state_dict was not written by optloom (no 'optloom' entry); "
                             f"spec '{prog.name}' cannot interpret its state")
    if meta.get("format") != FORMAT:
        raise StateDictError(f"state_dict format {meta.get('format')!r} is not supported (expected {FORMAT})")
    if meta.get("hash") != prog.hash:
        if meta.get("spec") == prog.name:
            raise StateDictError(f"the checkpoint was written by a different version of spec '{prog.name}' "
                                 f"(hash {meta.get('hash')}, now {prog.hash}): the spec was edited since, and its "
                                 "state may mean something else; load it with the spec text it was saved with")
        raise StateDictError(f"the checkpoint was written by spec '{meta.get('spec')}' (hash {meta.get('hash')}), "
                             f"but this optimizer runs spec '{prog.name}' (hash {prog.hash})")
    groups = sd["param_groups"]
    mine = param_groups
    if len(groups) != len(mine):
        raise StateDictError(f"the checkpoint has {len(groups)} param group(s), this optimizer {len(mine)}")
    by_index: dict[int, torch.Tensor] = {}
    for gi, (g, m) in enumerate(zip(groups, mine)):
        if len(g["params"]) != len(m["params"]):
            raise StateDictError(f"param group {gi}: the checkpoint has {len(g['params'])} parameters, "
                                 f"this optimizer {len(m['params'])}")
        if g.get("param_names") and m.get("param_names") and list(g["param_names"]) != list(m["param_names"]):
            diff = next(f"'{a}' vs '{b}'" for a, b in zip(g["param_names"], m["param_names"]) if a != b)
            raise StateDictError(f"param group {gi}: parameter names differ ({diff})")
        hyper = {k: g[k] for k in prog.hyperparams if k in g}
        try:
            prog.validate_hyperparams(hyper, f"param group {gi} of the checkpoint: ")
        except (TypeError, ValueError) as e:
            raise StateDictError(str(e)) from None
        by_index.update(zip(g["params"], m["params"]))
    for idx, st in sd["state"].items():
        if idx not in by_index:
            raise StateDictError(f"state for parameter index {idx}, which no param group lists")
        _validate_param_state(plan, param_groups, by_index[idx], st)

def _validate_param_state(plan: Plan, param_groups: list[dict[str, Any]], p: torch.Tensor, st: Any) -> None:
    name = plan.labels[p]
    if not isinstance(st, dict):
        raise StateDictError(f"state of parameter {name} is not a dict")
    rule = plan.routes[p]
    gi = next(i for i, g in enumerate(param_groups) if any(q is p for q in g["params"]))
    hypers = {k: param_groups[gi][k] for k in plan.program.hyperparams}
    layout = layout_of(rule)
    specs = discover_states(rule, BucketMeta.of_param(rule, p), plan.program.hyperparams, hypers, plan.rule_group(rule))
    want = {s.name: (tuple(p.shape) if layout is Layout.FLAT else s.shape[1:]) for s in specs}
    dtypes = {s.name: s.dtype for s in specs}
    have = set(st) - {"step"}
    if "step" not in st:
        raise StateDictError(f"state of parameter {name} has no 'step'")
    step = st["step"]
    if not (isinstance(step, (int, float)) or (isinstance(step, torch.Tensor) and step.numel() == 1)) \
            or float(step) < 0 or float(step) != int(float(step)):
        raise StateDictError(f"state of parameter {name}: 'step' must be a non-negative whole number, got {step!r}")
    if have != set(want):
        missing, extra = sorted(set(want) - have), sorted(have - set(want))
        raise StateDictError(f"state of parameter {name} (rule '{rule.label}') does not match the spec: "
                             + "; ".join(x for x in (f"missing {missing}" if missing else "",
                                                     f"unexpected {extra}" if extra else "") if x))
    for key, shape in want.items():
        t = st[key]
        if not isinstance(t, torch.Tensor):
            raise StateDictError(f"state '{key}' of parameter {name} is not a tensor")
        if tuple(t.shape) != shape:
            raise StateDictError(f"state '{key}' of parameter {name} has shape {tuple(t.shape)}, expected {shape}")
        if t.is_floating_point() != dtypes[key].is_floating_point or \
                (not t.is_floating_point() and t.dtype != dtypes[key]):
            expected = "floating point" if dtypes[key].is_floating_point else str(dtypes[key])
            raise StateDictError(f"state '{key}' of parameter {name} has dtype {t.dtype}, expected {expected}")
