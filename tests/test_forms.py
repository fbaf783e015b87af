"""Semantics of feedback state and the language forms (``every``, ``gate``, ``restart``), group
samplers and group reductions, each against a straightforward float64 restatement of its
documented meaning (docs/language.md, "State and scopes"), on fresh random gradients.

The specs here are tiny on purpose: they isolate one construct. Parameters: three matrices of two
shapes and a vector, so a rule's group spans several buckets. Tolerance 1e-6 relative: float32
rounding (6e-8) of a handful of elementwise ops over ≤ 12 steps.
"""
from __future__ import annotations


import pytest
import torch

import optloom
from tests.spec_harness import assert_resume_equals_straight, one_thread  # noqa: F401 (autouse: one torch thread)

TOL = 1e-6
SHAPES = {"a": (4, 3), "b": (4, 3), "c": (3, 5), "v": (6,)}


def _spec(body: str, hypers: str = "lr = 0.1") -> str:
    return f"optimizer t({hypers}) {{\n  all =>\n{body}\n}}\n"


def _run(src: str, steps: int, seed: int = 0, **hyper):
    """Run ``src`` on fresh gradients; returns (initial params, grads per step, final params, opt)."""
    g = torch.Generator().manual_seed(seed)
    init = {k: torch.randn(s, generator=g) for k, s in SHAPES.items()}
    ps = {k: torch.nn.Parameter(v.clone()) for k, v in init.items()}
    opt = optloom.optimizer(src, list(ps.items()), **hyper)
    grads = []
    for _ in range(steps):
        gd = {k: torch.randn(s, generator=g) for k, s in SHAPES.items()}
        for k, p in ps.items():
            p.grad = gd[k].clone()
        opt.step()
        grads.append({k: v.double() for k, v in gd.items()})
    return {k: v.double() for k, v in init.items()}, grads, {k: p.detach().double() for k, p in ps.items()}, opt


def _close(got: dict, want: dict) -> None:
    for k in want:
        err = float((got[k] - want[k]).norm() / want[k].norm().clamp(min=1e-12))
        assert err < TOL, (k, err)


# ---- feedback state -------------------------------------------------------------------------

def test_feedback_state_is_sequential_and_persists():
    """``a <- a + 1; a <- a·2`` reads the new value in the second statement: a_t = 2(a_{t−1} + 1);
    ``M <- 0.5·M + g`` persists across steps; the update is a_t·M_t."""
    src = _spec("""    state a = 0.0
    state M = zeros(grad)
    a <- a + 1.0
    a <- a * 2.0
    M <- M * 0.5 + grad
    M * a |> apply(lr)""")
    init, grads, got, opt = _run(src, 6)
    want = dict(init)
    for k in SHAPES:
        a, M = 0.0, torch.zeros_like(init[k])
        for gd in grads:
            a = 2 * (a + 1)
            M = 0.5 * M + gd[k]
            want[k] = want[k] - 0.1 * a * M
    _close(got, want)
    assert float(opt.state[next(iter(opt.state))]["a"]) == 2 * (2 * (2 * (2 * (2 * (2 + 1) + 1) + 1) + 1) + 1)


def test_eye_starts_a_kronecker_factor_at_identity():
    """``state P = eye(g, "rows")``; ``P <- 0.9·P + 0.1·g gᵀ``; update ``P g``."""
    src = """optimizer t(lr = 0.1) {
  matrices: ndim == 2 =>
    state P = eye(grad, "rows")
    P <- P * 0.9 + (grad @ grad.T) * 0.1
    P @ grad |> apply(lr)
  rest => grad |> apply(lr)
}
"""
    init, grads, got, _ = _run(src, 5)
    want = dict(init)
    for k in ("a", "b", "c"):
        P = torch.eye(SHAPES[k][0], dtype=torch.float64)
        for gd in grads:
            P = 0.9 * P + 0.1 * gd[k] @ gd[k].T
            want[k] = want[k] - 0.1 * P @ gd[k]
    want["v"] = init["v"] - 0.1 * sum(gd["v"] for gd in grads)
    _close(got, want)


# ---- every ----------------------------------------------------------------------------------

@pytest.mark.parametrize("T", [1, 3])
def test_every_caches_and_skips_the_subgraph(T):
    """``every(T, grad |> ema(0.5))``: on steps 1, T+1, … the ema advances with that step's
    gradient and its value is cached; on the other steps the ema does not run at all."""
    src = _spec("    every(T, grad |> ema(0.5)) |> apply(lr)", "lr = 0.1, T: int = 3")
    init, grads, got, _ = _run(src, 10, T=T)
    want = dict(init)
    for k in SHAPES:
        s = cached = torch.zeros_like(init[k])
        for t, gd in enumerate(grads, start=1):
            if (t - 1) % T == 0:
                s = 0.5 * s + 0.5 * gd[k]
                cached = s
            want[k] = want[k] - 0.1 * cached
    _close(got, want)


def test_every_inside_a_def():
    """A def may use the forms; its every caches per call site like any other."""
    src = "def cached(x, T) = every(T, x |> sign)\n" + _spec("    grad |> cached(2) |> apply(lr)")
    init, grads, got, _ = _run(src, 5)
    want = {k: init[k] - 0.1 * sum(torch.sign(grads[t - 1 - (t - 1) % 2][k]) for t in range(1, 6)) for k in SHAPES}
    _close(got, want)


# ---- restart --------------------------------------------------------------------------------

def test_restart_resets_state_and_the_step_it_sees():
    """``restart(4, grad |> adam(...))`` equals Adam restarted from zero state and step 1 at
    steps 1, 5, 9 (FRUGAL's reset_statistics)."""
    src = _spec("    restart(4, grad |> adam((0.9, 0.99), 1e-8)) |> apply(lr)")
    init, grads, got, _ = _run(src, 11)
    want = dict(init)
    for k in SHAPES:
        for t, gd in enumerate(grads, start=1):
            if (t - 1) % 4 == 0:
                m, v = torch.zeros_like(init[k]), torch.zeros_like(init[k])
            tl = (t - 1) % 4 + 1
            m, v = 0.9 * m + 0.1 * gd[k], 0.99 * v + 0.01 * gd[k] ** 2
            want[k] = want[k] - 0.1 * (m / (1 - 0.9 ** tl)) / ((v / (1 - 0.99 ** tl)).sqrt() + 1e-8)
    _close(got, want)


# ---- gate and samplers ----------------------------------------------------------------------

def _cyclic(pos: int, b: int, a: int, k: int) -> bool:
    """FRUGAL's descending cyclic window, restated: the list reversed, a window of a advancing by a."""
    order = list(reversed(range(b)))
    return pos in {order[(k * a + i) % b] for i in range(a)}


def test_gate_freezes_state_and_weights_of_inactive_members():
    """Cyclic sampler over the 4 parameters (density 0.5: a = 2, re-drawn every 2 steps). Active:
    momentum M ← 0.9M + g and W ← W − lr·M; inactive: ``else`` = −lr·0.01·sign(g) applied by the
    else branch, and M frozen."""
    src = _spec("""    let active = sample_layers(0.5, "cyclic", period = 2)
    gate(active, grad |> ema(0.9) |> apply(lr), grad |> sign |> apply(lr * 0.01))""")
    init, grads, got, opt = _run(src, 9)
    want = dict(init)
    names = list(SHAPES)
    for j, k in enumerate(names):
        M = torch.zeros_like(init[k])
        for t, gd in enumerate(grads, start=1):
            if _cyclic(j, len(names), 2, (t - 1) // 2):
                M = 0.9 * M + 0.1 * gd[k]
                want[k] = want[k] - 0.1 * M
            else:
                want[k] = want[k] - 0.001 * torch.sign(gd[k])
        ps = dict(zip(names, [p for g in opt.param_groups for p in g["params"]]))
        assert torch.allclose(opt.state[ps[k]]["exp_avg"].double(), M, rtol=1e-5, atol=1e-7), k
    _close(got, want)


@pytest.mark.parametrize("order", ["random", "suffix", "cyclic"])
def test_samplers_are_valid_draws_stable_within_a_period(order):
    """Property checks of the draws the sampler makes over a group of 7, many periods:
    random → exactly round(7·0.3) = 2 active; suffix → a non-empty contiguous suffix; cyclic →
    the restated window. Draws are constant within a period and cover every member over time."""
    from optloom.primitives import Ctx, lookup

    prim = lookup("sample_layers")
    group = tuple(range(10, 17))
    ids = torch.tensor(group)
    seen, starts = set(), set()
    for k in range(40):
        draws = []
        for t in (3 * k + 1, 3 * k + 2, 3 * k + 3):
            ctx = Ctx(layout="stacked", param=torch.zeros(7), step=torch.tensor(float(t)), states={}, ids=ids, group=group)
            draws.append(prim.fn(ctx, density=0.3, order=order, period=3, seed=5).tolist())
        assert draws[0] == draws[1] == draws[2]
        act = [j for j, a in enumerate(draws[0]) if a]
        seen.update(act)
        if order == "random":
            assert len(act) == 2
        elif order == "suffix":
            assert act and act == list(range(act[0], 7))
            starts.add(act[0])
        else:
            assert act == sorted(j for j in range(7) if _cyclic(j, 7, 2, k))
        for j in range(7):  # the per-parameter reference makes the same draw
            c = Ctx(layout="single", param=torch.zeros(()), step=3 * k + 1, states={}, ids=group[j], group=group)
            assert bool(prim.ref(c, density=0.3, order=order, period=3, seed=5)) == draws[0][j]
    assert seen == set(range(7))
    if order == "suffix":
        assert len(starts) >= 5  # uniform over 7 starts: 40 draws miss ≥ 3 of them with prob < 1e-3


# ---- group reductions -----------------------------------------------------------------------

def test_group_reduce_spans_every_bucket_of_the_rule():
    """``group_reduce(fro_norm(grad), "max")`` is the max over all four parameters (three buckets:
    two shapes of matrices and a vector), the same for each; update g / max‖g‖."""
    src = _spec('    grad / group_reduce(fro_norm(grad), "max") |> apply(lr)')
    init, grads, got, _ = _run(src, 4)
    want = dict(init)
    for gd in grads:
        top = max(float(gd[k].norm()) for k in SHAPES)
        for k in SHAPES:
            want[k] = want[k] - 0.1 * gd[k] / top
    _close(got, want)


def test_nested_group_reductions_are_rejected():
    from optloom.check.program import check_source

    src = _spec('    grad * group_reduce(fro_norm(grad) * group_reduce(rms(grad))) |> apply(lr)')
    assert any("cannot depend on another group reduction" in d.message for d in check_source(src, "x.opt"))


# ---- resume inside a period -----------------------------------------------------------------

def test_resume_inside_a_period_is_bitwise():
    """every + restart + gate + feedback state: 5 steps (inside the second period of 4), save,
    reload into a fresh optimizer, 5 more == 10 straight."""
    src = _spec("""    state M = zeros(grad)
    M <- M * 0.9 + grad
    let active = sample_layers(0.5, "random", period = 4, seed = 2)
    gate(active, restart(4, every(4, M) |> adam((0.9, 0.99), 1e-8)) |> apply(lr), grad |> sign |> apply(lr * 0.1))""")
    g = torch.Generator().manual_seed(7)
    init = {k: torch.randn(s, generator=g) for k, s in SHAPES.items()}
    grads = [{k: torch.randn(s, generator=g) for k, s in SHAPES.items()} for _ in range(10)]

    assert_resume_equals_straight(lambda ps: optloom.optimizer(src, ps), init, grads, 5)


# ---- what finishing a rule adds to its IR -------------------------------------------------------

def test_finishing_binds_decay_lr_and_numbers_reductions_in_new_nodes():
    """``decay`` without ``lr`` takes the apply's lr; group reductions are numbered in walk order;
    a frame-opening call's frames name the call itself (in the finished graph, not a stale copy)."""
    from optloom.check import ir

    prog = optloom.compile(_spec('    grad / group_reduce(fro_norm(grad)) * group_reduce(rms(grad), "max") '
                                 '|> decay(0.01) |> apply(lr)'))
    calls = [n for n in ir.walk(prog.rules[0].roots) if isinstance(n, ir.Call)]
    decay = next(c for c in calls if c.prim.name == "decay")
    assert isinstance(decay.args["lr"], ir.Hyper) and decay.args["lr"].name == "lr"
    assert [c.reduction for c in prog.rules[0].reductions] == [0, 1]
    assert {id(c) for c in prog.rules[0].reductions} <= {id(c) for c in calls}
    for rule in optloom.compile("aro").rules:
        for c in ir.walk(rule.roots):
            if isinstance(c, ir.Call) and c.prim.frame is not None:
                assert c.frames[-1] is c

