"""Schedule-Free AdamW's evaluation weights: ``opt.swap_params("x")`` gives the average x, as the
reference's ``optimizer.eval()`` (pytorch_optimizer 4.1.0 ScheduleFreeAdamW, float64), and swapping
back restores the training point y bitwise, as ``.train()``."""
import torch
import pytorch_optimizer as P

import optloom
from tests.spec_harness import SPECS


def test_swap_params_x_is_the_reference_eval_weights():
    gen = torch.Generator().manual_seed(0)
    shapes = {"w": (6, 4), "b": (6,)}
    init = {k: torch.randn(s, generator=gen) for k, s in shapes.items()}
    ps = {k: torch.nn.Parameter(v.clone()) for k, v in init.items()}
    ref = {k: v.double().clone().requires_grad_(True) for k, v in init.items()}
    h = dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=0.1)
    opt = optloom.optimizer(f"{SPECS}/schedulefree_adamw.opt", list(ps.items()), backend="eager", **h)
    oracle = P.ScheduleFreeAdamW(list(ref.values()), **h)
    for _ in range(20):
        for k in shapes:
            g = torch.randn(shapes[k], generator=gen)
            ps[k].grad, ref[k].grad = g.clone(), g.double()
        opt.step()
        oracle.step()
    y = {k: p.detach().clone() for k, p in ps.items()}
    opt.swap_params("x")
    oracle.eval()
    for k in shapes:
        x, x_ref = ps[k].detach().double(), ref[k].detach()
        moved = (x_ref - init[k].double()).norm()
        assert float((x - x_ref).norm() / moved) < 2e-5, k  # ADAM_FP32, on the displacement
        assert not torch.equal(ps[k].detach(), y[k]), k  # x is not the training point y
    opt.swap_params("x")
    oracle.train()
    for k in shapes:
        assert torch.equal(ps[k].detach(), y[k]), k
        assert float((ps[k].detach().double() - ref[k].detach()).norm()) < 1e-5, k
