"""The registry contract: for every registered primitive with a reference and examples, the
batched fast implementation on a stacked bucket equals the per-parameter reference, member by
member, in float64, on fresh random inputs. Example arguments are read from the examples' call
snippets with the language's own parser (``grad |> <example>``) and constant folder — nothing is
evaluated as Python.

Runtime (float) arguments are given to the fast implementation as 0-d float64 tensors, as the
compiler passes hyperparameters, and to the reference as Python floats. Stateful primitives run
3 steps with fresh inputs each step; parameter-writing primitives are compared on ``ctx.param``.
"""
from __future__ import annotations

import zlib

import pytest
import torch

from optloom.check.consts import ConstError, const_value
from optloom.lang import ast as A
from optloom.lang.parser import parse
from optloom.primitives import Ctx, all_primitives

B = 3
STEPS = 3
MATRIX_SHAPES = [(6, 4), (4, 6), (5, 5)]
ANY_SHAPES = [(7,), (5, 3), (4, 3, 2, 2)]
# Tolerances (relative to the largest entry of the reference): float64 on both sides leaves only
# reordering of sums and of LAPACK blocking, ~1e-13 per op; 1e-9 leaves room for iterations
# (5–20 matmul steps) that amplify it. A declared compute ``dtype`` below float64 bounds the
# agreement by that dtype: float32 unit roundoff 6e-8 × ~50 amplification in 10-step iterations
# -> 5e-5; bfloat16 unit roundoff 3.9e-3, Newton–Schulz maps small singular values with slope up
# to a ≈ 3.4–8 per step -> 0.25 of the largest entry is the honest bound for 5 bf16 steps
# (both sides are valid outputs of the same bf16 algorithm; the bf16 path's fidelity is tested
# against SVD oracles elsewhere).
TOL = {"float64": 1e-9, "float32": 5e-5, "float16": 5e-2, "bfloat16": 0.25}

from tests.spec_harness import one_thread  # noqa: E402,F401 (autouse: one torch thread)



def _examples():
    out = []
    for prim in all_primitives():
        if prim.ref is None or not prim.examples:
            continue
        for ex in prim.examples:
            out.append(pytest.param(prim, ex, id=f"{prim.name}:{ex}"))
    return out


def _call_of(example: str) -> A.Call | A.Name:
    module = parse(f"optimizer contract() {{ all => grad |> {example} }}")
    body = module.optimizers[0].rules[0].body.result
    assert isinstance(body, A.Pipe), f"example {example!r} is not a single stage"
    return body.stage.callee


def _bind(prim, example: str) -> dict:
    callee = _call_of(example)
    if isinstance(callee, A.Name):
        assert callee.id == prim.name
        pos, kws = [], []
    else:
        assert isinstance(callee, A.Call) and callee.func == prim.name, f"example {example!r} calls another primitive"
        pos, kws = callee.args, callee.kwargs
    names = list(prim.args)  # the piped value is the single tensor input
    assert len(pos) <= len(names), f"too many arguments in {example!r}"
    bound = {}
    for name, e in [*zip(names, pos), *((k.name, k.value) for k in kws)]:
        try:
            bound[name] = const_value(e)
        except ConstError:
            pytest.skip(f"example {example!r}: argument '{name}' is not a literal")
    for name, arg in prim.args.items():
        if name in bound:
            arg.validate(bound[name])  # every example must pass the declared ranges
        elif arg.required:
            raise AssertionError(f"example {example!r} omits required argument '{name}'")
        else:
            bound[name] = arg.default
    return bound


def _is_float_arg(arg) -> bool:
    return not arg.structural


def _tensorize(prim, args: dict) -> dict:
    out = {}
    for k, v in args.items():
        if _is_float_arg(prim.args[k]) and isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = torch.tensor(float(v), dtype=torch.float64)
        elif _is_float_arg(prim.args[k]) and isinstance(v, tuple):
            out[k] = tuple(torch.tensor(float(i), dtype=torch.float64) for i in v)
        else:
            out[k] = v
    return out


def _ctx(layout, param, step, ids, prim, states):
    names = {s.name: s.name for s in prim.state}
    specs = {s.name: s for s in prim.state}
    return Ctx(layout=layout, param=param, step=step, states=states, ids=ids).bind(names, specs)


# rotate("sign") builds C = M sign(M)ᵀ; sign patterns of short rows coincide (up to sign) with
# probability ~ rows²·2^(1−cols), which makes C singular and its QR factor arbitrary (an
# ill-posedness of ARO with the sign map, not of the implementation). 16+ columns make it rare.
SHAPE_OVERRIDES = {"rotate": [(8, 20), (20, 8), (16, 16)]}


def _shapes(prim):
    return SHAPE_OVERRIDES.get(prim.name, MATRIX_SHAPES if prim.needs_matrix else ANY_SHAPES)


def _kinds(prim):
    # strictly positive inputs exist for log/sqrt-like elementwise maps; matrix primitives get
    # signed Gaussian matrices only (all-positive matrices are rank-1 under sign maps)
    return ("signed",) if prim.needs_matrix else ("signed", "positive")


def _tol(prim, args: dict) -> float:
    """Tolerance of the compute dtype: given, else the declared default ("auto" resolved here)."""
    from optloom.primitives.orthogonalize import resolve_dtype

    dtype = args.get("dtype", prim.args["dtype"].default if "dtype" in prim.args else "float64")
    if dtype == "auto":
        dtype = str(resolve_dtype("auto", torch.device("cpu"))).removeprefix("torch.")
    return TOL.get(dtype, 1e-9)


@pytest.mark.parametrize("prim,example", _examples())
def test_fast_matches_reference(prim, example):
    if len(prim.inputs) != 1:
        pytest.skip(f"{prim.name} takes {len(prim.inputs)} tensor inputs; the contract feeds one")
    if prim.reduces_group:
        pytest.skip(f"{prim.name} reduces across a bucket's members by definition (tests/test_forms.py)")
    args = _bind(prim, example)
    fast_args = _tensorize(prim, args)
    tol = _tol(prim, args)
    gen = torch.Generator().manual_seed(zlib.crc32(example.encode()))
    ran = 0
    for shape in _shapes(prim):
        for kind in _kinds(prim):
            param = torch.randn(B, *shape, generator=gen, dtype=torch.float64)
            ids = torch.arange(B) + 11
            fast_states: dict = {}
            ref_states = [dict() for _ in range(B)]
            ref_params = [param[i].clone() for i in range(B)]
            fast_param = param.clone()
            try:
                for t in range(1, STEPS + 1 if prim.stateful else 2):
                    x = torch.randn(B, *shape, generator=gen, dtype=torch.float64)
                    if kind == "positive":
                        x = x.abs() + 0.1
                    refs = []
                    for i in range(B):
                        c = _ctx("single", ref_params[i], t, int(ids[i]), prim, ref_states[i])
                        refs.append(prim.ref(c, x[i].clone(), **args))
                        ref_params[i] = c.param
                    c = _ctx("stacked", fast_param, torch.tensor(float(t)), ids, prim, fast_states)
                    out = prim.fn(c, x.clone(), **fast_args)
                    fast_param = c.param
                    _compare(prim, example, shape, t, out, refs, tol)
                    if prim.writes_param:
                        _compare(prim, example, shape, t, fast_param, ref_params, tol, what="param")
            except ValueError as err:  # the reference refuses this shape: so must the fast path
                if "refuses" in str(err):
                    raise
                with pytest.raises((ValueError, RuntimeError)):
                    c = _ctx("stacked", param.clone(), torch.tensor(1.0), ids, prim, {})
                    prim.fn(c, torch.randn(B, *shape, dtype=torch.float64), **fast_args)
                continue
            ran += 1
    assert ran, f"{prim.name}: no input shape was accepted"


def _compare(prim, example, shape, t, out, refs, tol, what="output"):
    ref = torch.stack([torch.as_tensor(r, dtype=torch.float64).reshape(-1) for r in refs])
    got = torch.as_tensor(out).to(torch.float64).reshape(B, -1)
    assert got.shape == ref.shape, f"{prim.name} {example} {shape}: {what} shape {tuple(got.shape)} vs {tuple(ref.shape)}"
    finite = torch.isfinite(ref)
    assert torch.equal(finite, torch.isfinite(got)), f"{prim.name} {example}: non-finite entries differ"
    scale = ref[finite].abs().max().clamp(min=1e-30) if finite.any() else torch.tensor(1.0)
    err = float((got[finite] - ref[finite]).abs().max() / scale) if finite.any() else 0.0
    assert err <= tol, f"{prim.name} `{example}` shape {shape} step {t}: {what} rel. error {err:.2e} > {tol:.0e}"
