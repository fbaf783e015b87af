"""Buckets: the parameters one graph updates together.

A bucket holds parameters of one rule, param group, dtype and device that share a step count —
and, for ``stacked`` rules (any non-elementwise primitive), one shape. Its state lives in one
buffer per state name (``(N,)`` flat or ``(B, *shape)`` stacked); ``optimizer.state[p]`` holds
views into those buffers, so ``state_dict()`` reads them directly.

The parameters themselves live in a bucket buffer too (``param_storage="bucket"``, the default):
each ``p.data`` is re-pointed at a view of it, so the step graph updates them in place with no
gather or scatter. If a parameter's data is replaced behind our back the bucket notices (data
pointers are checked every step) and adopts it again. With ``param_storage="model"`` parameters
stay where they are and are gathered and scattered around the graph each step. Gradients are
always gathered (autograd allocates them) into a preallocated bucket buffer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable

import torch

from . import ir
from .lower import BucketMeta, StateSpec, discover_states, lower


def scalar_dtype(device: torch.device) -> torch.dtype:
    """Step counts and runtime hyperparameters are float64 0-d tensors (float32 where unsupported)."""
    return torch.float32 if device.type == "mps" else torch.float64


@dataclass
class Bucket:
    rule: ir.RuleIR
    group: int
    params: list[torch.Tensor]
    ids: list[int]
    step: torch.Tensor
    layout: str
    states: dict[str, torch.Tensor] = field(default_factory=dict)
    specs: list[StateSpec] = field(default_factory=list)
    fn: Callable[..., torch.Tensor] | None = None
    fn_key: tuple = ()
    param_buf: torch.Tensor | None = None  # owned storage: params are views of it
    grad_buf: torch.Tensor | None = None
    host_step: int = 0  # the step count on the host: picks the step graph of every(T)/restart(T) rules
    rule_group: tuple[int, ...] = ()  # ids of all parameters of the rule, for group samplers
    probe_fn: Callable[..., Any] | None = None  # group reductions: the per-member values to reduce
    _ptrs: list[int] = field(default_factory=list)

    @cached_property
    def meta(self) -> BucketMeta:
        """Layout, buffer shape, dtype, device (fixed: a bucket's members never change)."""
        p = self.params[0]
        if self.layout == "flat":
            shape: tuple[int, ...] = (sum(q.numel() for q in self.params),)
        else:
            shape = (len(self.params), *p.shape)
        return BucketMeta(self.layout, shape, p.dtype, p.device)

    def gather(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        if self.layout == "flat":
            return torch.cat([t.reshape(-1) for t in tensors]) if len(tensors) > 1 else tensors[0].reshape(-1)
        return torch.stack(tensors)

    def own_params(self) -> None:
        """Move the parameters into one bucket buffer and point each ``p.data`` at its view."""
        self.param_buf = self.gather([p.detach() for p in self.params]).contiguous()
        for p, view in zip(self.params, self.members(self.param_buf)):
            p.data = view
        self._ptrs = [p.data_ptr() for p in self.params]

    def owns_params(self) -> bool:
        return self.param_buf is not None and all(p.data_ptr() == q for p, q in zip(self.params, self._ptrs))

    def gather_grads(self, grads: list[torch.Tensor]) -> torch.Tensor:
        """Gradients in the bucket layout, written into a buffer reused across steps."""
        if self.grad_buf is None:
            self.grad_buf = torch.empty(self.meta.shape, dtype=self.params[0].dtype, device=self.params[0].device)
        if self.layout == "flat":
            torch.cat([g.reshape(-1) for g in grads], out=self.grad_buf)
        else:
            torch.stack(grads, out=self.grad_buf)
        return self.grad_buf

    def members(self, buf: torch.Tensor) -> list[torch.Tensor]:
        """Per-parameter views of a bucket-layout buffer."""
        if self.layout == "flat":
            out, off = [], 0
            for p in self.params:
                out.append(buf[off: off + p.numel()].view(p.shape))
                off += p.numel()
            return out
        return list(buf.unbind(0))

    def state_views(self, buf: torch.Tensor, spec: StateSpec) -> list[torch.Tensor]:
        if self.layout == "flat" and buf.numel() != self.meta.shape[0]:
            raise ValueError(f"state '{spec.name}' of a flat bucket must have one entry per parameter entry")
        return self.members(buf)

    def materialize(self, hypers: dict[str, Any], adopted: list[dict[str, torch.Tensor]]) -> None:
        """Discover state shapes and allocate buffers, adopting existing per-parameter state."""
        meta = self.meta
        self.specs = discover_states(self.rule, meta, hypers, self.rule_group)
        ids = torch.tensor(self.ids, dtype=torch.int64, device=meta.device)
        for spec in self.specs:
            if all(spec.name in a for a in adopted):
                parts = [a[spec.name].to(device=meta.device, dtype=spec.dtype) for a in adopted]
                buf = self.gather(parts)
                if tuple(buf.shape) != spec.shape:
                    raise ValueError(f"state '{spec.name}' has shape {tuple(buf.shape)} for this bucket, "
                                     f"expected {spec.shape}")
            else:
                buf = spec.allocate(self.layout, meta.device, ids, self.step)
            self.states[spec.name] = buf.contiguous()

    def split(self, keep: list[bool]) -> tuple["Bucket", "Bucket"]:
        """Split into (kept, rest) with copies of their state and step (used when only some members
        have gradients: their step counts diverge from here on)."""
        parts = []
        for flag in (True, False):
            idx = [i for i, k in enumerate(keep) if k == flag]
            # type(self): keeps the subclass (distributed.ShardedBucket for FSDP2 DTensor parameters)
            b = type(self)(self.rule, self.group, [self.params[i] for i in idx], [self.ids[i] for i in idx],
                           self.step.clone(), self.layout, host_step=self.host_step, rule_group=self.rule_group)
            if self.param_buf is not None:
                b.own_params()
            b.specs = self.specs
            for spec in self.specs:
                views = self.state_views(self.states[spec.name], spec)
                b.states[spec.name] = b.gather([views[i] for i in idx]).contiguous()
            parts.append(b)
        return parts[0], parts[1]


def bucket_key(rule: ir.RuleIR, group: int, p: torch.Tensor, step: float) -> tuple:
    shape = tuple(p.shape) if rule.layout == "stacked" else ()
    return (group, rule.label, p.dtype, p.device, shape, step)


def predict_state_bytes(program: Any, params: Any) -> int:
    """Bytes of persistent state for these parameters, from a fake-tensor run of each rule."""
    from .selectors import ParamInfo

    total = 0
    hypers = program.defaults()
    named = _named(params)
    for name, p in named:
        rule = program.route(ParamInfo(name, tuple(p.shape), 0), hypers)
        if rule is None:
            continue
        meta = BucketMeta(rule.layout, (p.numel(),) if rule.layout == "flat" else (1, *p.shape), p.dtype, p.device)
        for spec in discover_states(rule, meta, hypers):
            total += math.prod(spec.shape) * torch.empty((), dtype=spec.dtype).element_size()
    return total


def _named(params: Any) -> list[tuple[str | None, torch.Tensor]]:
    out: list[tuple[str | None, torch.Tensor]] = []
    for item in params:
        if isinstance(item, dict):
            out += _named(item["params"])
        elif isinstance(item, tuple):
            out.append((item[0], item[1]))
        else:
            out.append((None, item))
    return out
