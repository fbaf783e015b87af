"""A rule's state buffers on a bucket layout, found by running the rule once on fake tensors."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from ..check import ir
from ..check.selectors import ParamInfo
from ..primitives.context import Ctx
from .hypers import fake_runtime, runtime_values
from .interpret import phases, run_rule
from .layout import Layout, layout_of


@dataclass(frozen=True)
class BucketMeta:
    """What a bucket's step graph is specialized to: layout, buffer shape, dtype, device."""

    layout: Layout
    shape: tuple[int, ...]
    dtype: torch.dtype
    device: torch.device

    @classmethod
    def of_param(cls, rule: ir.RuleIR, p: torch.Tensor) -> "BucketMeta":
        """The meta of a bucket holding ``p`` alone."""
        layout = layout_of(rule)
        return cls(layout, layout.buffer_shape([tuple(p.shape)]), p.dtype, p.device)


@dataclass(frozen=True)
class StateSpec:
    """A state buffer of a bucket: its name, buffer shape and dtype, and the primitive's State
    declaration that builds its initial value."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    init: Any

    def allocate(self, layout: Layout, device: torch.device, ids: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        like = torch.zeros(self.shape, dtype=self.dtype, device=device)
        ctx = Ctx(layout=layout, param=like, step=step, states={}, ids=ids)  # type: ignore[arg-type]
        return self.init.initial(ctx, like).to(device)

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * torch.empty((), dtype=self.dtype).element_size()


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


def predict_state_bytes(program: Any, params: Iterable[Any]) -> int:
    """Bytes of persistent state for these parameters (what ``state_dict`` holds), from a
    fake-tensor run of each rule at the spec's defaults."""
    total = 0
    hypers = program.defaults()
    for name, p in named_params(params):
        rule = program.route(ParamInfo(name, tuple(p.shape), 0), hypers)
        if rule is not None and p.numel():
            meta = BucketMeta.of_param(rule, p)
            total += sum(s.nbytes for s in discover_states(rule, meta, program.hyperparams, hypers))
    return total


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
