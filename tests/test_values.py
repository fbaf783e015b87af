"""Semantics of issue 14's language features, each against a straightforward float64 restatement
(docs/language.md): comparisons as 0/1 numbers, calls whose first argument is a runtime value,
states that start from a value (the parameter, a hyperparameter, an expression of the first
step), ``inf``, optional hyperparameters and ``??``, and a state written but never read, which is
stored all the same.
"""
from __future__ import annotations


import pytest
import torch

import optloom
from tests.spec_harness import assert_resume_equals_straight, one_thread  # noqa: F401 (autouse: one torch thread)

TOL = 1e-6
SHAPES = {"a": (4, 3), "c": (3, 5), "v": (6,)}


def _spec(body: str, hypers: str = "lr = 0.1") -> str:
    return f"optimizer t({hypers}) {{\n  all =>\n{body}\n}}\n"


def _run(src: str, steps: int, dtype: torch.dtype = torch.float32, seed: int = 0, **hyper):
    """Run ``src`` on fresh gradients: (initial params, grads per step, final params, opt, params)."""
    g = torch.Generator().manual_seed(seed)
    init = {k: torch.randn(s, generator=g, dtype=dtype) for k, s in SHAPES.items()}
    ps = {k: torch.nn.Parameter(v.clone()) for k, v in init.items()}
    opt = optloom.optimizer(src, list(ps.items()), **hyper)
    grads = []
    for _ in range(steps):
        gd = {k: torch.randn(s, generator=g, dtype=dtype) for k, s in SHAPES.items()}
        for k, p in ps.items():
            p.grad = gd[k].clone()
        opt.step()
        grads.append({k: v.double() for k, v in gd.items()})
    return ({k: v.double() for k, v in init.items()}, grads, {k: p.detach().double() for k, p in ps.items()},
            opt, ps)


def _close(got: dict, want: dict, tol: float = TOL) -> None:
    for k in want:
        err = float((got[k] - want[k]).norm() / want[k].norm().clamp(min=1e-12))
        assert err < tol, (k, err)


# ---- comparisons ----------------------------------------------------------------------------

def test_comparisons_are_numbers_in_the_operands_dtype():
    """``big = |g| > 1`` is 0/1 in float64 in a float64 run (no bool arithmetic error, no float32
    detour): ``g·(1 − big) + 0.5·not(big)·g`` restated; ``(step > 2)`` gates the first two steps."""
    src = _spec("""    let big = abs(grad) > 1.0
    grad * (1.0 - big) * (step > 2.0) + 0.5 * (not big) * grad |> apply(lr)""")
    init, grads, got, _, _ = _run(src, 4, dtype=torch.float64)
    want = dict(init)
    for t, gd in enumerate(grads, start=1):
        for k in SHAPES:
            big = (gd[k].abs() > 1.0).double()
            want[k] = want[k] - 0.1 * (gd[k] * (1 - big) * float(t > 2) + 0.5 * (1 - big) * gd[k])
    for k in SHAPES:
        assert torch.equal(got[k], want[k]), k  # float64 throughout: the same arithmetic, bit for bit


def test_the_language_docs_exprs_example_runs():
    src = """optimizer exprs(lr = 1e-3, betas = (0.9, 0.999), eps = 1e-8, weight_decay = 0.01) {
  all =>
    let m = grad |> ema(betas[0]) |> debias(beta = betas[0])
    let v = grad ** 2 |> ema(betas[1]) |> debias(betas[1])
    let u = m / (sqrt(v) + eps)
    let big = abs(u) > 10.0
    u * (1.0 - big) + param * 0.0 |> decay(weight_decay) |> apply(lr)
}"""
    _, _, got, _, _ = _run(src, 3, dtype=torch.float64)
    assert all(torch.isfinite(v).all() for v in got.values())


# ---- calls whose first argument is a runtime value -------------------------------------------

def test_a_runtime_first_argument_is_the_input_when_nothing_else_fits():
    """``sqrt(step * 2.0)`` is √(2t) (it was read as ``sqrt(grad, step * 2.0)``)."""
    init, grads, got, _, _ = _run(_spec("    grad * sqrt(step * 2.0) |> apply(lr)"), 3)
    want = {k: init[k] - 0.1 * sum(gd[k] * (2.0 * t) ** 0.5 for t, gd in enumerate(grads, start=1)) for k in SHAPES}
    _close(got, want)


def test_a_pipeline_that_begins_with_a_call_starts_from_grad():
    """``min(cap) |> apply(lr)`` is ``min(grad, cap)`` (documented; unchanged)."""
    init, grads, got, _, _ = _run(_spec("    min(cap) |> apply(lr)", "lr = 0.1, cap = 0.25"), 3)
    want = {k: init[k] - 0.1 * sum(gd[k].clamp(max=0.25) for gd in grads) for k in SHAPES}
    _close(got, want)


# ---- states that start from a value ---------------------------------------------------------

def test_state_starts_from_the_parameter():
    """``state z = param``: z₀ = W₀; z ← z/2 + g; W ← W − lr·(z − W)."""
    src = _spec("""    state z = param
    z <- z * 0.5 + grad
    z - param |> apply(lr)""")
    init, grads, got, _, _ = _run(src, 5)
    want = {}
    for k in SHAPES:
        w, z = init[k].clone(), init[k].clone()
        for gd in grads:
            z = 0.5 * z + gd[k]
            w = w - 0.1 * (z - w)
        want[k] = w
    _close(got, want)


def test_initial_value_is_computed_before_anything_else_runs():
    """The parameter an initial value reads is the one before this step's update, even when the
    rule applies its update before it reads the state: z stays W₀."""
    src = _spec("""    state z = param
    let u = grad |> apply(lr)
    z <- z + u * 0.0
    u""")
    init, _, _, opt, ps = _run(src, 3)
    for k, p in ps.items():
        assert torch.equal(opt.state[p]["z"].double(), init[k]), k


def test_state_starts_from_a_hyperparameter():
    """``fill(grad, init)`` (a per-parameter number) and ``zeros(grad) + init`` (a tensor) start at
    the group's value of a runtime hyperparameter: Adagrad's initial_accumulator_value, against
    torch.optim.Adagrad."""
    src = _spec("""    state a = fill(grad, init)
    state s = zeros(grad) + init
    a <- a * 0.5
    s <- s + grad ** 2
    grad / (sqrt(s) + 1e-10) * (a / a) |> apply(lr)""", "lr = 0.1, init = 0.5")
    g = torch.Generator().manual_seed(3)
    ps = {k: torch.nn.Parameter(torch.randn(s, generator=g)) for k, s in SHAPES.items()}
    twins = {k: torch.nn.Parameter(p.detach().clone()) for k, p in ps.items()}
    opt = optloom.optimizer(src, list(ps.items()), init=0.25)
    ref = torch.optim.Adagrad(list(twins.values()), lr=0.1, initial_accumulator_value=0.25, eps=1e-10)
    for _ in range(6):
        for k in SHAPES:
            ps[k].grad = torch.randn(SHAPES[k], generator=g)
            twins[k].grad = ps[k].grad.clone()
        opt.step()
        ref.step()
    for k in SHAPES:
        torch.testing.assert_close(ps[k], twins[k], rtol=1e-6, atol=1e-7)
        assert float(opt.state[ps[k]]["a"]) == 0.25 * 0.5 ** 6


def test_state_starts_from_an_expression_of_the_first_step():
    """``state n = fro_norm(grad)``: n₀ = ‖g₁‖; n ← max(n, ‖g‖); starting from ``-inf`` gives the
    same running max; update g/n."""
    src = _spec("""    state n = fro_norm(grad)
    state m = -inf
    n <- maximum(n, fro_norm(grad))
    m <- maximum(m, fro_norm(grad))
    grad / n * (m / n) |> apply(lr)""")
    init, grads, got, _, _ = _run(src, 5)
    want = dict(init)
    for k in SHAPES:
        n = float(grads[0][k].norm())
        for gd in grads:
            n = max(n, float(gd[k].norm()))
            want[k] = want[k] - 0.1 * gd[k] / n
    _close(got, want)


def test_resume_does_not_restart_a_state_that_starts_from_a_value():
    """3 steps, save, load into a fresh optimizer, 3 more == 6 straight (z is not re-read from W)."""
    src = _spec("""    state z = param
    z <- z * 0.9 + grad
    z - param |> apply(lr)""")
    g = torch.Generator().manual_seed(5)
    init = {k: torch.randn(s, generator=g) for k, s in SHAPES.items()}
    grads = [{k: torch.randn(s, generator=g) for k, s in SHAPES.items()} for _ in range(6)]

    assert_resume_equals_straight(lambda ps: optloom.optimizer(src, ps), init, grads, 3)


# ---- optional hyperparameters ----------------------------------------------------------------

def test_optional_hyperparameter_and_its_fallback():
    """``w: float? = none``: unset, ``w ?? 2.0`` is 2.0; set (at construction or in a param group,
    which rebuilds the step), it is the value; ``decay(lr = w)`` unset takes the apply's lr."""
    src = _spec("    grad * (w ?? 2.0) |> decay(0.5, lr = w) |> apply(lr)", "lr = 0.1, w: float? = none")
    init, grads, got, opt, ps = _run(src, 2)
    want = dict(init)
    for gd in grads:
        want = {k: want[k] * (1 - 0.1 * 0.5) - 0.1 * 2.0 * gd[k] for k in SHAPES}
    _close(got, want)
    init, grads, got, _, _ = _run(src, 2, w=0.2)
    want = dict(init)
    for gd in grads:
        want = {k: want[k] * (1 - 0.2 * 0.5) - 0.1 * 0.2 * gd[k] for k in SHAPES}
    _close(got, want)
    opt.param_groups[0]["w"] = 0.2
    before = {k: p.detach().double().clone() for k, p in ps.items()}
    for k, p in ps.items():
        p.grad = torch.ones_like(p)
    opt.step()
    for k, p in ps.items():
        _close({k: p.detach().double()}, {k: before[k] * (1 - 0.2 * 0.5) - 0.1 * 0.2})
    with pytest.raises(TypeError, match="must be float or None"):
        optloom.optimizer(src, list(ps.items()), w="x")


# ---- a state written but never read ----------------------------------------------------------

def test_a_state_written_but_never_read_is_stored():
    """``z <- 2g`` with no read of z: warned at check, and z is in the state (the last 2g)."""
    src = _spec("""    state z = zeros(grad)
    z <- grad * 2.0
    grad |> apply(lr)""")
    assert any("written but never read" in w.message for w in optloom.compile(src).warnings)
    _, grads, _, opt, ps = _run(src, 3)
    for k, p in ps.items():
        torch.testing.assert_close(opt.state[p]["z"].double(), 2.0 * grads[-1][k])
