"""How a step runs over the buckets: on one process (:class:`LocalStep`), or transactionally
across ranks (``runtime.distributed``). A strategy sees the optimizer only through
:class:`StepHost`: its plan, its executor and its policies."""
from __future__ import annotations

from typing import Protocol

import torch

from ..errors import NonFiniteGradientError, UnsupportedParameterError
from .buckets import Bucket
from .executor import Executor
from .plan import Plan


class StepHost(Protocol):
    plan: Plan
    executor: Executor
    nonfinite: str  # raise | skip | ignore
    param_storage: str  # bucket | model

    def grad_of(self, p: torch.Tensor) -> torch.Tensor: ...


class StepStrategy(Protocol):
    sharded: bool  # parameters are not plain local tensors: zero_grad is torch's
    comm_stats: dict[str, int]

    def step(self, host: StepHost, work: list[Bucket]) -> bool:
        """Run one step over ``work``; False when it was skipped (non-finite gradients)."""

    def after_plan(self, host: StepHost) -> None:
        """Called after buckets were made without stepping (``init_state``)."""


class LocalStep:
    """The step on one process: gradients in bucket layout, one finite check, one backend run."""

    sharded = False

    def __init__(self) -> None:
        self.comm_stats: dict[str, int] = {}

    def step(self, host: StepHost, work: list[Bucket]) -> bool:
        plan, ex = host.plan, host.executor
        on_meta = [plan.labels[b.params[0]] for b in work if b.meta.device.type == "meta"]
        if on_meta:  # routing, buckets and cost models work there; a step has no data to change
            raise UnsupportedParameterError(
                f"parameter {on_meta[0]} is on the meta device: there is no data to step; materialize the "
                "model (model.to_empty(device=...) and initialize it) and build the optimizer on it")
        hypers = [plan.hypers(b.group) for b in work]
        for b, h in zip(work, hypers):
            ex.prepare(b, h)
        in_place = host.param_storage == "bucket"
        # bucket storage: p.grad are views of the bucket's gradient buffer (copied in when not)
        grads = [b.grads_in_place(host.grad_of) if in_place else b.gather_grads([host.grad_of(p) for p in b.params])
                 for b in work]
        if host.nonfinite != "ignore" and not ex.all_finite(grads):
            if host.nonfinite == "skip":
                return False
            raise NonFiniteGradientError(nonfinite_message(plan, work))
        runtime = [ex.runtime_inputs(b, h) for b, h in zip(work, hypers)]  # validated before anything runs
        inputs = []
        for b, g, rt in zip(work, grads, runtime):
            if in_place and not b.owns_params():
                b.own_params()
            b.step += 1
            b.host_step += 1
            param = b.param_buf if in_place else b.gather([p.detach() for p in b.params])
            inputs.append(b.graph.signature.pack(param, g, b.step, b.ids_tensor,  # type: ignore[union-attr]
                                                 [b.states[s.name] for s in b.specs], rt))
        if any(b.rule.reductions for b in work):
            ex.reduce_groups(work, inputs, hypers)
        ex.run(work, inputs)
        if not in_place:
            for b, args in zip(work, inputs):
                torch._foreach_copy_([p.detach() for p in b.params], b.members(args[0]))
        return True

    def after_plan(self, host: StepHost) -> None:
        pass


def nonfinite_message(plan: Plan, work: list[Bucket]) -> str:
    bad = [plan.labels[p] for b in work for p in b.params if not bool(torch.isfinite(p.grad).all())]
    shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
    return (f"non-finite gradient (NaN or Inf) in {shown}; no parameter or state was changed. "
            "Pass nonfinite='skip' to skip such steps and count them")


