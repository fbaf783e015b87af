"""``optloom train / ablate / diff / demo`` end to end on tiny settings (a few steps, tiny models)."""
from __future__ import annotations

import csv
import json

import pytest

from optloom.cli import main
from optloom.train.tasks.charlm import CharLM
from optloom.train.tasks.lsq import LeastSquares

LABELED = """\
optimizer mini(lr = 0.02, momentum = 0.9, adam_lr = 0.001) {
  hidden: ndim >= 2 =>
    grad |> mom: ema(momentum) |> as_matrix |> ortho: newton_schulz(5) |> apply(lr)
  rest =>
    grad |> adam((0.9, 0.99)) |> apply(adam_lr)
}
"""


@pytest.fixture(autouse=True)
def tiny(monkeypatch):
    for k, v in dict(dim=8, out=4, hidden=8, n_val=64, batch=16, eval_every=2).items():
        monkeypatch.setattr(LeastSquares, k, v)
    for k, v in dict(d=16, layers=1, heads=2, context=16, batch=4, val_windows=8, eval_every=2).items():
        monkeypatch.setattr(CharLM, k, v)


def _results(path):
    return json.loads((path / "results.json").read_text())


def test_train_two_specs_two_seeds(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "adamw", "sgd", "--task", "lsq", "--steps", "4", "--seeds", "2", "--out", str(out),
                 "--set", "sgd.lr=0.05", "--set", "eps=1e-6", "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "final val" in printed and "adamw" in printed and "±" in printed and "loss_vs_steps.png" in printed
    data = _results(out)
    assert data["status"] == "complete" and len(data["runs"]) == 4
    assert data["variants"][1]["overrides"] == {"lr": 0.05}  # sgd declares no eps
    assert data["variants"][0]["hyperparams"]["eps"] == 1e-6
    assert "optimizer adamw" in data["variants"][0]["spec_text"]
    assert {"torch", "python", "optloom", "torch_threads"} <= set(data["environment"])
    assert "--set sgd.lr=0.05" in data["repeat"]
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert len(rows) == 4 * 5 and {r["label"] for r in rows} == {"adamw", "sgd"}
    assert (out / "loss_vs_steps.png").stat().st_size > 0 and (out / "loss_vs_time.png").stat().st_size > 0
    assert (out / "specs" / "sgd.opt").read_text().startswith("# SGD")


def test_repeat_gives_same_numbers(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["train", "muon", "--task", "charlm", "--steps", "3", "--out", str(a), "--no-progress"]) == 0
    spec_file = a / _results(a)["variants"][0]["spec_file"]
    assert main(["train", str(spec_file), "--task", "charlm", "--steps", "3", "--out", str(b),
                 "--no-progress"]) == 0
    ra, rb = _results(a)["runs"][0], _results(b)["runs"][0]
    assert ra["train_loss"] == rb["train_loss"] and ra["val_loss"] == rb["val_loss"]


def test_spec_error_is_a_diagnostic_not_a_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.opt"
    bad.write_text("optimizer bad(lr = 0.1) {\n  all => grad |> newton_shulz(5) |> apply(lr)\n}\n")
    code = main(["train", "adamw", str(bad), "--task", "lsq", "--steps", "2", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 1 and "unknown primitive 'newton_shulz'" in err and "Traceback" not in err


def test_unknown_hyperparameter_and_task(tmp_path, capsys):
    assert main(["train", "adamw", "--task", "lsq", "--set", "lrr=0.1"]) == 2
    assert "no spec has a hyperparameter 'lrr'" in capsys.readouterr().err
    assert main(["train", "adamw", "--task", "nope"]) == 2
    assert "unknown task 'nope'" in capsys.readouterr().err


def test_nan_lr_leaves_readable_results(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "sgd", "adamw", "--task", "lsq", "--steps", "20", "--set", "sgd.lr=1e30",
                 "--out", str(out), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1 and "Traceback" not in captured.err and "some runs failed" in captured.err
    data = _results(out)
    sgd, adamw = data["runs"]
    assert sgd["status"] in {"diverged", "error"} and sgd["message"] and adamw["status"] == "ok"
    assert data["summary"][0]["problems"]


def test_ablate_remove_replace_grid(tmp_path, capsys):
    spec = tmp_path / "mini.opt"
    spec.write_text(LABELED)
    out = tmp_path / "abl"
    code = main(["ablate", str(spec), "--task", "lsq", "--steps", "3", "--remove", "mom",
                 "--replace", "ortho=normalize()", "--set", "lr=0.01,0.02", "--out", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    data = _results(out)
    labels = [v["label"] for v in data["variants"]]
    assert labels == ["mini lr=0.01", "mini lr=0.02", "-mom lr=0.01", "-mom lr=0.02",
                      "ortho=normalize() lr=0.01", "ortho=normalize() lr=0.02"]
    texts = {v["label"]: v["spec_text"] for v in data["variants"]}
    assert "ema(" not in texts["-mom lr=0.01"] and "ortho: normalize()" in texts["ortho=normalize() lr=0.02"]
    assert all(r["status"] == "ok" for r in data["runs"])


def test_ablate_unknown_label(tmp_path, capsys):
    spec = tmp_path / "mini.opt"
    spec.write_text(LABELED)
    assert main(["ablate", str(spec), "--task", "lsq", "--remove", "orthoo", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "no stage labeled 'orthoo' (labels in this spec: mom, ortho)" in err
    assert not (tmp_path / "x").exists()


def test_ablate_replacement_that_fails_the_checker(tmp_path, capsys):
    spec = tmp_path / "mini.opt"
    spec.write_text(LABELED)
    assert main(["ablate", str(spec), "--task", "lsq", "--replace", "ortho=frobnicate()"]) == 1
    assert "frobnicate" in capsys.readouterr().err


def test_diff(tmp_path, capsys):
    a, b = tmp_path / "a.opt", tmp_path / "b.opt"
    a.write_text(LABELED)
    b.write_text(LABELED.replace("ortho: newton_schulz(5)", "ortho: normalize()").replace("lr = 0.02", "lr = 0.05"))
    assert main(["diff", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "~ lr = 0.02  ->  lr = 0.05" in out and "~ stage ortho: newton_schulz(5)  ->  ortho: normalize()" in out
    assert main(["diff", str(a), str(a)]) == 0
    assert "no structural differences" in capsys.readouterr().out


def test_demo_tiny(tmp_path, capsys):
    assert main(["demo", "--steps", "2", "--out", str(tmp_path / "demo"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "adamw" in out and "muon" in out and "plot:" in out
    assert len(_results(tmp_path / "demo")["variants"]) == 3


USER_TASK = '''
import torch
from torch import nn
from optloom.train import Task, register_task

@register_task
class Line(Task):
    name = "line"
    steps = 4
    eval_every = 2

    def model(self):
        return nn.Linear(1, 1)

    def loss(self, model, gen):
        x = torch.rand(8, 1, generator=gen).to(self.device)
        return nn.functional.mse_loss(model(x), 2 * x)

    def val_loss(self, model):
        x = torch.linspace(0, 1, 16, device=self.device)[:, None]
        return nn.functional.mse_loss(model(x), 2 * x).item()
'''


def test_user_task_from_a_file(tmp_path, capsys):
    f = tmp_path / "my_tasks.py"
    f.write_text(USER_TASK)
    assert main(["train", "sgd", "--task", f"{f}:line", "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    data = _results(tmp_path / "r")
    assert data["task"]["name"] == "line" and data["runs"][0]["steps_done"] == 4
