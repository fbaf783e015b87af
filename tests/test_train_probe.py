"""``optloom train --probe`` (per-rule update RMS, gradient RMS, top singular value: right numbers,
in log.csv, the plot and results.json, unchanged outputs without it) and the terminal display
(rich progress and table on a terminal, plain lines otherwise)."""
from __future__ import annotations

import csv
import io
import json
import math

import pytest
import torch

from optloom.cli import main
from optloom.train.tasks.lsq import LeastSquares

FIXED = ["label", "seed", "step", "train_loss", "val_loss", "train_seconds", "opt_step_ms"]


@pytest.fixture(autouse=True)
def tiny(monkeypatch):
    for k, v in dict(dim=8, out=4, hidden=8, n_val=64, batch=16, eval_every=2).items():
        monkeypatch.setattr(LeastSquares, k, v)


def test_probe_numbers_are_the_update_and_gradient_statistics():
    """Exact polar factor: every singular value of the update is lr, its RMS lr·sqrt(min(m,n)/(m·n));
    plain gradient descent on vectors: update RMS = lr · gradient RMS."""
    import optloom
    from optloom.train.probe import Probe

    spec = """optimizer p(lr = 0.1) {
  mats: ndim == 2 => grad |> polar |> apply(lr)
  vecs => grad |> apply(lr)
}"""
    torch.manual_seed(0)
    w, v = torch.nn.Parameter(torch.randn(6, 4)), torch.nn.Parameter(torch.randn(5))
    opt = optloom.optimizer(spec, [("w", w), ("v", v)], backend="eager")
    w.grad, v.grad = torch.randn(6, 4), torch.randn(5)
    probe = Probe(opt)
    probe.before()
    opt.step()
    stats = probe.after()
    assert stats["mats.update_top_sv"] == pytest.approx(0.1, rel=1e-5)
    assert stats["mats.update_rms"] == pytest.approx(0.1 * math.sqrt(4 / 24), rel=1e-5)
    assert stats["mats.grad_rms"] == pytest.approx(float(w.grad.square().mean().sqrt()), rel=1e-6)
    assert stats["vecs.update_rms"] == pytest.approx(0.1 * stats["vecs.grad_rms"], rel=1e-5)
    assert "vecs.update_top_sv" not in stats  # an elementwise rule


def test_train_probe_writes_columns_plot_and_cost(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "muon", "sgd", "--task", "lsq", "--steps", "4", "--probe", "--out", str(out),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "probe: " in printed and "% of the optimizer step" in printed
    rows = list(csv.DictReader((out / "log.csv").open()))
    head = list(rows[0])
    assert head[:7] == FIXED and {"hidden.update_rms", "hidden.grad_rms", "hidden.update_top_sv",
                                  "rest.update_rms", "all.update_rms"} <= set(head)
    muon = [r for r in rows if r["label"] == "muon" and r["step"] != "0"]
    assert len(muon) == 4 and all(float(r["hidden.update_top_sv"]) > 0 for r in muon)
    assert all(r["hidden.update_rms"] == "" for r in rows if r["label"] == "sgd")  # sgd has no such rule
    assert (out / "probe.png").stat().st_size > 0
    run = json.loads((out / "results.json").read_text())["runs"][0]
    assert len(run["probe"]["hidden.update_rms"]) == 4 and len(run["probe_ms"]) == 4
    assert "--probe" in json.loads((out / "results.json").read_text())["repeat"]


def test_without_probe_outputs_are_unchanged(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "adamw", "--task", "lsq", "--steps", "3", "--out", str(out), "--no-progress"]) == 0
    with (out / "log.csv").open() as f:
        assert next(csv.reader(f)) == FIXED
    run = json.loads((out / "results.json").read_text())["runs"][0]
    assert "probe" not in run and "probe_ms" not in run
    assert not (out / "probe.png").exists()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_and_in_logs():
    pytest.importorskip("rich")
    from optloom.train.progress import Progress

    tty = Terminal()
    bar = Progress("muon seed 0", 20, stream=tty)
    for s in range(1, 21):
        bar.update(s, loss=1.0 / s, val=0.5)
    bar.close()
    shown = tty.getvalue()
    assert "muon seed 0" in shown and "20/20" in shown and "it/s" in shown and "eta" in shown
    assert "\x1b[" in shown  # colours
    log = io.StringIO()
    bar = Progress("adamw seed 1", 200, stream=log)
    for s in range(1, 201):
        bar.update(s, loss=2.0)
    bar.close("diverged: loss became nan")
    lines = log.getvalue().splitlines()
    assert len(lines) == 4 and "\x1b[" not in log.getvalue()  # 0 %, 50 %, 100 %, the status
    assert lines[1].startswith("adamw seed 1: step 100/200 (50%)  loss 2") and "eta" in lines[1]
    assert "it/s" in lines[2] and lines[3].endswith("diverged: loss became nan")


def test_table_on_a_terminal_and_in_logs():
    pytest.importorskip("rich")
    from optloom.train.report import format_table, show_table

    rows = [{"label": name, "target": 1.0, "steps_to_target": None, "reached_target": 0, "ok": 1, "final_val": v,
             "final_val_std": 0.0, "best_val": v, "best_val_std": 0.0, "ms_per_step": 1.0, "state_mb": 0.1,
             "status": "ok", "problems": []} for name, v in (("adamw", 2.0), ("muon[x]", 1.5))]
    tty, log = Terminal(), io.StringIO()
    show_table(rows, 1, tty)
    show_table(rows, 1, log)
    assert "┃" in tty.getvalue() and "muon[x]" in tty.getvalue() and "\x1b[" in tty.getvalue()
    assert log.getvalue() == format_table(rows, 1) + "\n"
