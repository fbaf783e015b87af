"""The plan: which rule takes each parameter, and the buckets that group them.

Routing happens when parameters are added (the first rule whose selector holds). Buckets are
made lazily, on the first step a parameter has a gradient, adopting whatever per-parameter state
``optimizer.state`` holds (a loaded checkpoint, or a bucket dissolved because its members
changed); a bucket whose members only partly have gradients is split, since their step counts
diverge from there. The step and ``init_state`` share this one path.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Protocol

import torch

from ..check import ir
from ..check.program import Program
from ..check.selectors import ParamInfo
from ..errors import UnsupportedParameterError
from ..lowering import precision
from ..lowering.layout import layout_of
from ..lowering.precision import Policy
from ..primitives.storage import Format
from .buckets import Bucket, bucket_key, scalar_dtype


class Owner(Protocol):
    """What the plan reads of its optimizer: torch.optim's public fields."""

    param_groups: list[dict[str, Any]]
    state: Any


BucketFactory = Callable[[torch.Tensor], type[Bucket]]


class Plan:
    def __init__(self, program: Program, owner: Owner, param_storage: str, bucket_type: BucketFactory,
                 policy: Policy | None = None):
        self.program = program
        self.policy = policy or Policy()  # the constructor's precision policy (over the spec's, per group)
        self.held: dict[torch.Tensor, dict[str, Format]] = {}  # the stored form of each parameter's state
        self.owner = owner
        self.param_storage = param_storage
        self.bucket_type = bucket_type
        self.routes: dict[torch.Tensor, ir.RuleIR] = {}
        self.ids: dict[torch.Tensor, int] = {}
        self.labels: dict[torch.Tensor, str] = {}
        self.buckets: list[Bucket] = []
        self.steppable = 0  # parameters with entries (a zero-size parameter has nothing to step)

    # ---- routing -------------------------------------------------------------------------------
    def add(self, p: torch.Tensor, name: str | None, group_index: int, hypers: dict[str, Any]) -> ir.RuleIR:
        """Route ``p`` (of param group ``group_index``) to its rule; raise a clear error if no
        rule takes it or optloom cannot step it."""
        label = f"'{name}'" if name else f"#{len(self.ids)} (shape {tuple(p.shape)})"
        if p.is_complex():
            raise UnsupportedParameterError(
                f"parameter {label} is complex ({p.dtype}); optloom steps real parameters only. torch.optim "
                "defines a complex parameter's step as the step of torch.view_as_real(p): optimize that view")
        rule = self.program.route(ParamInfo(name, tuple(p.shape), group_index), hypers)
        if rule is None:
            rules = ", ".join(f"{r.label}: {r.selector_text}" for r in self.program.rules)
            raise ValueError(f"no rule of spec '{self.program.name}' takes parameter {label} "
                             f"(shape {tuple(p.shape)}); rules: {rules}")
        self.routes[p] = rule
        self.ids[p] = len(self.ids)
        self.labels[p] = label
        self.steppable += p.numel() > 0
        self.buckets = []
        return rule

    def rule_group(self, rule: ir.RuleIR) -> tuple[int, ...]:
        """Ids of every parameter routed to ``rule``, in parameter order (group samplers' population)."""
        return tuple(sorted(i for p, i in self.ids.items() if self.routes[p] is rule))

    def reset(self) -> None:
        """Forget the buckets: the next step rebuilds them from ``optimizer.state`` (after a load)."""
        self.buckets = []

    # ---- buckets -------------------------------------------------------------------------------
    def work(self) -> list[Bucket]:
        """Buckets to run this step: those whose members have gradients (split where only some do),
        new ones for parameters stepped the first time."""
        work: list[Bucket] = []
        kept: list[Bucket] = []
        for b in self.buckets:
            if b.param_buf is not None and not b.owns_params() and self._changed(b):
                continue  # dissolved: its members are re-bucketed below, adopting their state
            flags = [p.grad is not None for p in b.params]
            if all(flags):
                work.append(b)
                kept.append(b)
            elif any(flags):
                active, rest = b.split(flags)
                for nb in (active, rest):
                    self.publish(nb)
                work.append(active)
                kept += [active, rest]
            else:
                kept.append(b)
        self.buckets = kept
        if sum(len(b.params) for b in kept) < self.steppable:
            fresh = self._fresh(lambda p: p.grad is not None)
            work += fresh
            self.buckets += fresh
        return work

    def ensure_all(self) -> None:
        """A bucket (and so state) for every parameter, without stepping (``init_state``)."""
        self.buckets += self._fresh(lambda p: True)

    def _fresh(self, wanted: Callable[[torch.Tensor], bool]) -> list[Bucket]:
        covered = {id(p) for b in self.buckets for p in b.params}
        groups: dict[tuple, list[torch.Tensor]] = defaultdict(list)
        for gi, group in enumerate(self.owner.param_groups):
            for p in group["params"]:
                if p.numel() and id(p) not in covered and wanted(p):
                    st = self.owner.state.get(p, {})
                    step = float(st["step"]) if "step" in st else 0.0
                    groups[bucket_key(self.routes[p], gi, p, step)].append(p)
        return [self._new_bucket(key[0], params, key[-1]) for key, params in groups.items()]

    def _new_bucket(self, group: int, params: list[torch.Tensor], step: float) -> Bucket:
        p0 = params[0]
        rule = self.routes[p0]
        hypers = self.hypers(group)
        policy = precision.policy_of(self.policy, hypers)
        b = self.bucket_type(p0)(rule, group, params, [self.ids[p] for p in params],
                                 torch.tensor(step, dtype=scalar_dtype(p0.device), device=p0.device), layout_of(rule),
                                 host_step=int(step), rule_group=self.rule_group(rule),
                                 align=precision.alignment(policy, rule, layout_of(rule)), param_mode=policy.param,
                                 seed=policy.seed)
        adopted = [dict(self.owner.state.get(p, {})) for p in params]
        b.materialize(self.program.hyperparams, hypers, adopted, held=[self.held.get(p, {}) for p in params],
                      policy=policy, spec_name=self.program.name)
        if self.param_storage == "bucket":
            b.own_params()
        self.publish(b)
        return b

    def publish(self, b: Bucket) -> None:
        """Point ``optimizer.state[p]`` at views of the bucket's buffers."""
        views = {s.name: b.state_views(b.states[s.name], s) for s in b.specs}
        for i, p in enumerate(b.params):
            self.owner.state[p] = {"step": b.step, **{name: v[i] for name, v in views.items()}}
            self.held[p] = dict(b.formats)

    def hypers(self, group: int) -> dict[str, Any]:
        """Every hyperparameter's value in param group ``group``."""
        values = self.owner.param_groups[group]
        return {k: values[k] for k in self.program.hyperparams}

    @staticmethod
    def _changed(b: Bucket) -> bool:
        """A member's dtype or device changed behind the bucket (``model.double()``, ``.to()``)."""
        meta = b.meta
        return any(p.dtype != meta.dtype or p.device != meta.device for p in b.params)
