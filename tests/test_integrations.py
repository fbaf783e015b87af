"""docs/integrations.md, run as written: the Hugging Face Trainer (a tiny random GPT-2) and
PyTorch Lightning train a few steps with an optloom optimizer and resume from their checkpoints;
``optloom train/ablate --log tensorboard`` writes readable event files. Each section is skipped
only when its optional library is not installed (``pip install optloom[integrations]``)."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "integrations.md"


def blocks(section: str, lang: str) -> list[str]:
    """The ``lang`` code blocks of the doc's section whose title starts with ``section``."""
    text = DOC.read_text()
    parts = re.split(r"^## ", text, flags=re.M)
    body = next(p for p in parts if p.startswith(section))
    return re.findall(rf"```{lang}\n(.*?)```", body, flags=re.S)


def run_python(section: str, tmp_path, monkeypatch) -> dict:
    import tempfile

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the examples' mkdtemp() folders land here
    scope: dict = {"__name__": "docs_example"}
    for code in blocks(section, "python"):
        exec(compile(code, f"{DOC}:{section}", "exec"), scope)  # noqa: S102 — the documentation's own code
    return scope


def test_hugging_face_trainer(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    scope = run_python("Hugging Face", tmp_path, monkeypatch)
    trainer, resumed, out = scope["trainer"], scope["resumed"], Path(scope["out"])
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert trainer.state.global_step == 6 and len(losses) == 3 and all(v == v for v in losses)
    assert (out / "checkpoint-3" / "optimizer.pt").exists() and (out / "checkpoint-3" / "model.safetensors").exists()
    assert resumed.state.global_step == 6
    sd = resumed.optimizer.state_dict()
    assert sd["optloom"]["spec"] == "muon" and {"momentum_buffer", "exp_avg"} <= {k for s in sd["state"].values()
                                                                                   for k in s}
    assert max(float(s["step"]) for s in sd["state"].values()) == 6  # 3 steps restored + 3 more


def test_lightning(tmp_path, monkeypatch):
    pytest.importorskip("lightning")
    scope = run_python("PyTorch Lightning", tmp_path, monkeypatch)
    assert scope["trainer"].global_step == 8 and scope["more"].global_step == 12
    opt = scope["more"].optimizers[0]
    assert type(opt).__name__ == "SpecOptimizer" and opt.state_dict()["optloom"]["spec"] == "muon"
    assert float(scope["trainer"].callback_metrics["train_loss"]) == float(scope["trainer"].callback_metrics["train_loss"])


def test_tensorboard_logs(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from optloom.cli import main
    from optloom.train.tasks.lsq import LeastSquares

    for k, v in dict(dim=8, out=4, hidden=8, n_val=64, batch=16, eval_every=5).items():
        monkeypatch.setattr(LeastSquares, k, v)
    monkeypatch.chdir(tmp_path)
    for command in blocks("TensorBoard", "sh"):
        for line in command.strip().splitlines():
            argv = shlex.split(line)
            assert argv[0] == "optloom" and main(argv[1:]) == 0, line
    run = EventAccumulator(str(tmp_path / "runs/tb-example/tensorboard/muon/seed0")).Reload()
    tags = set(run.Tags()["scalars"])
    assert {"loss/train", "loss/val", "lr/group0", "time/opt_step_ms", "update_rms/hidden", "grad_rms/hidden",
            "update_top_sv/hidden", "update_rms/rest"} <= tags
    assert len(run.Scalars("loss/train")) == 20 and len(run.Scalars("loss/val")) == 5
    ablate = tmp_path / "runs/tb-ablate/tensorboard"
    assert sorted(p.name for p in ablate.iterdir()) == ["muon_momentum=0.9", "muon_momentum=0.95"]


def test_log_without_tensorboard_is_a_clear_error(tmp_path, monkeypatch, capsys):
    import sys

    from optloom.cli import main

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    code = main(["train", "sgd", "--task", "lsq", "--steps", "1", "--log", "tensorboard", "--out",
                 str(tmp_path / "r"), "--no-progress"])
    assert code == 2 and "needs the tensorboard package" in capsys.readouterr().err
