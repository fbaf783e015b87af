"""The precision policy in the tools: ``optloom show --state-precision`` (bytes per state and the
step's traffic) and ``optloom bench --precision`` (a contestant axis, state vs prediction)."""
from __future__ import annotations

import torch

from optloom.benchmarks import precision as bench_precision
from optloom.benchmarks.paramsets import get
from optloom.benchmarks.steps import run_case
from optloom.cli import main


def test_show_reports_bytes_per_state_and_traffic(capsys):
    assert main(["show", "adamw", "--shapes", "w=512x256,b=256", "--state-precision", "q8"]) == 0
    out = capsys.readouterr().out
    assert "all.exp_avg: q8_dynamic/256" in out and "all.exp_avg_sq: q8_dynamic/256" in out
    assert "step traffic (floor)" in out and "16.1 B/param" in out
    assert main(["show", "adamw", "--shapes", "w=512x256", "--state-precision", "exp_avg: bf16, exp_avg_sq: bf16"]) == 0
    assert "20 B/param" in capsys.readouterr().out


def test_show_bf16_parameters(capsys):
    assert main(["show", "sgd", "--shapes", "w=64x64", "--dtype", "bfloat16", "--param-precision", "bf16_kahan"]) == 0
    assert "param.kahan" in capsys.readouterr().out


def test_precision_policies_parse_for_the_bench():
    assert bench_precision.parse(["bf16_sr,q8", "exp_avg: q8, exp_avg_sq: bf16"]) == [
        "bf16_sr", "q8", "exp_avg: q8, exp_avg_sq: bf16"]


def test_bench_case_times_each_policy_and_checks_its_bytes():
    case = run_case("adamw", get("tiny"), torch.device("cpu"), "eager", steps=2, warmup=1, machine=None,
                    with_memory=False, with_baselines=False, policies=["bf16_sr", "q8"])
    names = [c["name"] for c in case["candidates"]]
    assert any("state_precision=q8" in n for n in names) and any("state_precision=bf16_sr" in n for n in names)
    rows = case["precision_memory"]
    assert rows and all(r["state_matches_prediction"] for r in rows)
    q8 = next(r for r in rows if "state_precision=q8" in r["name"])
    assert q8["bytes_per_param"] < next(r for r in rows if "state_precision=bf16_sr" in r["name"])["bytes_per_param"]
