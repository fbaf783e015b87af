"""The registry contract: for every registered primitive and each of its examples, the batched
fast implementation on a stacked bucket equals the per-parameter reference, member by member, in
float64, on fresh random inputs. Example arguments are read from the examples' call snippets with
the language's own parser (``grad |> <example>``, or the bare call for a primitive without tensor
inputs) and constant folder — nothing is evaluated as Python. The tensor inputs come from the
declaration: ``Primitive.sample_inputs`` (a standard normal tensor of the parameter's shape per
input, unless the primitive declares ``samples``).

Runtime (float) arguments are given to the fast implementation as 0-d float64 tensors, as the
compiler passes hyperparameters, and to the reference as Python floats. Every case runs 3 steps
with fresh inputs each step (stateful primitives carry their state, step-dependent ones see
steps 1–3); parameter-writing primitives are also compared on ``ctx.param``. The bucket is the
rule's whole parameter group (group samplers draw over it), and a group reduction's value is its
``op`` over the members' reference values, as the runtime combines them.
"""
from __future__ import annotations

import math
import statistics
import zlib

import pytest
import torch

from optloom.check.consts import ConstError, const_value
from optloom.lang import ast as A
from optloom.lang.parser import parse
from optloom.primitives import Ctx, all_primitives
from optloom.primitives.linalg import resolve_dtype

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

# Primitives without a per-parameter reference, each with the reason it cannot have one. Empty:
# every registered primitive is checked against its reference.
NO_REFERENCE: dict[str, str] = {}

# a group reduction's value over the group, from its members' values (runtime/optimizer.py
# combines the members' values of every bucket by the call's ``op``)
GROUP_OPS = {"min": min, "max": max, "sum": math.fsum, "mean": statistics.fmean, "none": lambda values: 1.0}


def _examples():
    return [pytest.param(prim, ex, id=f"{prim.name}:{ex}")
            for prim in all_primitives() if prim.name not in NO_REFERENCE for ex in prim.examples]


def test_every_primitive_is_covered():
    for prim in all_primitives():
        assert prim.examples, f"{prim.name} declares no examples: the contract cannot run it"
        assert (prim.ref is None) == (prim.name in NO_REFERENCE), \
            f"{prim.name}: a reference is declared iff the primitive is not in NO_REFERENCE"


def _call_of(prim, example: str) -> A.Call | A.Name:
    body = f"grad |> {example}" if prim.inputs else example
    module = parse(f"optimizer contract() {{ all => {body} }}")
    result = module.optimizers[0].rules[0].body.result
    if prim.inputs:
        assert isinstance(result, A.Pipe), f"example {example!r} is not a single stage"
        return result.stage.callee
    assert isinstance(result, (A.Call, A.Name)), f"example {example!r} is not a call"
    return result


def _bind(prim, example: str) -> dict:
    callee = _call_of(prim, example)
    if isinstance(callee, A.Name):
        assert callee.id == prim.name
        pos, kws = [], []
    else:
        assert isinstance(callee, A.Call) and callee.func == prim.name, f"example {example!r} calls another primitive"
        pos, kws = callee.args, callee.kwargs
    names = [*prim.inputs[1:], *prim.args]  # the piped value is the first tensor input
    assert len(pos) <= len(names), f"too many arguments in {example!r}"
    bound = {}
    for name, e in [*zip(names, pos), *((k.name, k.value) for k in kws)]:
        if name not in prim.args:
            continue  # a tensor input: the declaration's samples give it
        try:
            bound[name] = const_value(e)
        except ConstError:
            raise AssertionError(f"example {example!r}: argument '{name}' is not a literal") from None
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
    return Ctx(layout=layout, param=param, step=step, states=states, ids=ids,
               group=GROUP).bind(names, specs)


IDS = torch.arange(B) + 11
GROUP = tuple(int(i) for i in IDS)  # the bucket is the rule's whole parameter group

# rotate("sign") builds C = M sign(M)ᵀ; sign patterns of short rows coincide (up to sign) with
# probability ~ rows²·2^(1−cols), which makes C singular and its QR factor arbitrary (an
# ill-posedness of ARO with the sign map, not of the implementation). 16+ columns make it rare.
SHAPE_OVERRIDES = {"rotate": [(8, 20), (20, 8), (16, 16)]}


def _shapes(prim):
    return SHAPE_OVERRIDES.get(prim.name, MATRIX_SHAPES if prim.needs_matrix else ANY_SHAPES)


def _kinds(prim):
    # strictly positive inputs exist for log/sqrt-like elementwise maps; matrix primitives get
    # signed Gaussian matrices only (all-positive matrices are rank-1 under sign maps), and
    # declared samples are taken as declared
    positive = prim.inputs and not prim.needs_matrix and prim.samples is None
    return ("signed", "positive") if positive else ("signed",)


def _inputs(prim, gen, shape, args, kind):
    """One member's fresh tensor inputs, from the declaration."""
    inputs = prim.sample_inputs(gen, shape, args)
    return tuple(x.abs() + 0.1 for x in inputs) if kind == "positive" else inputs


def _stack(members):
    """The bucket's inputs: each tensor input of the members stacked along a leading dim."""
    return [torch.stack([m[k] for m in members]) for k in range(len(members[0]))]


def _tol(prim, args: dict) -> float:
    """Tolerance of the compute dtype: given, else the declared default ("auto" resolved here)."""
    dtype = args.get("dtype", prim.args["dtype"].default if "dtype" in prim.args else "float64")
    if dtype == "auto":
        dtype = str(resolve_dtype("auto", torch.device("cpu"))).removeprefix("torch.")
    return TOL.get(dtype, 1e-9)


@pytest.mark.parametrize("prim,example", _examples())
def test_fast_matches_reference(prim, example):
    args = _bind(prim, example)
    fast_args = _tensorize(prim, args)
    tol = _tol(prim, args)
    gen = torch.Generator().manual_seed(zlib.crc32(example.encode()))
    ran = 0
    for shape in _shapes(prim):
        for kind in _kinds(prim):
            param = torch.randn(B, *shape, generator=gen, dtype=torch.float64)
            fast_states: dict = {}
            ref_states = [dict() for _ in range(B)]
            ref_params = [param[i].clone() for i in range(B)]
            fast_param = param.clone()
            try:
                for t in range(1, STEPS + 1):
                    members = [_inputs(prim, gen, shape, args, kind) for _ in range(B)]
                    refs = []
                    for i in range(B):
                        c = _ctx("single", ref_params[i], t, int(IDS[i]), prim, ref_states[i])
                        refs.append(prim.ref(c, *(x.clone() for x in members[i]), **args))
                        ref_params[i] = c.param
                    if prim.reduces_group:
                        refs = [GROUP_OPS[args["op"]]([float(r) for r in refs])] * B
                    c = _ctx("stacked", fast_param, torch.tensor(float(t)), IDS, prim, fast_states)
                    out = prim.fn(c, *_stack(members) if members[0] else (), **fast_args)
                    fast_param = c.param
                    _compare(prim, example, shape, t, out, refs, tol)
                    if prim.writes_param:
                        _compare(prim, example, shape, t, fast_param, ref_params, tol, what="param")
            except ValueError as err:  # the reference refuses this shape: so must the fast path
                if "refuses" in str(err):
                    raise
                with pytest.raises((ValueError, RuntimeError)):
                    c = _ctx("stacked", param.clone(), torch.tensor(1.0), IDS, prim, {})
                    prim.fn(c, *_stack([_inputs(prim, gen, shape, args, kind) for _ in range(B)]), **fast_args)
                continue
            ran += 1
    assert ran, f"{prim.name}: no input shape was accepted"


def _compare(prim, example, shape, t, out, refs, tol, what="output"):
    ref = torch.stack([torch.as_tensor(r, dtype=torch.float64).reshape(-1) for r in refs])
    got = torch.as_tensor(out).to(torch.float64)
    if got.shape == torch.as_tensor(refs[0]).shape:  # one member's value: shared by every member
        got = got.expand(B, *got.shape)
    got = got.reshape(B, -1)
    assert got.shape == ref.shape, f"{prim.name} {example} {shape}: {what} shape {tuple(got.shape)} vs {tuple(ref.shape)}"
    finite = torch.isfinite(ref)
    assert torch.equal(finite, torch.isfinite(got)), f"{prim.name} {example}: non-finite entries differ"
    scale = ref[finite].abs().max().clamp(min=1e-30) if finite.any() else torch.tensor(1.0)
    err = float((got[finite] - ref[finite]).abs().max() / scale) if finite.any() else 0.0
    assert err <= tol, f"{prim.name} `{example}` shape {shape} step {t}: {what} rel. error {err:.2e} > {tol:.0e}"
