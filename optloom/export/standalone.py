"""The runtime every exported optimizer carries: this module's text below the marker line is copied
verbatim into each export (the names it uses above the marker — ``Ctx``, ``State``,
``group_combine`` — are copied from optloom beside it). It mirrors optloom's eager step: routing,
buckets (flat for elementwise rules, stacked by shape otherwise), runtime hyperparameters as
cached 0-d float64 tensors, periods, gates, restarts, frames and group reductions, and
``state_dict`` in optloom's format, so that checkpoints move both ways.
"""
from __future__ import annotations

import math  # noqa: F401  (used by selectors)
import re
from collections import defaultdict
from typing import Any, Callable, NamedTuple

import torch

from ..primitives.context import Ctx
from ..primitives.reductions import group_combine
from ..primitives.registry import State

SPEC_NAME = ""
SPEC_HASH = ""
HYPERPARAMS: dict[str, tuple[str, Any, bool]] = {}
CONSTRAINTS: list[tuple] = []
RULES: list["Rule"] = []

# ---- standalone runtime (copied into every export) ----


class HP(str):
    """A hyperparameter's name where a rule table holds a value: a period or a group reduction."""


class Rule(NamedTuple):
    label: str
    select: Callable[..., bool]  # (name, shape, ndim, numel, group, hp) -> does the rule take it
    uses_name: bool
    layout: str  # "flat" (elementwise rules: any shapes in one vector) | "stacked" (one shape, batched)
    step: Callable[..., None]  # (ctx, grad, hp): updates ctx.param and ctx.states functionally
    hypers: tuple[str, ...]  # the hyperparameters the rule reads
    runtime: tuple[str, ...]  # of which fed as 0-d float64 tensors (schedulers never change the code path)
    periods: tuple = ()  # T of every(T, ...) / restart(T, ...): ints or HP names
    reductions: tuple = ()  # group_reduce ops, in order: strings or HP names
    uses_group: bool = False  # a sampler reads the rule's parameter ids
    first_step: bool = False  # some state starts from a value computed on the parameter's first step


def period_starts(ctx: Ctx, period: int) -> bool:
    """Does a period of ``period`` steps start at this step (steps 1, T+1, 2T+1, …)?"""
    return ctx.phases[period]


def first_step(ctx: Ctx) -> bool:
    """Is this the parameter's first step (states that start from a value get it now)?"""
    return ctx.phases[0]


def start_state(ctx: Ctx, name: str, value: torch.Tensor, dtype: str | None = None) -> None:
    """State ``name`` starts from ``value`` (``state NAME = expression``, on the first step)."""
    if dtype is not None:
        value = value.to(getattr(torch, dtype))
    ctx.bind({name: name}, {name: State(name, dtype=dtype)}).state(name, value)
    ctx.states[name] = value


def cache(ctx: Ctx, name: str, value: torch.Tensor) -> torch.Tensor:
    """``every(T, value)`` on a step where its period starts: keep ``value`` in state ``name``."""
    ctx.bind({name: name}, {name: State(name)}).state(name, value)
    ctx.states[name] = value
    return value


def state_ref(ctx: Ctx, name: str, init: Callable, like: torch.Tensor, dtype: str | None = None,
              **args: Any) -> torch.Tensor:
    """Feedback state ``name`` as it was at the start of the step (``state NAME = init(like)``)."""
    spec = State(name, init=lambda c, x: init(c, x, **args), dtype=dtype)
    return ctx.bind({name: name}, {name: spec}).state(name, like)


def scoped_call(ctx: Ctx, fn: Callable, names: dict, specs: dict, inputs: list, args: dict,
                period: int | None = None, mask: Any = None, writes_param: bool = False) -> Any:
    """A call inside ``restart(T, ...)`` (its state starts afresh when a period starts, and it sees
    the step counted within the period) and/or ``gate(mask, ...)`` (its state and parameter
    writes are kept only where ``mask`` holds)."""
    ctx.bind(names, specs)
    step = ctx.step
    if period is not None:
        if period_starts(ctx, period):
            for full in names.values():
                ctx.states.pop(full, None)
        ctx.step = torch.remainder(step - 1, period) + 1 if isinstance(step, torch.Tensor) else (int(step) - 1) % period + 1
    old = {}
    if mask is not None:
        like = inputs[0] if inputs else ctx.param
        old = {full: ctx.state(local, like) for local, full in names.items()}
        param = ctx.param
    try:
        out = fn(ctx, *inputs, **args)
    finally:
        ctx.step = step
    if mask is not None:
        for full, before in old.items():
            ctx.states[full] = torch.where(ctx.bcast(mask, before), ctx.states[full], before)
        if writes_param:
            ctx.param = torch.where(ctx.bcast(mask, param), ctx.param, param)
    return out


def in_frames(ctx: Ctx, fn: Callable, names: dict, specs: dict, frames: list, inputs: list, args: dict) -> Any:
    """A stateful call inside rotated frames: its state lives in the parameter's frame, so it is
    mapped into the current frame when read and back when written. ``frames``: (enter, leave,
    the frame's state name), outermost first."""
    ctx.bind(names, specs)
    ops = [ctx.states[s] for _, _, s in frames]
    full = set(names.values())
    for k in [k for k in full if k in ctx.states]:
        v = ctx.states[k]
        for (enter, _, _), op in zip(frames, ops):
            v = enter(v, op)
        ctx.states[k] = v
    out = fn(ctx, *inputs, **args)
    for k in full:
        v = ctx.states[k]
        for (_, leave, _), op in zip(reversed(frames), reversed(ops)):
            v = leave(v, op)
        ctx.states[k] = v
    return out


def group_value(ctx: Ctx, index: int, fn: Callable, x: torch.Tensor, **args: Any) -> torch.Tensor:
    """A reduction over the rule's whole parameter group (every bucket): the probe pass records
    this bucket's per-parameter values, the step pass reads the combined value."""
    if ctx.reduced is not None:
        return ctx.reduced[index].expand(x.shape[:1])
    if ctx.probe is not None:
        ctx.probe[index] = x if x.ndim <= 1 else x.sum(dim=ctx.reduce_dims(x))
    return fn(ctx, x, **args)


def not_(x: Any) -> Any:
    """``not x``: a mask's complement; on numbers, 1 where ``x`` is 0 and 0 elsewhere (in ``x``'s dtype)."""
    if not isinstance(x, torch.Tensor):
        return not x
    return ~x if x.dtype == torch.bool else (x == 0).to(x.dtype)


def as_number(out: Any, a: Any, b: Any) -> Any:
    """A comparison of tensors as 0/1 in the operands' dtype."""
    if not isinstance(out, torch.Tensor):
        return out
    return out.to(torch.result_type(a, b) if isinstance(a, torch.Tensor) else torch.result_type(b, a))


def match(name: str | None, pattern: str) -> bool:
    """``name ~ "pattern"`` in a selector."""
    return name is not None and re.search(pattern, name) is not None


def index(value: Any, i: Any) -> Any:
    """``value[i]`` in a selector; an index past a shape's end does not match."""
    try:
        return value[i]
    except (IndexError, TypeError):
        if isinstance(value, tuple):
            return False
        raise


def check_value(spec: tuple, value: Any) -> str | None:
    """Why ``value`` breaks ``spec`` (None: it fits). ``spec``: ("num", ge, gt, le, lt) |
    ("in", choices) | ("tuple", [specs]) | ("list", spec) | ("union", [specs]) | ("any",)."""
    kind = spec[0]
    if kind == "any":
        return None
    if kind == "num":
        v = float(value)
        for bound, bad, text in ((spec[1], lambda b: v < b, ">="), (spec[2], lambda b: v <= b, ">"),
                                 (spec[3], lambda b: v > b, "<="), (spec[4], lambda b: v >= b, "<")):
            if bound is not None and bad(bound):
                return f"must be {text} {bound}"
        return None
    if kind == "in":
        return None if value in spec[1] else f"must be one of {', '.join(map(repr, spec[1]))}"
    if kind == "tuple":
        if not isinstance(value, (tuple, list)) or len(value) != len(spec[1]):
            return f"must be a tuple of {len(spec[1])}"
        for i, (s, v) in enumerate(zip(spec[1], value)):
            why = check_value(s, v)
            if why:
                return f"[{i}] {why}"
        return None
    if kind == "list":
        if not isinstance(value, (tuple, list)):
            return "must be a list"
        return next((f"[{i}] {w}" for i, v in enumerate(value) if (w := check_value(spec[1], v))), None)
    reasons = [check_value(s, value) for s in spec[1]]
    return None if any(r is None for r in reasons) else " or ".join(r for r in reasons if r)


def check_hyperparams(values: dict, where: str = "") -> None:
    """Type- and range-check hyperparameter values: TypeError for a wrong type, ValueError for a
    value out of the range the primitive that uses it declares."""
    for key, value in values.items():
        if key not in HYPERPARAMS or value is None and HYPERPARAMS[key][2]:  # an optional one, unset
            continue
        kind, default, _ = HYPERPARAMS[key]
        tensor = isinstance(value, torch.Tensor)
        ok = {"float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
              or tensor and v.numel() == 1 and v.is_floating_point(),
              "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
              "bool": lambda v: isinstance(v, bool), "str": lambda v: isinstance(v, str),
              "tuple": lambda v: isinstance(v, (tuple, list)) and len(v) == len(default)}[kind]
        if not ok(value):
            raise TypeError(f"{where}hyperparameter '{key}' must be {kind}"
                            f"{f' of length {len(default)}' if kind == 'tuple' else ''}, got {value!r}")
    for hyper, prim, arg, spec in CONSTRAINTS:
        if hyper in values and values[hyper] is not None:
            value = values[hyper]
            value = float(value) if isinstance(value, torch.Tensor) else value
            why = check_value(spec, value)
            if why:
                raise ValueError(f"{where}hyperparameter '{hyper}' = {values[hyper]!r} is invalid for {prim}: "
                                 f"argument '{arg}' {why} (got {value!r})")
