"""Render a report (the dict ``runner.run`` returns, or its JSON) as text or markdown tables."""
from __future__ import annotations


def _fmt(v, digits: int = 2) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.{digits}f}" if abs(v) < 1e6 else f"{v:,.0f}"
    return str(v)


def _mb(b) -> str:
    return "—" if b is None else f"{b / 2**20:,.1f} MiB"


def table(headers: list[str], rows: list[list], markdown: bool) -> str:
    cells = [[_fmt(c) if not isinstance(c, str) else c for c in r] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in cells]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in cells])


def render(report: dict, markdown: bool = False) -> str:
    h = (lambda t: f"\n### {t}\n") if markdown else (lambda t: f"\n== {t} ==")
    m = report.get("meta", {})
    out = [h("Run"), f"device {m.get('device')}, {m.get('threads')} torch threads, {m.get('cpu_count')} CPUs "
           f"({m.get('cpu_model', m.get('processor'))}, torch capability {m.get('cpu_capability')}, flags "
           f"{' '.join(m.get('cpu_flags', [])) or '?'}), torch {m.get('torch')}, {m.get('date')}"]
    cfg = m.get("config", {})
    if cfg:
        out.append(f"backend {cfg.get('backend')}; {cfg.get('warmup')} warm-up + {cfg.get('steps')} timed "
                   f"interleaved rounds per case; command: {' '.join(m.get('argv', []))}")
    mach = report.get("machine")
    if mach:
        bw = mach["bandwidth"]
        out.append(h(f"Streaming bandwidth ({bw['floats']:,} fp32 per vector, best of {bw['reps']})"))
        out.append(table(["kernel", "bytes moved", "GB/s"],
                         [[k, _mb(v["bytes"]), v["gbps"]] for k, v in bw["kernels"].items()]
                         + [["best", "", bw["best_gbps"]]], markdown))
        mm = mach["matmul"]
        out.append(h(f"Matmul throughput (best of up to {mm['reps']} timed calls per shape)"))
        out.append(table(["dtype", "m x k x n", "timed calls", "GFLOP/s"],
                         [[r["dtype"], "x".join(map(str, r["shape"])), r.get("reps", mm["reps"]), r["gflops"]]
                          for r in mm["rows"]]
                         + [[f"peak {d}", "", "", v] for d, v in mm["peak_gflops"].items()], markdown))
    skipped = [c for c in report.get("cases", []) if "skipped" in c]
    cases = [c for c in report.get("cases", []) if "candidates" in c]
    for c in skipped:
        out.append(f"{c['spec']} on {c['params']['name']}: {c['skipped']}")
    if cases:
        out.append(h("Optimizer step (median of interleaved steps; ratio = optloom median / this median)"))
        rows = []
        for c in cases:
            for s in c["candidates"]:
                rows.append([c["spec"], f"{c['params']['name']} ({c['params']['tensors']}t, "
                             f"{c['params']['numel'] / 1e6:.2f}M)", s["name"], s["median_ms"], s["min_ms"],
                             f"{s['p25_ms']:.2f}–{s['p75_ms']:.2f}", s["first_step_ms"],
                             s.get("recompiles_timed", 0), s.get("optloom_over_this", "—")])
        out.append(table(["spec", "params", "implementation", "median ms", "min ms", "IQR ms", "first step ms",
                          "recompiles (timed)", "optloom ÷ this"], rows, markdown))
        out += [f"note: {c['spec']} on {c['params']['name']}: {c['note']}" for c in cases if c.get("note")]
        out.append(h("Floors (bandwidth: bytes / best streaming GB/s; matmul: Newton–Schulz FLOPs / matmul peak of the dtype it runs in)"))
        rows = []
        for c in cases:
            f = c["floors"]
            rows.append([c["spec"], c["params"]["name"], f["bytes_per_param"], f.get("bw_floor_ms"),
                         f["effective_gbps"], _pct(f.get("fraction_of_bandwidth")),
                         f["ns_flops"] / 1e9 if f["ns_flops"] else None, f.get("ns_dtype"), f.get("ns_floor_ms"),
                         _pct(f.get("ns_fraction_of_peak")), f.get("floor_ms"), _pct(f.get("fraction_of_floor"))])
        out.append(table(["spec", "params", "B/param", "bw floor ms", "eff. GB/s", "of bw", "NS GFLOP",
                          "NS dtype", "NS floor ms", "NS of peak", "floor ms", "floor ÷ step"], rows, markdown))
    mems = [c for c in cases if c.get("memory")]
    if mems:
        out.append(h("Memory (persistent state; peak extra bytes allocated during one step)"))
        rows, method = [], ""
        for c in mems:
            mem = c["memory"]
            ours = next(iter(mem["peak"].values()))
            method = ours.get("method", method)
            base = mem.get("baseline_state_bytes", {})
            rows.append([c["spec"], c["params"]["name"], _mb(mem["state_bytes"]), _mb(mem["predicted_state_bytes"]),
                         mem["state_matches_prediction"], _mb(min(base.values())) if base else "—",
                         _mb(ours.get("peak_extra_bytes")), _mb(mem["largest_bucket_param_bytes"]),
                         mem.get("peak_over_largest_bucket"),
                         " / ".join(f"{_mb(v.get('peak_extra_bytes'))}" for k, v in list(mem["peak"].items())[1:])])
        out.append(table(["spec", "params", "state", "predicted", "equal", "baseline state", "step peak extra",
                          "largest bucket", "peak ÷ bucket", "baselines' peak extra (in step-table order)"],
                         rows, markdown))
        out.append(f"peak method: {method}")
    pm = [(c, r) for c in cases for r in c.get("precision_memory", [])]
    if pm:
        out.append(h("Precision policies: persistent state"))
        out.append(table(["spec", "params", "candidate", "state", "B/param", "predicted", "equal"],
                         [[c["spec"], c["params"]["name"], r["name"], _mb(r["state_bytes"]), r["bytes_per_param"],
                           _mb(r["predicted_state_bytes"]), r["state_matches_prediction"]] for c, r in pm], markdown))
    comp = report.get("compile")
    if comp:
        out.append(h(f"Compile time (inductor, fresh subprocess per row, {comp.get('threads')} threads)"))
        if "skipped" in comp:
            out.append(comp["skipped"])
        else:
            rows = []
            for r in comp["rows"]:
                if "error" in r:
                    rows.append([r["spec"], r.get("count") or "all", "error", r["error"][-160:].replace("\n", " ")]
                                + [""] * 7)
                    continue
                rows.append([r["spec"], r["tensors"], f"{r['numel'] / 1e6:.2f}M", r["buckets"], r["graphs"],
                             r["first_step_s"], r.get("compile_s"), r.get("steady_step_ms"),
                             r.get("warm_first_step_s"), r.get("warm_compile_s"), r.get("warm_process_wall_s")])
            out.append(table(["spec", "tensors", "params", "buckets", "graphs", "cold first step s",
                              "cold compile s", "steady step ms", "warm 2nd-process first step s",
                              "warm compile s", "warm 2nd-process wall s"], rows, markdown))
    tg = report.get("targets")
    if tg:
        out.append(h("Targets (issues 5 and 15)"))
        out.append(table(["target", "measured", "target", "met"],
                         [[t["target"], t["value"], f"{t['op']} {_fmt(t['threshold'])}",
                           "not measured" if t["met"] is None else t["met"]] for t in tg], markdown))
    return "\n".join(out) + "\n"


def _pct(v) -> str:
    return "—" if v is None else f"{100 * v:.0f}%"
