"""The optimizer step on FSDP2-sharded parameters (DTensors sharded on dim 0 of a 1-D mesh) and,
opted in with :func:`replicated`, on DDP-replicated ones.

What runs where (docs/distributed.md):

* ``flat`` buckets (rules made only of elementwise primitives) run on each rank's *local shards*:
  parameters, gradients and state are the local rows, concatenated; no communication.
* ``stacked`` buckets (any non-elementwise primitive: Newton–Schulz, polar, QR, norms, …) need
  whole matrices. Each matrix has one owner rank (:mod:`.dist_bucket`); one all-to-all sends every
  owner the gradient rows of its matrices, the owner runs the bucket's graph on its ``(n_owned,
  *shape)`` stack — per-matrix reductions see the whole matrix, so they are exact — and a second
  all-to-all returns every rank its rows of the new matrices. State lives with the owner.

The step is transactional: every rank prepares, then votes (one all-reduce); collectives run only
if every rank is ready; the graphs write into copies of the parameters and state; a second vote
commits them, or every rank raises :class:`DistributedStepError` naming the failing rank(s) and
its error, with nothing changed. Collectives time out with the process group's ``timeout``.

``optimizer.state[p]`` holds DTensors ``Shard(0)`` like ``p`` for flat-bucket state (views of the
local buffer); matrix-rule state only on its owner, as the plain whole tensor (a view of the
owner's stack); ``step`` is a plain 0-d tensor. ``state_dict()`` is a collective on a sharded
optimizer: it returns every matrix-rule state as a ``Shard(0)`` DTensor too, scattered from the
owners, so ``torch.distributed.checkpoint`` saves and reshards it like the rest (:func:`init_state`).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from ...errors import DistributedStepError, NonFiniteGradientError
from ...lowering.layout import Layout
from ..buckets import Bucket
from ..strategy import StepHost
from .buckets import ShardedBucket, is_sharded
from .comm import CommStats, Piece, from_owners, row_ranges, to_owners, vote

try:  # torch >= 2.4
    from torch.distributed.tensor import DTensor, Replicate, Shard
except ImportError:  # pragma: no cover
    DTensor = ()  # type: ignore[assignment,misc]

def check_param(p: torch.Tensor, name: str) -> None:
    """Only what FSDP2 produces on a 1-D mesh is supported: ``placements == (Shard(0),)``."""
    mesh = p.device_mesh
    if mesh.ndim != 1 or tuple(p.placements) != (Shard(0),):
        raise NotImplementedError(f"parameter {name}: optloom runs DTensor parameters sharded on dim 0 of a 1-D "
                                  f"mesh (FSDP2 fully_shard); got placements {tuple(p.placements)} on a "
                                  f"{mesh.ndim}-D mesh (HSDP/tensor parallelism are not supported yet)")


class DistributedStep:
    """The transactional step over ranks (see the module docstring). ``group``: the process group
    (default: the mesh of the first sharded parameter, or the whole world for :func:`replicated`)."""

    sharded = True

    def __init__(self, group: Any = None):
        self.group = group
        self.comm_stats: dict[str, int] = {}
        self._hooked: set[int] = set()

    def after_plan(self, host: StepHost) -> None:
        buckets = host.plan.buckets
        if any(isinstance(b, ShardedBucket) for b in buckets):
            self._process_group(buckets)
            self._attach(host)
            prune(host, buckets)

    def step(self, host: StepHost, work: list[Bucket]) -> bool:
        """One transactional step over ``work`` (every rank calls it with the same buckets)."""
        plan, ex = host.plan, host.executor
        group = self._process_group(work)
        self._attach(host)
        prune(host, plan.buckets)
        stacked = _stacked(work)
        is_stacked = {id(b) for b in stacked}
        # buckets this rank runs a graph for: all but the matrix buckets it owns no member of
        mine = [b for b in work if not (id(b) in is_stacked and not b.owned)]  # type: ignore[attr-defined]
        hypers = {id(b): plan.hypers(b.group) for b in work}
        stats = CommStats(dist.get_world_size(group))
        failed: BaseException | None = None
        nonfinite, stale = 0, True
        try:  # phase 1: local preparation (anything here may raise on one rank only)
            _check_supported(work)
            for b in mine:
                ex.prepare(b, hypers[id(b)])
            grads = {id(b): [host.grad_of(p) for p in b.params] for b in work}
            local = {id(b): (b.local(grads[id(b)]) if isinstance(b, ShardedBucket) else grads[id(b)]) for b in work}
            if host.nonfinite != "ignore":
                nonempty = [g for gs in local.values() for g in gs if g.numel()]  # a rank may hold 0 rows
                nonfinite = int(bool(nonempty) and not ex.all_finite(nonempty))
            stale = not all(b.unchanged() for b in stacked)
            runtime = {id(b): ex.runtime_inputs(b, hypers[id(b)]) for b in mine}
        except Exception as e:  # noqa: BLE001 - reported to every rank below
            failed = e
        any_failed, flags, msgs = vote(failed, nonfinite | (2 if failed is None and stale else 0), group)
        nonfinite, stale = flags & 1, bool(flags & 2)
        if any_failed:
            raise DistributedStepError("distributed step failed before any communication; nothing was changed. "
                                       + "; ".join(msgs)) from failed
        if nonfinite:
            if host.nonfinite == "skip":
                return False
            raise NonFiniteGradientError("non-finite gradient (NaN or Inf) on some rank; no parameter or state "
                                         "was changed. Pass nonfinite='skip' to skip such steps and count them")
        # phase 2: each owner receives the rows of its matrices (gradients; parameters when stale)
        full_g, full_p = _gather_to_owners(stacked, local, stale, group, stats)
        inputs = []
        for b in mine:
            if id(b) in is_stacked:
                param, grad, ids = full_p[id(b)], full_g[id(b)], b.owned_ids_tensor
            elif isinstance(b, ShardedBucket):  # flat: local rows
                param, grad, ids = b.gather(b.local([p.detach() for p in b.params])), b.gather_grads(local[id(b)]), b.ids_tensor
            else:  # parameters that are not DTensors: replicated, every rank the same update
                param, grad, ids = b.gather([p.detach() for p in b.params]), b.gather_grads(local[id(b)]), b.ids_tensor
            if b.layout is Layout.FLAT and len(b.params) == 1:
                param = param.clone()  # the gather of one flat member is a view: copy
            states = [b.states[s.name].clone() for s in b.specs]
            inputs.append(b.graph.signature.pack(param, grad, b.step + 1, ids, states, runtime[id(b)]))  # type: ignore[union-attr]
        failed = None
        try:  # phase 3: compute into copies (the matrix buckets' into their replicas)
            probed = [(b, a) for b, a in zip(mine, inputs) if b.rule.reductions]
            if probed:  # group reductions of replicated parameters: as on one process
                ex.reduce_groups([b for b, _ in probed], [a for _, a in probed], [hypers[id(b)] for b, _ in probed])
            ex.run(mine, inputs)
        except Exception as e:  # noqa: BLE001
            failed = e
        any_failed, _, msgs = vote(failed, 0, group)
        if any_failed:
            for b in stacked:  # graphs may have written into the replicas: gather them again next step
                b.replica = None
            raise DistributedStepError("distributed step failed on " + "; ".join(msgs)
                                       + "; no rank applied any part of the step") from failed
        # phase 4: every rank receives its rows of the new matrices, then commits (local copies)
        rows = _scatter_from_owners(stacked, full_p, group, stats)
        for b, args in zip(mine, inputs):
            for s, new in zip(b.specs, b.graph.signature.state_inputs(args)):  # type: ignore[union-attr]
                b.states[s.name].copy_(new)
            if isinstance(b, ShardedBucket) and b.layout is Layout.FLAT:
                b.write_back(args[0])
            elif not isinstance(b, ShardedBucket):
                torch._foreach_copy_([p.detach() for p in b.params], b.members(args[0]))
        for b in work:
            b.step.add_(1)
            b.host_step += 1
        for b in stacked:
            b.write_back(rows[id(b)])
            b.written, b.replica = rows[id(b)], full_p[id(b)]
            for o in b.owners:
                stats.matrices[o] += 1
        self.comm_stats = stats.as_dict()
        return True

    def _process_group(self, work: list[Bucket]) -> Any:
        """The mesh's group of the first sharded parameter (its process group), found once."""
        if self.group is None:
            sharded = [p for b in work for p in b.params if is_sharded(p)]
            self.group = next((b.pg for b in work if isinstance(b, ShardedBucket)), None) or \
                (sharded[0].device_mesh.get_group() if sharded else dist.group.WORLD)
        return self.group

    def _attach(self, host: Any) -> None:
        """Matrix-rule state in ``state_dict()`` as DTensors (a post hook, once per optimizer)."""
        if id(host) not in self._hooked:
            host.register_state_dict_post_hook(lambda opt, sd: _state_dict_hook(opt, sd, self.group))
            self._hooked.add(id(host))


def replicated(opt: Any, group: Any = None) -> Any:
    """Run ``opt``'s steps transactionally over ``group`` (default: the whole world): for DDP,
    whose parameters are ordinary replicated tensors. Each step votes across the ranks, so an
    exception on one rank raises :class:`DistributedStepError` on every rank and no rank applies
    any part of that step (without it, the failing rank raises alone and the others wait at the
    next gradient all-reduce until the process group's timeout). Returns ``opt``."""
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("replicated(opt) needs an initialized process group: call "
                           "torch.distributed.init_process_group first")
    opt.use_strategy(DistributedStep(group if group is not None else dist.group.WORLD))
    return opt


def _stacked(work: list[Bucket]) -> list[ShardedBucket]:
    return [b for b in work if isinstance(b, ShardedBucket) and b.layout is Layout.STACKED]


def prune(host: Any, buckets: list[Bucket]) -> None:
    """Drop, from ``optimizer.state``, the matrix-rule state of members another rank owns."""
    for b in _stacked(buckets):
        for p in b.params:
            st = host.state.get(p)
            if st and any(v is None for v in st.values()):
                host.state[p] = {k: v for k, v in st.items() if v is not None}


def _check_supported(work: list[Bucket]) -> None:
    for b in work:
        if isinstance(b, ShardedBucket) and getattr(b.rule, "reductions", None):
            raise NotImplementedError(f"rule '{b.rule.label}' reduces over all its parameters (group_reduce); "
                                      "optloom does not run group reductions on FSDP2-sharded parameters yet")


def _gather_to_owners(stacked: list[ShardedBucket], local: dict[int, list[torch.Tensor]], stale: bool,
                      group: Any, stats: CommStats) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    """``(n_owned, *shape)`` stacks of whole gradients (and parameters: gathered when ``stale``,
    else the replicas) of the matrices this rank owns, for every matrix bucket."""
    pieces: list[Piece] = []
    send: list[torch.Tensor] = []
    dest: list[torch.Tensor | None] = []
    full_g, full_p = {}, {}
    for b in stacked:
        p = b.params[0]
        full_g[id(b)] = torch.empty(b.meta.shape, dtype=p.dtype, device=p.device)
        full_p[id(b)] = torch.empty(b.meta.shape, dtype=p.dtype, device=p.device) if stale else b.replica
        pos = {i: k for k, i in enumerate(b.owned)}
        pcs = b.pieces()
        for kind, tensors in (("g", local[id(b)]), ("p", b.local(list(b.params)) if stale else None)):
            if tensors is None:
                continue
            target = full_g[id(b)] if kind == "g" else full_p[id(b)]
            pieces += pcs
            send += list(tensors)
            dest += [target[pos[i]] if i in pos else None for i in range(len(pcs))]
        stats.minimum += sum(2 * _min_moved(pc) for pc in pcs)
    if pieces:
        to_owners(pieces, send, dest, group, stats)
    return full_g, full_p


def _min_moved(pc: Piece) -> int:
    """Bytes one gather (or scatter) of this matrix needs at best: the rows its best-placed rank lacks."""
    elem = torch.empty((), dtype=pc.dtype).element_size()
    total = sum(hi - lo for lo, hi in pc.ranges)
    return (total - max(hi - lo for lo, hi in pc.ranges)) * pc.row_numel * elem


def _scatter_from_owners(stacked: list[ShardedBucket], full_p: dict[int, torch.Tensor], group: Any,
                         stats: CommStats) -> dict[int, list[torch.Tensor]]:
    """This rank's rows of every matrix, from the owners' new parameters."""
    pieces: list[Piece] = []
    full: list[torch.Tensor | None] = []
    for b in stacked:
        pos = {i: k for k, i in enumerate(b.owned)}
        pcs = b.pieces()
        pieces += pcs
        full += [full_p[id(b)][pos[i]] if i in pos else None for i in range(len(pcs))]
    if not pieces:
        return {}
    got = from_owners(pieces, full, group, stats, stacked[0].params[0].device)
    out, k = {}, 0
    for b in stacked:
        out[id(b)] = got[k: k + len(b.params)]
        k += len(b.params)
    return out


# ---- state_dict and checkpoints ------------------------------------------------------------------
def _state_dict_hook(opt: Any, sd: dict[str, Any], group: Any) -> dict[str, Any]:
    """Matrix-rule state as ``Shard(0)`` DTensors (``Replicate()`` for per-matrix scalars),
    scattered from the owners in one all-to-all per dtype: every rank calls ``state_dict()``."""
    stacked = _stacked(opt.buckets())
    if not stacked:
        return sd
    index = {id(p): i for i, p in enumerate(p for g in opt.param_groups for p in g["params"])}
    pieces, full, where = [], [], []
    for b in stacked:
        pos = {i: k for k, i in enumerate(b.owned)}
        for s in b.member_specs:
            shape = s.shape[1:]
            ranges = row_ranges(shape[0], b.world) if shape else ((0, 1),) * b.world
            for i, o in enumerate(b.owners):
                pieces.append(Piece(o, ranges, tuple(shape[1:]), s.dtype))
                full.append(b.states[s.name][pos[i]].reshape(-1, *shape[1:]) if i in pos else None)
                where.append((b, i, s.name, shape))
    got = from_owners(pieces, full, group, CommStats(stacked[0].world), stacked[0].params[0].device)
    states = sd["state"]
    for (b, i, name, shape), rows in zip(where, got):
        p = b.params[i]
        if shape:
            t = DTensor.from_local(rows, p.device_mesh, [Shard(0)], run_check=False, shape=torch.Size(shape),
                                   stride=_contiguous_stride(shape))
        else:
            t = DTensor.from_local(rows.reshape(()), p.device_mesh, [Replicate()], run_check=False)
        idx = index[id(p)]
        states[idx] = {**states.get(idx, {"step": b.step}), name: t}  # a new dict: sd's are optimizer.state's
    return sd


def _contiguous_stride(shape: tuple[int, ...]) -> tuple[int, ...]:
    stride, acc = [], 1
    for n in reversed(shape):
        stride.append(acc)
        acc *= n
    return tuple(reversed(stride))


def init_state(opt: Any) -> None:
    """Allocate the state of every parameter that has none yet (step 0), without stepping.

    ``torch.distributed.checkpoint`` loads *into* existing tensors, so a fresh optimizer needs its
    state allocated before ``dcp.load``: ``init_state(opt); sd = opt.state_dict(); dcp.load(sd, …);
    opt.load_state_dict(sd)``. (torch's ``get_optimizer_state_dict`` instead steps once with zero
    gradients and ``lr = 0``, which would apply weight decay and the spec's other learning rates.)
    Works for sharded and unsharded optimizers alike (collective when sharded: every rank calls it)."""
    opt.init_state()
