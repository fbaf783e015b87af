"""The optimizer step on FSDP2-sharded parameters (DTensors sharded on dim 0 of a 1-D mesh).

What runs where (docs/distributed.md):

* ``flat`` buckets (rules made only of elementwise primitives) run on each rank's *local shards*:
  parameters, gradients and state are the local rows, concatenated; no communication.
* ``stacked`` buckets (any non-elementwise primitive: Newton–Schulz, polar, QR, norms, …) need
  whole matrices. The bucket's gradient and parameter shards are all-gathered (one collective each
  per bucket), every rank runs the bucket's graph on the full ``(B, *shape)`` stack — redundantly,
  so per-matrix reductions are exact and every rank holds the same result — and each rank keeps
  its own rows. Their state (momentum, ARO's rotation, …) is kept full on every rank (replicated).

The step is transactional: every rank prepares, then votes (one all-reduce); collectives run only
if every rank is ready; the graphs write into copies of the parameters and state; a second vote
commits them, or every rank raises :class:`DistributedStepError` naming the failing rank(s) and
its error, with nothing changed. Collectives time out with the process group's ``timeout``.

``optimizer.state[p]`` holds DTensors: ``Shard(0)`` like ``p`` for flat-bucket state (views of the
local state buffer), ``Replicate()`` for the full state of matrix rules; ``step`` is a plain 0-d
tensor. ``torch.distributed.checkpoint`` can save and reshard them (see :func:`init_state`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from .buckets import Bucket

try:  # torch >= 2.4
    from torch.distributed.tensor import DTensor, Replicate, Shard
except ImportError:  # pragma: no cover
    DTensor = ()  # type: ignore[assignment,misc]


# torch >= 2.13 names it all_gather_single (all_gather_into_tensor warns); same semantics
_all_gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor


class DistributedStepError(RuntimeError):
    """A rank failed during a distributed step; no rank applied any part of it."""


def is_sharded(p: torch.Tensor) -> bool:
    return isinstance(p, DTensor) if DTensor else False


def check_param(p: torch.Tensor, name: str) -> None:
    """Only what FSDP2 produces on a 1-D mesh is supported: ``placements == (Shard(0),)``."""
    mesh = p.device_mesh
    if mesh.ndim != 1 or tuple(p.placements) != (Shard(0),):
        raise NotImplementedError(f"parameter {name}: optloom runs DTensor parameters sharded on dim 0 of a 1-D "
                                  f"mesh (FSDP2 fully_shard); got placements {tuple(p.placements)} on a "
                                  f"{mesh.ndim}-D mesh (HSDP/tensor parallelism are not supported yet)")


def row_range(rows: int, world: int, rank: int) -> tuple[int, int]:
    """Rows of dim 0 that ``rank`` holds (torch.chunk semantics, as FSDP2 shards)."""
    c = math.ceil(rows / world) if rows else 0
    return min(rank * c, rows), min((rank + 1) * c, rows)


@dataclass
class ShardedBucket(Bucket):
    """A bucket of DTensor parameters. ``flat``: local shards; ``stacked``: full matrices."""

    distributed = True
    replica: torch.Tensor | None = None  # stacked: the full (B, *shape) parameters after the last step

    def replica_valid(self) -> bool:
        """Do this rank's rows still equal the replica (one local read, no communication)?"""
        if self.replica is None:
            return False
        lo, hi = row_range(self.params[0].shape[0], self.params[0].device_mesh.size(),
                           self.params[0].device_mesh.get_local_rank())
        return all(torch.equal(p.to_local(), r[lo:hi]) for p, r in zip(self.params, self.replica.unbind(0)))

    @property
    def pg(self) -> Any:
        return self.params[0].device_mesh.get_group()

    @property
    def meta(self):  # type: ignore[override]
        from .lower import BucketMeta

        p = self.params[0]
        if self.layout == "flat":
            return BucketMeta("flat", (sum(q.to_local().numel() for q in self.params),), p.dtype, p.device)
        return BucketMeta("stacked", (len(self.params), *p.shape), p.dtype, p.device)

    # DTensor data is never re-pointed: parameters are gathered and written back around the graph
    def own_params(self) -> None:
        pass

    def owns_params(self) -> bool:
        return False

    def _plain(self, i: int, t: torch.Tensor) -> torch.Tensor:
        """Member ``i``'s value (state or parameter) in this bucket's layout: the local rows (flat)
        or the full tensor (stacked), from a DTensor, a full tensor or a local one."""
        p = self.params[i]
        if is_sharded(t):
            t = t.to_local() if (self.layout == "flat" or all(isinstance(x, Replicate) for x in t.placements)) \
                else t.full_tensor()
            return t
        if self.layout == "flat" and tuple(t.shape) == tuple(p.shape) and tuple(p.to_local().shape) != tuple(p.shape):
            lo, hi = row_range(p.shape[0], p.device_mesh.size(), p.device_mesh.get_local_rank())
            return t[lo:hi]
        return t

    def gather(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        return super().gather([self._plain(i, t) for i, t in enumerate(tensors)])

    def members(self, buf: torch.Tensor) -> list[torch.Tensor]:
        if self.layout != "flat":
            return list(buf.unbind(0))
        out, off = [], 0
        for p in self.params:
            loc = p.to_local()
            out.append(buf[off: off + loc.numel()].view(loc.shape))
            off += loc.numel()
        return out

    def state_views(self, buf: torch.Tensor, spec: Any) -> list[torch.Tensor]:
        views = super().state_views(buf, spec)
        if self.layout == "flat":
            return [DTensor.from_local(v, p.device_mesh, [Shard(0)], run_check=False, shape=p.shape, stride=p.stride())
                    for v, p in zip(views, self.params)]
        return [DTensor.from_local(v, p.device_mesh, [Replicate()], run_check=False) for v, p in zip(views, self.params)]

    # ---- the distributed step's data movement ------------------------------------------------
    def local(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        return [t.to_local() if is_sharded(t) else t for t in tensors]

    def full(self, tensors: list[torch.Tensor], stats: "CommStats") -> torch.Tensor:
        """All-gather a same-shape stack of dim-0 shards: one collective for the whole bucket."""
        p = self.params[0]
        world, rows = p.device_mesh.size(), p.shape[0]
        c = math.ceil(rows / world)
        send = torch.zeros((len(tensors), c, *p.shape[1:]), dtype=p.dtype, device=p.device)
        for s, t in zip(send.unbind(0), self.local(tensors)):
            s[: t.shape[0]].copy_(t)
        recv = torch.empty((world * send.shape[0], *send.shape[1:]), dtype=p.dtype, device=p.device)
        _all_gather(recv, send, group=self.pg)
        recv = recv.view(world, *send.shape)
        stats.add(send.numel() * send.element_size() * world * (world - 1))  # received, summed over ranks
        full = recv.movedim(0, 1).reshape(len(tensors), world * c, *p.shape[1:])[:, :rows]
        return full.contiguous()

    def write_back(self, buf: torch.Tensor) -> None:
        """Copy the graph's result (local flat buffer or full stack) into each local shard."""
        locs = [p.to_local() for p in self.params]
        if self.layout == "flat":
            torch._foreach_copy_(locs, self.members(buf))
            return
        world, rank = self.params[0].device_mesh.size(), self.params[0].device_mesh.get_local_rank()
        lo, hi = row_range(self.params[0].shape[0], world, rank)
        torch._foreach_copy_(locs, [m[lo:hi] for m in buf.unbind(0)])


class CommStats:
    """Bytes the optimizer's collectives moved in the last step, summed over ranks, against the
    minimum the spec needs: each matrix gathered once to one rank and scattered back once,
    ``2·(W−1)/W·size`` (elementwise rules need nothing)."""

    def __init__(self) -> None:
        self.bytes = 0
        self.minimum = 0
        self.collectives = 0

    def add(self, n: int) -> None:
        self.bytes += n
        self.collectives += 1

    def as_dict(self) -> dict[str, int]:
        return {"bytes": self.bytes, "minimum_bytes": self.minimum, "collectives": self.collectives}


def _vote(failed: BaseException | None, flag: int, group: Any) -> tuple[bool, int, list[str]]:
    """All ranks agree: did any rank fail, and the bitwise OR of ``flag`` over ranks (1 = non-finite
    gradients, 2 = a stale parameter replica)."""
    t = torch.tensor([1 if failed is not None else 0, flag & 1, flag & 2], dtype=torch.int64)
    dev = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend(group) == "nccl" else t.device
    t = t.to(dev)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=group)
    any_failed, flag = bool(t[0]), int(t[1]) | int(t[2])
    msgs: list[str] = []
    if any_failed:
        mine = f"{type(failed).__name__}: {failed}" if failed is not None else None
        every: list[Any] = [None] * dist.get_world_size(group)
        dist.all_gather_object(every, mine, group=group)
        msgs = [f"rank {r}: {m}" for r, m in enumerate(every) if m is not None]
    return any_failed, flag, msgs


def step(opt: Any, work: list[Bucket]) -> None:
    """One transactional step over ``work`` (every rank calls it with the same buckets)."""
    group = next(b.pg for b in work if isinstance(b, ShardedBucket))
    stats = CommStats()
    failed: BaseException | None = None
    nonfinite, stale = 0, True
    try:  # phase 1: local preparation (anything here may raise on one rank only)
        for b in work:
            opt._ensure_graph(b)
        grads = [[opt._grad(p) for p in b.params] for b in work]
        local = [b.local(g) if isinstance(b, ShardedBucket) else g for b, g in zip(work, grads)]
        if opt.nonfinite != "ignore":
            nonempty = [g for gs in local for g in gs if g.numel()]  # a rank may hold 0 rows of a shard
            nonfinite = int(bool(nonempty) and not opt._all_finite(nonempty))
        stale = any(isinstance(b, ShardedBucket) and b.layout == "stacked" and not b.replica_valid() for b in work)
        runtime = [opt._runtime(b) for b in work]
    except Exception as e:  # noqa: BLE001 - reported to every rank below
        failed = e
    any_failed, flags, msgs = _vote(failed, nonfinite | (2 if failed is None and stale else 0), group)
    nonfinite, stale = flags & 1, bool(flags & 2)
    if any_failed:
        raise DistributedStepError("distributed step failed before any communication; nothing was changed. "
                                   + "; ".join(msgs)) from failed
    if nonfinite:
        if opt.nonfinite == "skip":
            opt.skipped_steps += 1
            return
        from .optimizer import NonFiniteGradientError
        raise NonFiniteGradientError("non-finite gradient (NaN or Inf) on some rank; no parameter or state "
                                     "was changed. Pass nonfinite='skip' to skip such steps and count them")
    # phase 2: gather whole matrices for stacked buckets (all ranks, same order)
    inputs, params = [], []
    for b, g, loc, rt in zip(work, grads, local, runtime):
        sharded = isinstance(b, ShardedBucket)
        if sharded and b.layout == "stacked":
            grad = b.full(g, stats)
            # every rank computed every full matrix last step: its replica is the parameter unless
            # some rank's rows changed since (a load, an in-place edit) -- then gather it again
            param = b.full(list(b.params), stats) if stale else b.replica
            world = b.params[0].device_mesh.size()
            stats.minimum += 2 * grad.numel() * grad.element_size() * (world - 1) // world
        else:
            grad = b.gather_grads(loc)
            param = b.gather(b.local([p.detach() for p in b.params]) if sharded else [p.detach() for p in b.params])
            if b.layout == "flat" and len(b.params) == 1:  # gather of one member is a view: copy
                param = param.clone()
        params.append(param)
        states = [b.states[s.name].clone() for s in b.specs]
        inputs.append([param, grad, b.step + 1, opt._id_tensor(b), *states, *rt])
    failed = None
    try:  # phase 3: compute into copies
        opt._runner.run(work, inputs)
    except Exception as e:  # noqa: BLE001
        failed = e
    any_failed, _, msgs = _vote(failed, 0, group)
    if any_failed:
        for b in work:  # graphs may have written into the replicas: gather them again next step
            if isinstance(b, ShardedBucket):
                b.replica = None
        raise DistributedStepError("distributed step failed on " + "; ".join(msgs)
                                   + "; no rank applied any part of the step") from failed
    # phase 4: commit (local copies only)
    for b, args in zip(work, inputs):
        for s, new in zip(b.specs, args[4: 4 + len(b.specs)]):
            b.states[s.name].copy_(new)
        b.step.add_(1)
        b.host_step += 1
        if isinstance(b, ShardedBucket):
            b.write_back(args[0])
            if b.layout == "stacked":
                b.replica = args[0]
        else:
            torch._foreach_copy_([p.detach() for p in b.params], b.members(args[0]))
    opt.comm_stats = stats.as_dict()


def init_state(opt: Any) -> None:
    """Allocate the state of every parameter that has none yet (step 0), without stepping.

    ``torch.distributed.checkpoint`` loads *into* existing tensors, so a fresh optimizer needs its
    state allocated before ``dcp.load``: ``init_state(opt); sd = opt.state_dict(); dcp.load(sd, …);
    opt.load_state_dict(sd)``. (torch's ``get_optimizer_state_dict`` instead steps once with zero
    gradients and ``lr = 0``, which would apply weight decay and the spec's other learning rates.)
    Works for sharded and unsharded optimizers alike."""
    from collections import defaultdict

    from .buckets import bucket_key

    buckets = list(opt._buckets or [])
    covered = {id(p) for b in buckets for p in b.params}
    fresh: dict[tuple, list[torch.Tensor]] = defaultdict(list)
    for gi, group in enumerate(opt.param_groups):
        for p in group["params"]:
            if id(p) not in covered:
                st = opt.state.get(p, {})
                fresh[bucket_key(opt._routes[p], gi, p, float(st["step"]) if "step" in st else 0.0)].append(p)
    opt._buckets = buckets + [opt._new_bucket(key[0], ps, key[-1]) for key, ps in fresh.items()]
