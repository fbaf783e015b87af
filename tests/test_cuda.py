"""On a CUDA device (every test is marked ``cuda`` and skipped without one; the GPU check,
``benchmarks/gpu_check.sh``, runs them with ``pytest -m cuda``):

- eager and inductor agree on every shipped spec (bf16 Newton–Schulz is native there);
- a cosine schedule and a weight-decay edit never recompile the step;
- save at step k, load, continue: bitwise equal to the uninterrupted run;
- a state_dict saved on CUDA loads into an optimizer on the CPU, and back;
- ``nonfinite="raise"`` leaves parameters, state and step counts untouched;
- parameters on two devices: each device's parameters step in their own bucket (stated as it is);
- the compiled step captured in a CUDA graph replays bitwise like the uncaptured step.
"""
from __future__ import annotations

import io

import pytest
import torch
import torch._dynamo

import optloom
from optloom import NonFiniteGradientError
from optloom.backends import compile_cache
from optloom.lang.loader import SHIPPED, shipped_names
from optloom.lang.parser import parse

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

CUDA = torch.device("cuda")
SHAPES = {"embed.weight": (10, 4), "l1.weight": (6, 4), "l1.bias": (6,), "l2.weight": (4, 6),
          "conv.weight": (3, 2, 2, 2), "head.weight": (3, 4)}
KW = {"sgd": {"momentum": 0.9}}
CASES = [(spec, o.name) for spec in shipped_names() for o in parse((SHIPPED / f"{spec}.opt").read_text()).optimizers]


def _params(seed: int, device: torch.device) -> list[tuple[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)  # drawn on the CPU: the same values on every device
    return [(k, torch.randn(s, generator=g).to(device)) for k, s in SHAPES.items()]


def _model(seed: int = 0, device: torch.device = CUDA) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.Tanh(), torch.nn.Linear(12, 12), torch.nn.Tanh(),
                               torch.nn.Linear(12, 3)).to(device)


def _train(model: torch.nn.Module, opt, steps) -> None:
    device = next(model.parameters()).device
    for i in steps:
        g = torch.Generator().manual_seed(100 + i)
        x, y = torch.randn(16, 6, generator=g).to(device), torch.randn(16, 3, generator=g).to(device)
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()


@pytest.mark.parametrize("spec, name", CASES, ids=[f"{s}:{n}" for s, n in CASES])
def test_eager_and_inductor_agree_on_cuda(spec, name):
    a, b = _params(0, CUDA), _params(0, CUDA)
    kw = KW.get(spec, {})
    eager = optloom.optimizer(spec, a, name=name, backend="eager", **kw)
    comp = optloom.optimizer(spec, b, name=name, backend="inductor", **kw)
    # elementwise specs: fp32 rounding of fused loops. Matrix specs: their bf16 iterations round as
    # in eager (emulate_precision_casts), but a one-ulp fp32 difference before a cast can flip a bf16
    # rounding, and three steps of matrix iterations carry it on.
    elementwise = all(r.elementwise for r in optloom.compile(spec, name=name).rules)
    tol = 1e-5 if elementwise else 1e-3
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        for (_, p), (_, q) in zip(a, b):
            g = torch.randn(p.shape, generator=gen).to(CUDA)
            p.grad, q.grad = g.clone(), g.clone()
        eager.step()
        comp.step()
    torch.cuda.synchronize()
    for (k, p), (_, q) in zip(a, b):
        assert p.device.type == "cuda" and bool(torch.isfinite(q).all()), k
        assert float((p - q).norm() / q.norm()) < tol, k
        for s, v in eager.state[p].items():
            w = comp.state[q][s]
            assert w.device.type == "cuda", (k, s)
            if not w.is_floating_point():  # integer state (counters, indices): exact
                assert torch.equal(v, w), (k, s)
                continue
            assert float((v - w).norm()) <= tol * float(w.norm()) + 1e-6, (k, s)


@pytest.mark.parametrize("spec", ["adamw", "muon"])
def test_cosine_schedule_and_weight_decay_edit_never_recompile_on_cuda(spec):
    from optloom.benchmarks.timing import unique_graphs

    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4)).to(CUDA)
    opt = optloom.optimizer(spec, model.named_parameters(), backend="inductor")
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=40)
    x, y = torch.randn(32, 8, device=CUDA), torch.randn(32, 4, device=CUDA)

    def step():
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        sched.step()

    step()  # compiles (or loads) the step once
    events, graphs = len(compile_cache.events), unique_graphs()
    lrs = set()
    with torch._dynamo.config.patch(error_on_recompile=True):
        for i in range(40):
            if i == 20:
                opt.param_groups[0]["weight_decay"] = 0.3
            lrs.add(opt.param_groups[0]["lr"])
            step()
    torch.cuda.synchronize()
    assert len(lrs) >= 35
    assert len(compile_cache.events) == events, compile_cache.events[events:]
    assert unique_graphs() == graphs
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())


RESUME = [(s, "eager") for s in shipped_names()] + [(s, "inductor") for s in ("adamw", "muon", "lion")]


@pytest.mark.parametrize("spec, backend", RESUME, ids=[f"{s}-{b}" for s, b in RESUME])
def test_resume_is_bitwise_on_cuda(spec, backend):
    kw = {**KW.get(spec, {}), "backend": backend}
    m1 = _model()
    _train(m1, optloom.optimizer(spec, m1.named_parameters(), **kw), range(30))
    m2 = _model()
    o2 = optloom.optimizer(spec, m2.named_parameters(), **kw)
    _train(m2, o2, range(15))
    buf = io.BytesIO()
    torch.save({"model": m2.state_dict(), "opt": o2.state_dict()}, buf)
    buf.seek(0)
    ck = torch.load(buf)
    m3 = _model(seed=99)
    m3.load_state_dict(ck["model"])
    o3 = optloom.optimizer(spec, m3.named_parameters(), **kw)
    o3.load_state_dict(ck["opt"])
    _train(m3, o3, range(15, 30))
    for (n, a), b in zip(m1.named_parameters(), m3.parameters()):
        # (a nondeterministic CUDA kernel, e.g. one reducing with atomics, would also break this)
        assert torch.equal(a, b), f"{n}: max diff {float((a - b).abs().max())}"


@pytest.mark.parametrize("spec", ["adamw", "muon", "lion", "aro"])
def test_state_dict_saved_on_cuda_loads_on_cpu_and_back(spec):
    kw = {**KW.get(spec, {}), "backend": "eager"}
    mc = _model()
    oc = optloom.optimizer(spec, mc.named_parameters(), **kw)
    _train(mc, oc, range(5))
    buf = io.BytesIO()
    torch.save({"model": mc.state_dict(), "opt": oc.state_dict()}, buf)
    buf.seek(0)
    ck = torch.load(buf, map_location="cpu")
    at_load = [p.detach().cpu().clone() for p in mc.parameters()]

    mh = _model(99, torch.device("cpu"))
    mh.load_state_dict(ck["model"])
    oh = optloom.optimizer(spec, mh.named_parameters(), **kw)
    oh.load_state_dict(ck["opt"])
    _train(mh, oh, range(5, 10))
    _train(mc, oc, range(5, 10))
    for p in mh.parameters():
        assert all(v.device.type == "cpu" for v in oh.state[p].values() if isinstance(v, torch.Tensor))
    # the CPU continues as the card does, up to precision (the card's Newton–Schulz runs in bf16):
    # the two runs differ by a small part of how far the parameters moved since the load
    for p, q, p0 in zip(mh.parameters(), mc.parameters(), at_load):
        moved = float((q.detach().cpu() - p0).norm())
        assert float((p.detach() - q.detach().cpu()).norm()) <= 0.05 * moved + 1e-6

    buf = io.BytesIO()
    torch.save({"model": mh.state_dict(), "opt": oh.state_dict()}, buf)
    buf.seek(0)
    back = torch.load(buf, map_location="cuda")
    mb = _model(7)
    mb.load_state_dict(back["model"])
    ob = optloom.optimizer(spec, mb.named_parameters(), **kw)
    ob.load_state_dict(back["opt"])
    oh2 = optloom.optimizer(spec, mh.named_parameters(), **kw)  # the CPU run, continued as reference
    oh2.load_state_dict(oh.state_dict())
    _train(mb, ob, range(10, 13))
    _train(mh, oh2, range(10, 13))
    for p, q in zip(mb.parameters(), mh.parameters()):
        assert all(v.device.type == "cuda" for v in ob.state[p].values() if isinstance(v, torch.Tensor))
        assert float((p.detach().cpu() - q.detach()).norm()) <= 1e-2 * float(q.norm()) + 1e-6


@pytest.mark.parametrize("spec, backend", [(s, b) for s in ("adamw", "muon") for b in ("eager", "inductor")])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nonfinite_raise_changes_nothing_on_cuda(spec, backend, bad):
    model = _model()
    opt = optloom.optimizer(spec, model.named_parameters(), backend=backend, nonfinite="raise")
    _train(model, opt, range(2))
    params = [p.detach().clone() for p in model.parameters()]
    state = {id(p): {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in opt.state[p].items()}
             for p in model.parameters()}
    x, y = torch.randn(16, 6, device=CUDA), torch.randn(16, 3, device=CUDA)
    opt.zero_grad()
    torch.nn.functional.mse_loss(model(x), y).backward()
    model[2].weight.grad[0, 0] = bad
    with pytest.raises(NonFiniteGradientError, match="2.weight"):
        opt.step()
    torch.cuda.synchronize()
    for p, before in zip(model.parameters(), params):
        assert torch.equal(p.detach(), before)
        for k, v in opt.state[p].items():
            ref = state[id(p)][k]
            assert torch.equal(v, ref) if isinstance(v, torch.Tensor) else v == ref, k
    _train(model, opt, range(2, 3))  # a finite step afterwards steps
    assert not all(torch.equal(p.detach(), b) for p, b in zip(model.parameters(), params))


@pytest.mark.parametrize("backend", ["eager", "inductor"])
def test_parameters_on_two_devices_step_per_device(backend):
    """Issue 16 asked for mixed-device parameters to be rejected with a clear error. optloom does
    not reject them: a bucket holds parameters of one device (docs/runtime.md, Buckets), so the
    CUDA parameters step in a bucket on the card and the CPU ones in a bucket on the CPU. This
    test states that behaviour: the result equals the same optimizer with every parameter on the
    CPU."""
    ref = [(k, p.cpu()) for k, p in _params(0, torch.device("cpu"))[:3]]
    mixed = [(k, p.clone().to(CUDA if i % 2 == 0 else "cpu")) for i, (k, p) in enumerate(ref)]
    o_ref = optloom.optimizer("adamw", ref, backend="eager")
    o_mix = optloom.optimizer("adamw", mixed, backend=backend)
    gen = torch.Generator().manual_seed(3)
    for _ in range(3):
        for (_, p), (_, q) in zip(ref, mixed):
            g = torch.randn(p.shape, generator=gen)
            p.grad, q.grad = g.clone(), g.clone().to(q.device)
        o_ref.step()
        o_mix.step()
    assert {b.meta.device.type for b in o_mix.buckets()} == {"cuda", "cpu"}
    for (k, p), (_, q) in zip(ref, mixed):
        assert q.device.type == ("cuda" if k != "l1.weight" else "cpu")
        assert float((p - q.cpu()).norm() / p.norm()) < 1e-5, k


@pytest.mark.parametrize("spec", ["adamw", "muon"])
def test_compiled_step_captured_in_a_cuda_graph_replays_bitwise(spec):
    from optloom.benchmarks.gpu.cases import graphed_optloom

    def make():
        return [(k, torch.nn.Parameter(p)) for k, p in _params(0, CUDA)]

    def make_with_grads():
        named = make()
        for _, p in named:
            p.grad = torch.zeros_like(p)
        return named

    _, _, check = graphed_optloom(spec, make_with_grads, CUDA, seed=11)
    assert check["bitwise"], check
