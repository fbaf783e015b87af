"""The whole benchmark in one process: machine, interleaved steps (+ floors and memory), compile.

``run(Config(...))`` returns a JSON-able report; ``report.render`` turns it into tables.
"""
from __future__ import annotations

import datetime
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field

SECTIONS = ("machine", "steps", "memory", "compile")


@dataclass
class Config:
    specs: list[str]
    params: list[str] | None = None          # parameter sets for every spec; None: per-spec defaults
    steps: int = 40                          # timed rounds (each candidate steps once per round)
    warmup: int = 5                          # untimed rounds first (round 0 = first step, reported)
    threads: int | None = None               # torch.set_num_threads; None keeps torch's default
    backend: str = "inductor"
    device: str | None = None                # None: cuda if available, else cpu
    sections: tuple[str, ...] = SECTIONS
    stream_floats: int = 100_000_000         # bandwidth vectors (fp32 entries each)
    matmul_shapes: list[tuple[int, int, int]] | None = None
    compile_params: str = "gpt2-small"
    compile_counts: list[int | None] = field(default_factory=lambda: [10, 50, None])  # None: all
    compile_specs: list[str] | None = None   # None: the specs of the run
    baselines: bool = True
    compiled_baselines: bool = True          # torch.compile(opt.step) baselines (tens of seconds to compile)
    case_budget_s: float | None = 900.0      # fewer rounds (or skip) when the floor estimate exceeds it
    matmul_budget_s: float = 10.0            # per matmul shape
    probe_steps: int = 1                     # compile probes: steady steps after the first
    seed: int = 0
    cache_dir: str | None = None             # Inductor cache of this process; None: fresh temp dir
    precision: list[str] = field(default_factory=list)  # precision policies timed as extra contestants


def run(cfg: Config, log=None) -> dict:
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    for s in cfg.sections:
        if s not in SECTIONS:
            raise ValueError(f"unknown section {s!r}; choose from {', '.join(SECTIONS)}")
    fresh = cfg.cache_dir is None
    cache = cfg.cache_dir or tempfile.mkdtemp(prefix="optloom-bench-inductor-")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache  # read by Inductor at its first compile

    import torch

    from . import machine, paramsets
    from .steps import run_case

    device = machine.pick_device(cfg.device)
    threads = machine.set_threads(cfg.threads)
    report: dict = {
        "meta": {**machine.describe(device), "date": datetime.datetime.now().isoformat(timespec="seconds"),
                 "argv": sys.argv, "config": {k: v for k, v in asdict(cfg).items() if k != "cache_dir"}},
    }
    log(f"optloom bench: device {device}, {threads} torch threads, {os.cpu_count()} cpus, torch {torch.__version__}")
    try:
        mach = None
        if "machine" in cfg.sections:
            log(f"machine: streaming bandwidth over {cfg.stream_floats:,} floats")
            bw = machine.bandwidth(device, cfg.stream_floats)
            log("machine: matmul throughput")
            mm = machine.matmul(device, cfg.matmul_shapes, budget_s=cfg.matmul_budget_s)
            mach = report["machine"] = {"bandwidth": bw, "matmul": mm}
        if "steps" in cfg.sections:
            report["cases"] = []
            for spec in cfg.specs:
                for pname in cfg.params or paramsets.defaults_for(spec):
                    ps = paramsets.get(pname)
                    log(f"steps: {spec} on {ps.name} ({ps.tensors} tensors, {ps.numel:,} params), "
                        f"{cfg.warmup} warm-up + {cfg.steps} timed rounds")
                    report["cases"].append(run_case(spec, ps, device, cfg.backend, cfg.steps, cfg.warmup, mach,
                                                    cfg.seed, "memory" in cfg.sections, cfg.baselines,
                                                    cfg.compiled_baselines, cfg.case_budget_s, cfg.precision))
        if "compile" in cfg.sections:
            if cfg.backend != "inductor":
                report["compile"] = {"skipped": f"backend {cfg.backend} does not compile"}
            else:
                from .compile_time import compile_table

                log(f"compile: cold and warm-second-process first steps in subprocesses on {cfg.compile_params}")
                report["compile"] = compile_table(cfg.compile_specs or cfg.specs, cfg.compile_params,
                                                  cfg.compile_counts, threads, cfg.device, log,
                                                  cfg.probe_steps)
    finally:
        if fresh:
            shutil.rmtree(cache, ignore_errors=True)
    from .targets import evaluate

    report["targets"] = evaluate(report)
    if cfg.precision:
        from .precision import targets as precision_targets

        report["targets"] += precision_targets(report)
    return report
