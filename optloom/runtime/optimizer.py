"""``SpecOptimizer``: a checked spec as an ordinary ``torch.optim.Optimizer``.

A thin facade: hyperparameters live in ``param_groups`` (so LR schedulers work; float ones are
fed to the step graphs as 0-d tensors and never recompile), routing and buckets in the
:class:`~optloom.runtime.plan.Plan`, graphs and runtime values in the
:class:`~optloom.runtime.executor.Executor`, the step's algorithm in a strategy (one process, or
transactional across ranks), checkpoints in :mod:`~optloom.runtime.state_io`.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

import torch

from ..backends import get_backend
from ..check import ir
from ..check.program import Program, compile_text
from ..errors import UnsupportedParameterError
from . import state_io
from ..lowering.precision import Policy, check_names, policy_of
from .buckets import Bucket
from .distributed import bucket_type, strategy_for
from .executor import Executor
from .plan import Plan
from .strategy import LocalStep, StepStrategy

NONFINITE = ("raise", "skip", "ignore")
PARAM_STORAGE = ("bucket", "model")


class SpecOptimizer(torch.optim.Optimizer):
    def __init__(self, program: Program, params: Iterable[Any], backend: str | None = None,
                 nonfinite: str = "raise", param_storage: str = "bucket", state_precision: Any = None,
                 param_precision: str | None = None, precision_seed: int = 0, **hyperparams: Any):
        if nonfinite not in NONFINITE:
            raise ValueError(f"nonfinite must be one of {', '.join(NONFINITE)}, got {nonfinite!r}")
        if param_storage not in PARAM_STORAGE:
            raise ValueError(f"param_storage must be one of {', '.join(PARAM_STORAGE)}, got {param_storage!r}")
        self.program = program
        self.executor = Executor(program, get_backend(backend))
        self.nonfinite = nonfinite
        self.param_storage = param_storage
        self.skipped_steps = 0
        self.strategy: StepStrategy = LocalStep()
        # precision policy (docs/runtime.md#precision): over the spec's state_precision/param_precision
        self.precision = Policy.of(state_precision, param_precision, precision_seed)
        check_names(self.precision, program)
        check_names(policy_of(Policy(), program.defaults()), program)
        self.plan = Plan(program, self, param_storage, bucket_type, self.precision)
        self._check_overrides(hyperparams, "")
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        super().__init__(params, {**program.defaults(), **hyperparams})

    @property
    def backend(self) -> str:
        return self.executor.backend.name

    @property
    def comm_stats(self) -> dict[str, int]:
        """Bytes the last distributed step communicated (empty on one process)."""
        return self.strategy.comm_stats

    # ---- construction ------------------------------------------------------------------------
    def _check_overrides(self, values: dict[str, Any], where: str) -> None:
        unknown = [k for k in values if k not in self.program.hyperparams]
        if unknown:
            raise TypeError(f"{where}unknown hyperparameter(s) {', '.join(map(repr, unknown))} for spec "
                            f"'{self.program.name}'; it has: {', '.join(self.program.hyperparams)}")
        self.program.validate_hyperparams(values, where)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        overrides = {k: v for k, v in param_group.items() if k not in ("params", "param_names")}
        self._check_overrides(overrides, f"param group {len(self.param_groups)}: ")
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        index = len(self.param_groups) - 1
        names = group.get("param_names") or [None] * len(group["params"])
        for name, p in zip(names, group["params"]):
            rule = self.plan.add(p, name, index, self.plan.hypers(index))
            self.strategy = strategy_for(p, rule, self.plan.labels[p], self.program.name, self.strategy)

    def use_strategy(self, strategy: StepStrategy) -> None:
        """Run the steps with ``strategy`` (``distributed.replicated`` installs a transactional one)."""
        self.strategy = strategy

    # ---- introspection -----------------------------------------------------------------------
    def routes(self) -> dict[torch.Tensor, ir.RuleIR]:
        """The rule each parameter was routed to (by parameter)."""
        return dict(self.plan.routes)

    def buckets(self) -> list[Bucket]:
        """The buckets made so far (after the first step or :meth:`init_state`)."""
        return list(self.plan.buckets)

    # ---- the step ----------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        work = self.plan.work()
        if work and not self.strategy.step(self, work):
            self.skipped_steps += 1
        return loss

    @torch.no_grad()
    def swap_params(self, state: str) -> int:
        """Exchange, in place, each parameter's values with its state ``state`` (of the same
        shape), for every parameter whose rule keeps one; returns how many were swapped. Calling
        it again swaps back, bitwise. For optimizers whose evaluation weights differ from the
        weights they step — Schedule-Free keeps its average ``x`` as state: ``opt.swap_params("x")``
        before evaluating, and again before training on (docs/runtime.md)."""
        found = [(p, st[state]) for p, st in self.state.items() if state in st]
        if not found:
            known = sorted({k for st in self.state.values() for k in st} - {"step"})
            raise KeyError(f"no parameter has state '{state}' (states: {', '.join(known) or 'none yet: step first'})")
        for p, t in found:
            if t.shape != p.shape:
                raise ValueError(f"state '{state}' of parameter {self.plan.labels[p]} has shape {tuple(t.shape)}, "
                                 f"not the parameter's {tuple(p.shape)}: it cannot stand in for it")
        for p, t in found:
            held = p.detach().clone()
            p.detach().copy_(t)
            t.copy_(held)
        return len(found)

    def init_state(self) -> None:
        """Allocate the state of every parameter that has none yet (step 0), without stepping
        (collective when sharded: every rank calls it). See ``optloom.distributed.init_state``."""
        self.plan.ensure_all()
        self.strategy.after_plan(self)

    def grad_of(self, p: torch.Tensor) -> torch.Tensor:
        """``p.grad`` checked (dense) and in ``p``'s dtype."""
        g = p.grad
        if g.is_sparse:
            raise UnsupportedParameterError(f"spec '{self.program.name}' does not support sparse gradients "
                                            f"(parameter {self.plan.labels[p]})")
        return g if g.dtype == p.dtype else g.to(p.dtype)

    def zero_grad(self, set_to_none: bool | None = None) -> None:
        """``set_to_none`` not given: gradients that are views of a bucket's gradient buffer are
        zeroed in place (one fill per bucket) and stay views, so the next backward accumulates into
        the buffer and the next step copies nothing; a parameter that then gets no gradient is
        stepped with a zero gradient, as torch.optim does after ``zero_grad(set_to_none=False)``.
        Other gradients are set to None. ``True`` / ``False``: torch's behaviour exactly."""
        if set_to_none is not None or self.strategy.sharded or self.param_storage != "bucket":
            return super().zero_grad(set_to_none=True if set_to_none is None else set_to_none)
        kept: set[int] = set()
        for b in self.plan.buckets:
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

    # ---- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return state_io.stamp(super().state_dict(), self.program, state_io.held_by_index(self))

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_io.validate(state_dict, self.plan, self.param_groups)
        super().load_state_dict(state_io.torch_part(state_dict))
        state_io.restore_steps(self.state)
        state_io.set_held(self, state_dict["optloom"].get("storage", {}))
        self.plan.reset()  # rebuilt from the loaded per-parameter state at the next step
        self.executor.reset_scalars()

    @staticmethod
    def _process_value_according_to_param_policy(param: torch.Tensor, value: torch.Tensor, param_id: int,
                                                 param_groups: list[dict[Any, Any]], key: Any = None) -> torch.Tensor:
        """(torch's hook) Load state with its own dtype: torch.optim casts every tensor to the
        parameter's dtype, which would change cached integer indices and float32 states of
        low-precision parameters."""
        return value if key == "step" else value.to(device=param.device)

    # ---- copy and pickle ---------------------------------------------------------------------
    def __reduce_ex__(self, protocol: Any) -> tuple:
        """Copies and pickles carry the spec (as text), the options and torch's fields; the copy
        rebuilds its plan, and its buckets from ``state`` at its first step."""
        if self.strategy.sharded:
            raise TypeError("a distributed optimizer cannot be copied or pickled: save its state_dict "
                            "(torch.distributed.checkpoint) and load it into a new optimizer")
        spec = (self.program.ir.source, self.program.ir.file, self.program.name)
        options = {"backend": self.backend, "nonfinite": self.nonfinite, "param_storage": self.param_storage,
                   "skipped_steps": self.skipped_steps, "state_precision": dict((k, f.name) for k, f in self.precision.states),
                   "param_precision": self.precision.param, "precision_seed": self.precision.seed,
                   "held": state_io.held_by_index(self)}
        return _rebuild, (spec, options, self.defaults, self.state, self.param_groups)


def _rebuild(spec: tuple[str, str, str], options: dict[str, Any], defaults: dict[str, Any], state: Any,
             param_groups: list[dict[str, Any]]) -> SpecOptimizer:
    """A :class:`SpecOptimizer` from its pickled parts (see ``__reduce_ex__``)."""
    program = compile_text(*spec)
    opt = SpecOptimizer(program, param_groups, backend=options["backend"], nonfinite=options["nonfinite"],
                        param_storage=options["param_storage"], state_precision=options.get("state_precision"),
                        param_precision=options.get("param_precision"), precision_seed=options.get("precision_seed", 0))
    opt.defaults.update(defaults)
    opt.skipped_steps = options["skipped_steps"]
    for p, st in state.items():  # the copy's own tensors, not views of the source's buffers
        opt.state[p] = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in st.items()}
    state_io.restore_steps(opt.state)
    state_io.set_held(opt, options.get("held", {}))
    return opt
