"""Collectives of the distributed step: the vote, the all-to-all exchanges that move matrix rows
to the rank that computes each matrix (its *owner*) and back, and the communication report.

A :class:`Piece` is one tensor split by rows over the ranks: ``ranges[r]`` are the rows of dim 0
that rank ``r`` holds (``torch.chunk`` semantics, as FSDP2 shards) and ``owner`` the rank that
holds or needs the whole tensor. :func:`to_owners` moves every rank's rows of every piece to the
piece's owner, :func:`from_owners` the owner's rows back to every rank: one ``all_to_all_single``
per dtype each, whatever the number of pieces. Rows a rank already holds never travel.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Piece:
    owner: int
    ranges: tuple[tuple[int, int], ...]  # rows of dim 0 held (or wanted) by each rank
    row_shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def row_numel(self) -> int:
        return math.prod(self.row_shape)

    def numel(self, r: int) -> int:
        lo, hi = self.ranges[r]
        return (hi - lo) * self.row_numel

    def moved_bytes(self) -> int:
        """Bytes one exchange of this piece moves between ranks: every row the owner lacks."""
        elem = torch.empty((), dtype=self.dtype).element_size()
        return sum(self.numel(r) for r in range(len(self.ranges)) if r != self.owner) * elem


def row_ranges(rows: int, world: int) -> tuple[tuple[int, int], ...]:
    """Rows of dim 0 each rank holds, as ``torch.chunk`` (and FSDP2) split them."""
    c = math.ceil(rows / world) if rows else 0
    return tuple((min(r * c, rows), min((r + 1) * c, rows)) for r in range(world))


class CommStats:
    """Bytes the optimizer's collectives moved in the last step, summed over ranks (every rank
    computes the same total), against the minimum the spec needs: each matrix of a matrix rule
    gathered once to one rank and its result scattered back once — ``2·(rows the best-placed rank
    lacks)`` per matrix, ``2·(W−1)/W·size`` when rows split evenly. Elementwise rules need none.
    The votes (a few int64) are not counted."""

    def __init__(self, world: int) -> None:
        self.bytes = 0
        self.minimum = 0
        self.collectives = 0
        self.matrices = [0] * world  # matrices each rank computed

    def add(self, n: int) -> None:
        self.bytes += n
        self.collectives += 1

    def as_dict(self) -> dict[str, Any]:
        return {"bytes": self.bytes, "minimum_bytes": self.minimum, "collectives": self.collectives,
                "matrices_by_rank": list(self.matrices)}


def _by_dtype(pieces: list[Piece]) -> dict[torch.dtype, list[int]]:
    out: dict[torch.dtype, list[int]] = {}
    for k, pc in enumerate(pieces):
        out.setdefault(pc.dtype, []).append(k)
    return out


def to_owners(pieces: list[Piece], local: list[torch.Tensor], dest: list[torch.Tensor | None],
              group: Any, stats: CommStats) -> None:
    """Write every rank's rows of piece ``k`` (``local[k]``, this rank's rows) into ``dest[k]``
    (the whole tensor) on its owner. ``dest[k]`` is ignored on other ranks."""
    me, world = dist.get_rank(group), dist.get_world_size(group)
    for dtype, ks in _by_dtype(pieces).items():
        send_parts, in_splits = [], []
        for d in range(world):
            mine = [k for k in ks if pieces[k].owner == d]
            send_parts += [local[k].reshape(-1) for k in mine]
            in_splits.append(sum(pieces[k].numel(me) for k in mine))
        owned = [k for k in ks if pieces[k].owner == me]
        out_splits = [sum(pieces[k].numel(s) for k in owned) for s in range(world)]
        recv = _exchange(send_parts, in_splits, out_splits, dtype, local[ks[0]].device, group)
        off = 0
        for s in range(world):
            for k in owned:
                pc, n = pieces[k], pieces[k].numel(s)
                lo, hi = pc.ranges[s]
                dest[k][lo:hi].copy_(recv[off: off + n].view(hi - lo, *pc.row_shape))  # type: ignore[index]
                off += n
        stats.add(sum(pieces[k].moved_bytes() for k in ks))


def from_owners(pieces: list[Piece], full: list[torch.Tensor | None], group: Any, stats: CommStats,
                device: torch.device) -> list[torch.Tensor]:
    """Every rank's rows (``ranges[rank]``) of each piece, from its owner's whole tensor
    ``full[k]`` (``None`` on other ranks). Returns views of one receive buffer per dtype."""
    me, world = dist.get_rank(group), dist.get_world_size(group)
    out: list[torch.Tensor] = [None] * len(pieces)  # type: ignore[list-item]
    for dtype, ks in _by_dtype(pieces).items():
        owned = [k for k in ks if pieces[k].owner == me]
        send_parts, in_splits = [], []
        for d in range(world):
            send_parts += [full[k][slice(*pieces[k].ranges[d])].reshape(-1) for k in owned]  # type: ignore[index]
            in_splits.append(sum(pieces[k].numel(d) for k in owned))
        out_splits = [sum(pieces[k].numel(me) for k in ks if pieces[k].owner == s) for s in range(world)]
        recv = _exchange(send_parts, in_splits, out_splits, dtype, device, group)
        off = 0
        for s in range(world):
            for k in ks:
                if pieces[k].owner == s:
                    pc, n = pieces[k], pieces[k].numel(me)
                    lo, hi = pc.ranges[me]
                    out[k] = recv[off: off + n].view(hi - lo, *pc.row_shape)
                    off += n
        stats.add(sum(pieces[k].moved_bytes() for k in ks))
    return out


def _exchange(parts: list[torch.Tensor], in_splits: list[int], out_splits: list[int], dtype: torch.dtype,
              device: torch.device, group: Any) -> torch.Tensor:
    send = torch.cat(parts) if parts else torch.empty(0, dtype=dtype, device=device)
    recv = torch.empty(sum(out_splits), dtype=dtype, device=device)
    dist.all_to_all_single(recv, send, out_splits, in_splits, group=group)
    return recv


def vote(failed: BaseException | None, flag: int, group: Any) -> tuple[bool, int, list[str]]:
    """All ranks agree: did any rank fail, and the bitwise OR of ``flag`` over ranks (1 = non-finite
    gradients, 2 = a stale parameter replica). Failing ranks' messages are gathered for all."""
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
