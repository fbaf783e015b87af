"""Smoke test of the benchmark harness: a few eager steps on a tiny parameter set, report structure
only (no timing assertions: timings belong to `optloom bench`, run alone on the machine)."""
from __future__ import annotations

import json



def test_bench_runner_smoke(tmp_path):
    from optloom.benchmarks import report, runner

    cfg = runner.Config(specs=["adamw", "muon"], params=["tiny"], steps=3, warmup=1, backend="eager",
                        sections=("machine", "steps", "memory"), stream_floats=100_000,
                        matmul_shapes=[(32, 32, 32)], compiled_baselines=False, case_budget_s=None)
    data = runner.run(cfg, log=lambda msg: None)

    meta = data["meta"]
    assert meta["threads"] >= 1 and meta["device"].split(":")[0] in ("cpu", "cuda", "mps")
    bw = data["machine"]["bandwidth"]
    assert set(bw["kernels"]) == {"copy", "triad", "inplace_add"} and bw["best_gbps"] > 0
    assert {"float32", "bfloat16"} <= set(data["machine"]["matmul"]["peak_gflops"])

    cases = {c["spec"]: c for c in data["cases"]}
    assert set(cases) == {"adamw", "muon"}
    adamw = cases["adamw"]
    names = [s["name"] for s in adamw["candidates"]]
    assert names[0] == "optloom adamw (eager)" and names[1] == "optloom adamw (eager, nonfinite=ignore)"
    assert len(names) == 5  # + torch AdamW foreach=False/True, fused=True
    for i, s in enumerate(adamw["candidates"]):
        assert s["n"] == 3 and s["median_ms"] > 0
        assert i == 0 or s["optloom_over_this"] > 0
    assert adamw["floors"]["bytes_per_param"] == 28.0 and adamw["floors"]["ns_flops"] == 0
    muon = cases["muon"]
    assert any("torch Muon" in s["name"] for s in muon["candidates"])
    assert muon["floors"]["ns_flops"] > 0 and "ns_fraction_of_peak" in muon["floors"]
    for c in cases.values():
        mem = c["memory"]
        assert mem["state_matches_prediction"], (mem["state_bytes"], mem["predicted_state_bytes"])
        assert all("peak_extra_bytes" in v for v in mem["peak"].values())
    assert any(t["met"] is None for t in data["targets"])  # full-size targets are not measured here

    path = tmp_path / "bench.json"
    path.write_text(json.dumps(data, default=str))
    for md in (False, True):
        text = report.render(json.loads(path.read_text()), markdown=md)
        assert "optloom adamw (eager)" in text and "Targets" in text
    assert "| spec |" in report.render(data, markdown=True)
