"""The executor: from buckets to one run of the backend.

It picks each bucket's step graph for this step (the backend caches them), feeds the runtime
hyperparameters as cached 0-d tensors (validated when they change; a change never recompiles),
checks gradients are finite, combines group reductions across buckets, and runs the step.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch

from .. import kinds
from ..backends import Backend
from ..check import ir
from ..check.program import Program
from ..lowering.hypers import freeze, split_names
from ..lowering.interpret import phases
from ..lowering.lower import GraphRequest
from ..primitives.reductions import group_combine
from .buckets import Bucket, scalar_dtype


class Executor:
    def __init__(self, program: Program, backend: Backend):
        self.program = program
        self.backend = backend
        self._scalars: dict[tuple, torch.Tensor] = {}
        self._scalar_values: dict[tuple, float] = {}
        self._names: dict[int, tuple[list[str], list[str]]] = {}  # per rule: (baked, runtime) names

    def _split(self, rule: ir.RuleIR) -> tuple[list[str], list[str]]:
        """The rule's baked and runtime hyperparameter names (decided by lowering.hypers; once)."""
        names = self._names.get(id(rule))
        if names is None:
            names = self._names[id(rule)] = split_names(rule, self.program.hyperparams)
        return names

    def prepare(self, b: Bucket, hypers: dict[str, Any]) -> None:
        """Pick ``b``'s step graph for the step about to run (built on first use)."""
        baked, fed = self._split(b.rule)
        structural = {n: freeze(hypers[n]) for n in baked}
        runtime = {n: hypers[n] for n in fed}
        phase = phases(b.rule, structural, b.host_step + 1)
        group = b.rule_group if b.rule.uses_group else ()
        forms = tuple(len(v) if isinstance(v, (tuple, list)) else 0 for v in runtime.values())
        key = (self.program.hash, self.program.name, b.rule.label, b.meta, tuple(structural.items()),
               tuple(s.key for s in b.specs), forms, phase, group, b.param_mode, b.seed)
        if b.graph is not None and b.graph_key == key:
            return
        self.program.validate_hyperparams(structural, f"param group {b.group}: ")
        b.graph = self.backend.graph(key, GraphRequest(b.rule, b.meta, tuple(b.specs), structural, runtime, phase, group,
                                                       b.param_mode, b.seed))
        b.graph_key = key

    def runtime_inputs(self, b: Bucket, hypers: dict[str, Any]) -> list[torch.Tensor]:
        """The runtime hyperparameters' leaves as 0-d tensors, one per group, name, item and
        device, refilled (after validation) when the group's value changed."""
        device = b.params[0].device
        out = []
        for name in self._split(b.rule)[1]:
            value = hypers[name]
            for i, leaf in enumerate(kinds.runtime_leaves(value)):
                key = (b.group, name, i, str(device))
                t = self._scalars.get(key)
                if t is None:
                    t = self._scalars[key] = torch.full((), leaf, dtype=scalar_dtype(device), device=device)
                    self._scalar_values[key] = leaf
                elif self._scalar_values[key] != leaf:
                    self.program.validate_hyperparams({name: value}, f"param group {b.group}: ")
                    t.fill_(leaf)
                    self._scalar_values[key] = leaf
                out.append(t)
        return out

    def reset_scalars(self) -> None:
        self._scalars.clear()
        self._scalar_values.clear()

    def reduce_groups(self, work: list[Bucket], inputs: list[list[Any]], hypers: list[dict[str, Any]]) -> None:
        """Group reductions: run every bucket's probe, reduce each rule's values over all its
        buckets, and append the reduced 0-d values to the buckets' graph inputs."""
        local: dict[tuple[str, int], list[torch.Tensor]] = defaultdict(list)
        for b, args in zip(work, inputs):
            if b.graph is not None and b.graph.probe is not None:
                for k, v in enumerate(b.graph.probe(*args)):
                    local[(b.rule.label, k)].append(v.reshape(-1))
        reduced: dict[tuple[str, int, str], torch.Tensor] = {}  # once per rule, reduction and op
        for b, args, values in zip(work, inputs, hypers):
            if b.graph is None or b.graph.probe is None:
                continue
            for k, call in enumerate(b.rule.reductions):
                op = call.args["op"]
                op = op.value if isinstance(op, ir.Const) else values[op.name]  # type: ignore[attr-defined]
                key = (b.rule.label, k, op)
                if key not in reduced:
                    reduced[key] = group_combine(torch.cat(local[(b.rule.label, k)]), op)
                args.append(reduced[key])

    def run(self, work: list[Bucket], inputs: list[list[Any]]) -> None:
        self.backend.run([b.graph_key for b in work], [b.graph for b in work], inputs)  # type: ignore[misc]

    @staticmethod
    def all_finite(grads: list[torch.Tensor]) -> bool:
        """Are all gradients free of NaN and ±Inf? One vectorized read: NaN and Inf propagate into
        a sum; a non-finite sum is confirmed entry by entry, so an overflowing sum of finite values
        is not mistaken for a non-finite gradient."""
        sums = torch.stack([g.sum().to(grads[0].device) for g in grads])
        if bool(torch.isfinite(sums).all()):
            return True
        return all(bool(torch.isfinite(g).all()) for g in grads)

