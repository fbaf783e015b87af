"""Buckets of FSDP2 parameters (DTensors sharded on dim 0 of a 1-D mesh).

``flat`` buckets (elementwise rules) hold each rank's local rows, concatenated, and their state
likewise. ``stacked`` buckets (matrix rules) spread the work: member ``j`` of the bucket is
*owned* by one rank (round-robin over the ranks holding rows of it, starting at the position of
the bucket's first matrix among the rule's parameters, so one-matrix buckets spread too). The owner alone computes the
member's update on the whole matrix and keeps its state — ``states[name]`` is the
``(n_owned, *shape)`` stack of the owned members — and the full parameter it computed last
(``replica``), so the next step needs only the gradient rows. Every rank keeps the rows it was
sent last (``written``) to check, locally, that nobody changed its shard since.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch

from ..buckets import Bucket
from .comm import Piece, row_ranges
from ...lowering.layout import Layout
from ...lowering.states import BucketMeta, StateSpec, discover_states

try:  # torch >= 2.4
    from torch.distributed.tensor import DTensor, Replicate, Shard
except ImportError:  # pragma: no cover
    DTensor = ()  # type: ignore[assignment,misc]


def is_sharded(p: torch.Tensor) -> bool:
    return isinstance(p, DTensor) if DTensor else False


def owners_of(shape: tuple[int, ...], world: int, count: int, first_id: int) -> list[int]:
    """Owner of each of ``count`` same-shape matrices: round-robin over the ranks that hold rows
    (a 1-row matrix lives whole on rank 0: it is computed there and never moves)."""
    holders = [r for r, (lo, hi) in enumerate(row_ranges(shape[0], world)) if hi > lo] or [0]
    return [holders[(first_id + j) % len(holders)] for j in range(count)]


@dataclass
class ShardedBucket(Bucket):
    distributed = True
    owners: list[int] = field(default_factory=list)  # stacked: the rank computing each member
    member_specs: list[StateSpec] = field(default_factory=list)  # stacked: per-member state shapes
    replica: torch.Tensor | None = None  # stacked: (n_owned, *shape) parameters after the last step
    written: list[torch.Tensor] | None = None  # stacked: this rank's rows as the last step wrote them

    def __post_init__(self) -> None:
        if self.layout is Layout.STACKED and not self.owners:
            # start where the bucket's first matrix sits among the rule's parameters: buckets of
            # one matrix each (or of alternating ids) then spread over the ranks too
            first = self.rule_group.index(self.ids[0]) if self.ids[0] in self.rule_group else self.ids[0]
            self.owners = owners_of(tuple(self.params[0].shape), self.world, len(self.params), first)

    # ---- mesh ------------------------------------------------------------------------------------
    @property
    def mesh(self) -> Any:
        return self.params[0].device_mesh

    @property
    def pg(self) -> Any:
        return self.mesh.get_group()

    @property
    def world(self) -> int:
        return self.mesh.size()

    @property
    def rank(self) -> int:
        return self.mesh.get_local_rank()

    @cached_property
    def owned(self) -> list[int]:
        """Members this rank computes (stacked), in bucket order."""
        return [i for i, o in enumerate(self.owners) if o == self.rank]

    @cached_property
    def meta(self) -> BucketMeta:  # type: ignore[override]
        p = self.params[0]
        if self.layout is Layout.FLAT:
            return BucketMeta(Layout.FLAT, (sum(q.to_local().numel() for q in self.params),), p.dtype, p.device)
        return BucketMeta(Layout.STACKED, (len(self.owned), *p.shape), p.dtype, p.device)

    def pieces(self) -> list[Piece]:
        """Each member as rows over the ranks (stacked), for the exchanges."""
        p = self.params[0]
        ranges = row_ranges(p.shape[0], self.world)
        return [Piece(o, ranges, tuple(p.shape[1:]), p.dtype) for o in self.owners]

    @cached_property
    def owned_ids_tensor(self) -> torch.Tensor:
        """Ids of the members this rank computes (the matrix graph's ``ids`` input)."""
        return torch.tensor([self.ids[i] for i in self.owned], dtype=torch.int64, device=self.params[0].device)

    # DTensor data is never re-pointed: parameters are gathered and written back around the graph
    def own_params(self) -> None:
        pass

    def owns_params(self) -> bool:
        return False

    # ---- state -----------------------------------------------------------------------------------
    def materialize(self, declared: dict[str, Any], hypers: dict[str, Any],
                    adopted: list[dict[str, torch.Tensor]], held: Any = None, policy: Any = None,
                    spec_name: str = "") -> None:
        if policy is not None and not policy.trivial:
            raise NotImplementedError(f"spec '{spec_name}': a precision policy ({policy.text()}) is not supported "
                                      "with FSDP2-sharded parameters yet")
        if self.layout is Layout.FLAT:
            return super().materialize(declared, hypers, adopted)
        p = self.params[0]
        one = BucketMeta(Layout.STACKED, (1, *p.shape), p.dtype, p.device)
        self.member_specs = discover_states(self.rule, one, declared, hypers, self.rule_group)
        n = len(self.owned)
        self.specs = []
        for s in self.member_specs:
            if not s.shape or s.shape[0] != 1:
                raise NotImplementedError(f"state '{s.name}' of rule '{self.rule.label}' is not one value per "
                                          "matrix; optloom cannot spread it over ranks")
            spec = StateSpec(s.name, (n, *s.shape[1:]), s.dtype, s.init)
            self.specs.append(spec)
            # every rank walks every member: a row-sharded DTensor is gathered collectively
            full = [_full(a.get(s.name)) for a in adopted]
            mine = [full[i] for i in self.owned]
            if mine and all(t is not None for t in mine):
                buf = torch.stack([t.to(device=p.device, dtype=s.dtype) for t in mine])
                if tuple(buf.shape) != spec.shape:
                    raise ValueError(f"state '{s.name}' has shape {tuple(buf.shape[1:])} per matrix, "
                                     f"expected {spec.shape[1:]}")
            elif n:
                buf = spec.allocate(Layout.STACKED, p.device, self.owned_ids_tensor, self.step)
            else:
                buf = torch.empty(spec.shape, dtype=s.dtype, device=p.device)
            self.states[s.name] = buf.contiguous()

    def state_views(self, buf: torch.Tensor, spec: Any) -> list[torch.Tensor]:
        views = super().state_views(buf, spec)
        if self.layout is Layout.FLAT:
            return [DTensor.from_local(v, p.device_mesh, [Shard(0)], run_check=False, shape=p.shape, stride=p.stride())
                    for v, p in zip(views, self.params)]
        pos = {i: k for k, i in enumerate(self.owned)}
        # None for members another rank owns: distributed.prune drops them from optimizer.state
        return [views[pos[i]] if i in pos else None for i in range(len(self.params))]  # type: ignore[misc]

    def split(self, keep: list[bool]) -> tuple["ShardedBucket", "ShardedBucket"]:
        """As :meth:`Bucket.split`; stacked members keep their owners, so no state moves."""
        if self.layout is Layout.FLAT:
            return super().split(keep)  # type: ignore[return-value]
        pos = {i: k for k, i in enumerate(self.owned)}
        parts = []
        for flag in (True, False):
            idx = [i for i, k in enumerate(keep) if k == flag]
            b = ShardedBucket(self.rule, self.group, [self.params[i] for i in idx], [self.ids[i] for i in idx],
                              self.step.clone(), self.layout, host_step=self.host_step, rule_group=self.rule_group,
                              owners=[self.owners[i] for i in idx], member_specs=self.member_specs)
            rows = torch.tensor([pos[i] for i in idx if i in pos], dtype=torch.int64, device=self.step.device)
            b.specs = [StateSpec(s.name, (len(b.owned), *s.shape[1:]), s.dtype, s.init) for s in self.specs]
            for s in self.specs:
                b.states[s.name] = self.states[s.name].index_select(0, rows.to(self.states[s.name].device))
            parts.append(b)  # replica and written stay None: the next step gathers the parameters
        return parts[0], parts[1]

    # ---- parameters ------------------------------------------------------------------------------
    def _plain(self, i: int, t: torch.Tensor) -> torch.Tensor:
        """Flat member ``i``'s value (state or parameter) as this rank's rows, from a DTensor,
        a full tensor or a local one."""
        p = self.params[i]
        if is_sharded(t):
            return t.to_local() if all(isinstance(x, Shard) for x in t.placements) else _rows(t.full_tensor(), p)
        if tuple(t.shape) == tuple(p.shape) and tuple(p.to_local().shape) != tuple(p.shape):
            return _rows(t, p)
        return t

    def gather(self, tensors: list[torch.Tensor], granularity: int = 1) -> torch.Tensor:
        if self.layout is Layout.FLAT:
            return super().gather([self._plain(i, t) for i, t in enumerate(tensors)])
        return super().gather(tensors)

    def members(self, buf: torch.Tensor, granularity: int = 1) -> list[torch.Tensor]:
        if self.layout is not Layout.FLAT:
            return list(buf.unbind(0))
        out, off = [], 0
        for p in self.params:
            loc = p.to_local()
            out.append(buf[off: off + loc.numel()].view(loc.shape))
            off += loc.numel()
        return out

    def local(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        return [t.to_local() if is_sharded(t) else t for t in tensors]

    def unchanged(self) -> bool:
        """Stacked: do this rank's rows still equal what the last step wrote, and does it hold the
        replicas of the members it owns? (One local read, no communication.)"""
        if self.written is None or (self.owned and self.replica is None):
            return False
        return all(torch.equal(p.to_local(), w) for p, w in zip(self.params, self.written))

    def write_back(self, rows: torch.Tensor | list[torch.Tensor]) -> None:
        """Copy the new local rows into each ``p.to_local()``: the flat graph's buffer, or the
        rows the owners sent back (stacked)."""
        locs = [p.to_local() for p in self.params]
        torch._foreach_copy_(locs, self.members(rows) if self.layout is Layout.FLAT else list(rows))


def _rows(t: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    lo, hi = row_ranges(p.shape[0], p.device_mesh.size())[p.device_mesh.get_local_rank()]
    return t[lo:hi]


def _full(t: torch.Tensor | None) -> torch.Tensor | None:
    """A whole tensor from saved or loaded state: gathers a sharded DTensor (collective)."""
    if t is None or not is_sharded(t):
        return t
    return t.to_local() if all(isinstance(x, Replicate) for x in t.placements) else t.full_tensor()
