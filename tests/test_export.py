"""``optloom export``: every shipped optimizer, exported and imported in a fresh process that
cannot import optloom, equals optloom's eager backend over 20 steps (two param groups, an lr
change, every feature reached: periods, samplers, sketches, frames, group reductions) and resumes
bitwise; checkpoints move both ways; hyperparameters are validated; the step compiles without
recompiling under a scheduler.

Run as a script this file is the fresh process (``main``): it imports only torch and the
exported modules, so nothing at module level here may import optloom."""
from __future__ import annotations

import copy
import importlib.util
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

STEPS, RESUME_AT, DECAY_AT = 20, 10, 12  # every group's lr halves at step DECAY_AT (a schedule)

# hidden matrices (two of one shape share a stacked bucket), tall and wide ones, a conv weight, the
# embedding and the head (the Muon family's AdamW side), vectors; a second param group with lr × 0.5
PARAMS = [("embed.weight", (12, 6)), ("h.0.attn.weight", (6, 6)), ("h.1.attn.weight", (6, 6)),
          ("h.0.mlp.up", (10, 6)), ("h.0.mlp.down", (6, 10)),
          ("conv.weight", (4, 2, 3, 3)), ("h.0.ln.weight", (6,)), ("h.0.ln.bias", (6,)), ("lm_head.weight", (12, 6))]
SECOND_GROUP = {"h.0.mlp.down", "h.0.ln.bias"}

# hyperparameters that let 20 steps reach every feature: periods below 20, ranks below the small
# dimensions (so that sketches and selections are low-rank), sampling over few layers
OVERRIDES = {
    "conda": {"update_proj_gap": 4},
    "dct_adamw": {"rank": 3, "update_proj_gap": 3, "use_ef": True},
    "drop_muon": {"resample_every": 3, "seed": 5},
    "frugal": {"update_gap": 4, "density": 0.5},
    "frugal_svd": {"update_gap": 4, "density": 0.5},
    "lowrank_muon": {"rank": 3, "min_dim": 5},
    "lowrank_msgd": {"rank": 3, "min_dim": 5},
    "spectra_adamw": {"warmup_steps": 5},
    "spectra_signum": {"warmup_steps": 5},
    "trion": {"rank": 3},
}
RTOL = 1e-5  # fp32 rounding (measured: bitwise for every spec but lanton, 6e-8 — see docs/export.md)


# ---- the harness, shared by both processes ------------------------------------------------------

def inputs(seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    init = [torch.randn(shape, generator=gen) * 0.5 for _, shape in PARAMS]
    return {"init": init, "grads": [[torch.randn(s, generator=gen) for _, s in PARAMS] for _ in range(STEPS)]}


def make_params(data: dict) -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(t.clone()) for t in data["init"]]


def groups(params: list, lr: float | None) -> list[dict]:
    first = [(n, p) for (n, _), p in zip(PARAMS, params) if n not in SECOND_GROUP]
    second = [(n, p) for (n, _), p in zip(PARAMS, params) if n in SECOND_GROUP]
    return [{"params": first}, {"params": second, **({"lr": lr * 0.5} if lr is not None else {})}]


def run(opt, params: list, data: dict, start: int, stop: int) -> None:
    for t in range(start, stop):
        if t == DECAY_AT:
            for g in opt.param_groups:
                if "lr" in g:
                    g["lr"] = g["lr"] * 0.5
        for p, g in zip(params, data["grads"][t]):
            p.grad = g.clone()
        opt.step()


def snapshot(opt, params: list) -> dict:
    sd = opt.state_dict()
    return {"params": [p.detach().clone() for p in params],
            "state": {i: {k: v.clone() for k, v in st.items()} for i, st in sd["state"].items()}}


def load_module(path: str | Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def run_exported(job: dict, data: dict) -> dict:
    """20 steps, and the same run saved at step 10 (through torch.save) and resumed in a fresh optimizer."""
    cls = getattr(load_module(job["path"], job["module"]), job["class"])
    params = make_params(data)
    opt = cls(groups(params, job["lr"]), **job["overrides"])
    run(opt, params, data, 0, STEPS)
    full = snapshot(opt, params)
    params = make_params(data)
    opt = cls(groups(params, job["lr"]), **job["overrides"])
    run(opt, params, data, 0, RESUME_AT)
    buf = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "params": [p.detach().clone() for p in params]}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=False)
    params = [torch.nn.Parameter(t) for t in saved["params"]]
    opt = cls(groups(params, job["lr"]), **job["overrides"])
    opt.load_state_dict(copy.deepcopy(saved["opt"]))
    run(opt, params, data, RESUME_AT, STEPS)
    return {"full": full, "resumed_bitwise": all(torch.equal(a, p.detach()) for a, p in zip(full["params"], params))}


def main(job_file: str, out_file: str) -> None:
    """The fresh process: every job without optloom (importing it fails here)."""
    sys.modules["optloom"] = None  # type: ignore[assignment]
    jobs = torch.load(job_file, weights_only=False)
    results = {}
    for job in jobs["jobs"]:
        try:
            results[job["key"]] = run_exported(job, jobs["data"])
        except Exception as e:  # noqa: BLE001 — reported per spec by the test
            results[job["key"]] = {"error": f"{type(e).__name__}: {e}"}
    torch.save(results, out_file)


# ---- the tests ----------------------------------------------------------------------------------

def shipped_optimizers() -> list[tuple[str, str]]:
    from optloom.lang.loader import SHIPPED, shipped_names
    from optloom.lang.parser import parse

    return [(f, o.name) for f in shipped_names() for o in parse((SHIPPED / f"{f}.opt").read_text()).optimizers]


def default_lr(spec: str, name: str) -> float | None:
    import optloom

    hp = optloom.compile(spec, name=name).hyperparams
    return hp["lr"].default if "lr" in hp else None


def test_every_shipped_optimizer_exports_and_matches_eager(tmp_path):
    from optloom.export import class_name_of, export

    data = inputs()
    jobs = []
    for spec, name in shipped_optimizers():
        path = tmp_path / f"exported_{name}.py"
        path.write_text(export(spec, name=name))
        jobs.append({"key": name, "spec": spec, "path": str(path), "module": f"exported_{name}",
                     "class": class_name_of(name), "overrides": OVERRIDES.get(name, {}), "lr": default_lr(spec, name)})
    torch.save({"jobs": jobs, "data": data}, tmp_path / "jobs.pt")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    fresh = subprocess.Popen([sys.executable, "-I", __file__, str(tmp_path / "jobs.pt"), str(tmp_path / "out.pt")],
                             cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    import optloom  # meanwhile, the same runs on optloom's eager backend

    ref = {}
    for job in jobs:
        params = make_params(data)
        opt = optloom.optimizer(job["spec"], groups(params, job["lr"]), backend="eager", name=job["key"],
                                **job["overrides"])
        run(opt, params, data, 0, STEPS)
        ref[job["key"]] = snapshot(opt, params)
    log, _ = fresh.communicate(timeout=600)
    assert fresh.returncode == 0, log
    results = torch.load(tmp_path / "out.pt", weights_only=False)
    problems, report = [], []
    for job in jobs:
        key, got = job["key"], results[job["key"]]
        if "error" in got:
            problems.append(f"{key}: {got['error']}")
            continue
        want = ref[key]
        err = max(float((a - b).abs().max() / a.abs().max().clamp(min=1e-30))
                  for a, b in zip(want["params"], got["full"]["params"]))
        report.append(f"{key}: max relative error {err:.1e}")
        if err > RTOL:
            problems.append(f"{key}: parameters differ from eager by {err:.2e} (relative)")
        names = {i: sorted(st) for i, st in want["state"].items()}
        if names != {i: sorted(st) for i, st in got["full"]["state"].items()}:
            problems.append(f"{key}: state names differ: optloom {names}")
        if not got["resumed_bitwise"]:
            problems.append(f"{key}: a run resumed from a checkpoint differs from the uninterrupted run")
    print("\n".join(report))
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Exported classes of a few specs, imported here (optloom importable: for the interop tests)."""
    from optloom.export import class_name_of, export

    folder = tmp_path_factory.mktemp("exported")
    out = {}
    for spec, name in [("muon", "muon"), ("aro", "aro"), ("conda", "conda"), ("drop_muon", "drop_muon"),
                       ("lanton", "lanton"), ("adamw", "adamw")]:
        path = folder / f"x_{name}.py"
        path.write_text(export(spec, name=name))
        out[name] = getattr(load_module(path, f"x_{name}"), class_name_of(name))
    return out


@pytest.mark.parametrize("name", ["muon", "aro", "conda", "drop_muon", "lanton"])
def test_checkpoints_move_both_ways(exported, name):
    import optloom

    data, cls, ov, lr = inputs(1), exported[name], OVERRIDES.get(name, {}), default_lr(name, name)

    def optloom_opt(params):
        return optloom.optimizer(name, groups(params, lr), backend="eager", **ov)

    def exported_opt(params):
        return cls(groups(params, lr), **ov)

    for first, second in [(optloom_opt, exported_opt), (exported_opt, optloom_opt)]:
        whole = make_params(data)
        opt = second(whole)
        run(opt, whole, data, 0, STEPS)
        params = make_params(data)
        opt = first(params)
        run(opt, params, data, 0, RESUME_AT)
        sd = copy.deepcopy(opt.state_dict())
        assert sd["optloom"]["hash"] == optloom.compile(name).hash
        opt = second(params)
        opt.load_state_dict(sd)
        run(opt, params, data, RESUME_AT, STEPS)
        for a, b in zip(whole, params):
            torch.testing.assert_close(b.detach(), a.detach(), rtol=RTOL, atol=1e-6)


def test_exported_optimizer_checks_what_it_is_given(exported):
    muon = exported["muon"]
    w = torch.nn.Parameter(torch.randn(4, 4))
    with pytest.raises(ValueError, match="'momentum' = 1.5 is invalid for ema_momentum: argument 'beta' must be < 1"):
        muon([("w", w)], momentum=1.5)
    with pytest.raises(TypeError, match="'ns_steps' must be int"):
        muon([("w", w)], ns_steps=2.5)
    with pytest.raises(TypeError, match="unexpected keyword|unknown hyperparameter"):
        muon([("w", w)], lrr=0.1)
    with pytest.raises(ValueError, match="selects parameters by name"):
        muon([w])
    opt = muon([{"params": [("w", w)], "lr": 0.1}])
    opt.param_groups[0]["adam_eps"] = -1.0  # caught at the next step, before anything changes
    w.grad = torch.ones_like(w)
    before = w.detach().clone()
    with pytest.raises(ValueError, match="'adam_eps' = -1.0 is invalid for adam"):
        opt.step()
    assert torch.equal(w.detach(), before) and not opt.state
    opt.param_groups[0]["adam_eps"] = 1e-8
    w.grad = torch.full_like(w, float("nan"))
    with pytest.raises(FloatingPointError):
        opt.step()
    assert opt.rule_of(w) == "hidden"
    other = exported["adamw"]([torch.nn.Parameter(torch.randn(3))])
    with pytest.raises(ValueError, match="written by spec 'muon'"):
        other.load_state_dict(opt.state_dict())


def test_exported_step_compiles_once_under_a_scheduler(exported):
    import torch._dynamo

    cls, data = exported["adamw"], inputs(2)
    eager, compiled = make_params(data), make_params(data)
    a, b = cls(groups(eager, 1e-3)), cls(groups(compiled, 1e-3))
    b.compile(backend="eager")  # Dynamo's capture; the graph's backend does not matter here
    sched = [torch.optim.lr_scheduler.StepLR(o, 1, gamma=0.8) for o in (a, b)]
    try:
        for t in range(5):
            if t == 2:
                torch._dynamo.config.error_on_recompile = True
            for p, q, g in zip(eager, compiled, data["grads"][t]):
                p.grad, q.grad = g.clone(), g.clone()
            a.step(), b.step()
            for s in sched:
                s.step()
    finally:
        torch._dynamo.config.error_on_recompile = False
        torch._dynamo.reset()
    for p, q in zip(eager, compiled):
        assert torch.equal(p, q)


def test_cli_export_writes_a_module(tmp_path, capsys):
    from optloom.cli import main

    out = tmp_path / "my_optimizer.py"
    assert main(["export", "frugal", "--name", "frugal_svd", "--class-name", "FrugalSVD", "-o", str(out)]) == 0
    text = out.read_text()
    compile(text, str(out), "exec")
    assert "class FrugalSVD(SpecOptimizer):" in text and "`optloom export frugal --name frugal_svd`" in text
    assert not re.search(r"^\s*(import|from) optloom", text, re.M)
    assert main(["export", "adamw"]) == 0
    assert "class Adamw(SpecOptimizer):" in capsys.readouterr().out
    assert main(["export", "adamw", "-o", str(tmp_path / "x.txt")]) == 2


def test_export_of_the_language_forms(tmp_path):
    """A spec using the forms beyond one pipeline (where this checkout's language has them)."""
    import optloom
    from optloom.export import export

    text = """optimizer forms(lr = 0.05, T: int = 3) {
  mats: ndim == 2 =>
    state m = zeros(grad)
    m <- m * 0.9 + grad
    let q = every(T, m |> svd_basis(side = "std"))
    let keep = sample_layers(0.5, "cyclic", period = 2)
    gate(keep, project(m, q, "std") |> lift(q, "std"), sign(grad)) |> decay(0.1) |> apply(lr)
  rest => restart(T, grad |> adam) |> apply(lr)
}
"""
    path = tmp_path / "forms_export.py"
    path.write_text(export(text))
    cls = load_module(path, "forms_export").Forms
    data = inputs(3)
    a, b = make_params(data), make_params(data)
    opt_a = optloom.optimizer(text, groups(a, 0.05), backend="eager")
    opt_b = cls(groups(b, 0.05))
    run(opt_a, a, data, 0, 8)
    run(opt_b, b, data, 0, 8)
    for p, q in zip(a, b):
        torch.testing.assert_close(q.detach(), p.detach(), rtol=RTOL, atol=1e-6)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])


def test_the_docs_examples_run(tmp_path, monkeypatch):
    """docs/export.md's commands and Python example, as written."""
    import shlex

    from optloom.cli import main

    doc = (Path(__file__).resolve().parents[1] / "docs" / "export.md").read_text()
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for block in re.findall(r"```sh\n(.*?)```", doc, flags=re.S):
        for line in block.strip().splitlines():
            argv = shlex.split(line)
            assert argv[0] == "optloom" and main(argv[1:]) == 0, line
    assert "class FrugalSVD(SpecOptimizer)" in (tmp_path / "frugal_svd.py").read_text()
    for block in re.findall(r"```python\n(.*?)```", doc, flags=re.S):
        scope: dict = {"__name__": "docs_example"}
        exec(compile(block, "docs/export.md", "exec"), scope)  # noqa: S102 — the documentation's own code
    opt = scope["opt"]
    assert type(opt).__module__ == "my_muon" and opt.rule_of(scope["model"][0].weight) == "hidden"
    assert float(opt.state[scope["model"][0].weight]["step"]) == 10
