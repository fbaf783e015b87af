"""Properties of the well-known optimizers shipped for issue 14 ("Any optimizer a researcher
knows") beyond the contract table (``tests/contract/table.py``), which runs each of them next to
its float64 oracle (torch.optim or pytorch_optimizer 4.1.0 on float64 copies,
``tests/reference/zoo.py``), trains it, resumes it bitwise and compiles it."""
from __future__ import annotations

from pathlib import Path

import torch

import optloom
from tests.spec_harness import one_thread  # noqa: F401 (autouse: one torch thread)

def test_adafactor_state_is_factored():
    """A 12×8 matrix keeps 12 + 8 second-moment numbers (torch.optim.Adafactor's row_var/col_var),
    a conv weight (4, 3, 3, 3) 4·3·(3 + 3), the bias its 12: ``optloom show``'s state bytes."""
    w = {"w": torch.nn.Parameter(torch.randn(12, 8)), "conv": torch.nn.Parameter(torch.randn(4, 3, 3, 3)),
         "b": torch.nn.Parameter(torch.randn(12))}
    opt = optloom.optimizer("adafactor", list(w.items()), backend="eager")
    for p in w.values():
        p.grad = torch.randn_like(p)
    opt.step()
    shapes = {k: {s: tuple(v.shape) for s, v in opt.state[p].items() if s != "step"} for k, p in w.items()}
    assert shapes == {"w": {"row_var": (12, 1), "col_var": (1, 8)},
                      "conv": {"row_var": (4, 3, 3, 1), "col_var": (4, 3, 1, 3)}, "b": {"variance": (12,)}}
    program = optloom.compile((Path(optloom.__file__).parent / "specs" / "adafactor.opt").read_text())
    assert program.state_bytes(list(w.items())) == 4 * (12 + 8 + 4 * 3 * 6 + 12)
