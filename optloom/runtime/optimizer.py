"""``SpecOptimizer``: a checked spec as an ordinary ``torch.optim.Optimizer``.

Hyperparameters live in ``param_groups`` (so LR schedulers work; float ones are fed to the step
graphs as 0-d tensors and never recompile), state entries carry the spec's state names and are
views into per-bucket buffers, and ``state_dict`` records a format version and the spec's hash.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Iterable

import torch

from .buckets import Bucket, bucket_key, scalar_dtype
from .distributed import strategy as distributed
from ..check import ir
from ..primitives.reductions import group_combine
from ..lowering.interpret import phases, runtime_names, structural_names
from ..lowering.lower import lower
from ..lowering.layout import layout_of
from ..check.program import Program
from ..backends.runner import BACKENDS, StepRunner, default_backend
from ..check.selectors import ParamInfo
from .state_io import StateDictMixin

NONFINITE = ("raise", "skip", "ignore")
PARAM_STORAGE = ("bucket", "model")
# Lowered graphs are pure functions of (spec, rule, layout, shapes, dtypes, structural values):
# shared by every optimizer in the process, so a second optimizer of the same spec traces nothing.
_GRAPHS: dict[tuple, Callable[..., None]] = {}


class NonFiniteGradientError(FloatingPointError):
    """A gradient held NaN or Inf; the step was not applied."""


class SpecOptimizer(StateDictMixin, torch.optim.Optimizer):
    def __init__(self, program: Program, params: Iterable[Any], backend: str | None = None,
                 nonfinite: str = "raise", param_storage: str = "bucket", **hyperparams: Any):
        backend = backend or default_backend()
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        if nonfinite not in NONFINITE:
            raise ValueError(f"nonfinite must be one of {', '.join(NONFINITE)}, got {nonfinite!r}")
        if param_storage not in PARAM_STORAGE:
            raise ValueError(f"param_storage must be one of {', '.join(PARAM_STORAGE)}, got {param_storage!r}")
        self.program = program
        self.backend = backend
        self.param_storage = param_storage
        self._runner = StepRunner(backend)
        self.nonfinite = nonfinite
        self.skipped_steps = 0
        self._check_overrides(hyperparams, "")
        self._routes: dict[torch.Tensor, Any] = {}
        self._ids: dict[torch.Tensor, int] = {}
        self._buckets: list[Bucket] | None = None
        self._scalars: dict[tuple, torch.Tensor] = {}
        self._scalar_values: dict[tuple, float] = {}
        self._sharded = False  # any FSDP2 DTensor parameter: the step runs in distributed.step
        self.comm_stats: dict[str, int] = {}  # bytes the last distributed step communicated
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        super().__init__(params, {**program.defaults(), **hyperparams})

    # ---- construction ------------------------------------------------------------------------
    def _check_overrides(self, values: dict[str, Any], where: str) -> None:
        unknown = [k for k in values if k not in self.program.hyperparams]
        if unknown:
            raise TypeError(f"{where}unknown hyperparameter(s) {', '.join(map(repr, unknown))} for spec "
                            f"'{self.program.name}'; it has: {', '.join(self.program.hyperparams)}")
        self.program.validate_hyperparams(values, where)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        overrides = {k: v for k, v in param_group.items() if k not in ("params", "param_names")}
        where = f"param group {len(self.param_groups)}: "
        self._check_overrides(overrides, where)
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        index = len(self.param_groups) - 1
        names = group.get("param_names") or [None] * len(group["params"])
        hypers = {k: group[k] for k in self.program.hyperparams}
        for name, p in zip(names, group["params"]):
            info = ParamInfo(name, tuple(p.shape), index)
            rule = self.program.route(info, hypers)
            label = f"'{name}'" if name else f"#{len(self._ids)}"
            if rule is None:
                rules = ", ".join(f"{r.label}: {r.selector_text}" for r in self.program.rules)
                raise ValueError(f"no rule of spec '{self.program.name}' takes parameter {label} "
                                 f"(shape {tuple(p.shape)}); rules: {rules}")
            if distributed.is_sharded(p):  # FSDP2: parameters are DTensors sharded on dim 0
                distributed.check_param(p, label)
                if rule.reductions:
                    raise NotImplementedError(
                        f"rule '{rule.label}' of spec '{self.program.name}' reduces across its parameter group "
                        f"(group_reduce), which FSDP2-sharded parameters do not support yet (parameter {label})")
                self._sharded = True
            self._routes[p] = rule
            self._ids[p] = len(self._ids)
        self._buckets = None

    # ---- the step ----------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        work = self._plan()
        if not work:
            return loss
        if self._sharded:  # FSDP2: transactional step over local shards / gathered matrices
            distributed.step(self, work)
            return loss
        for b in work:
            self._ensure_graph(b)
        # bucket storage: p.grad are views of the bucket's gradient buffer (copied in when not)
        grads = [b.grads_in_place(self._grad) if self.param_storage == "bucket"
                 else b.gather_grads([self._grad(p) for p in b.params]) for b in work]
        if self.nonfinite != "ignore" and not self._all_finite(grads):
            if self.nonfinite == "skip":
                self.skipped_steps += 1
                return loss
            raise NonFiniteGradientError(self._nonfinite_message(work))
        runtime = [self._runtime(b) for b in work]  # validates changed values before anything runs
        inputs = []
        for b, g, rt in zip(work, grads, runtime):
            if self.param_storage == "bucket" and not b.owns_params():
                b.own_params()
            b.step += 1
            b.host_step += 1
            param = b.param_buf if self.param_storage == "bucket" else b.gather([p.detach() for p in b.params])
            inputs.append([param, g, b.step, self._id_tensor(b), *(b.states[s.name] for s in b.specs), *rt])
        if any(b.probe_fn is not None for b in work):
            self._reduce_groups(work, inputs)
        self._runner.run(work, inputs)
        if self.param_storage == "model":
            for b, args in zip(work, inputs):
                torch._foreach_copy_([p.detach() for p in b.params], b.members(args[0]))
        return loss

    def zero_grad(self, set_to_none: bool | None = None) -> None:
        """``set_to_none`` not given: gradients that are views of a bucket's gradient buffer are
        zeroed in place (one fill per bucket) and stay views, so the next backward accumulates into
        the buffer and the next step copies nothing; a parameter that then gets no gradient is
        stepped with a zero gradient, as torch.optim does after ``zero_grad(set_to_none=False)``.
        Other gradients are set to None. ``True`` / ``False``: torch's behaviour exactly."""
        if set_to_none is not None or self._sharded or self.param_storage != "bucket":
            return super().zero_grad(set_to_none=True if set_to_none is None else set_to_none)
        kept: set[int] = set()
        for b in self._buckets or []:
            live = b.live_grad_views()
            if all(live):
                b.grad_buf.zero_()  # type: ignore[union-attr]
            elif any(live):
                torch._foreach_zero_([p.grad for p, ok in zip(b.params, live) if ok])
            kept.update(id(p) for p, ok in zip(b.params, live) if ok)
        for group in self.param_groups:
            for p in group["params"]:
                if id(p) not in kept:
                    p.grad = None

    def _grad(self, p: torch.Tensor) -> torch.Tensor:
        g = p.grad
        if g.is_sparse:
            raise RuntimeError(f"spec '{self.program.name}' does not support sparse gradients "
                               f"(parameter {self._name(p)})")
        return g if g.dtype == p.dtype else g.to(p.dtype)

    @staticmethod
    def _all_finite(grads: list[torch.Tensor]) -> bool:
        # fast path: NaN and ±Inf propagate into a sum (one vectorized read of the gradients);
        # a non-finite sum is confirmed entry by entry, so an overflowing sum of finite values
        # is not mistaken for a non-finite gradient
        sums = torch.stack([g.sum().to(grads[0].device) for g in grads])
        if bool(torch.isfinite(sums).all()):
            return True
        return all(bool(torch.isfinite(g).all()) for g in grads)

    def _nonfinite_message(self, work: list[Bucket]) -> str:
        bad = [self._name(p) for b in work for p in b.params if not bool(torch.isfinite(p.grad).all())]
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        return (f"non-finite gradient (NaN or Inf) in {shown}; no parameter or state was changed. "
                "Pass nonfinite='skip' to skip such steps and count them")

    def _name(self, p: torch.Tensor) -> str:
        for group in self.param_groups:
            for i, q in enumerate(group["params"]):
                if q is p:
                    names = group.get("param_names")
                    return f"'{names[i]}'" if names else f"#{self._ids[p]} (shape {tuple(p.shape)})"
        return f"shape {tuple(p.shape)}"

    # ---- buckets -----------------------------------------------------------------------------
    def _plan(self) -> list[Bucket]:
        """Buckets to run this step: split a bucket whose members only partly have gradients."""
        if self._buckets is None:
            self._buckets = []
        work: list[Bucket] = []
        kept: list[Bucket] = []
        for b in self._buckets:
            flags = [p.grad is not None for p in b.params]
            if all(flags):
                work.append(b)
                kept.append(b)
            elif any(flags):
                active, rest = b.split(flags)
                for nb in (active, rest):
                    self._publish(nb)
                work.append(active)
                kept += [active, rest]
            else:
                kept.append(b)
        self._buckets = kept
        if sum(len(b.params) for b in kept) == len(self._ids):  # every parameter has its bucket
            return work
        covered = {id(p) for b in kept for p in b.params}
        fresh: dict[tuple, list[torch.Tensor]] = defaultdict(list)
        for gi, group in enumerate(self.param_groups):
            for p in group["params"]:
                if p.grad is not None and id(p) not in covered:
                    st = self.state.get(p, {})
                    step = float(st["step"]) if "step" in st else 0.0
                    fresh[bucket_key(self._routes[p], gi, p, step)].append(p)
        for key, params in fresh.items():
            b = self._new_bucket(key[0], params, key[-1])
            work.append(b)
            kept.append(b)
        self._buckets = kept
        return work

    def _new_bucket(self, group: int, params: list[torch.Tensor], step: float) -> Bucket:
        p0 = params[0]
        rule = self._routes[p0]
        cls = distributed.ShardedBucket if distributed.is_sharded(p0) else Bucket  # FSDP2 DTensors
        b = cls(rule, group, params, [self._ids[p] for p in params],
                torch.tensor(step, dtype=scalar_dtype(p0.device), device=p0.device), layout_of(rule),
                host_step=int(step), rule_group=self._rule_group(rule))
        adopted = [dict(self.state.get(p, {})) for p in params]
        b.materialize(self._hypers(b), adopted)
        if self.param_storage == "bucket":
            b.own_params()
        self._publish(b)
        return b

    def _publish(self, b: Bucket) -> None:
        """Point ``self.state[p]`` at views of the bucket's buffers."""
        views = {s.name: b.state_views(b.states[s.name], s) for s in b.specs}
        for i, p in enumerate(b.params):
            self.state[p] = {"step": b.step, **{name: v[i] for name, v in views.items()}}

    def _hypers(self, b: Bucket) -> dict[str, Any]:
        group = self.param_groups[b.group]
        return {k: group[k] for k in self.program.hyperparams}

    def _ensure_graph(self, b: Bucket) -> None:
        group = self.param_groups[b.group]
        structural = {n: _freeze(group[n]) for n in structural_names(b.rule, self.program.hyperparams)}
        meta = b.meta
        phase = phases(b.rule, structural, b.host_step + 1)  # the step about to run
        group = b.rule_group if b.rule.uses_group else ()
        key = (self.program.hash, self.program.name, b.rule.label, meta.layout, meta.shape, meta.dtype, str(meta.device),
               tuple(sorted(structural.items())), tuple((s.name, s.shape, s.dtype) for s in b.specs), phase, group)
        if b.fn is not None and b.fn_key == key:
            return
        if key not in _GRAPHS:
            self.program.validate_hyperparams(structural, f"param group {b.group}: ")
            runtime = runtime_names(b.rule, self.program.hyperparams)
            _GRAPHS[key] = lower(b.rule, meta, b.specs, structural, runtime, phase, group)
            if b.rule.reductions:
                _GRAPHS[(*key, "probe")] = lower(b.rule, meta, b.specs, structural, runtime, phase, group, probe=True)
        b.fn, b.fn_key = _GRAPHS[key], key
        b.probe_fn = _GRAPHS.get((*key, "probe"))

    def _reduce_groups(self, work: list[Bucket], inputs: list[list[Any]]) -> None:
        """Group reductions: run every bucket's probe, reduce each rule's values over all its
        buckets, and append the reduced 0-d values to the buckets' graph inputs."""
        local: dict[tuple[str, int], list[torch.Tensor]] = defaultdict(list)
        for b, args in zip(work, inputs):
            if b.probe_fn is not None:
                for k, v in enumerate(b.probe_fn(*args)):
                    local[(b.rule.label, k)].append(v.reshape(-1))
        reduced: dict[tuple[str, int, str], torch.Tensor] = {}  # once per rule, reduction and op
        for b, args in zip(work, inputs):
            if b.probe_fn is None:
                continue
            hypers = self._hypers(b)
            for k, call in enumerate(b.rule.reductions):
                op = call.args["op"]
                op = op.value if isinstance(op, ir.Const) else hypers[op.name]  # type: ignore[attr-defined]
                key = (b.rule.label, k, op)
                if key not in reduced:
                    reduced[key] = group_combine(torch.cat(local[(b.rule.label, k)]), op)
                args.append(reduced[key])

    def _rule_group(self, rule: Any) -> tuple[int, ...]:
        """Ids of every parameter routed to ``rule``, in parameter order (group samplers' population)."""
        return tuple(sorted(i for p, i in self._ids.items() if self._routes[p] is rule))

    def _runtime(self, b: Bucket) -> list[torch.Tensor]:
        group = self.param_groups[b.group]
        device = b.params[0].device
        out = []
        for name in runtime_names(b.rule, self.program.hyperparams):
            value = group[name]
            key = (b.group, name, str(device))
            value = float(value)
            t = self._scalars.get(key)
            if t is None:
                t = self._scalars[key] = torch.full((), value, dtype=scalar_dtype(device), device=device)
                self._scalar_values[key] = value
            elif self._scalar_values[key] != value:
                self.program.validate_hyperparams({name: value}, f"param group {b.group}: ")
                t.fill_(value)
                self._scalar_values[key] = value
            out.append(t)
        return out

    def _id_tensor(self, b: Bucket) -> torch.Tensor:
        t = getattr(b, "_ids_t", None)
        if t is None:
            t = torch.tensor(b.ids, dtype=torch.int64, device=b.params[0].device)
            b._ids_t = t  # type: ignore[attr-defined]
        return t


def _freeze(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v
