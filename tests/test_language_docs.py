"""Every ```optloom block of docs/language.md is a spec that checks without errors, and every one
that declares an optimizer runs: it builds an optimizer for a small model (a conv weight, matrices,
vectors) and takes steps with finite results.

A block preceded by ``<!-- file: PATH -->`` is written to PATH (relative to a scratch folder) so
that later blocks can import it; the other blocks are checked and run as files in that folder.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from optloom.check.program import check_source, compile

DOC = Path(__file__).resolve().parent.parent / "docs" / "language.md"
BLOCK = re.compile(r"(?:<!-- file: (?P<file>[^ ]+) -->\n)?```optloom\n(?P<body>.*?)```", re.S)


def blocks() -> list[tuple[str | None, str]]:
    return [(m.group("file"), m.group("body")) for m in BLOCK.finditer(DOC.read_text())]


RUN = re.compile(r"<!-- run -->\n```optloom\n(?P<body>.*?)```", re.S)


def runnable() -> list[str]:
    return [m.group("body") for m in RUN.finditer(DOC.read_text())]


@pytest.mark.parametrize("body", runnable(), ids=lambda b: re.search(r"optimizer (\w+)", b).group(1))
def test_runnable_examples_train(body):
    """Examples marked ``<!-- run -->`` build an optimizer for a small conv + MLP model and take
    5 steps on random data with finite results, changing every parameter."""
    import torch

    import optloom

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.Flatten(), torch.nn.Linear(12, 5),
                              torch.nn.Tanh(), torch.nn.Linear(5, 2))
    before = [p.detach().clone() for p in net.parameters()]
    opt = optloom.optimizer(body, net.named_parameters())
    x, y = torch.randn(8, 2, 4, 4), torch.randn(8, 2)
    for _ in range(5):
        opt.zero_grad()
        torch.nn.functional.mse_loss(net(x), y).backward()
        opt.step()
    for p, b in zip(net.parameters(), before):
        assert torch.isfinite(p).all() and not torch.equal(p.detach(), b)


def _write_blocks(folder) -> list:
    written = []
    for i, (name, body) in enumerate(blocks()):
        path = folder / (name or f"example_{i}.opt")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
        written.append(path)
    return written


def _optimizers() -> list[tuple[int, str]]:
    return [(i, m.group(1)) for i, (_, body) in enumerate(blocks())
            for m in re.finditer(r"^optimizer (\w+)\(", body, re.M)]


@pytest.mark.parametrize("index, name", _optimizers(), ids=[name for _, name in _optimizers()])
def test_every_example_runs(tmp_path, index, name):
    """Each optimizer of the page (not only the ``<!-- run -->`` ones) takes 3 steps, in float64
    and in float32, with finite parameters, changing every parameter."""
    import torch

    import optloom

    path = _write_blocks(tmp_path)[index]
    for dtype in (torch.float64, torch.float32):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.Flatten(), torch.nn.Linear(12, 5),
                                  torch.nn.Tanh(), torch.nn.Linear(5, 2)).to(dtype)
        before = [p.detach().clone() for p in net.parameters()]
        opt = optloom.optimizer(f"{path}:{name}", net.named_parameters())
        x, y = torch.randn(8, 2, 4, 4, dtype=dtype), torch.randn(8, 2, dtype=dtype)
        for _ in range(3):
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(x), y).backward()
            opt.step()
        assert all(torch.isfinite(p).all() for p in net.parameters()), name
        assert all(not torch.equal(p.detach(), b) for p, b in zip(net.parameters(), before)), name


def test_docs_have_many_examples():
    assert len(blocks()) >= 10


def test_every_example_checks(tmp_path):
    written = []
    for i, (name, body) in enumerate(blocks()):
        path = tmp_path / (name or f"example_{i}.opt")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
        written.append(path)
    failures = []
    for path in written:
        diags = check_source(path.read_text(), str(path))
        if diags:
            failures.append("\n".join(d.render() for d in diags))
    assert not failures, "\n\n".join(failures)


def _example(optimizer: str) -> str:
    [body] = [b for _, b in blocks() if f"optimizer {optimizer}(" in b]
    return body


def test_state_naming_example_matches_the_text():
    prog = compile(_example("named"))
    [rule] = prog.rules
    assert [s.name for s in rule.states] == ["m", "v", "a_exp_avg", "a_exp_avg_sq", "exp_avg", "exp_avg_1"]


def test_runtime_and_structural_example():
    prog = compile(_example("typed"))
    kinds = {h.name: h.structural for h in prog.hyperparams.values()}
    assert kinds == {"lr": False, "momentum": False, "ns_steps": True, "nesterov": True, "preset": True,
                     "betas": True, "warm": False}
    assert prog.hyperparams["warm"].default == 1.0 and isinstance(prog.hyperparams["warm"].default, float)


@pytest.mark.parametrize("snippet", ["grad |> ema(1.5) |> apply(lr)", "grad |> newton_schulz(k) |> apply(lr)"])
def test_documented_errors_are_errors(snippet):
    text = f"optimizer o(lr = 0.1, k = 5.0) {{\n  m: ndim == 2 => {snippet}\n}}\n"
    assert any(d.severity == "error" for d in check_source(text, "x.opt"))
