"""The issue's targets, checked against a report (each: measured value, threshold, met or not).
A target whose case was not run is listed as not measured."""
from __future__ import annotations


def _case(report: dict, spec: str, params: str) -> dict | None:
    for c in report.get("cases", []):
        if c["spec"] == spec and c["params"]["name"] == params:
            return c
    return None


def _ratio(case: dict | None, label_part: str) -> float | None:
    if not case or "candidates" not in case:  # a case skipped by its time budget
        return None
    for s in case["candidates"]:
        if not s["optloom"] and label_part in s["name"]:
            return s.get("optloom_over_this")
    return None


def evaluate(report: dict) -> list[dict]:
    out: list[dict] = []

    def add(name: str, value, op: str, threshold: float) -> None:
        met = None if value is None else (value <= threshold if op == "<=" else value >= threshold)
        out.append({"target": name, "value": value, "op": op, "threshold": threshold, "met": met})

    a = _case(report, "adamw", "adamw-10m")
    add("adamw step / torch AdamW fused=True (adamw-10m)", _ratio(a, "fused=True"), "<=", 1.0)
    add("adamw step / torch AdamW foreach=True (adamw-10m)", _ratio(a, "AdamW foreach=True"), "<=", 0.2)
    add("adamw effective bandwidth (28 B/param) / best streaming bandwidth",
        a.get("floors", {}).get("fraction_of_bandwidth") if a else None, ">=", 0.8)
    m = _case(report, "muon", "muon-large")
    add("muon step / torch Muon (12 x 768x3072)", _ratio(m, "torch Muon"), "<=", 1.0)
    add("muon Newton–Schulz FLOPs / step time / its dtype's matmul peak (12 x 768x3072)",
        m.get("floors", {}).get("ns_fraction_of_peak") if m else None, ">=", 0.85)
    add("muon step / torch Muon (96 x 64x256)", _ratio(_case(report, "muon", "muon-small"), "torch Muon"), "<=", 0.4)
    comp = report.get("compile", {})
    for spec in ("adamw", "muon"):
        full = [r for r in comp.get("rows", []) if r.get("spec") == spec and r.get("count") is None
                and "error" not in r]
        row = full[-1] if full else None
        cold = None if not row else (row.get("compile_s") or row.get("first_step_s"))
        add(f"{spec} cold compile, {comp.get('params', 'gpt2-small')} (s, compile only)", cold, "<=", 30.0)
        add(f"{spec} warm second-process first step (s)", row.get("warm_first_step_s") if row else None, "<=", 5.0)
    for c in report.get("cases", []):
        mem = c.get("memory")
        if mem:
            out.append({"target": f"{c['spec']} on {c['params']['name']}: state bytes == Program.state_bytes",
                        "value": mem["state_bytes"], "op": "==", "threshold": mem["predicted_state_bytes"],
                        "met": mem["state_matches_prediction"]})
            ratio = mem.get("peak_over_largest_bucket")
            if ratio is not None:
                out.append({"target": f"{c['spec']} on {c['params']['name']}: step peak extra / largest bucket",
                            "value": ratio, "op": "<=", "threshold": 1.0, "met": ratio <= 1.0})
    return out
