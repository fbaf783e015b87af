"""SpecOptimizer as a torch.optim.Optimizer: resume, schedulers, param groups, errors."""
from __future__ import annotations

import io

import pytest
import torch

import optloom
from optloom.lang.loader import shipped_names
from optloom import NonFiniteGradientError, StateDictError

SPECS = shipped_names()
KW = {"sgd": dict(momentum=0.9)}


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.Tanh(), torch.nn.Linear(12, 12), torch.nn.Tanh(),
                               torch.nn.Linear(12, 3))


def _batch(i: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(100 + i)
    return torch.randn(16, 6, generator=g), torch.randn(16, 3, generator=g)


def _train(model, opt, steps):
    losses = []
    for i in steps:
        x, y = _batch(i)
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("spec", SPECS)
def test_resume_is_bitwise(spec):
    m1 = _model()
    _train(m1, optloom.optimizer(spec, m1.named_parameters(), **KW.get(spec, {})), range(40))
    m2 = _model()
    o2 = optloom.optimizer(spec, m2.named_parameters(), **KW.get(spec, {}))
    _train(m2, o2, range(20))
    buf = io.BytesIO()
    torch.save({"model": m2.state_dict(), "opt": o2.state_dict()}, buf)
    buf.seek(0)
    ck = torch.load(buf)
    m3 = _model(seed=99)
    m3.load_state_dict(ck["model"])
    o3 = optloom.optimizer(spec, m3.named_parameters(), **KW.get(spec, {}))
    o3.load_state_dict(ck["opt"])
    _train(m3, o3, range(20, 40))
    for a, b in zip(m1.parameters(), m3.parameters()):
        assert torch.equal(a, b)


LR = {"sgd": 0.05, "adamw": 3e-3, "lion": 3e-3, "signum": 3e-3, "muon": 0.02, "aro": 0.02}


@pytest.mark.parametrize("spec", sorted(LR))  # the frontier specs' own tests train them too
def test_spec_lowers_training_loss(spec):
    m = _model(1)
    opt = optloom.optimizer(spec, m.named_parameters(), lr=LR[spec], **KW.get(spec, {}))
    x, y = _batch(0)
    first = torch.nn.functional.mse_loss(m(x), y).item()
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.mse_loss(m(x), y).backward()
        opt.step()
    assert torch.nn.functional.mse_loss(m(x), y).item() < 0.9 * first


@pytest.mark.parametrize("make_sched", [
    lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=10),
    lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda s: 1.0 / (1 + s)),
])
def test_schedulers_drive_lr_like_adamw(make_sched):
    m1, m2 = _model(2), _model(2)
    o1 = optloom.optimizer("adamw", m1.named_parameters(), lr=1e-2)
    o2 = torch.optim.AdamW(m2.parameters(), lr=1e-2)
    s1, s2 = make_sched(o1), make_sched(o2)
    for i in range(15):
        x, y = _batch(i)
        for m, o, s in ((m1, o1, s1), (m2, o2, s2)):
            o.zero_grad()
            torch.nn.functional.mse_loss(m(x), y).backward()
            o.step()
            s.step()
        assert o1.param_groups[0]["lr"] == o2.param_groups[0]["lr"]
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert float((a - b).norm() / b.norm()) < 1e-6


def test_closure_loss_and_missing_grads_are_skipped():
    m = _model()
    opt = optloom.optimizer("adamw", m.named_parameters())
    frozen = m[4].bias
    before = frozen.detach().clone()
    x, y = _batch(0)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(m(x), y)
        loss.backward()
        frozen.grad = None
        return loss

    loss = opt.step(closure)
    assert isinstance(loss, torch.Tensor)
    assert torch.equal(frozen, before) and frozen not in opt.state
    # later the frozen parameter gets a gradient: it starts its own step count at 1
    opt.zero_grad()
    torch.nn.functional.mse_loss(m(x), y).backward()
    opt.step()
    assert float(opt.state[frozen]["step"]) == 1 and float(opt.state[m[0].weight]["step"]) == 2


def test_param_groups_override_hyperparameters():
    m = _model()
    opt = optloom.optimizer("adamw", [{"params": list(m[0].parameters()), "lr": 0.0},
                                      {"params": list(m[2].parameters()) + list(m[4].parameters())}], lr=1e-2)
    before = m[0].weight.detach().clone()
    _train(m, opt, range(3))
    assert opt.param_groups[0]["lr"] == 0.0 and opt.param_groups[1]["lr"] == 1e-2
    # lr = 0 still applies weight decay: W ← W(1 − 0·λ) keeps W
    assert torch.equal(m[0].weight, before)


def test_nonfinite_gradient_raises_and_changes_nothing():
    m = _model()
    opt = optloom.optimizer("adamw", m.named_parameters())
    _train(m, opt, range(2))
    params = [p.detach().clone() for p in m.parameters()]
    state = {k: v.clone() for k, v in opt.state[m[2].weight].items()}
    x, y = _batch(5)
    opt.zero_grad()
    torch.nn.functional.mse_loss(m(x), y).backward()
    m[2].weight.grad[0, 0] = float("nan")
    with pytest.raises(NonFiniteGradientError, match=r"'2\.weight'"):
        opt.step()
    assert all(torch.equal(a, b) for a, b in zip(m.parameters(), params))
    assert all(torch.equal(opt.state[m[2].weight][k], v) for k, v in state.items())


def test_nonfinite_skip_counts():
    m = _model()
    opt = optloom.optimizer("sgd", m.named_parameters(), lr=0.1, nonfinite="skip")
    before = [p.detach().clone() for p in m.parameters()]
    for p in m.parameters():
        p.grad = torch.full_like(p, float("inf"))
    opt.step()
    assert opt.skipped_steps == 1 and all(torch.equal(a, b) for a, b in zip(m.parameters(), before))


@pytest.mark.parametrize("kwargs, match", [
    (dict(lr=1e-3, betaz=(0.9, 0.99)), r"unknown hyperparameter.*'betaz'.*it has: lr, betas"),
    (dict(betas=(0.9, 1.5)), r"betas.*must be < 1"),
    (dict(lr=-1.0), r"lr.*must be >= 0"),
    (dict(lr="fast"), r"'lr' must be float"),
    (dict(backend="tpu"), r"unknown backend"),
])
def test_bad_construction_arguments(kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        optloom.optimizer("adamw", _model().named_parameters(), **kwargs)


def test_default_backend_is_inductor_unless_the_environment_says(monkeypatch):
    monkeypatch.delenv("OPTLOOM_BACKEND", raising=False)
    assert optloom.optimizer("adamw", _model().named_parameters()).backend == "inductor"  # no step: no compile
    monkeypatch.setenv("OPTLOOM_BACKEND", "eager")
    assert optloom.optimizer("adamw", _model().named_parameters()).backend == "eager"
    assert optloom.optimizer("adamw", _model().named_parameters(), backend="inductor").backend == "inductor"
    monkeypatch.setenv("OPTLOOM_BACKEND", "gpu")
    with pytest.raises(ValueError, match=r"OPTLOOM_BACKEND='gpu' is not a backend; choose one of eager, inductor"):
        optloom.optimizer("adamw", _model().named_parameters())


def test_name_selector_without_names_is_explained():
    with pytest.raises(ValueError, match="selects parameters by name.*named_parameters"):
        optloom.optimizer("muon", _model().parameters())


def test_parameter_no_rule_takes_is_named():
    spec = "optimizer m(lr = 0.1) { mats: ndim == 2 => grad |> apply(lr) }"
    with pytest.raises(ValueError, match=r"no rule.*'0\.bias'.*shape \(12,\)"):
        optloom.optimizer(spec, _model().named_parameters())


def test_bad_state_dicts_are_rejected_and_leave_state_untouched():
    m = _model()
    opt = optloom.optimizer("adamw", m.named_parameters())
    _train(m, opt, range(2))
    good = opt.state_dict()
    snapshot = {k: v.clone() for k, v in opt.state[m[0].weight].items()}

    def variant(edit):
        sd = {"state": {i: dict(s) for i, s in good["state"].items()},
              "param_groups": [dict(g) for g in good["param_groups"]], "optloom": dict(good["optloom"])}
        edit(sd)
        return sd

    cases = [
        (lambda sd: sd.pop("optloom"), "not written by optloom"),
        (lambda sd: sd["optloom"].update(hash="0" * 16), "different version of spec 'adamw'"),
        (lambda sd: sd["optloom"].update(spec="muon", hash="1" * 16), "written by spec 'muon'"),
        (lambda sd: sd["state"][0].pop("exp_avg"), r"missing \['exp_avg'\]"),
        (lambda sd: sd["state"][0].update(exp_avg=torch.zeros(3, 3)), r"shape \(3, 3\), expected \(12, 6\)"),
        (lambda sd: sd["state"][0].update(momentum=torch.zeros(12, 6)), r"unexpected \['momentum'\]"),
        (lambda sd: sd["param_groups"][0].update(params=[0, 1]), "checkpoint has 2 parameters"),
        (lambda sd: sd["param_groups"][0].update(betas=(0.9, 2.0)), "must be < 1"),
        (lambda sd: sd["state"][0].update(step=torch.tensor(-3.0)), "non-negative whole number"),
    ]
    for edit, match in cases:
        with pytest.raises(StateDictError, match=match):
            opt.load_state_dict(variant(edit))
        assert all(torch.equal(opt.state[m[0].weight][k], v) for k, v in snapshot.items())
    with pytest.raises(StateDictError, match="different version"):
        edited = optloom.optimizer("optimizer adamw(lr = 1e-3, betas = (0.9, 0.999), eps = 1e-8, weight_decay = 0.0)"
                                   " { all => grad |> adam(betas, eps) |> decay(weight_decay) |> apply(lr) }",
                                   m.named_parameters())
        edited.load_state_dict(good)


def test_state_bytes_prediction_matches_allocated_state():
    m = _model()
    for spec in SPECS:
        opt = optloom.optimizer(spec, m.named_parameters(), **KW.get(spec, {}))
        _train(m, opt, range(1))
        actual = sum(t.numel() * t.element_size() for b in opt.buckets() for t in b.states.values())
        assert opt.program.state_bytes(m.named_parameters()) == actual, spec


def test_state_names_follow_torch():
    m = _model()
    opt = optloom.optimizer("sgd", m.named_parameters(), momentum=0.9)
    _train(m, opt, range(1))
    assert set(opt.state[m[0].weight]) == {"step", "momentum_buffer"}
    sd = opt.state_dict()
    assert sd["param_groups"][0]["param_names"][0] == "0.weight" and sd["optloom"]["spec"] == "sgd"


def test_every_shipped_optimizer_is_reachable_by_name():
    """A file with several optimizers (auon: auon, auon_head): each by its own name, as FILE:NAME,
    and through the path form; an unknown name is a clear error."""
    import re

    from optloom.lang.loader import SHIPPED, shipped_names

    for stem in shipped_names():
        for name in re.findall(r"^\s*optimizer\s+(\w+)\s*\(", (SHIPPED / f"{stem}.opt").read_text(), re.M):
            assert optloom.compile(name).name == name
            assert optloom.compile(f"{stem}:{name}").name == name
            assert optloom.compile(f"{SHIPPED / stem}.opt:{name}").name == name
    with pytest.raises(optloom.SpecError, match="no optimizer named 'nope'"):
        optloom.compile("auon:nope")


def test_hyperparameter_inside_a_tuple_argument_is_range_checked_as_that_item():
    w = torch.nn.Parameter(torch.randn(3))
    spec = "optimizer t(b1 = 0.9) { all => grad |> adam((b1, 0.999)) |> apply(0.1) }"
    optloom.optimizer(spec, [w], backend="eager", b1=0.95)  # a float, checked as betas[0]
    with pytest.raises(ValueError, match=r"'b1' = 1\.5 is invalid for adam: argument 'betas\[0\]' must be < 1\.0"):
        optloom.optimizer(spec, [w], backend="eager", b1=1.5)
