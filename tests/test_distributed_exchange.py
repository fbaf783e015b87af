"""The row exchanges of the distributed step (optloom/compiler/dist_comm.py) on 3 gloo ranks:
rows split unevenly, ranks holding no rows, two dtypes in one call. The oracle is the whole
tensor, which every rank can rebuild from a shared seed."""
from __future__ import annotations

import os
import tempfile
import time

import pytest
import torch

from test_distributed import _free_port

pytestmark = pytest.mark.distributed

WORLD = 3
# (rows, row shape, dtype, owner): 7 rows split 3/3/1, 2 rows (rank 2 holds none), 1 row
CASES = [(7, (4,), torch.float32, 2), (2, (3, 2), torch.float64, 1), (1, (5,), torch.float32, 0),
         (9, (), torch.float64, 0), (5, (2,), torch.float32, 1)]


def _whole(k: int) -> torch.Tensor:
    rows, shape, dtype, _ = CASES[k]
    return torch.randn((rows, *shape), generator=torch.Generator().manual_seed(k), dtype=dtype)


def _worker(rank: int, port: int, out: str) -> None:
    import datetime

    import torch.distributed as dist

    from optloom.runtime.distributed.comm import CommStats, Piece, from_owners, row_ranges, to_owners

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=datetime.timedelta(seconds=60))
    try:
        pieces = [Piece(o, row_ranges(rows, WORLD), shape, dtype) for rows, shape, dtype, o in CASES]
        local = [_whole(k)[slice(*pc.ranges[rank])] for k, pc in enumerate(pieces)]
        dest = [torch.full_like(_whole(k), float("nan")) if pc.owner == rank else None for k, pc in enumerate(pieces)]
        stats = CommStats(WORLD)
        to_owners(pieces, local, dest, dist.group.WORLD, stats)
        gathered = {k: d for k, d in enumerate(dest) if d is not None}
        # the owners send back twice their tensor: every rank must receive its rows of that
        back = from_owners(pieces, [2 * d if d is not None else None for d in dest], dist.group.WORLD, stats,
                           torch.device("cpu"))
        torch.save({"gathered": gathered, "back": back, "stats": stats.as_dict()}, os.path.join(out, f"{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_rows_reach_their_owners_and_come_back():
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as out:
        ctx = mp.start_processes(_worker, args=(_free_port(), out), nprocs=WORLD, join=False, start_method="spawn")
        end = time.monotonic() + 180
        try:
            while not ctx.join(timeout=max(0.1, end - time.monotonic())):
                if time.monotonic() > end:
                    raise TimeoutError("exchange test did not finish in 180 s")
        finally:
            for p in ctx.processes:
                if p.is_alive():
                    p.terminate()
        got = [torch.load(os.path.join(out, f"{r}.pt")) for r in range(WORLD)]
    for k, (rows, shape, dtype, owner) in enumerate(CASES):
        whole = _whole(k)
        assert torch.equal(got[owner]["gathered"][k], whole), k
        chunk = -(-rows // WORLD)
        for r in range(WORLD):
            assert k not in got[r]["gathered"] or r == owner
            assert torch.equal(got[r]["back"][k], 2 * whole[r * chunk:(r + 1) * chunk]), (k, r)
    # bytes: every row its owner lacks, once each way, by independent arithmetic
    moved = 0
    for k, (rows, shape, dtype, owner) in enumerate(CASES):
        chunk = -(-rows // WORLD)
        owner_rows = len(range(rows)[owner * chunk:(owner + 1) * chunk])
        moved += 2 * (rows - owner_rows) * _whole(k)[0].numel() * _whole(k).element_size()
    for r in range(WORLD):
        assert got[r]["stats"]["bytes"] == moved
        assert got[r]["stats"]["collectives"] == 4  # one all-to-all per dtype, each way
