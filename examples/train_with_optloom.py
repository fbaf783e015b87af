"""A complete training script using an optloom spec as a plain torch.optim optimizer.

    python examples/train_with_optloom.py            # Muon (shipped spec) on a small regression
    python examples/train_with_optloom.py my.opt     # or any spec file of your own

The three optloom lines are marked; everything else is ordinary PyTorch.
"""
import sys

import torch
from torch import nn

import optloom
from optloom.train import default_device

torch.manual_seed(0)
device = default_device()  # a CUDA device when there is one

# data: y = sin(x · w) for random inputs
w = torch.randn(16, 1, device=device) / 4
x_train = torch.randn(4096, 16, device=device)
y_train = torch.sin(x_train @ w)
x_val = torch.randn(1024, 16, device=device)
y_val = torch.sin(x_val @ w)

model = nn.Sequential(nn.Linear(16, 128), nn.GELU(), nn.Linear(128, 128), nn.GELU(), nn.Linear(128, 1)).to(device)

steps = 500
spec = sys.argv[1] if len(sys.argv) > 1 else "muon"
opt = optloom.optimizer(spec, model.named_parameters(), lr=0.02)           # 1. a spec -> torch.optim.Optimizer
sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)      # 2. any torch LR scheduler works

for step in range(1, steps + 1):
    idx = torch.randint(0, len(x_train), (128,), device=device)
    loss = nn.functional.mse_loss(model(x_train[idx]), y_train[idx])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()                                                            # 3. step as usual
    sched.step()
    if step % 100 == 0:
        with torch.no_grad():
            val = nn.functional.mse_loss(model(x_val), y_val).item()
        print(f"step {step:4d}  train {loss.item():.4f}  val {val:.4f}  lr {sched.get_last_lr()[0]:.4g}")

torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, "checkpoint.pt")
print("saved checkpoint.pt (model and optimizer state)")
