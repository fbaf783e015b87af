"""``optloom.compile(spec) -> Program``: a checked optimizer, ready to inspect or instantiate."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from ..lang import ast as A
from ..lang.diagnostics import Diagnostic, Reporter, SpecError
from ..lang.loader import load, resolve_spec, split_optimizer
from ..lang.printer import canonical_hash, print_module
from ..primitives.registry import lookup
from . import ir
from .defs import check_def_names
from .optimizer import check_optimizer
from .selectors import ParamInfo, evaluate, uses_name


@dataclass
class Program:
    """A checked optimizer spec. ``hyperparams``, ``rules`` and states are plain data."""

    ir: ir.OptimizerIR
    hash: str
    canonical: str
    warnings: list[Diagnostic] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.ir.name

    @property
    def hyperparams(self) -> dict[str, ir.HyperParam]:
        return self.ir.hyperparams

    @property
    def rules(self) -> list[ir.RuleIR]:
        return self.ir.rules

    def defaults(self) -> dict[str, Any]:
        return {k: h.default for k, h in self.hyperparams.items()}

    def route(self, info: ParamInfo, hypers: dict[str, Any]) -> ir.RuleIR | None:
        """The first rule whose selector holds for this parameter."""
        for rule in self.rules:
            if rule.selector is not None and info.name is None and uses_name(rule.selector):
                raise ValueError(
                    f"rule '{rule.label}' selects parameters by name, but parameters were given without names: "
                    "pass model.named_parameters() (or (name, tensor) pairs)")
            if evaluate(rule.selector, info, hypers):
                return rule
        return None

    def validate_hyperparams(self, values: dict[str, Any], where: str = "") -> None:
        """Type- and range-check hyperparameter values (overrides, param-group values)."""
        for key, value in values.items():
            if key not in self.hyperparams:
                continue
            h = self.hyperparams[key]
            _check_type(h, value, where)
        for c in self.ir.constraints:
            if c.hyper not in values:
                continue
            value = values[c.hyper]
            if value is None and self.hyperparams[c.hyper].optional:
                continue  # unset: the spec's `??` or the argument decides
            try:
                c.arg.validate(float(value) if _is_tensor(value) else value, c.item)
            except ValueError as e:
                raise ValueError(f"{where}hyperparameter '{c.hyper}' = {value!r} is invalid for {c.prim}: {e} "
                                 f"(used at {c.span})") from None

    def state_bytes(self, params: Iterable[Any]) -> int:
        """Persistent optimizer state, in bytes, for these parameters (what ``state_dict`` holds)."""
        from ..lowering.states import predict_state_bytes  # lowering needs torch: imported when asked

        return predict_state_bytes(self, params)

    def describe(self) -> str:
        lines = [f"optimizer {self.name}  (spec hash {self.hash})", "hyperparameters:"]
        for h in self.hyperparams.values():
            kind = "structural" if h.structural else "runtime"
            lines.append(f"  {h.name}: {h.type}{'?' if h.optional else ''} = {h.default!r}  [{kind}]")
        lines.append("rules:")
        for r in self.rules:
            lines.append(f"  {r.label}: {r.selector_text}")
            lines.append(f"    {'elementwise' if r.elementwise else 'matrix'}; primitives: {', '.join(r.primitives)}")
            lines.append(f"    state: {', '.join(s.name for s in r.states) or '(none)'}")
        return "\n".join(lines)


def _is_tensor(v: Any) -> bool:
    """A tensor (a 0-d learning rate, say), known by its methods: the checker does not import torch."""
    return callable(getattr(v, "numel", None)) and callable(getattr(v, "is_floating_point", None))


def _check_type(h: ir.HyperParam, value: Any, where: str) -> None:
    if value is None and h.optional:
        return
    ok = {
        "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
        or (_is_tensor(v) and v.numel() == 1 and v.is_floating_point()),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "bool": lambda v: isinstance(v, bool),
        "str": lambda v: isinstance(v, str),
        "tuple": lambda v: isinstance(v, (tuple, list)) and (h.default is None or len(v) == len(h.default)),
    }[h.type]
    if not ok(value):
        length = f" of length {len(h.default)}" if h.type == "tuple" and h.default is not None else ""
        raise TypeError(f"{where}hyperparameter '{h.name}' must be {h.type}{length}"
                        f"{' or None' if h.optional else ''}, got {value!r}")


def compile(spec: str, name: str | None = None) -> Program:
    """Parse and check a spec -> :class:`Program`. ``spec`` is a shipped file name (``muon``), a
    shipped optimizer name (``auon_head``), a .opt path, ``FILE.opt:NAME`` / ``SHIPPED:NAME`` or
    spec text; ``name`` picks one optimizer of a file with several (default: the first)."""
    spec, name = split_optimizer(spec, name)
    source, file = resolve_spec(spec)
    return compile_text(source, file, name)


def compile_text(source: str, file: str, name: str | None = None) -> Program:
    """:func:`compile` of spec text read from ``file`` (imports resolve beside it)."""
    loaded = load(source, file)
    rep = Reporter(source)
    _check_module_names(rep, loaded.module)
    opts = loaded.module.optimizers
    if not opts:
        rep.error("no `optimizer` in this spec", A.Module().span.model_copy(update={"file": file}))
        rep.raise_if_failed()
    chosen = [o for o in opts if o.name == name] if name else opts
    if not chosen:
        rep.error(f"no optimizer named '{name}' (found: {', '.join(o.name for o in opts)})", opts[0].span)
        rep.raise_if_failed()
    for d in loaded.module.defs:
        check_def_names(rep, d, loaded.defs)
    results = [check_optimizer(rep, o, loaded.defs, source, file) for o in opts]
    rep.diagnostics = _dedupe(rep.diagnostics)
    rep.raise_if_failed()
    result = next(r for r in results if r.name == chosen[0].name)
    return Program(result, canonical_hash(loaded.module), print_module(loaded.module),
                   [d for d in rep.diagnostics if d.severity == "warning"])


def check_source(source: str, file: str) -> list[Diagnostic]:
    """All diagnostics (errors and warnings) of a spec text; never raises for a bad spec."""
    try:
        loaded = load(source, file)
    except SpecError as e:
        return e.diagnostics
    rep = Reporter(source)
    _check_module_names(rep, loaded.module)
    if not loaded.module.optimizers and not loaded.module.defs:
        rep.error("no optimizer in this spec (and no def)", loaded.module.span.model_copy(update={"file": file}),
                  "a spec holds `optimizer NAME(hyperparameters) { rules }`")
    for d in loaded.module.defs:
        check_def_names(rep, d, loaded.defs)
    for o in loaded.module.optimizers:
        check_optimizer(rep, o, loaded.defs, source, file)
    return _dedupe(rep.diagnostics)


def _dedupe(diags: list[Diagnostic]) -> list[Diagnostic]:
    """A def's error is found both on its own and where it is inlined: report it once."""
    seen: set[tuple] = set()
    out = []
    for d in diags:
        key = (d.severity, d.message, d.span)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


def _check_module_names(rep: Reporter, m: A.Module) -> None:
    seen: dict[str, A.Node] = {}
    for item in m.items:
        if isinstance(item, A.Import):
            continue
        if item.name in seen:
            rep.error(f"'{item.name}' is defined twice (first at line {seen[item.name].span.line})", item.span)
        seen[item.name] = item
        if isinstance(item, A.Def) and lookup(item.name) is not None:
            rep.error(f"def '{item.name}' has the name of a primitive", item.span, "choose another name")
        if isinstance(item, A.Def) and not item.params:
            rep.error(f"def '{item.name}' needs an input parameter (the value piped into it)", item.span,
                      f"e.g. `def {item.name}(x) = x |> ...`")
