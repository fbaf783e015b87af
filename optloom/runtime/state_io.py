"""``state_dict`` / ``load_state_dict`` for spec optimizers.

The saved dict is torch's (``state`` by parameter index with the spec's state names and
``step``; ``param_groups`` with hyperparameters and ``param_names`` where names were given) plus
``optloom: {format, spec, hash}``. Loading validates everything — spec hash, group and parameter
counts, state names, shapes — before changing anything, and explains what does not fit.
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import torch

from ..check.program import Program
from ..errors import StateDictError
from ..lowering import precision
from ..lowering.layout import Layout, layout_of
from ..lowering.states import BucketMeta, discover_states
from .buckets import scalar_dtype
from ..primitives.storage import Format
from .plan import Plan

FORMAT = 1


def stamp(sd: dict[str, Any], program: Program, storage: dict[int, dict[str, str]] | None = None) -> dict[str, Any]:
    """torch's state_dict plus ``optloom: {format, spec, hash}`` and, where a precision policy
    stores states in another form, ``storage: {parameter index: {state: format}}``."""
    sd["optloom"] = {"format": FORMAT, "spec": program.name, "hash": program.hash}
    if storage:
        sd["optloom"]["storage"] = storage
    return sd


def _params_by_index(opt: Any) -> list[torch.Tensor]:
    return [p for g in opt.param_groups for p in g["params"]]


def held_by_index(opt: Any) -> dict[int, dict[str, str]]:
    """The stored form of each parameter's state, by state_dict index (formatted states only)."""
    held = opt.plan.held
    return {i: {k: f.name for k, f in held[p].items()} for i, p in enumerate(_params_by_index(opt))
            if held.get(p)}


def set_held(opt: Any, storage: dict[Any, dict[str, str]]) -> None:
    """Record the stored form of loaded state (``optloom.storage`` of a checkpoint)."""
    params = _params_by_index(opt)
    opt.plan.held = {params[int(i)]: {k: Format.parse(v) for k, v in st.items()} for i, st in storage.items()}


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
    storage = meta.get("storage") or {}
    try:
        saved = {int(i): {k: Format.parse(v) for k, v in st.items()} for i, st in storage.items()}
    except (TypeError, ValueError, AttributeError) as e:
        raise StateDictError(f"the checkpoint's storage formats do not parse: {e}") from None
    converted: list[str] = []
    for idx, st in sd["state"].items():
        if idx not in by_index:
            raise StateDictError(f"state for parameter index {idx}, which no param group lists")
        converted += _validate_param_state(plan, param_groups, by_index[idx], st, saved.get(int(idx), {}))
    if converted:
        shown = "; ".join(converted[:6]) + (f"; and {len(converted) - 6} more" if len(converted) > 6 else "")
        warnings.warn(f"optloom: the checkpoint's state is stored in another form than this optimizer's precision "
                      f"policy; converting (decoded, then encoded to nearest) at the next step: {shown}",
                      UserWarning, stacklevel=3)

def _validate_param_state(plan: Plan, param_groups: list[dict[str, Any]], p: torch.Tensor, st: Any,
                          saved: dict[str, Format]) -> list[str]:
    """Raise unless ``st`` fits parameter ``p``; returns the conversions loading it implies."""
    name = plan.labels[p]
    if not isinstance(st, dict):
        raise StateDictError(f"state of parameter {name} is not a dict")
    rule = plan.routes[p]
    gi = next(i for i, g in enumerate(param_groups) if any(q is p for q in g["params"]))
    hypers = {k: param_groups[gi][k] for k in plan.program.hyperparams}
    layout = layout_of(rule)
    policy = precision.policy_of(plan.policy, hypers)
    meta = BucketMeta.of_param(rule, p)
    wide = policy.param is not None and p.dtype == torch.bfloat16
    compute = dataclasses.replace(meta, dtype=torch.float32) if wide else meta
    specs = discover_states(rule, compute, plan.program.hyperparams, hypers, plan.rule_group(rule))
    formats = precision.resolve(policy, rule, specs, plan.program.name, warn=False)
    want: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
    notes = []
    for s in specs:
        shape = tuple(p.shape) if layout is Layout.FLAT else s.shape[1:]
        want.update(precision.member_parts(s.name, saved.get(s.name), shape, s.dtype))
        if saved.get(s.name) != formats.get(s.name):
            was, now = saved.get(s.name), formats.get(s.name)
            notes.append(f"{name}.{s.name}: {was.name if was else str(s.dtype).removeprefix('torch.')} -> "
                         f"{now.name if now else str(s.dtype).removeprefix('torch.')}")
    have = set(st) - {"step", precision.KAHAN}
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
    for key, (shape, dtype) in want.items():
        t = st[key]
        if not isinstance(t, torch.Tensor):
            raise StateDictError(f"state '{key}' of parameter {name} is not a tensor")
        if tuple(t.shape) != shape:
            raise StateDictError(f"state '{key}' of parameter {name} has shape {tuple(t.shape)}, expected {shape}")
        stored = key not in {s.name for s in specs} or saved.get(key) is not None
        if (stored and t.dtype != dtype) or t.is_floating_point() != dtype.is_floating_point or \
                (not t.is_floating_point() and t.dtype != dtype):
            expected = str(dtype) if stored or not dtype.is_floating_point else "floating point"
            raise StateDictError(f"state '{key}' of parameter {name} has dtype {t.dtype}, expected {expected}")
    return notes
