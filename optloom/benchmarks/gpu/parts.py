"""The GPU check's parts that run benchmark code, each in its own process so that the check can
bound it by a timeout and go on past it: ``python -m optloom.benchmarks.gpu.parts NAME --work DIR
[--smoke]``. Each writes ``DIR/NAME.json`` after every finished piece (a killed part keeps what it
finished). Parts: ``machine`` (the card, its clocks and the two measured ceilings),
``steps-adamw``, ``steps-lion``, ``steps-muon`` (cases), ``train`` (training-step share)."""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from .cases import CaseConfig

# (spec) -> cases on the card; the 1B sets build their candidates only while memory allows
CASES = {
    "adamw": [CaseConfig("adamw", "gpt2-small", torch_graph=True),
              CaseConfig("adamw", "gpt2-1b", variants=("nonfinite=ignore",), baselines=("foreach=True", "fused=True"),
                         memory_gate=True)],
    "lion": [CaseConfig("lion", "gpt2-small", variants=("nonfinite=ignore", "cudagraph"), extra_baselines=("adamw",),
                        baselines=("foreach Lion", "AdamW foreach=True", "AdamW fused=True")),
             CaseConfig("lion", "gpt2-1b", variants=("nonfinite=ignore",), extra_baselines=("adamw",),
                        baselines=("foreach Lion", "AdamW fused=True"), memory_gate=True)],
    "muon": [CaseConfig("muon", "gpt2-small", variants=("eager", "cudagraph")),
             CaseConfig("muon", "muon-small", variants=("eager", "cudagraph"))],
}
# the same cases at toy size (CPU smoke: the eager backend, three timed rounds)
SMOKE_PARAMS = {"gpt2-small": "tiny", "gpt2-1b": "gpt2-nano", "muon-small": "muon-nano"}
ROUNDS = {"adamw": (5, 30), "lion": (5, 30), "muon": (3, 20)}  # (warm-up, timed)


def log(msg: str) -> None:
    print(msg, flush=True)


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def env_info(device: Any) -> dict:
    import torch

    from .. import machine

    info: dict[str, Any] = machine.describe(device)
    info["date"] = datetime.datetime.now().isoformat(timespec="seconds")
    info["cuda_available"] = torch.cuda.is_available()
    info["torch_cuda"] = torch.version.cuda
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update({"gpu": p.name, "capability": f"{p.major}.{p.minor}", "sms": p.multi_processor_count,
                     "gpu_memory_gib": p.total_memory / 2**30, "l2_mib": getattr(p, "L2_cache_size", 0) / 2**20})
    info["nvidia_smi"] = nvidia_smi()
    return info


def nvidia_smi() -> str | None:
    """A read-only query of the card's state (clocks, memory, temperature, power); never a setting."""
    if not shutil.which("nvidia-smi"):
        return None
    fields = "name,driver_version,memory.total,memory.used,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu," \
             "power.draw,power.limit"
    try:
        res = subprocess.run(["nvidia-smi", f"--query-gpu={fields}", "--format=csv"], capture_output=True,
                             text=True, timeout=15)
        return res.stdout.strip() or res.stderr.strip()
    except (OSError, subprocess.SubprocessError) as e:
        return f"nvidia-smi failed: {e}"


def part_machine(work: Path, smoke: bool, device: Any) -> None:
    from . import peaks

    out: dict[str, Any] = {"env": env_info(device)}
    write_json(work / "machine.json", out)
    log(f"    device {out['env'].get('gpu') or device}; measuring bandwidth and matmul peaks")
    out["machine"] = peaks.measure(device, smoke)
    pk = out["machine"]["peaks"]
    log(f"    copy {pk['copy_gbps']:,.0f} GB/s (best {pk['best_gbps']:,.0f}); matmul "
        + ", ".join(f"{k} {v:,.1f} TFLOP/s" for k, v in pk["matmul_tflops"].items()))
    write_json(work / "machine.json", out)


def part_steps(spec: str, work: Path, smoke: bool, device: Any) -> None:
    from . import cases

    mach = read_json(work / "machine.json").get("machine")
    backend = "eager" if smoke else "inductor"
    warmup, rounds = (1, 3) if smoke else ROUNDS[spec]
    out: dict[str, Any] = {"cases": []}
    for cc in CASES[spec]:
        if smoke:
            cc = CaseConfig(**{**cc.__dict__, "params": SMOKE_PARAMS.get(cc.params, cc.params)})
        log(f"    {spec} on {cc.params}: {warmup} warm-up + {rounds} timed rounds, backend {backend}")
        t0 = time.perf_counter()
        try:
            case = cases.run(cc, device, backend, rounds, warmup, mach, log=log)
        except Exception as e:  # noqa: BLE001 - the next case still runs
            case = {"spec": spec, "params": {"name": cc.params}, "error": f"{type(e).__name__}: {e}"[:1500],
                    "traceback": traceback.format_exc()[-3000:]}
            log(f"    {spec} on {cc.params}: failed: {case['error'][:300]}")
        case["seconds"] = time.perf_counter() - t0
        out["cases"].append(case)
        write_json(work / f"steps-{spec}.json", out)
        for s in case.get("candidates", []):
            log(f"      {s['name']}: median {s['median_ms']:.3f} ms (first step {s['first_step_ms']:.0f} ms)")
        if case.get("cost", {}).get("floor_s"):
            log(f"      cost model floor {case['cost']['floor_s'] * 1e3:.3f} ms")


def part_train(work: Path, smoke: bool, device: Any) -> None:
    from . import train_share

    cfg = train_share.SMOKE if smoke else train_share.ShareConfig(compile_model=device.type == "cuda")
    train_share.run(cfg, device, lambda data: write_json(work / "train.json", data), log=log)
    data = read_json(work / "train.json")
    for r in data.get("rows", []):
        log(f"      {r['optimizer']}: fwd+bwd {r['fwd_bwd_ms']:.1f} ms, step {r['step_ms']:.2f} ms, "
            f"share {100 * r['share']:.1f}%")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("name", choices=["machine", "steps-adamw", "steps-lion", "steps-muon", "train"])
    p.add_argument("--work", required=True, type=Path)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--device")
    a = p.parse_args(argv)
    from ..machine import pick_device

    device = pick_device(a.device)
    if a.name == "machine":
        part_machine(a.work, a.smoke, device)
    elif a.name == "train":
        part_train(a.work, a.smoke, device)
    else:
        part_steps(a.name.removeprefix("steps-"), a.work, a.smoke, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
