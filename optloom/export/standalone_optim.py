"""The optimizer class every export carries (copied below the marker line, like
:mod:`.standalone`): routing when parameters are added, then per step the buckets — parameters of
one rule, param group, dtype, device and step count (and one shape for stacked rules) — gathered,
stepped by the rule's function and written back."""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable

import torch

from ..primitives.context import Ctx
from ..primitives.reductions import group_combine
from .standalone import HP, HYPERPARAMS, RULES, SPEC_HASH, SPEC_NAME, check_hyperparams

# ---- standalone runtime (copied into every export) ----


class SpecOptimizer(torch.optim.Optimizer):
    """The step of an optloom spec in plain PyTorch (the subclass below names the spec)."""

    def __init__(self, params: Any, defaults: dict[str, Any], nonfinite: str = "raise") -> None:
        if nonfinite not in ("raise", "skip", "ignore"):
            raise ValueError(f"nonfinite must be one of raise, skip, ignore, got {nonfinite!r}")
        check_hyperparams(defaults)
        self.nonfinite = nonfinite
        self.skipped_steps = 0
        self.routes: dict[torch.Tensor, int] = {}  # parameter -> index into RULES
        self.ids: dict[torch.Tensor, int] = {}  # parameter -> its position among all parameters
        self.step_fns: dict[str, Callable] = {r.label: r.step for r in RULES}
        self._host_steps: dict[torch.Tensor, int] = {}  # step counts on the host (periods, buckets)
        self._scalars: dict[tuple, tuple[torch.Tensor, float]] = {}  # runtime values as 0-d tensors
        self._checked: dict[int, tuple] = {}  # the hyperparameters last validated, per group
        self._ids_tensors: dict[tuple, torch.Tensor] = {}
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        super().__init__(params, defaults)

    # ---- routing ----------------------------------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        where = f"param group {len(self.param_groups)}: "
        overrides = {k: v for k, v in param_group.items() if k not in ("params", "param_names")}
        unknown = [k for k in overrides if k not in HYPERPARAMS]
        if unknown:
            raise TypeError(f"{where}unknown hyperparameter(s) {', '.join(map(repr, unknown))} for spec "
                            f"'{SPEC_NAME}'; it has: {', '.join(HYPERPARAMS)}")
        check_hyperparams(overrides, where)
        super().add_param_group(param_group)
        gi = len(self.param_groups) - 1
        group = self.param_groups[gi]
        names = group.get("param_names") or [None] * len(group["params"])
        hp = {k: group[k] for k in HYPERPARAMS}
        for name, p in zip(names, group["params"]):
            label = f"'{name}'" if name else f"#{len(self.ids)} (shape {tuple(p.shape)})"
            if p.is_complex():
                raise TypeError(f"parameter {label} is complex ({p.dtype}); optimize torch.view_as_real(p)")
            self.routes[p] = self._route(p, name, gi, hp, label)
            self.ids[p] = len(self.ids)

    @staticmethod
    def _route(p: torch.Tensor, name: str | None, gi: int, hp: dict[str, Any], label: str) -> int:
        """The first rule whose selector holds for ``p``."""
        shape = tuple(p.shape)
        for i, rule in enumerate(RULES):
            if rule.uses_name and name is None:
                raise ValueError(f"rule '{rule.label}' selects parameters by name, but parameters were given "
                                 "without names: pass model.named_parameters() (or (name, tensor) pairs)")
            if rule.select(name, shape, len(shape), p.numel(), gi, hp):
                return i
        rules = ", ".join(r.label for r in RULES)
        raise ValueError(f"no rule of spec '{SPEC_NAME}' takes parameter {label} (shape {shape}); rules: {rules}")

    def rule_of(self, p: torch.Tensor) -> str:
        """The label of the rule that steps ``p``."""
        return RULES[self.routes[p]].label

    def compile(self, **options: Any) -> None:
        """Run each rule's step through ``torch.compile(**options)``. Runtime hyperparameters are
        tensor inputs, so schedulers and edits of ``param_groups`` never recompile."""
        self.step_fns = {r.label: torch.compile(r.step, **options) for r in RULES}

    # ---- the step ---------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        buckets = self._buckets()
        if not buckets:
            return loss
        grads = [[self._grad_of(p) for p in params] for _, _, params in buckets]
        if self.nonfinite != "ignore" and not _all_finite([g for gs in grads for g in gs]):
            if self.nonfinite == "skip":
                self.skipped_steps += 1
                return loss
            raise FloatingPointError("non-finite gradient (NaN or Inf); no parameter or state was changed")
        hypers = {gi: self._hypers(gi) for gi in {gi for gi, _, _ in buckets}}
        work = [self._prepare(gi, ri, params, gs, hypers[gi]) for (gi, ri, params), gs in zip(buckets, grads)]
        if any(RULES[ri].reductions for _, ri, _ in buckets):
            self._reduce(work)
        for item in work:
            self.step_fns[item["rule"].label](item["ctx"], item["grad"], item["hp"])
            self._write_back(item)
        return loss

    def _buckets(self) -> list[tuple[int, int, list[torch.Tensor]]]:
        """(group, rule, members) of this step: parameters with a gradient, by rule, group, dtype,
        device, step count and — for stacked rules — shape, in parameter order."""
        out: dict[tuple, list[torch.Tensor]] = {}
        for gi, group in enumerate(self.param_groups):
            for p in group["params"]:
                if p.grad is None or not p.numel():
                    continue
                ri = self.routes[p]
                shape = tuple(p.shape) if RULES[ri].layout == "stacked" else ()
                out.setdefault((gi, ri, p.dtype, p.device, shape, self._host_step(p)), []).append(p)
        return [(k[0], k[1], v) for k, v in out.items()]

    def _host_step(self, p: torch.Tensor) -> int:
        if p not in self._host_steps:
            st = self.state.get(p, {})
            self._host_steps[p] = int(st["step"]) if "step" in st else 0
        return self._host_steps[p]

    def _grad_of(self, p: torch.Tensor) -> torch.Tensor:
        g = p.grad
        if g.is_sparse:
            raise TypeError(f"spec '{SPEC_NAME}' does not support sparse gradients")
        return g if g.dtype == p.dtype else g.to(p.dtype)

    def _hypers(self, gi: int) -> dict[str, Any]:
        """Group ``gi``'s hyperparameters, validated when they changed since the last step."""
        group = self.param_groups[gi]
        values = {k: group[k] for k in HYPERPARAMS}
        snapshot = tuple((k, _plain(v)) for k, v in values.items())
        if self._checked.get(gi) != snapshot:
            check_hyperparams(values, f"param group {gi}: ")
            self._checked[gi] = snapshot
        return values

    def _scalar(self, key: tuple, value: Any, device: torch.device) -> torch.Tensor:
        """A runtime value as a cached 0-d tensor, refilled in place when the value changes."""
        v = float(value)
        held = self._scalars.get(key)
        if held is None:
            t = torch.full((), v, dtype=torch.float32 if device.type == "mps" else torch.float64, device=device)
        else:
            t = held[0]
            if held[1] != v:
                t.fill_(v)
        self._scalars[key] = (t, v)
        return t

    def _prepare(self, gi: int, ri: int, params: list[torch.Tensor], grads: list[torch.Tensor],
                 values: dict[str, Any]) -> dict[str, Any]:
        rule = RULES[ri]
        device, flat = params[0].device, rule.layout == "flat"
        hp: dict[str, Any] = {}
        for name in rule.hypers:
            v = values[name]
            if name in rule.runtime:
                hp[name] = (tuple(self._scalar((gi, name, i, device), x, device) for i, x in enumerate(v))
                            if isinstance(v, (tuple, list)) else self._scalar((gi, name, 0, device), v, device))
            else:
                hp[name] = _freeze(v)
        sts = [self.state[p] for p in params]
        host = self._host_step(params[0]) + 1
        scalar = torch.float32 if device.type == "mps" else torch.float64
        step = sts[0]["step"] + 1 if "step" in sts[0] else torch.ones((), dtype=scalar, device=device)
        names = [k for k in sts[0] if k != "step" and all(k in st for st in sts)]
        states = {k: _gather([st[k] for st in sts], flat) for k in names}
        ids = tuple(self.ids[p] for p in params)
        if (ids, device) not in self._ids_tensors:
            self._ids_tensors[(ids, device)] = torch.tensor(ids, dtype=torch.int64, device=device)
        periods = {(hp[t] if isinstance(t, HP) else t) for t in rule.periods}
        phases = {t: (host - 1) % t == 0 for t in periods}
        if rule.first_step:
            phases[0] = host == 1
        group = tuple(sorted(i for q, i in self.ids.items() if self.routes[q] == ri)) if rule.uses_group else ()
        created: dict[str, torch.dtype] = {}
        ctx = Ctx(layout=rule.layout, param=_gather([p.detach() for p in params], flat), step=step, states=states,
                  init_state=lambda full, like, spec: _record(created, full, spec.initial(ctx, like)),
                  ids=self._ids_tensors[(ids, device)], phases=phases, group=group)
        return {"rule": rule, "params": params, "ctx": ctx, "grad": _gather(grads, flat), "hp": hp, "step": step,
                "host": host, "created": created, "gi": gi}

    def _reduce(self, work: list[dict[str, Any]]) -> None:
        """Group reductions: a probe pass over every bucket of a rule records each reduction's
        per-parameter values; the combined values are handed to the step pass."""
        local: dict[tuple, list[torch.Tensor]] = defaultdict(list)
        for item in work:
            rule, ctx = item["rule"], item["ctx"]
            if rule.reductions:
                probe = Ctx(layout=ctx.layout, param=ctx.param, step=ctx.step, states=dict(ctx.states), ids=ctx.ids,
                            phases=ctx.phases, group=ctx.group)
                probe.probe = {}
                rule.step(probe, item["grad"], item["hp"])
                for k in range(len(rule.reductions)):
                    local[(rule.label, k)].append(probe.probe[k].reshape(-1))
        reduced: dict[tuple, torch.Tensor] = {}
        for item in work:
            rule = item["rule"]
            if rule.reductions:
                ops = [item["hp"][op] if isinstance(op, HP) else op for op in rule.reductions]
                for k, op in enumerate(ops):
                    if (rule.label, k, op) not in reduced:
                        reduced[(rule.label, k, op)] = group_combine(torch.cat(local[(rule.label, k)]), op)
                item["ctx"].reduced = [reduced[(rule.label, k, op)] for k, op in enumerate(ops)]

    def _write_back(self, item: dict[str, Any]) -> None:
        """The new parameters and states into their tensors; the step count into each state."""
        ctx, params, flat = item["ctx"], item["params"], item["rule"].layout == "flat"
        for p, new in zip(params, _members(ctx.param, params, flat)):
            p.copy_(new)
        for name, value in ctx.states.items():
            for p, new in zip(params, _members(value, params, flat)):
                st = self.state[p]
                if name in st:
                    st[name].copy_(new)
                else:
                    st[name] = new.to(item["created"].get(name, new.dtype)).clone()
        for p in params:
            self.state[p]["step"] = item["step"]
            self._host_steps[p] = item["host"]

    # ---- checkpoints ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """torch's state_dict plus ``optloom: {format, spec, hash}`` (optloom loads it as its own)."""
        sd = super().state_dict()
        sd["optloom"] = {"format": 1, "spec": SPEC_NAME, "hash": SPEC_HASH}
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state_dict of this class or of ``optloom.optimizer(spec)``; a checkpoint of another
        spec (or another version of this one) is refused."""
        meta = state_dict.get("optloom")
        if isinstance(meta, dict) and meta.get("hash") != SPEC_HASH:
            raise ValueError(f"the checkpoint was written by spec '{meta.get('spec')}' (hash {meta.get('hash')}), "
                             f"but this optimizer runs spec '{SPEC_NAME}' (hash {SPEC_HASH})")
        groups = state_dict.get("param_groups", [])
        for gi, g in enumerate(groups):
            check_hyperparams({k: g[k] for k in HYPERPARAMS if k in g}, f"param group {gi} of the checkpoint: ")
        super().load_state_dict({k: v for k, v in state_dict.items() if k != "optloom"})
        for p, st in self.state.items():
            if "step" in st:
                scalar = torch.float32 if p.device.type == "mps" else torch.float64
                st["step"] = torch.as_tensor(float(st["step"]), dtype=scalar, device=p.device)
        self._host_steps.clear()
        self._scalars.clear()
        self._checked.clear()

    @staticmethod
    def _process_value_according_to_param_policy(param: torch.Tensor, value: torch.Tensor, param_id: int,
                                                 param_groups: list[dict[Any, Any]], key: Any = None) -> torch.Tensor:
        """(torch's hook) Keep each state's own dtype when loading (torch would cast every state to
        the parameter's dtype, including integer indices and float32 states of bf16 parameters)."""
        return value if key == "step" else value.to(device=param.device)


def _gather(tensors: list[torch.Tensor], flat: bool) -> torch.Tensor:
    if flat:
        return torch.cat([t.reshape(-1) for t in tensors]) if len(tensors) > 1 else tensors[0].reshape(-1)
    return torch.stack(tensors)


def _members(buf: torch.Tensor, params: list[torch.Tensor], flat: bool) -> list[torch.Tensor]:
    if not flat:
        return list(buf.unbind(0))
    out, offset = [], 0
    for p in params:
        out.append(buf[offset: offset + p.numel()].view(p.shape))
        offset += p.numel()
    return out


def _record(created: dict[str, torch.dtype], name: str, value: torch.Tensor) -> torch.Tensor:
    created[name] = value.dtype  # a new state keeps the dtype it starts with, as in optloom
    return value


def _freeze(v: Any) -> Any:
    return tuple(_freeze(x) for x in v) if isinstance(v, (list, tuple)) else v


def _plain(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return float(v)
    return tuple(_plain(x) for x in v) if isinstance(v, (list, tuple)) else v


def _all_finite(grads: list[torch.Tensor]) -> bool:
    """One read: NaN and Inf propagate into a sum; a non-finite sum is confirmed entry by entry."""
    sums = torch.stack([g.sum().to(grads[0].device) for g in grads])
    return bool(torch.isfinite(sums).all()) or all(bool(torch.isfinite(g).all()) for g in grads)
