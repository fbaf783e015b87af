"""Buckets: the parameters one graph updates together.

A bucket holds parameters of one rule, param group, dtype and device that share a step count —
and, for ``stacked`` rules (any non-elementwise primitive), one shape. Its state lives in one
buffer per state name (``(N,)`` flat or ``(B, *shape)`` stacked); ``optimizer.state[p]`` holds
views into those buffers, so ``state_dict()`` reads them directly.

The parameters themselves live in a bucket buffer too (``param_storage="bucket"``, the default):
each ``p.data`` is re-pointed at a view of it, so the step graph updates them in place with no
gather or scatter. If a parameter's data is replaced behind our back the bucket notices (data
pointers are checked every step) and adopts it again. With ``param_storage="model"`` parameters
stay where they are and are gathered and scattered around the graph each step.

Gradients land in a preallocated bucket buffer too. With bucket storage the first step copies
them in and re-points each ``p.grad`` at its view of the buffer; from then on backward accumulates
into it in place (``SpecOptimizer.zero_grad()`` zeroes the buffer and keeps the views) and the step
copies nothing. A gradient that stopped being its view (set to None and recomputed, replaced) is
noticed by its data pointer and copied in. With ``param_storage="model"`` they are gathered each step.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable

import torch

from ..check import ir
from ..lowering.layout import Layout, layout_of
from ..lowering.lower import StepGraph
from ..lowering import precision
from ..lowering.states import BucketMeta, StateSpec, discover_states
from ..primitives.storage import Format, pad_to


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
    layout: Layout
    states: dict[str, torch.Tensor] = field(default_factory=dict)
    specs: list[StateSpec] = field(default_factory=list)
    graph: StepGraph | None = None  # this step's lowered graph (the executor picks it)
    graph_key: tuple = ()
    param_buf: torch.Tensor | None = None  # owned storage: params are views of it
    grad_buf: torch.Tensor | None = None
    host_step: int = 0  # the step count on the host: picks the step graph of every(T)/restart(T) rules
    rule_group: tuple[int, ...] = ()  # ids of all parameters of the rule, for group samplers
    # precision policy (lowering.precision): flat members start at multiples of `align` (a block
    # format's block), the formats of formatted states, the bf16 parameter mode and the seed
    align: int = 1
    formats: dict[str, Format] = field(default_factory=dict)
    param_mode: str | None = None
    seed: int = 0
    _ptrs: list[int] = field(default_factory=list)
    _grad_views: list[torch.Tensor] = field(default_factory=list, repr=False)  # per member, of grad_buf
    _view_ptrs: list[int] = field(default_factory=list, repr=False)  # their data pointers

    @cached_property
    def meta(self) -> BucketMeta:
        """Layout, buffer shape, dtype, device (fixed: a bucket's members never change)."""
        p = self.params[0]
        if self.layout is Layout.FLAT and self.align > 1:
            return BucketMeta(self.layout, (sum(pad_to(q.numel(), self.align) for q in self.params),), p.dtype, p.device)
        return BucketMeta(self.layout, self.layout.buffer_shape([tuple(q.shape) for q in self.params]), p.dtype, p.device)

    @cached_property
    def ids_tensor(self) -> torch.Tensor:
        """The members' parameter ids, on the bucket's device (a step graph input)."""
        return torch.tensor(self.ids, dtype=torch.int64, device=self.params[0].device)

    def gather(self, tensors: list[torch.Tensor], granularity: int = 1) -> torch.Tensor:
        """Members' tensors in the bucket layout (flat: each at its aligned offset, zero padded)."""
        if self.layout is Layout.FLAT and self.align > 1:
            out = torch.zeros(self.meta.shape[0] // granularity, dtype=tensors[0].dtype, device=tensors[0].device)
            torch._foreach_copy_([v.reshape(-1) for v in self.members(out, granularity)],
                                 [t.reshape(-1) for t in tensors])
            return out
        if self.layout is Layout.FLAT:
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
            self.grad_buf = self._new_grad_buf()
        if self.layout is Layout.FLAT and self.align > 1:
            torch._foreach_copy_(self.members(self.grad_buf), [g.reshape(q.shape) for g, q in zip(grads, self.params)])
        elif self.layout is Layout.FLAT:
            torch.cat([g.reshape(-1) for g in grads], out=self.grad_buf)
        else:
            torch.stack(grads, out=self.grad_buf)
        return self.grad_buf

    def grads_in_place(self, check: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """The members' gradients in the bucket layout, for a bucket that owns its parameters.

        Each ``p.grad`` is re-pointed at its view of ``grad_buf`` (after copying its values in), so
        backward accumulates straight into the buffer (autograd adds in place into an existing
        ``.grad``) and later steps copy nothing. A member whose ``p.grad`` is not its view any more
        (set to None and recomputed by autograd, replaced by the user, accumulated out of place
        under ``create_graph=True``) is found by its data pointer and copied in again;
        ``check(p)`` validates such a gradient and returns it in the parameter's dtype.
        """
        if self.grad_buf is None:
            self.grad_buf = self._new_grad_buf()
        if not self._grad_views:
            self._grad_views = self.members(self.grad_buf)
            self._view_ptrs = [v.data_ptr() for v in self._grad_views]
        views = self._grad_views
        live = self.live_grad_views()
        if all(live):
            return self.grad_buf
        stale = [i for i, ok in enumerate(live) if not ok]
        base = self.grad_buf.untyped_storage().data_ptr()
        src = [check(self.params[i]) for i in stale]
        # a gradient that is (part of) this very buffer, e.g. another member's view: copy it first
        src = [g.clone() if g.untyped_storage().data_ptr() == base else g for g in src]
        fresh = self.members(self.grad_buf)  # new view objects: a stale one may have had `.data` moved
        for i in stale:
            views[i], self._view_ptrs[i] = fresh[i], fresh[i].data_ptr()
        if len(stale) == len(views):
            self.gather_grads(src)
        else:
            torch._foreach_copy_([views[i] for i in stale], src)
        for i in stale:
            self.params[i].grad = views[i]
        return self.grad_buf

    def live_grad_views(self) -> list[bool]:
        """Which members' ``p.grad`` is currently their view of ``grad_buf``."""
        if not self._grad_views:
            return [False] * len(self.params)
        # fast path: p.grad is still the very view object we set, over the same memory (a `.data =`
        # assignment on it moves its pointer); otherwise compare pointer, shape and strides
        return [v.data_ptr() == ptr if p.grad is v else _same_view(p.grad, v, ptr)
                for p, v, ptr in zip(self.params, self._grad_views, self._view_ptrs)]

    def _new_grad_buf(self) -> torch.Tensor:
        p = self.params[0]
        make = torch.zeros if self.align > 1 else torch.empty  # padding entries stay zero
        return make(self.meta.shape, dtype=p.dtype, device=p.device)

    def members(self, buf: torch.Tensor, granularity: int = 1) -> list[torch.Tensor]:
        """Per-parameter views of a bucket-layout buffer (``granularity``: bucket entries per
        buffer entry, for the parts of a formatted state: a view of member ``i`` then has
        ``ceil(numel/granularity)`` entries)."""
        if self.layout is Layout.FLAT:
            out, off = [], 0
            for p in self.params:
                n = p.numel()
                if granularity == 1:
                    out.append(buf[off: off + n].view(p.shape))
                else:
                    out.append(buf[off // granularity: off // granularity + -(-n // granularity)])
                off += pad_to(n, self.align)
            return out
        return list(buf.unbind(0))

    def state_views(self, buf: torch.Tensor, spec: StateSpec) -> list[torch.Tensor]:
        if self.layout is Layout.FLAT and buf.numel() * spec.granularity != self.meta.shape[0]:
            raise ValueError(f"state '{spec.name}' of a flat bucket must have one entry per parameter entry")
        return self.members(buf, spec.granularity)

    def materialize(self, declared: dict[str, ir.HyperParam], hypers: dict[str, Any],
                    adopted: list[dict[str, torch.Tensor]], held: list[dict[str, Format]] | None = None,
                    policy: precision.Policy | None = None, spec_name: str = "") -> None:
        """Discover state shapes and allocate buffers, adopting existing per-parameter state
        (cast to the state's dtype and moved to the bucket's device). With a precision policy
        (``policy``) states are kept in their stored form (``formats``); ``held`` says in which
        form each member's adopted state is (absent: as computed), and a state held in another form
        is converted (decoded, then encoded to nearest)."""
        meta = self.meta
        wide = self.param_mode is not None and meta.dtype == torch.bfloat16
        compute = dataclasses.replace(meta, dtype=torch.float32) if wide else meta
        logical = discover_states(self.rule, compute, declared, hypers, self.rule_group)
        if policy is not None:
            self.formats = precision.resolve(policy, self.rule, logical, spec_name)
        self.specs = precision.stored_specs(logical, self.formats, self.layout, self.param_mode if wide else None, meta)
        held = held or [{} for _ in adopted]
        ids = self.ids_tensor
        for spec in logical:
            fmt = self.formats.get(spec.name)
            parts = [s for s in self.specs if s.logical == spec.name] if fmt is not None else [spec]
            if adopted and all(spec.name in a for a in adopted):
                member = [self._adopt(spec, fmt, a, h, i) for i, (a, h) in enumerate(zip(adopted, held))]
                bufs = [self.gather([m[k] for m in member], s.granularity) for k, s in enumerate(parts)]
            else:
                value = spec.allocate(self.layout, meta.device, ids, self.step)
                bufs = [value] if fmt is None else precision.encode_member(value, fmt, self.layout)
            for s, buf in zip(parts, bufs):
                buf = buf.to(device=meta.device, dtype=s.dtype).reshape(s.shape)
                self.states[s.name] = buf.contiguous()
        for s in self.specs:
            if s.name not in self.states:  # the Kahan companion of bf16 parameters
                kept = [a.get(s.name) for a in adopted]
                self.states[s.name] = (self.gather([k.to(meta.device) for k in kept]) if adopted and all(
                    k is not None for k in kept) else s.allocate(self.layout, meta.device, ids, self.step)).contiguous()

    def _adopt(self, spec: StateSpec, fmt: Format | None, have: dict[str, torch.Tensor], held: dict[str, Format],
               i: int) -> list[torch.Tensor]:
        """Member ``i``'s stored parts of ``spec`` from its adopted state ``have`` (converted when
        held in another form)."""
        shape = tuple(self.params[i].shape) if self.layout is Layout.FLAT else spec.shape[1:]
        was = held.get(spec.name)
        if was == fmt or (was is None and fmt is None):
            parts = [have[spec.name + p.suffix] for p in fmt.parts()] if fmt is not None else [have[spec.name]]
            if fmt is None:
                parts = [parts[0].to(dtype=spec.dtype)]
            return parts
        names = [spec.name + p.suffix for p in was.parts()] if was is not None else [spec.name]
        value = precision.decode_member([have[n] for n in names], was, shape) if was is not None else have[spec.name]
        if fmt is None:
            return [value.to(spec.dtype)]
        return precision.encode_member(value.to(torch.float32).reshape(shape), fmt, Layout.STACKED, member=True)

    def split(self, keep: list[bool]) -> tuple["Bucket", "Bucket"]:
        """Split into (kept, rest) with copies of their state and step (used when only some members
        have gradients: their step counts diverge from here on)."""
        parts = []
        for flag in (True, False):
            idx = [i for i, k in enumerate(keep) if k == flag]
            # type(self): keeps the subclass (distributed.ShardedBucket for FSDP2 DTensor parameters)
            b = type(self)(self.rule, self.group, [self.params[i] for i in idx], [self.ids[i] for i in idx],
                           self.step.clone(), self.layout, host_step=self.host_step, rule_group=self.rule_group,
                           align=self.align, formats=self.formats, param_mode=self.param_mode, seed=self.seed)
            if self.param_buf is not None:
                b.own_params()
            for spec in self.specs:
                views = self.state_views(self.states[spec.name], spec)
                b.states[spec.name] = b.gather([views[i] for i in idx], spec.granularity).contiguous()
            # the part's own state shapes (they key and trace its graph)
            b.specs = [dataclasses.replace(s, shape=tuple(b.states[s.name].shape),
                                           logical_shape=_logical_shape(s, b)) for s in self.specs]
            parts.append(b)
        return parts[0], parts[1]


def _logical_shape(s: StateSpec, b: "Bucket") -> tuple[int, ...]:
    if s.fmt is None:
        return s.logical_shape
    return (b.meta.shape[0],) if b.layout is Layout.FLAT else (len(b.params), *s.logical_shape[1:])


def _same_view(g: torch.Tensor | None, view: torch.Tensor, ptr: int) -> bool:
    return (g is not None and g.layout == torch.strided and g.data_ptr() == ptr and g.shape == view.shape
            and g.stride() == view.stride() and g.dtype == view.dtype and g.device == view.device)


def bucket_key(rule: ir.RuleIR, group: int, p: torch.Tensor, step: float) -> tuple:
    """Parameters with equal keys share a bucket: rule, param group, dtype, device, step count —
    and the shape, for ``stacked`` rules."""
    shape = tuple(p.shape) if layout_of(rule) is Layout.STACKED else ()
    return (group, rule.label, p.dtype, p.device, shape, step)
