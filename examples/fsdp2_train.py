"""Train a small MLP with optloom's Muon on an FSDP2-sharded model.

    torchrun --nproc-per-node 2 examples/fsdp2_train.py        # gloo on CPU, nccl on CUDA
    python examples/fsdp2_train.py                              # same, spawning 2 local ranks
"""
from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import torch.nn as nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

import optloom
from optloom.runtime.distributed.strategy import init_state


def main() -> None:
    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(seconds=60))
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", rank % torch.cuda.device_count()) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    mesh = init_device_mesh(device.type, (world,))

    torch.manual_seed(0)  # same initial weights on every rank; fully_shard keeps each rank's rows
    model = nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 256), nn.GELU(),
                          nn.Linear(256, 256), nn.GELU(), nn.Linear(256, 10)).to(device)
    for layer in model[:-1]:
        if isinstance(layer, nn.Linear):
            fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)

    # Unchanged from one process: the hidden 2-D weights take Muon (Newton–Schulz on the whole
    # gathered matrix), biases and the last layer ("7" here; name it "head" to route it) AdamW on
    # local shards.
    opt = optloom.optimizer("muon", model.named_parameters(), lr=0.02)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=100)

    g = torch.Generator().manual_seed(1234 + rank)  # each rank its own data shard
    for step in range(100):
        x = torch.randn(32, 64, generator=g).to(device)
        y = (x[:, :10].argmax(1)).to(device)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step % 20 == 0 and rank == 0:
            c = opt.comm_stats
            print(f"step {step:3d}  loss {loss.item():.4f}  optimizer comm {c['bytes'] / 1e6:.3f} MB "
                  f"(minimum {c['minimum_bytes'] / 1e6:.3f} MB, {c['collectives']} collectives; "
                  f"matrices per rank {c['matrices_by_rank']})")

    # Checkpoint: every rank writes its shards; any world size can load them.
    path = os.environ.get("CKPT", "/tmp/optloom_fsdp2_ckpt")
    dcp.save({"model": model.state_dict(), "optim": opt.state_dict()}, checkpoint_id=path)

    # Resume (here into a fresh optimizer): allocate state first, load in place, then hand it over.
    opt2 = optloom.optimizer("muon", model.named_parameters(), lr=0.02)
    init_state(opt2)
    sd = {"model": model.state_dict(), "optim": opt2.state_dict()}
    dcp.load(sd, checkpoint_id=path)
    model.load_state_dict(sd["model"])
    opt2.load_state_dict(sd["optim"])
    if rank == 0:  # (opt.state_dict() is a collective on a sharded optimizer: read opt.state here)
        print("resumed at step", int(next(iter(opt2.state.values()))["step"]))
    dist.destroy_process_group()


def _spawned(rank: int, world: int, port: int) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    main()


if __name__ == "__main__":
    if "RANK" in os.environ:  # torchrun
        main()
    else:
        import socket

        import torch.multiprocessing as mp

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        mp.spawn(_spawned, args=(2, port), nprocs=2, join=True)
