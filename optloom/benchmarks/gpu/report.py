"""The GPU check's report as markdown, and the targets of issue 16 evaluated on it (each value
named with the card that gave it). Step, floor and memory tables are the CPU benchmark's own
(``optloom.benchmarks.report.render``); the rest are the GPU check's."""
from __future__ import annotations

from typing import Any

from .. import report as base

table = base.table


def _case(rep: dict, spec: str, params: str) -> dict | None:
    for c in rep.get("cases") or []:
        if c.get("spec") == spec and c.get("params", {}).get("name") == params and "candidates" in c:
            return c
    return None


def _cand(case: dict | None, name: str) -> dict | None:
    for s in (case or {}).get("candidates", []):
        if s["name"] == name:
            return s
    return None


def _main(case: dict | None) -> dict | None:
    return _cand(case, f"optloom {case['spec']} ({case['backend']})") if case else None


def _ratio(case: dict | None, baseline: str, ours: str | None = None) -> float | None:
    mine = _cand(case, ours) if ours else _main(case)
    theirs = _cand(case, baseline)
    return mine["median_ms"] / theirs["median_ms"] if mine and theirs else None


def targets(rep: dict) -> list[dict]:
    card = (rep.get("env") or {}).get("gpu") or (rep.get("env") or {}).get("device") or "?"
    out: list[dict] = []

    def add(name: str, value: Any, op: str, threshold: float) -> None:
        met = None if value is None else (value <= threshold if op == "<=" else value >= threshold)
        out.append({"target": name, "value": value, "op": op, "threshold": threshold, "met": met, "card": card})

    small, big = ("tiny", "gpt2-nano") if rep.get("meta", {}).get("smoke") else ("gpt2-small", "gpt2-1b")
    msmall = "muon-nano" if rep.get("meta", {}).get("smoke") else "muon-small"
    for params in (small, big):
        c = _case(rep, "adamw", params)
        add(f"adamw step / torch AdamW fused=True ({params})", _ratio(c, "torch AdamW fused=True"), "<=", 1.0)
        add(f"adamw bytes / step / copy bandwidth ({params})",
            (c or {}).get("floors", {}).get("fraction_of_copy_bandwidth"), ">=", 0.85)
    c = _case(rep, "adamw", small)
    if c and _cand(c, "optloom adamw (inductor, nonfinite=ignore, CUDA graph)"):
        add(f"adamw CUDA graph / torch AdamW fused=True capturable CUDA graph ({small})",
            _ratio(c, "torch AdamW fused=True capturable (CUDA graph)",
                   "optloom adamw (inductor, nonfinite=ignore, CUDA graph)"), "<=", 1.0)
    m = _case(rep, "muon", small)
    add(f"muon Newton–Schulz FLOPs / step / bf16 matmul peak ({small})",
        (m or {}).get("floors", {}).get("ns_fraction_of_peak"), ">=", 0.60)
    add(f"muon step / torch Muon + AdamW(fused) ({small})", _ratio(m, _label(m, "torch Muon")), "<=", 1.0)
    s = _case(rep, "muon", msmall)
    add(f"muon step / torch Muon ({msmall}{'' if msmall == 'muon-nano' else ': 96 x 64x256'})",
        _ratio(s, _label(s, "torch Muon")), "<=", 0.2)
    share = rep.get("train_share") or {}
    for opt, limit in (("optloom adamw", 0.03), ("optloom muon", 0.05)):
        row = next((r for r in share.get("rows", []) if r["optimizer"] == opt), None)
        add(f"{opt} share of the training step (eager model)", row and row["share"], "<=", limit)
        if row and "share_compiled_model" in row:
            add(f"{opt} share of the training step (compiled model)", row["share_compiled_model"], "<=", limit)
    timed = [s.get("recompiles_timed", 0) + s.get("step_compiles_timed", 0)
             for c in rep.get("cases") or [] for s in c.get("candidates", []) if s.get("optloom")]
    add("optloom step compiles during timed steps (all cases)", sum(timed) if timed else None, "<=", 0)
    for row in (rep.get("compile") or {}).get("rows", []):
        if "first_step_s" in row:
            limit = 60.0 if row["start"] == "cold" else 10.0
            add(f"{row['spec']} first step, {row['start']} ({row.get('params')}, s)", row["first_step_s"], "<=", limit)
    return out


def _label(case: dict | None, prefix: str) -> str:
    for s in (case or {}).get("candidates", []):
        if s["name"].startswith(prefix):
            return s["name"]
    return prefix


def _f(v: Any, digits: int = 2) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def render(rep: dict) -> str:
    env, meta = rep.get("env") or {}, rep.get("meta") or {}
    out = ["# GPU check" + (" (smoke: CPU, toy sizes)" if meta.get("smoke") else ""), "",
           f"card **{env.get('gpu', env.get('device', '?'))}** (capability {env.get('capability', '—')}, "
           f"{env.get('sms', '—')} SMs, {_f(env.get('gpu_memory_gib'), 1)} GiB), torch {env.get('torch')} "
           f"(CUDA {env.get('torch_cuda')}), triton {env.get('triton')}, Python {env.get('python')}, "
           f"{env.get('cpu_count')} CPUs; commit {meta.get('commit')}; {meta.get('date')}; budget {meta.get('budget_s')} s"]
    if env.get("nvidia_smi"):
        out += ["", "```", env["nvidia_smi"], "```"]
    out += ["", "## Parts", table(["part", "status", "seconds", "timeout s", "note"], [
        [n, r.get("status"), _f(r.get("seconds"), 1), _f(r.get("timeout_s"), 0),
         (r.get("note") or (r.get("tail") or "").replace("\n", " ⏎ ")[-300:]).replace("|", "/")]
        for n, r in (rep.get("parts") or {}).items()], True)]
    pt = rep.get("pytest")
    if pt:
        out += ["", "## cuda tests", "" if "error" not in pt else pt["error"]]
        if "error" not in pt:
            out.append(f"{pt['passed']} passed, {pt['failures']} failed, {pt['errors']} errors, "
                       f"{pt['skipped']} skipped of {pt['tests']}"
                       + (f" (skip reasons: {'; '.join(pt['skip_reasons'])})" if pt["skip_reasons"] else ""))
            out += [f"- `{f['test']}` ({f['kind']}): {f['message'][:400]}" for f in pt["failed"]]
    mach = rep.get("machine")
    cases = [c for c in rep.get("cases") or [] if "candidates" in c]
    full = [c for c in cases if "floors" in c]  # the others: the optloom step itself failed
    if mach or full:
        out.append(base.render({"meta": env, "machine": mach, "cases": full}, markdown=True))
    rows = [[c["spec"], c["params"]["name"], s["name"], _f(s["median_ms"], 3), _f(s["first_step_ms"], 1)]
            for c in cases if "floors" not in c for s in c["candidates"]]
    if rows:
        out += ["", "### Steps of cases whose optloom step failed",
                table(["spec", "params", "implementation", "median ms", "first step ms"], rows, True)]
    out += _extra_tables(rep, cases)
    tg = rep.get("targets") or []
    if tg:
        out += ["", f"## Targets (issue 16), card: {tg[0]['card']}", table(["target", "measured", "target", "met"], [
            [t["target"], _f(t["value"], 3), f"{t['op']} {t['threshold']}", "not measured" if t["met"] is None
             else _f(t["met"])] for t in tg], True)]
    return "\n".join(out) + "\n"


def _extra_tables(rep: dict, cases: list[dict]) -> list[str]:
    out: list[str] = []
    errs = [c for c in rep.get("cases") or [] if "error" in c]
    fails = [(c, n, e) for c in cases for n, e in (c.get("failed") or {}).items()]
    if errs or fails:
        out += ["", "## Failures"]
        out += [f"- {c['spec']} on {c['params']['name']}: {c['error'][:400]}" for c in errs]
        out += [f"- {c['spec']} on {c['params']['name']}, {n}: {e.splitlines()[0][:400]}" for c, n, e in fails]
    rows = []
    for c in cases:
        cost, main = c.get("cost") or {}, _main(c)
        rows.append([c["spec"], c["params"]["name"], len(cost.get("buckets", [])), _f(cost.get("bytes", 0) / 1e6, 1),
                     ", ".join(f"{v / 1e9:,.1f} {k}" for k, v in (cost.get("flops") or {}).items()) or "0",
                     _f(cost["floor_s"] * 1e3, 3) if cost.get("floor_s") else "—",
                     _f(main and main["median_ms"], 3), _f(cost.get("measured_over_floor")),
                     ", ".join(cost.get("unmodelled", [])) or cost.get("error", "")[:80]])
    if rows:
        out += ["", "## Cost model next to the measured step (optloom.lowering.cost; copy bandwidth, best mm per dtype)",
                table(["spec", "params", "buckets", "MB moved", "matmul GFLOP", "floor ms", "optloom median ms",
                       "measured ÷ floor", "not counted"], rows, True)]
    rows = [[c["spec"], c["params"]["name"], _f(c["floors"].get("ns_flops", 0) / 1e9, 1), _f(_main(c)["median_ms"], 3),
             _f(c["floors"].get("ns_tflops"), 1), _pct(c["floors"].get("ns_fraction_of_peak")),
             _pct(c["floors"].get("fraction_of_copy_bandwidth"))]
            for c in cases if c.get("floors") and _main(c)]
    if rows:
        out += ["", "## Bandwidth and Newton–Schulz rate of the optloom step",
                table(["spec", "params", "NS GFLOP", "median ms", "NS TFLOP/s", "NS of bf16 peak",
                       "bytes of copy bandwidth"], rows, True)]
    rows = [[c["spec"], c["params"]["name"], n, _f(v["bitwise"]), f"{v['max_abs_diff']:.3g}"]
            for c in cases for n, v in (c.get("cuda_graph_check") or {}).items()]
    if rows:
        out += ["", "## CUDA graph replay against the uncaptured step (3 replays, same gradients)",
                table(["spec", "params", "candidate", "bitwise equal", "max abs diff"], rows, True)]
    comp = (rep.get("compile") or {}).get("rows", [])
    if comp:
        out += ["", "## First step: cold (empty cache dir) and warm (second process, same dir)",
                table(["spec", "params", "start", "first step s", "compile s", "load s", "step cache", "import s",
                       "steady ms", "process wall s"],
                      [[r.get("spec"), r.get("params"), r.get("start"), _f(r.get("first_step_s")),
                        _f((r.get("step_cache_seconds") or {}).get("compile")),
                        _f((r.get("step_cache_seconds") or {}).get("load")), " ".join(r.get("step_cache") or [])
                        or (r.get("error") or "")[-120:].replace("\n", " "), _f(r.get("import_s")),
                        _f(r.get("steady_step_ms"), 3), _f(r.get("process_wall_s"))] for r in comp], True)]
    share = rep.get("train_share")
    if share and share.get("rows") is not None:
        mdl = share.get("model", {})
        comp_m = share.get("compiled_model") or {}
        out += ["", f"## Training-step share: {mdl.get('layers')} layers, d={mdl.get('d')}, context "
                    f"{mdl.get('context')}, vocab {mdl.get('vocab')} (tied), {_f(mdl.get('params'))} parameters, "
                    f"batch {share.get('batch')} ({_f(share.get('tokens_per_step'))} tokens), autocast "
                    f"{mdl.get('autocast')}",
                table(["optimizer", "fwd+bwd ms", "step ms", "min step ms", "first step s", "share",
                       "share (compiled model)"],
                      [[r["optimizer"], _f(r["fwd_bwd_ms"], 1), _f(r["step_ms"], 3), _f(r["min_step_ms"], 3),
                        _f(r["first_step_s"]), _pct(r["share"]), _pct(r.get("share_compiled_model"))]
                       for r in share["rows"]], True)]
        if comp_m:
            out.append(f"compiled model: fwd+bwd {_f(comp_m.get('fwd_bwd_ms'), 1)} ms, first call "
                       f"{_f(comp_m.get('first_call_s'), 1)} s{' — ' + comp_m['error'] if 'error' in comp_m else ''}")
        out += [f"- {k}: {v[:300]}" for k, v in (share.get("failed") or {}).items()]
    return out


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"


def summary(rep: dict) -> str:
    """The last lines a device run prints: parts and targets, short."""
    lines = ["", "== GPU check summary =="]
    for n, r in (rep.get("parts") or {}).items():
        lines.append(f"  {n:22s} {r.get('status'):8s} {_f(r.get('seconds'), 1):>7s} s")
    pt = rep.get("pytest") or {}
    if "tests" in pt:
        lines.append(f"  cuda tests: {pt['passed']} passed, {pt['failures']} failed, {pt['errors']} errors, "
                     f"{pt['skipped']} skipped")
    for t in rep.get("targets") or []:
        met = "n/m" if t["met"] is None else ("yes" if t["met"] else "NO")
        lines.append(f"  [{met:3s}] {t['target']}: {_f(t['value'], 3)} ({t['op']} {t['threshold']})")
    return "\n".join(lines)
