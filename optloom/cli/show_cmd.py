"""``optloom show SPEC``: rules, which parameter shapes fall in which rule, state bytes, graphs;
``--cost``: the static cost model of the step (``optloom.lowering.cost``)."""
from __future__ import annotations

import argparse
import time


def add_parser(sub) -> None:
    p = sub.add_parser("show", help="show a spec's rules, parameter routing, state and step graphs")
    p.add_argument("spec", help="a shipped name, a .opt file or spec text")
    p.add_argument("--name", help="which optimizer of the file (default: the first)")
    p.add_argument("--shapes", default="gpt2-tiny",
                   help="parameter set to route: gpt2-tiny (GPT-2 layout at d=64), mlp, or NAME=d0xd1,... list")
    p.add_argument("--state-precision", metavar="POLICY",
                   help="precision policy of the states (bf16_sr, q8, 'exp_avg: bf16, exp_avg_sq: q8', …): "
                        "bytes and graphs under it")
    p.add_argument("--param-precision", choices=["bf16", "bf16_sr", "bf16_kahan"],
                   help="how bf16 parameters are written (with --dtype bfloat16)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="parameter dtype")
    p.add_argument("--graph", action="store_true", help="print each bucket's lowered torch.fx graph")
    p.add_argument("--compile", action="store_true", help="compile the step with inductor and report the time")
    p.add_argument("--cost", action="store_true",
                   help="print each bucket's matrix FLOPs, bytes moved and (with peaks) predicted floor")
    p.add_argument("--cost-params", metavar="SET",
                   help="cost a benchmark parameter set instead of --shapes (gpt2-small, gpt2-1b, muon-small, …; "
                        "built on the meta device: no memory); implies --cost")
    p.add_argument("--peaks", metavar="FILE", help="device peaks from a report's machine section "
                                                   "(optloom bench --json, or the GPU check's gpu_check.json)")
    p.add_argument("--bandwidth", type=float, metavar="GBPS", help="device memory bandwidth for the floor (GB/s)")
    p.add_argument("--peak", action="append", default=[], metavar="DTYPE=TFLOPS",
                   help="matmul peak of a dtype for the floor, e.g. bfloat16=790 (repeatable)")
    p.set_defaults(func=run)


def _param_set(text: str) -> list[tuple[str, tuple[int, ...]]]:
    if text == "mlp":
        return [("fc1.weight", (64, 32)), ("fc1.bias", (64,)), ("fc2.weight", (10, 64)), ("fc2.bias", (10,))]
    if text == "gpt2-tiny":
        d, v, blocks = 64, 256, 2
        out = [("wte.weight", (v, d)), ("wpe.weight", (128, d))]
        for i in range(blocks):
            out += [(f"h.{i}.ln_1.weight", (d,)), (f"h.{i}.ln_1.bias", (d,)),
                    (f"h.{i}.attn.c_attn.weight", (3 * d, d)), (f"h.{i}.attn.c_attn.bias", (3 * d,)),
                    (f"h.{i}.attn.c_proj.weight", (d, d)), (f"h.{i}.ln_2.weight", (d,)),
                    (f"h.{i}.mlp.c_fc.weight", (4 * d, d)), (f"h.{i}.mlp.c_proj.weight", (d, 4 * d))]
        return out + [("ln_f.weight", (d,)), ("lm_head.weight", (v, d))]
    out = []
    for item in text.split(","):
        name, _, dims = item.partition("=")
        out.append((name.strip(), tuple(int(x) for x in dims.split("x"))))
    return out


def run(args: argparse.Namespace) -> int:
    import torch

    import optloom

    program = optloom.compile(args.spec, name=args.name)
    print(program.describe())
    dtype = getattr(torch, args.dtype)
    params = [(n, torch.zeros(s, dtype=dtype, requires_grad=True)) for n, s in _param_set(args.shapes)]
    opt = optloom.optimizer(args.spec, params, name=args.name, backend="inductor" if args.compile else "eager",
                            state_precision=args.state_precision, param_precision=args.param_precision)
    print("\nrouting:")
    by_rule: dict[str, list[str]] = {}
    routes = opt.routes()
    for n, p in params:
        by_rule.setdefault(routes[p].label, []).append(f"{n} {tuple(p.shape)}")
    for label, items in by_rule.items():
        print(f"  {label}: {len(items)} parameter(s)")
        for item in items:
            print(f"    {item}")
    _print_bytes(program, params, args)
    for _, p in params:
        p.grad = torch.randn_like(p)
    start = time.perf_counter()
    opt.step()
    first = time.perf_counter() - start
    buckets = opt.buckets()
    print(f"{len(buckets)} bucket(s); first step {first:.2f} s"
          f"{' (includes inductor compile)' if args.compile else ''}")
    if args.graph:
        for b in buckets:
            print(f"\n# bucket: rule {b.rule.label}, layout {b.layout}, {len(b.params)} parameter(s), "
                  f"buffer {tuple(b.meta.shape)}")
            print(b.graph.fn.graph)  # type: ignore[union-attr]
    if args.cost or args.cost_params:
        _print_cost(args, opt)
    return 0


def _print_bytes(program, params, args: argparse.Namespace) -> None:
    """Persistent state and a step's traffic, per state and per parameter, under the policy."""
    from ..lowering.states import state_layout

    layout = state_layout(program, params, args.state_precision, args.param_precision)
    n = sum(p.numel() for _, p in params)
    per_state: dict[tuple[str, str, str], int] = {}
    for rows in layout.values():
        for r in rows:
            key = (r["rule"], r["state"], r["format"])
            per_state[key] = per_state.get(key, 0) + r["bytes"]
    total = sum(per_state.values())
    pbytes = sum(p.numel() * p.element_size() for _, p in params)
    print(f"\npersistent state: {total:,} bytes for {n:,} parameters ({total / max(n, 1):.3g} B/param; "
          f"buffers, incl. a flat member's padding to a whole block)")
    for (rule, state, fmt), b in sorted(per_state.items()):
        covered = sum(rows[0]["numel"] for rows in layout.values() if rows and rows[0]["rule"] == rule)
        print(f"  {rule}.{state}: {fmt}, {b:,} bytes ({b / max(covered, 1):.3g} B per parameter of the rule)")
    traffic = 3 * pbytes + 2 * total  # read and write the parameter, read the gradient, read and write state
    print(f"step traffic (floor): {traffic:,} bytes = {traffic / max(n, 1):.3g} B/param "
          "(parameter read + written, gradient read, every state buffer read + written)")


def _peaks(args: argparse.Namespace):
    import json
    from pathlib import Path

    from ..lowering.cost import Peaks

    if args.peaks:
        data = json.loads(Path(args.peaks).read_text())
        return Peaks.from_machine(data["machine"], source=f"measured, {args.peaks}")
    if args.bandwidth is None and not args.peak:
        return None
    tflops = {}
    for item in args.peak:
        dtype, _, value = item.partition("=")
        tflops[dtype.strip()] = float(value)
    return Peaks(args.bandwidth or float("inf"), tflops, "given on the command line")


def _print_cost(args: argparse.Namespace, opt) -> None:
    import torch

    import optloom

    from ..lowering import cost

    if args.cost_params:
        from ..benchmarks.gpu.paramsets import get

        ps = get(args.cost_params)
        params = [(n, torch.empty(s, device="meta")) for n, s in ps.shapes]
        opt = optloom.optimizer(args.spec, params, name=args.name, backend="eager")
        where = f"{ps.name} ({ps.tensors} tensors, on the meta device)"
    else:
        where = f"--shapes {args.shapes}"
    print(f"\ncost model ({where}; optloom.lowering.cost):")
    print(cost.of_optimizer(opt).render(_peaks(args)))
