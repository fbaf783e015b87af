"""Shape inference (optloom/shapes.py, optloom/check/shapes.py): the symbolic domain, and the
inferred shape of every primitive call of every shipped spec against the shape the call really
returns, on parameters of every dimensionality the rule admits."""
from __future__ import annotations

import pytest
import torch

import optloom
from optloom import shapes as S
from optloom.check import ir
from optloom.check.selectors import ParamInfo
from optloom.check.shapes import infer
from optloom.lang.loader import SHIPPED
from optloom.lowering.interpret import phases, run_rule
from optloom.primitives import Ctx

m, n = S.param_dim(0), S.param_dim(1)


def test_dims_and_broadcasting():
    assert S.equal(m, m) and S.equal(m * n, n * m) and S.equal(m, n) is False and S.equal(m, S.UNKNOWN) is None
    assert S.broadcast([(m, n), (S.ONE, n)], 2) == (m, n)
    assert S.broadcast([(m, n), ()], 2) == (m, n)
    assert S.broadcast([(m, S.ONE), (S.ONE, n)], 2) == (m, n)
    assert S.broadcast([(m, n), (S.UNKNOWN, n)], 2) == (m, n)
    assert S.broadcast([(m, n), None], 2) is None
    with pytest.raises(S.ShapeError, match=r"shapes \(m, n\) and \(n, m\) do not broadcast"):
        S.broadcast([(m, n), (n, m)], 2)
    assert S.show((m, n * S.param_dim(2)), 3) == "(d0, d1·d2)" and S.show((S.UNKNOWN, S.const(3) * m), 2) == "(?, 3·m)"
    assert S.show((S.param_dim(0),), 1) == "(n,)" and S.show((), 2) == "()"


def test_views_of_the_parameter():
    d = [S.param_dim(i) for i in range(4)]
    p = tuple(d)
    assert S.is_view_of(p, p) and S.is_view_of((d[0], d[1] * d[2] * d[3]), p)
    assert S.is_view_of((d[0] * d[1], d[2], d[3]), p) and S.is_view_of((d[0], S.ONE, d[1] * d[2] * d[3]), p)
    assert not S.is_view_of((d[1] * d[2] * d[3], d[0]), p) and not S.is_view_of((), p)
    assert S.is_view_of((S.UNKNOWN, d[3]), p)  # not known well enough to refuse


def test_as_matrix_rule():
    d = tuple(S.param_dim(i) for i in range(4))
    call = lambda shape, **args: S.as_matrix_rule(S.ShapeCall("as_matrix", (shape,), {  # noqa: E731
        "mode": "flatten", "split": (), "vectors": "refuse", **args}, shape))
    assert call(d) == (d[0], d[1] * d[2] * d[3])
    assert call(d, mode="batch") == (d[0] * d[1], d[2], d[3])
    assert call(d[:1], vectors="column") == (d[0], S.ONE) and call(d[:1], vectors="row") == (S.ONE, d[0])
    with pytest.raises(S.ShapeError, match="at least 2 dims"):
        call(d[:1])


def _concrete(shape: S.Shape | None, sizes: tuple[int, ...]) -> tuple[int | None, ...] | None:
    return None if shape is None else tuple(S.size(x, sizes) for x in shape)


SIZES = {0: (), 1: (7,), 2: (6, 4), 3: (3, 5, 4), 4: (4, 3, 2, 2)}


def _cases():
    for f in sorted(SHIPPED.glob("*.opt")):
        prog = optloom.compile(str(f))
        for ndim, sizes in SIZES.items():
            rule = prog.route(ParamInfo("blocks.0.mlp.weight", sizes, 0), prog.defaults())
            if rule is not None and not rule.first_step:
                yield pytest.param(prog, rule, sizes, id=f"{f.stem}-{rule.label}-{ndim}d")


@pytest.mark.parametrize("prog, rule, sizes", list(_cases()))
def test_inferred_shapes_match_what_the_calls_return(prog, rule, sizes):
    """Run the rule once on one parameter (every period starting) recording each primitive call's
    output shape, in evaluation order; each call whose shape inference knows says the same."""
    got: list[tuple[str, tuple[int, ...]]] = []

    def impl(prim):
        def fn(ctx, *inputs, **args):
            out = prim.fn(ctx, *inputs, **args)
            got.append((prim.name, tuple(out.shape)))
            return out
        return fn

    torch.manual_seed(0)
    p = torch.randn(sizes, dtype=torch.float64)
    hypers = {k: torch.tensor(float(v), dtype=torch.float64) if h.type == "float" and not h.structural else v
              for k, h in prog.hyperparams.items() for v in [h.default]}
    ctx = Ctx(layout="single", param=p.clone(), step=torch.tensor(1.0, dtype=torch.float64), states={}, ids=0,
              group=(0,), phases=dict(phases(rule, prog.defaults(), 1)))
    run_rule(rule, ctx, torch.randn(sizes, dtype=torch.float64), hypers, impl)
    shape: dict[int, S.Shape | None] = {}
    param = S.param_shape(len(sizes))
    calls = []
    for node in ir.walk(rule.roots):
        shape[id(node)] = infer(node, shape, param)
        if isinstance(node, ir.Call):
            calls.append(node)
    assert [c.prim.name for c in calls] == [name for name, _ in got]
    known = 0
    for c, (_, actual) in zip(calls, got):
        want = _concrete(shape[id(c)], sizes)
        if want is not None:
            assert len(want) == len(actual) and all(w is None or w == a for w, a in zip(want, actual)), \
                (c.prim.name, want, actual)
            known += all(w is not None for w in want)
    unknown_rule = {"svd_basis", "dct_basis", "range_sketch", "project", "take", "lift", "dct_select"}
    assert known == len(calls) or unknown_rule & set(rule.primitives) or "qr_q" in rule.primitives
