"""The GPU check cannot rot: its smoke (``benchmarks/gpu_check.sh --smoke``: every part, on the CPU,
toy sizes, eager backend) runs here and writes both reports; and the static cost model
(``optloom.lowering.cost``, ``optloom show --cost``) gives the hand-computed numbers."""
from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import optloom
from optloom.lowering import cost

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_smoke_runs_every_part_and_writes_the_reports(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    res = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--smoke", str(tmp_path)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "== GPU check summary ==" in res.stdout
    assert {p.name for p in tmp_path.iterdir()} == {"gpu_check.json", "gpu_check.md", "gpu_check.log",
                                                    "parts.log", "pytest-junit.xml"}
    rep = json.loads((tmp_path / "gpu_check.json").read_text())
    parts = rep["parts"]
    assert list(parts) == ["machine", "pytest", "steps-adamw", "steps-muon", "train", "compile-adamw-cold"]
    assert all(p["status"] == "ok" for p in parts.values()), parts
    assert rep["meta"]["smoke"] and rep["env"]["device"] == "cpu"
    assert rep["machine"]["peaks"]["copy_gbps"] > 0 and rep["machine"]["peaks"]["matmul_tflops"]
    pt = rep["pytest"]  # the cuda tests are collected and skipped (the smoke hides any GPU)
    assert pt["tests"] > 0 and pt["skipped"] == pt["tests"]

    cases = {(c["spec"], c["params"]["name"]): c for c in rep["cases"]}
    assert set(cases) == {("adamw", "tiny"), ("adamw", "gpt2-nano"), ("muon", "tiny"), ("muon", "muon-nano")}
    adamw = cases["adamw", "tiny"]
    names = [s["name"] for s in adamw["candidates"]]
    assert names[0] == "optloom adamw (eager)" and "torch AdamW fused=True" in names
    assert "optloom adamw (eager, nonfinite=ignore)" in names and not adamw["failed"]
    assert adamw["floors"]["bytes_per_param"] == 28.0 and adamw["floors"]["fraction_of_copy_bandwidth"] > 0
    assert adamw["cost"]["bytes"] == 28 * adamw["params"]["numel"] and adamw["cost"]["floor_s"] > 0
    assert [s["name"] for s in cases["adamw", "gpt2-nano"]["candidates"]] == [
        "optloom adamw (eager)", "torch AdamW foreach=True", "torch AdamW fused=True",
        "optloom adamw (eager, nonfinite=ignore)"]
    muon = cases["muon", "muon-nano"]
    assert any(s["name"].startswith("torch Muon") for s in muon["candidates"])
    assert muon["floors"]["ns_flops"] == sum(muon["cost"]["flops"].values()) > 0
    assert all(s["step_compiles_timed"] == 0 for c in cases.values() for s in c["candidates"])

    share = rep["train_share"]
    assert [r["optimizer"] for r in share["rows"]] == ["optloom adamw", "torch AdamW fused=True", "optloom muon",
                                                       "torch Muon"]
    assert all(0 < r["share"] < 1 for r in share["rows"]) and share["batch"] == 4
    comp = rep["compile"]["rows"]
    assert [r["start"] for r in comp] == ["cold"] and comp[0]["first_step_s"] > 0 and comp[0]["buckets"] == 1
    targets = {t["target"]: t for t in rep["targets"]}
    assert targets["optloom step compiles during timed steps (all cases)"]["met"] is True
    md = (tmp_path / "gpu_check.md").read_text()
    for section in ("## Parts", "## cuda tests", "### Optimizer step", "## Cost model next to the measured step",
                    "## Training-step share", "## First step", "## Targets (issue 16)"):
        assert section in md, section


def _named(device: str = "meta"):
    return [("h.0.w", torch.zeros(8, 32, device=device)), ("h.1.w", torch.zeros(8, 32, device=device)),
            ("b", torch.zeros(8, device=device)), ("wte.weight", torch.zeros(16, 8, device=device))]


def test_cost_model_of_adamw_matches_the_hand_count():
    opt = optloom.optimizer("adamw", _named(), backend="eager")
    c = cost.of_optimizer(opt)
    (b,) = c.buckets
    n = 2 * 8 * 32 + 8 + 16 * 8  # 648 parameters, one flat bucket
    # read + write p (8 B), read g (4 B), read + write m and v (16 B): 28 B per fp32 parameter
    assert (b.layout, b.members, b.numel) == ("flat", 4, n)
    assert (b.param_bytes, b.grad_bytes, b.state_bytes) == (8 * n, 4 * n, 16 * n) and c.bytes == 28 * n
    assert c.flops == {} and c.unmodelled == ()
    peaks = cost.Peaks(1000.0, {"float32": 1.0})  # 1 TB/s
    assert c.floor_s(peaks) == pytest.approx(28 * n / 1e12)


def test_cost_model_of_muon_matches_the_hand_count():
    opt = optloom.optimizer("muon", _named(), backend="eager", ns_dtype="bfloat16")
    c = cost.of_optimizer(opt)
    by_rule = {b.rule: b for b in c.buckets}
    hidden, rest = by_rule["hidden"], by_rule["rest"]
    # two 8x32 matrices stacked: r = 8, l = 32; each of 5 steps does X·Xᵀ (2r²l), A·A (2r³), B·X (2r²l)
    r, l = 8, 32
    assert hidden.flops == {"bfloat16": 2 * 5 * (4 * r * r * l + 2 * r ** 3)} == {"bfloat16": 92160}
    # p read + written, g read, the momentum buffer read + written: 4 + 4 + 4 + 8 = 20 B per parameter
    assert (hidden.layout, hidden.members, hidden.bytes) == ("stacked", 2, 20 * 512)
    assert rest.flops == {} and rest.bytes == 28 * (8 + 16 * 8)
    peaks = cost.Peaks(1000.0, {"bfloat16": 1.0})  # 1 TB/s, 1 TFLOP/s: the matrices are FLOP-bound
    t = hidden.times(peaks)
    assert t["bytes_s"] == pytest.approx(10240e-12) and t["flops_s"] == pytest.approx(92160e-12)
    assert t["floor_s"] == t["flops_s"]
    assert c.floor_s(peaks) == pytest.approx(92160e-12 + 3808e-12)
    assert cost.of_optimizer(opt).as_dict(peaks)["floor_s"] == pytest.approx(95968e-12)


def test_show_cost_prints_the_buckets_and_the_floor():
    from optloom.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["show", "muon", "--shapes", "h.0.w=8x32,h.1.w=8x32,b=8,wte.weight=16x8", "--cost",
                   "--bandwidth", "1000", "--peak", "bfloat16=1", "--peak", "float32=1"])
    text = out.getvalue()
    assert rc == 0 and "cost model (--shapes" in text
    assert "9.216e-05 GFLOP" in text and "0.01405 MB moved" in text  # 10,240 + 3,808 bytes
    assert "predicted floor: 9.597e-05 ms per step" in text
