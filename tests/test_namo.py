"""Properties of NAMO and NAMO-D (arXiv 2602.17080; minxin-zhg/namo ``src/namo.py``) beyond the
contract (tests/contract: agreement with ``R.NAMO`` / ``R.NAMOD``, resume, training, compile): the
column clamp matters, and the primitives NAMO-D brought (``clamp_to_mean``, ``col_norms``,
``shape_factor``, ``as_scalar``)."""
from __future__ import annotations

import math

import pytest
import torch

import optloom
import tests.reference as R
from optloom.primitives import Ctx, lookup
from tests.contract.sides import aux_adamw, split
from tests.contract.table import NAMO_ADAM
from tests.contract.tolerances import MUON_FP32
from tests.spec_harness import MATRICES, one_thread, run_pair  # noqa: F401 (one_thread: autouse)


def test_namo_d_clamp_matters():
    """The column clamp changes the result (so the contract's agreement runs test it): c = 0.75
    against an oracle with a practically free clamp differs far beyond the tolerance."""
    side = split(lambda ps: R.NAMOD(ps, lr=0.05, col_state_clamp_c=1e-6, ns_dtype=torch.float64),
                 aux_adamw(NAMO_ADAM, wd=None))
    run = run_pair("namo_d", {**NAMO_ADAM, "lr": 0.05, "ns_dtype": "float32", "col_state_clamp_c": 0.75}, side)
    assert min(run.errs[k] for k in MATRICES) > 100 * MUON_FP32.bound, run.errs


# ---- primitives -----------------------------------------------------------------------------

def _ctx(step=1.0):
    return Ctx(layout="stacked", param=torch.zeros(2, 1), step=torch.tensor(step, dtype=torch.float64),
               states={})


def test_clamp_to_mean_values_and_skip_rule():
    prim = lookup("clamp_to_mean")
    d = torch.tensor([[[1.0, 2.0, 9.0]], [[-1.0, -2.0, 0.5]]], dtype=torch.float64)  # means 4 and < 0
    out = prim.fn(_ctx(), d, c=torch.tensor(0.5, dtype=torch.float64))
    assert torch.equal(out[0], torch.tensor([[2.0, 2.0, 8.0]], dtype=torch.float64))
    assert torch.equal(out[1], d[1])  # mean ≤ 0: skipped
    nan = torch.tensor([[[float("nan"), 1.0, 3.0]]], dtype=torch.float64)  # nanmean = 2
    out = prim.fn(_ctx(), nan, c=0.75)
    assert torch.isnan(out[0, 0, 0]) and torch.allclose(out[0, 0, 1:], torch.tensor([1.5, 2.0 / 0.75], dtype=torch.float64))
    inf = torch.tensor([[[float("inf"), 1.0]]], dtype=torch.float64)
    assert torch.equal(prim.fn(_ctx(), inf, c=0.75), inf)  # non-finite mean: skipped
    for row in (d[0], nan[0], inf[0]):
        want = prim.ref(None, row.clone(), 0.75)
        got = prim.fn(_ctx(), row[None].clone(), c=0.75)[0]
        assert torch.equal(torch.isnan(got), torch.isnan(want)) and torch.equal(got.nan_to_num(), want.nan_to_num())


def test_col_norms_and_shape_factor():
    x = torch.randn(3, 5, 4, dtype=torch.float64)
    cn = lookup("col_norms").fn(_ctx(), x)
    assert cn.shape == (3, 1, 4) and torch.allclose(cn[:, 0], x.norm(dim=1))
    sf = lookup("shape_factor")
    assert torch.allclose(sf.fn(_ctx(), x, kind="moonlight", coeff=0.2), torch.full((3,), 0.2 * math.sqrt(5), dtype=torch.float64))
    assert torch.allclose(sf.fn(_ctx(), x, kind="muon"), torch.full((3,), math.sqrt(5 / 4), dtype=torch.float64))


def test_as_scalar_refuses_tensors():
    prim = lookup("as_scalar")
    assert torch.equal(prim.fn(_ctx(), torch.ones(2)), torch.ones(2))
    with pytest.raises(ValueError, match="one value per parameter"):
        prim.fn(_ctx(), torch.ones(2, 3))
    spec = "optimizer bad(lr = 0.1) { all => grad |> as_scalar |> apply(lr) }"
    p = torch.nn.Parameter(torch.randn(3, 3))
    p.grad = torch.randn(3, 3)
    with pytest.raises(Exception, match="one value per parameter"):
        optloom.optimizer(spec, [("w", p)]).step()
