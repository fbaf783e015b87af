"""A rule's dataflow DAG as straight-line Python: one statement per node, in the order optloom's
interpreter evaluates them (``lowering.interpret``), calling the primitives' batched
implementations on a bucket's :class:`Ctx`. Nodes under ``every(T, ...)`` that only the cached
value needs run inside ``if period_starts(ctx, T):``.
"""
from __future__ import annotations

from itertools import combinations
from typing import Any

from ..check import ir
from .collect import Collector, ExportError
from .pysource import docstring, literal

COMPARISONS = {"==", "!=", "<", "<=", ">", ">="}
BINARY = {"+", "-", "*", "/", "**", "@"} | COMPARISONS


class RuleWriter:
    """Writes one rule's step function; ``states`` collects the primitives whose state
    declarations the module's ``STATES`` table must hold."""

    def __init__(self, rule: ir.RuleIR, collector: Collector, taken: set[str], source: str) -> None:
        self.rule = rule
        self.col = collector
        self.taken = taken  # global names of the module: locals must not shadow them
        self.source = source
        self.expr: dict[int, str] = {}
        self.used: set[str] = set()
        self.states: dict[str, Any] = {}  # primitive name -> Primitive (stateful calls)
        self.blocks: list[tuple[tuple[str | None, ...], list[str]]] = []

    # ---- naming ----------------------------------------------------------------------------------
    def fresh(self, base: str) -> str:
        name, n = base, 1
        while name in self.used or name in self.taken or name in self.col.taken or name in ("ctx", "grad", "hp"):
            n += 1
            name = f"{base}{n}"
        self.used.add(name)
        return name

    @property
    def fn_name(self) -> str:
        return f"rule_{self.rule.label}"

    # ---- guards: every(T, ...), x ?? fallback, states that start from a value -------------------------
    def condition(self, node: ir.Node) -> str | None:
        """When a pruning node's inputs are evaluated (None: never, in the step's main pass)."""
        if isinstance(node, ir.Every):
            return f"period_starts(ctx, {self.period(node.period)})"  # type: ignore[arg-type]
        if isinstance(node, ir.Op) and node.op == "??":
            return f'hp["{node.operands[0].name}"] is None'  # type: ignore[attr-defined]
        return None

    @staticmethod
    def prunes(node: ir.Node) -> bool:
        return isinstance(node, ir.Every) or (isinstance(node, ir.Op) and node.op == "??") or \
            (isinstance(node, ir.StateRef) and getattr(node, "value", None) is not None)

    def guards(self) -> dict[int, tuple[str | None, ...]]:
        """For each node, the conditions under which it runs: those of the pruning nodes whose
        inputs alone need it. Refuses a rule whose evaluation order would differ between phases."""
        roots = self.rule.roots
        full = ir.walk(roots)
        pruning = [n for n in full if self.prunes(n)]
        if not pruning:
            return {}
        alone = {id(e): {id(n) for n in ir.walk(roots, prune=lambda n, e=e: n is e)} for e in pruning}
        under = {id(n): [e for e in pruning if id(n) not in alone[id(e)] and n is not e] for n in full}
        always = [e for e in pruning if isinstance(e, ir.StateRef)]
        optional = [e for e in pruning if not isinstance(e, ir.StateRef)]
        subsets = [s for k in range(len(optional) + 1) for s in combinations(optional, k)] if len(optional) <= 4 \
            else [()] + [(e,) for e in optional] + [tuple(optional)]
        for subset in subsets:  # reads and writes of the parameter keep optloom's order; the rest may move
            ids = {id(e) for e in [*subset, *always]}
            pruned = [id(n) for n in ir.walk(roots, prune=lambda n: id(n) in ids) if self.effectful(n)]
            expected = [id(n) for n in full if self.effectful(n) and not ids & {id(e) for e in under[id(n)]}]
            if pruned != expected:
                raise ExportError(f"rule '{self.rule.label}': its every(...)/?? values share work with the rest of "
                                  "the rule in an order the export cannot reproduce")
        return {k: tuple(self.condition(e) for e in v) for k, v in under.items()}

    @staticmethod
    def effectful(node: ir.Node) -> bool:
        """Does ``node`` read or write the parameter, so that its place in the evaluation order
        matters? (A stateful call touches only its own state; feedback state is read as it was at
        the start of the step and written at the end; a cached value has its own state.)"""
        if isinstance(node, ir.Call):
            return node.prim is None or node.prim.reads_param or node.prim.writes_param
        return isinstance(node, ir.Input) and node.name == "param"

    def period(self, node: ir.Node) -> str:
        return literal(node.value) if isinstance(node, ir.Const) else f'hp["{node.name}"]'  # type: ignore[attr-defined]

    # ---- emission ---------------------------------------------------------------------------------
    def emit(self, guard: tuple[str | None, ...], line: str) -> None:
        if None in guard:
            return  # never evaluated in the main pass (a state's initial value)
        if self.blocks and self.blocks[-1][0] == guard:
            self.blocks[-1][1].append(line)
        else:
            self.blocks.append((guard, [line]))

    def write(self) -> str:
        for node in ir.walk(self.rule.roots):  # every global the function calls, named before any local
            if isinstance(node, ir.Call) and node.prim is not None:
                self.col.primitive(node.prim)
            elif isinstance(node, ir.StateRef) and node.init is not None:
                self.col.primitive(node.init)
        if getattr(self.rule, "first_step", False):
            self.initial_values()
        guards = self.guards()
        for node in ir.walk(self.rule.roots):
            self.node(node, guards.get(id(node), ()))
        for name, node in self.rule.writes:
            self.emit((), f'ctx.states["{name}"] = {self.expr[id(node)]}')
        body: list[str] = []
        for guard, lines in self.blocks:
            if not guard:
                body += [f"    {ln}" for ln in lines]
                continue
            body.append(f"    if {' and '.join(guard)}:")  # type: ignore[arg-type]
            body += [f"        {ln}" if not ln.startswith(("else:", "    ")) else f"    {ln}" for ln in lines]
        r = self.rule
        text = self.rule_text()
        doc = (f"{text}\n\n" if text else f"{r.label}: {r.selector_text}\n\n") + \
            f"Layout: {'flat (elementwise)' if r.elementwise else 'stacked (one batch per shape)'}; " \
            f"state: {', '.join(s.name for s in r.states) or 'none'}."
        head = f"def {self.fn_name}(ctx: Ctx, grad: torch.Tensor, hp: dict) -> None:"
        return "\n".join([head, docstring(doc, "    "), *(body or ["    pass"])]) + "\n"

    def initial_values(self) -> None:
        """On a parameter's first step, states that start from a value get it before anything else
        runs, each computed afresh from the step's values, in declaration order."""
        refs = [n for n in ir.walk(self.rule.roots) if isinstance(n, ir.StateRef) and n.value is not None]
        for ref in refs:
            saved, self.expr = self.expr, {}
            for node in ir.walk(ref.value):  # type: ignore[arg-type]
                self.node(node, ("first_step(ctx)",))
            dtype = f", {literal(ref.dtype)}" if ref.dtype else ""
            self.emit(("first_step(ctx)",), f'start_state(ctx, "{ref.name}", {self.expr[id(ref.value)]}{dtype})')
            self.expr = saved
        self.blocks.append(((), []))

    def rule_text(self) -> str:
        return rule_source(self.rule, self.source)

    def node(self, node: ir.Node, guard: tuple[str | None, ...]) -> None:
        key, ex = id(node), self.expr.__getitem__
        if isinstance(node, ir.Input):
            if node.name == "param":
                v = self.fresh("param")
                self.emit(guard, f"{v} = ctx.param")
                self.expr[key] = v
            else:
                self.expr[key] = {"grad": "grad", "step": "ctx.step"}[node.name]
        elif isinstance(node, ir.Const):
            self.expr[key] = literal(node.value)
        elif isinstance(node, ir.Hyper):
            self.expr[key] = f'hp["{node.name}"]'
        elif isinstance(node, ir.TupleOf):
            items = [ex(id(i)) for i in node.items]
            self.expr[key] = f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
        elif isinstance(node, ir.Op):
            self.assign(node, guard, "t", self.op(node))
        elif isinstance(node, ir.StateRef) and getattr(node, "value", None) is not None:
            self.assign(node, guard, f"state_{node.name}", f'ctx.states["{node.name}"]')
        elif isinstance(node, ir.StateRef):
            init = self.col.primitive(node.init)  # type: ignore[arg-type]
            extra = "".join(f", {k}={literal(v)}" for k, v in node.init_args.items())
            dtype = f", dtype={literal(node.dtype)}" if node.dtype else ""
            self.assign(node, guard, f"state_{node.name}",
                        f'state_ref(ctx, "{node.name}", {init}, {ex(id(node.like))}{dtype}{extra})')
        elif isinstance(node, ir.Every):
            v = self.fresh(f"cached_{node.name}")
            inner = (*guard, self.condition(node))
            then = f'{v} = cache(ctx, "{node.name}", {ex(id(node.value))})'
            if self.blocks and self.blocks[-1][0] == inner:
                self.blocks[-1][1].append(then)
            else:
                self.emit(inner, then)
            self.blocks[-1][1].extend(["else:", f'    {v} = ctx.states["{node.name}"]'])
            self.blocks.append(((), []))  # closed: what follows starts a new block
            self.expr[key] = v
        elif isinstance(node, ir.Gate):
            then = ex(id(node.then))
            other = ex(id(node.other)) if node.other is not None else f"torch.zeros_like({then})"
            self.assign(node, guard, "gated", f"torch.where(ctx.bcast({ex(id(node.mask))}, {then}), {then}, {other})")
        elif isinstance(node, ir.Leave):
            frame = node.frame
            leave = self.col.obj(frame.prim.frame.leave)  # type: ignore[union-attr]
            state = frame.state_names[frame.prim.frame.state]  # type: ignore[union-attr]
            self.assign(node, guard, "back", f'{leave}({ex(id(node.value))}, ctx.states["{state}"])')
        elif isinstance(node, ir.Call):
            self.call(node, guard)
        else:
            raise ExportError(f"rule '{self.rule.label}': cannot export IR node {type(node).__name__}")

    def assign(self, node: ir.Node, guard: tuple[str | None, ...], base: str, value: str) -> None:
        v = self.fresh(base)
        self.emit(guard, f"{v} = {value}")
        self.expr[id(node)] = v

    def operand(self, node: ir.Node) -> str:
        text = self.expr[id(node)]
        return f"({text})" if text.startswith("-") else text

    def op(self, node: ir.Op) -> str:
        ops = [self.operand(o) if id(o) in self.expr else "None" for o in node.operands]
        if node.op == "neg":
            return f"-{ops[0]}"
        if node.op == "not":
            return f"not_({ops[0]})"
        if node.op == "??":
            hp = self.expr[id(node.operands[0])]
            fallback = self.expr.get(id(node.operands[1]), "None")
            return f"{hp} if {hp} is not None else {fallback}"
        if node.op == "index":
            return f"{ops[0]}[{self.expr[id(node.operands[1])]}]"
        if node.op == "transpose":
            return f"{ops[0]}.transpose(-2, -1)"
        if node.op not in BINARY:
            raise ExportError(f"rule '{self.rule.label}': cannot export operator {node.op!r}")
        a, b = ops
        ka, kb = (o.kind for o in node.operands)
        if ka == "scalar" and kb == "tensor":
            a = f"ctx.bcast({a}, {b})"
        elif kb == "scalar" and ka == "tensor":
            b = f"ctx.bcast({b}, {a})"
        if node.op in COMPARISONS:  # tensors compare to 0/1 in the operands' dtype, as optloom
            return f"as_number({a} {node.op} {b}, {a}, {b})"
        return f"{a} {node.op} {b}"

    def call(self, node: ir.Call, guard: tuple[str | None, ...]) -> None:
        prim = node.prim
        assert prim is not None
        fn = self.col.primitive(prim)
        inputs = [self.expr[id(i)] for i in node.inputs]
        args = {k: self.expr[id(v)] for k, v in node.args.items()}
        kw = ", ".join(f"{k}={v}" for k, v in args.items())
        plain = ", ".join(["ctx", *inputs, *([kw] if kw else [])])
        names = literal(dict(node.state_names))
        if prim.state:
            self.states[prim.name] = prim
        specs = f'STATES["{prim.name}"]' if prim.state else "{}"
        frames = [f for f in node.frames if f is not node]
        if node.reduction is not None:
            if node.restart is not None or node.guard is not None or len(inputs) != 1:
                raise ExportError(f"rule '{self.rule.label}': a group reduction inside gate/restart is not exported")
            value = f"group_value(ctx, {node.reduction}, {fn}, {inputs[0]}{', ' + kw if kw else ''})"
        elif node.restart is not None or node.guard is not None:
            extra = ""
            if node.restart is not None:
                extra += f", period={self.period(node.restart)}"
            if node.guard is not None:
                extra += f", mask={self.expr[id(node.guard)]}" + (", writes_param=True" if prim.writes_param else "")
            value = f"scoped_call(ctx, {fn}, {names}, {specs}, [{', '.join(inputs)}], {{{self.kwdict(args)}}}{extra})"
        elif prim.state and frames:
            table = ", ".join(f'({self.col.obj(f.prim.frame.enter)}, {self.col.obj(f.prim.frame.leave)}, '  # type: ignore[union-attr]
                              f'"{f.state_names[f.prim.frame.state]}")' for f in frames)  # type: ignore[union-attr]
            value = f"in_frames(ctx, {fn}, {names}, {specs}, [{table}], [{', '.join(inputs)}], {{{self.kwdict(args)}}})"
        else:
            if prim.state:
                self.emit(guard, f"ctx.bind({names}, {specs})")
            value = f"{fn}({plain})"
        label = next((k for k, c in self.rule.labels.items() if c is node), None)
        self.assign(node, guard, label or f"{fn.rstrip('_')}_out", value)

    @staticmethod
    def kwdict(args: dict[str, str]) -> str:
        return ", ".join(f'"{k}": {v}' for k, v in args.items())


def rule_source(rule: ir.RuleIR, source: str) -> str:
    """The rule's text in the spec (dedented), or "" when its place is unknown."""
    span = rule.span
    lines = source.splitlines()[span.line - 1: span.end_line] if span.line >= 1 and source else []
    if not any(ln.strip() for ln in lines):
        return ""
    indent = min(len(ln) - len(ln.lstrip()) for ln in lines if ln.strip())
    return "\n".join(ln[indent:] for ln in lines)
