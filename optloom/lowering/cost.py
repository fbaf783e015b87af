"""The static cost of a step: per bucket, the matrix FLOPs its lowered graph does and the fewest
bytes it must move; with a device's peaks, the predicted floor (the time no implementation beats).

**Bytes** (each buffer touched once, the floor of docs/performance.md): read the parameter and
write it back, read the gradient, read and write every state buffer:

    bytes = 2·param_bytes + grad_bytes + 2·state_bytes

For fp32 parameters that is 28 B per parameter for AdamW, 20 for Lion or Muon's momentum. Traffic
of intermediates (the Newton–Schulz iterates, a flat bucket's temporaries) is not counted: a
floor, not a prediction of what the kernels move.

**FLOPs**: the bucket's step graph is lowered exactly as the executor lowers it (fake tensors,
no data) and every matrix product in it is counted at 2·m·k·n (``mm``, ``bmm``, ``addmm``,
``baddbmm``, ``mv``, ``dot``), by the dtype it runs in. Five quintic Newton–Schulz steps on an r×l
matrix (r ≤ l) count 5·(4r²l + 2r³). Decompositions (QR, SVD, eigh, solves, …) have no fixed
FLOP count: they are listed as ``unmodelled`` and the floor is then a lower bound. The graph is
taken at a step where every period (``every``, ``restart``) starts: the costliest step.

**Floor**: a bucket's floor is ``max(bytes / bandwidth, Σ FLOPs_dtype / peak_dtype)`` (its memory
traffic and its products could at best overlap); buckets run one after another, so the step's
floor is the sum of its buckets' floors. Peaks are measured ones (``Peaks.from_machine`` reads the
``machine`` section of an ``optloom bench`` or GPU-check report: the copy bandwidth and the best
``torch.mm`` rate of each dtype).

``of_optimizer(opt)`` costs the buckets of a built optimizer (``opt.buckets()``; ``init_state()``
first when it has none): the grouping is the runtime's own. Parameters on the ``meta`` device cost
nothing to build, so any size can be costed (``optloom show SPEC --cost``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
import torch.fx as fx

from ..check import ir
from .hypers import runtime_values, structural_values
from .interpret import phases
from .lower import GraphRequest, lower_step
from .states import BucketMeta, StateSpec

_aten = torch.ops.aten
# matrix products: FLOPs from the shapes of (left, right) operands, 2 per multiply-add
_MATMUL = {
    _aten.mm.default: (0, 1),
    _aten.bmm.default: (0, 1),
    _aten.addmm.default: (1, 2),
    _aten.baddbmm.default: (1, 2),
    _aten.addbmm.default: (1, 2),
    _aten.mv.default: (0, 1),
    _aten.addmv.default: (1, 2),
    _aten.dot.default: (0, 1),
}
# ops with no fixed FLOP count (iterative or pivoting decompositions): named, not counted
_DECOMPOSITIONS = {"svd", "qr", "geqrf", "orgqr", "ormqr", "cholesky", "cholesky_solve", "cholesky_inverse",
                   "triangular_solve", "lu_unpack", "inverse"}


def _unmodelled(op: str) -> bool:
    """A decomposition or solve (``linalg_qr``, ``_linalg_eigh``, ``_fft_r2c``, …); norms are not."""
    base = op.lstrip("_")
    return (base.startswith("linalg_") and "norm" not in base) or base in _DECOMPOSITIONS or base.startswith("fft_")


@dataclass(frozen=True)
class Peaks:
    """A device's ceilings: memory bandwidth (GB/s, bytes read + written) and matmul rate per dtype
    (TFLOP/s, keyed by dtype name: ``"bfloat16"``, ``"float32"``, …)."""

    bandwidth_gbps: float
    matmul_tflops: dict[str, float] = field(default_factory=dict)
    source: str = ""

    @classmethod
    def from_machine(cls, machine: dict, kernel: str = "copy", source: str = "") -> "Peaks":
        """From a report's ``machine`` section: ``kernel``'s bandwidth (``"copy"``, or ``"best"``
        of the three) and each dtype's best ``torch.mm`` rate."""
        bw = machine["bandwidth"]
        gbps = bw["best_gbps"] if kernel == "best" else bw["kernels"][kernel]["gbps"]
        tflops = {k: v / 1e3 for k, v in machine["matmul"]["peak_gflops"].items()}
        return cls(gbps, tflops, source or f"measured: {kernel} bandwidth, best torch.mm per dtype")

    def as_dict(self) -> dict:
        return {"bandwidth_gbps": self.bandwidth_gbps, "matmul_tflops": dict(self.matmul_tflops),
                "source": self.source}


@dataclass(frozen=True)
class BucketCost:
    rule: str
    layout: str
    shape: tuple[int, ...]   # the bucket's buffer shape
    dtype: str
    members: int
    numel: int
    param_bytes: int         # read + written
    grad_bytes: int          # read
    state_bytes: int         # read + written (twice the persistent state)
    flops: dict[str, int]    # matrix-product FLOPs by the dtype they run in
    unmodelled: tuple[str, ...] = ()

    @property
    def bytes(self) -> int:
        return self.param_bytes + self.grad_bytes + self.state_bytes

    @property
    def total_flops(self) -> int:
        return sum(self.flops.values())

    def times(self, peaks: Peaks) -> dict[str, float | None]:
        """Seconds: ``bytes_s`` (traffic at the bandwidth), ``flops_s`` (products at their dtype's
        peak; None when a dtype has no peak) and ``floor_s`` (the larger)."""
        bytes_s = self.bytes / (peaks.bandwidth_gbps * 1e9)
        flops_s: float | None = 0.0
        for dtype, n in self.flops.items():
            peak = peaks.matmul_tflops.get(dtype)
            if not peak:
                flops_s = None
                break
            flops_s += n / (peak * 1e12)  # type: ignore[operator]
        return {"bytes_s": bytes_s, "flops_s": flops_s, "floor_s": max(bytes_s, flops_s or 0.0)}

    def as_dict(self, peaks: Peaks | None = None) -> dict:
        out = {"rule": self.rule, "layout": self.layout, "shape": list(self.shape), "dtype": self.dtype,
               "members": self.members, "numel": self.numel, "param_bytes": self.param_bytes,
               "grad_bytes": self.grad_bytes, "state_bytes": self.state_bytes, "bytes": self.bytes,
               "flops": dict(self.flops), "unmodelled": list(self.unmodelled)}
        if peaks is not None:
            out.update(self.times(peaks))
        return out


@dataclass(frozen=True)
class StepCost:
    buckets: tuple[BucketCost, ...]

    @property
    def bytes(self) -> int:
        return sum(b.bytes for b in self.buckets)

    @property
    def numel(self) -> int:
        return sum(b.numel for b in self.buckets)

    @property
    def flops(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for b in self.buckets:
            for k, v in b.flops.items():
                out[k] = out.get(k, 0) + v
        return out

    @property
    def unmodelled(self) -> tuple[str, ...]:
        return tuple(sorted({u for b in self.buckets for u in b.unmodelled}))

    def floor_s(self, peaks: Peaks) -> float:
        return sum(b.times(peaks)["floor_s"] or 0.0 for b in self.buckets)  # type: ignore[misc]

    def as_dict(self, peaks: Peaks | None = None) -> dict:
        out: dict[str, Any] = {"buckets": [b.as_dict(peaks) for b in self.buckets], "numel": self.numel,
                               "bytes": self.bytes, "flops": self.flops, "unmodelled": list(self.unmodelled)}
        if peaks is not None:
            out["peaks"] = peaks.as_dict()
            out["floor_s"] = self.floor_s(peaks)
            out["floor_is_lower_bound"] = bool(self.unmodelled)
        return out

    def render(self, peaks: Peaks | None = None) -> str:
        """A plain-text table, one row per bucket, and the totals."""
        head = ["rule", "layout", "members", "buffer", "dtype", "MB moved", "matmul GFLOP"]
        if peaks:
            head += ["bytes us", "flops us", "floor us"]
        rows = []
        for b in self.buckets:
            fl = ", ".join(f"{v / 1e9:.4g} {k}" for k, v in sorted(b.flops.items())) or "0"
            row = [b.rule, b.layout, str(b.members), "x".join(map(str, b.shape)), b.dtype, f"{b.bytes / 1e6:.4g}",
                   fl + (f" (+{', '.join(b.unmodelled)})" if b.unmodelled else "")]
            if peaks:
                t = b.times(peaks)
                row += [f"{t['bytes_s'] * 1e6:.4g}", "—" if t["flops_s"] is None else f"{t['flops_s'] * 1e6:.4g}",
                        f"{t['floor_s'] * 1e6:.4g}"]
            rows.append(row)
        widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
        line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
        out = [line(head), line(["-" * w for w in widths]), *(line(r) for r in rows)]
        fl = ", ".join(f"{v / 1e9:.4g} GFLOP {k}" for k, v in sorted(self.flops.items())) or "no matrix products"
        out.append(f"total: {self.numel:,} parameters, {self.bytes / 1e6:.4g} MB moved "
                   f"({self.bytes / max(self.numel, 1):.1f} B/param), {fl}")
        if self.unmodelled:
            out.append(f"not counted (no fixed FLOP count): {', '.join(self.unmodelled)}; the floor is a lower bound")
        if peaks:
            tf = ", ".join(f"{k} {v:,.1f} TFLOP/s" for k, v in sorted(peaks.matmul_tflops.items()))
            out.append(f"peaks: {peaks.bandwidth_gbps:,.1f} GB/s, {tf or 'no matmul peak'}"
                       f"{f' ({peaks.source})' if peaks.source else ''}")
            out.append(f"predicted floor: {self.floor_s(peaks) * 1e3:.4g} ms per step")
        return "\n".join(out)


def graph_flops(gm: fx.GraphModule) -> tuple[dict[str, int], tuple[str, ...]]:
    """(matrix-product FLOPs by dtype, names of decompositions not counted) of a lowered graph."""
    flops: dict[str, int] = {}
    unmodelled: set[str] = set()
    for node in gm.graph.nodes:
        if node.op != "call_function":
            continue
        if node.target in _MATMUL:
            i, j = _MATMUL[node.target]
            a, b = (_val(node.args[i]), _val(node.args[j]))
            out = node.meta.get("val")
            if a is None or b is None or out is None:
                continue
            # 2·(output entries)·(contracted dim): covers mm, bmm, mv and dot alike
            n = 2 * math.prod(out.shape) * a.shape[-1]
            key = str(out.dtype).removeprefix("torch.")
            flops[key] = flops.get(key, 0) + int(n)
        else:
            op = str(node.target).removeprefix("aten.").split(".")[0]
            if _unmodelled(op):
                unmodelled.add(op)
    return flops, tuple(sorted(unmodelled))


def _val(arg: Any) -> Any:
    return arg.meta.get("val") if isinstance(arg, fx.Node) else None


def bucket_cost(rule: ir.RuleIR, meta: BucketMeta, states: Iterable[StateSpec], declared: dict[str, ir.HyperParam],
                hypers: dict[str, Any], members: int, group: tuple[int, ...] = ()) -> BucketCost:
    """The cost of one bucket: ``meta`` and ``states`` as the runtime made them, ``hypers`` its
    param group's values, ``declared`` the spec's hyperparameters."""
    states = tuple(states)
    structural = structural_values(rule, declared, hypers)
    runtime = runtime_values(rule, declared, hypers)
    every_period = phases(rule, structural, 1)  # step 1: every period starts
    graph = lower_step(GraphRequest(rule, meta, states, structural, runtime, every_period, group))
    flops, unmodelled = graph_flops(graph.fn)
    numel = math.prod(meta.shape)
    size = meta.dtype.itemsize
    return BucketCost(rule.label, str(meta.layout), tuple(meta.shape), str(meta.dtype).removeprefix("torch."), members,
                      numel, 2 * numel * size, numel * size, 2 * sum(s.nbytes for s in states), flops, unmodelled)


def of_optimizer(opt: Any) -> StepCost:
    """The cost of ``opt``'s step over its buckets (``opt.buckets()``; made by ``init_state()``
    first when there are none)."""
    if not opt.buckets():
        opt.init_state()
    program = opt.program
    out = []
    for b in opt.buckets():
        hypers = {k: opt.param_groups[b.group][k] for k in program.hyperparams}
        group = tuple(b.rule_group) if b.rule.uses_group else ()
        out.append(bucket_cost(b.rule, b.meta, b.specs, program.hyperparams, hypers, len(b.params), group))
    return StepCost(tuple(out))
