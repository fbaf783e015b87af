"""The contract every shipped optimizer keeps, run over ``table.TABLE``: it agrees with its
independent oracle(s), resumes bitwise from a state_dict, trains a small model, and its compiled
(inductor) step equals its eager one. Family-specific properties live in the family files
(``tests/test_<family>*.py``)."""
from __future__ import annotations

import re

import pytest
import torch

import optloom
from optloom.cli import main as optloom_cli
from tests.contract.table import TABLE
from tests.spec_harness import check_bitwise_resume, check_trains, run_pair

CASES = [(e, c) for e in TABLE for c in e.cases]
RESUMES = [(e, r) for e in TABLE for r in e.resume]


def _resume_id(entry, override) -> str:
    if len(entry.resume) == 1:
        return entry.name
    return "-".join([entry.name, *(f"{k}={v}" for k, v in override.items())])


@pytest.mark.parametrize("entry, case", CASES, ids=[f"{e.name}-{c.id}" for e, c in CASES])
def test_agrees_with_oracle(entry, case):
    run = run_pair(entry.file, case.hyper, case.side, name=entry.name, steps=case.steps, dtype=case.dtype,
                   schedule=case.schedule, keys=case.keys)
    if hasattr(run.side, "check"):
        run.side.check(run)
    case.tol.check(run)


@pytest.mark.parametrize("entry, override", RESUMES, ids=[_resume_id(e, r) for e, r in RESUMES])
def test_resumes_bitwise(entry, override):
    hyper = {**entry.train, **override}
    check_bitwise_resume(entry.file, entry.name, hyper, lr_at=entry.lr_at(hyper))


@pytest.mark.parametrize("entry", TABLE, ids=[e.name for e in TABLE])
def test_trains(entry):
    check_trains(entry.file, entry.name, entry.train, lr_at=entry.lr_at(entry.train))


# eager == inductor: six small parameters whose names reach every rule kind (embeddings and the head
# go to the aux rules of the Muon family), 3 steps — one small compile per optimizer
COMPILED_SHAPES = {"embed.weight": (10, 4), "l1.weight": (6, 4), "l1.bias": (6,), "l2.weight": (4, 6),
                   "conv.weight": (3, 2, 2, 2), "head.weight": (3, 4)}


def _named(seed: int) -> list[tuple[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(k, torch.randn(s, generator=g)) for k, s in COMPILED_SHAPES.items()]


@pytest.mark.slow
@pytest.mark.parametrize("entry", TABLE, ids=[e.name for e in TABLE])
def test_eager_equals_inductor(entry):
    a, b = _named(0), _named(0)
    eager = optloom.optimizer(entry.file, a, name=entry.name, backend="eager", **entry.compiled)
    comp = optloom.optimizer(entry.file, b, name=entry.name, backend="inductor", **entry.compiled)
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        for (_, p), (_, q) in zip(a, b):
            g = torch.randn(p.shape, generator=gen)
            p.grad, q.grad = g.clone(), g.clone()
        eager.step()
        comp.step()
    # fp32 rounding: inductor fuses and reorders reductions (~1e-7 relative per op); matrix
    # iterations (Newton–Schulz, QR, Sinkhorn) can grow that by a few orders over 3 steps.
    for (k, p), (_, q) in zip(a, b):
        assert float((p - q).norm() / q.norm()) < 1e-5, k
        for s, v in eager.state[p].items():
            w = comp.state[q][s]
            if not w.is_floating_point():  # integer state (counters, indices): exact
                assert torch.equal(v, w), (k, s)
                continue
            assert float((v - w).norm()) <= 1e-5 * float(w.norm()) + 1e-6, (k, s)


def test_table_covers_the_shipped_optimizers(capsys):
    """One entry per optimizer of ``optloom list --specs`` (file [optimizers…] per line), no more."""
    assert optloom_cli(["list", "--specs"]) == 0
    shipped = {(line.split()[0], name) for line in capsys.readouterr().out.splitlines() if "[" in line
               for name in re.search(r"\[([^\]]*)\]", line).group(1).replace(",", " ").split()}
    table = [(e.file, e.name) for e in TABLE]
    assert len(table) == len(set(table)), "an optimizer has two entries"
    assert set(table) == shipped
