"""The rule checker: resolves names, hyperparameters, ``def``s and imports against the primitive
registry and turns each rule into a typed dataflow DAG (:mod:`optloom.compiler.ir`).

All problems of a file are reported together as diagnostics; nothing is evaluated as Python.
"""
from __future__ import annotations

from typing import Any

from ..lang import ast as A
from ..lang.diagnostics import Reporter, Span
from ..primitives.registry import Primitive, all_primitives, did_you_mean, lookup
from . import ir
from .consts import ConstError, const_value
from .common import _FAILED, _UNKNOWN, _Abort, _known_value, _max_kind, _tuple_len  # noqa: F401
from .forms import FORMS, FormsMixin

HYPER_TYPES = ("float", "int", "bool", "str", "tuple")
INPUTS = ("grad", "param", "step")  # step: the 1-based step count, a runtime scalar


class RuleChecker(FormsMixin):
    """Checks one rule body in the scope of its optimizer (hyperparameters, defs)."""

    def __init__(self, rep: Reporter, hypers: dict[str, ir.HyperParam], defs: dict[str, A.Def],
                 rule: A.Rule, ndims: frozenset[int], constraints: list[ir.Constraint], used: set[str]):
        self.rep, self.hypers, self.defs, self.rule = rep, hypers, defs, rule
        self.constraints, self.used = constraints, used
        self.inputs = {n: ir.Input(kind="runtime" if n == "step" else "tensor", name=n,
                                   ndims=frozenset() if n == "step" else ndims) for n in INPUTS}
        self.calls: list[ir.Call] = []
        self.labels: dict[str, ir.Call] = {}
        self.def_stack: list[str] = []
        self.rejected: set[str] = set()  # hyperparameters whose declaration failed
        self.feedback: dict[str, ir.StateRef] = {}  # `state` declarations of the rule body
        self.writes: list[tuple[str, ir.Node]] = []  # feedback state <- final value
        self.cache_names: set[str] = set()  # state names taken by `state` and `every`
        self.periods: list[ir.Node] = []  # every(T) / restart(T) periods
        self.guard: ir.Node | None = None  # inside gate(mask, ...): the mask its calls write under
        self.restart: ir.Node | None = None  # inside restart(T, ...): T

    # ---- statements and blocks -----------------------------------------------------------------
    def block(self, block: A.Block, env: dict[str, ir.Node], track_unused: bool = True, top: bool = False) -> ir.Node:
        """Check a block; ``top``: the rule's own body, the only place feedback state may live."""
        env = dict(env)
        lets: dict[str, tuple[A.Let, ir.Node]] = {}
        for stmt in block.stmts:
            if isinstance(stmt, A.Let):
                if self.shadows(stmt.name, stmt.span, "let"):
                    continue
                try:
                    node = self.expr(stmt.value, env, bind_name=stmt.name)
                except _Abort:
                    env[stmt.name] = _FAILED  # later uses abort quietly: the error is already reported
                    continue
                env[stmt.name] = node
                lets[stmt.name] = (stmt, node)
            elif not top:
                what = "`state`" if isinstance(stmt, A.StateDecl) else "`<-`"
                self.rep.error(f"{what} belongs at the top of a rule body, not inside a def or a nested block",
                               stmt.span, "feedback state is per rule: declare and assign it in the rule itself")
            elif isinstance(stmt, A.StateDecl):
                if self.shadows(stmt.name, stmt.span, "state") or stmt.name in self.feedback:
                    if stmt.name in self.feedback:
                        self.rep.error(f"state '{stmt.name}' declared twice", stmt.span)
                    continue
                try:
                    env[stmt.name] = self.feedback[stmt.name] = self.state_decl(stmt, env)
                except _Abort:
                    env[stmt.name] = _FAILED
            else:
                self.assign(stmt, env, lets)
        result = self.expr(block.result, env)
        if result.frames and track_unused:
            result = self.leave_frames(result)
        if top:
            for name, ref in self.feedback.items():
                if env.get(name) is ref:
                    self.rep.warning(f"state '{name}' is never assigned: it keeps its initial value",
                                     ref.span, f"update it with `{name} <- ...`")
                elif env.get(name) is not _FAILED:
                    self.writes.append((name, env[name]))
        if track_unused:
            reachable = {id(n) for n in ir.walk([result, *(v for _, v in self.writes)])}
            for name, (stmt, node) in lets.items():
                if id(node) not in reachable:
                    self.rep.warning(f"binding '{name}' is never used", stmt.span)
        return result

    def shadows(self, name: str, span: Span, what: str) -> bool:
        if name in INPUTS or name in self.hypers:
            self.rep.error(f"`{what} {name}` shadows {'an input' if name in INPUTS else 'a hyperparameter'}",
                           span, "choose another name")
            return True
        return False

    # ---- expressions ---------------------------------------------------------------------------
    def expr(self, e: A.Expr, env: dict[str, ir.Node], bind_name: str | None = None) -> ir.Node:
        if isinstance(e, A.Num | A.Str | A.Bool):
            return ir.Const(kind="const", value=e.value, span=e.span)
        if isinstance(e, A.Name):
            return self.name(e, env)
        if isinstance(e, A.TupleLit | A.ListLit):
            items = [self.expr(i, env) for i in e.items]
            if isinstance(e, A.ListLit) or all(isinstance(i, ir.Const) for i in items):
                if not all(isinstance(i, ir.Const) for i in items):
                    self.rep.error("list items must be constants", e.span)
                    raise _Abort
                vals = [i.value for i in items]  # type: ignore[attr-defined]
                return ir.Const(kind="const", value=vals if isinstance(e, A.ListLit) else tuple(vals), span=e.span)
            for i in items:
                if i.kind in ("tensor", "scalar"):
                    self.rep.error("tuples hold constants or hyperparameters, not tensors", i.span)
                    raise _Abort
            return ir.TupleOf(kind=_max_kind(items), items=items, span=e.span)
        if isinstance(e, A.Call):
            return self.call(e, env, piped=None, label=None, bind_name=bind_name)
        if isinstance(e, A.Pipe):
            left = self.expr(e.left, env)
            return self.stage(e.stage, left, env, bind_name)
        if isinstance(e, A.BinOp):
            return self.binop(e, env)
        if isinstance(e, A.UnaryOp):
            v = self.expr(e.operand, env)
            if isinstance(v, ir.Const):
                try:
                    return ir.Const(kind="const", value=const_value(e), span=e.span)
                except ConstError as err:
                    self.rep.error(str(err), e.span)
                    raise _Abort from None
            return ir.Op(kind=v.kind, op="neg" if e.op == "-" else "not", operands=[v], span=e.span, ndims=v.ndims)
        if isinstance(e, A.Index):
            v, i = self.expr(e.value, env), self.expr(e.index, env)
            if not isinstance(i, ir.Const) or not isinstance(i.value, int) or isinstance(i.value, bool):
                self.rep.error("an index must be a constant integer", e.index.span)
                raise _Abort
            size = _tuple_len(v, self.hypers)
            if size is None:
                self.rep.error("only tuples can be indexed", e.value.span)
                raise _Abort
            if not -size <= i.value < size:
                self.rep.error(f"index {i.value} is out of range for a tuple of {size}", e.index.span)
                raise _Abort
            if isinstance(v, ir.Const):
                return ir.Const(kind="const", value=v.value[i.value], span=e.span)
            if isinstance(v, ir.TupleOf):
                return v.items[i.value]
            return ir.Op(kind=v.kind, op="index", operands=[v, i], span=e.span)
        if isinstance(e, A.Attr):
            v = self.expr(e.value, env)
            if e.name != "T":
                self.rep.error(f"unknown attribute '.{e.name}'", e.span, "only `.T` (transpose) exists")
                raise _Abort
            self.need_matrix(v, "`.T`", e.span)
            return ir.Op(kind="tensor", op="transpose", operands=[v], span=e.span, ndims=frozenset({2}))
        if isinstance(e, A.Match):
            self.rep.error("`~` matches parameter names and belongs in a rule's selector", e.span)
            raise _Abort
        if isinstance(e, A.Block):
            return self.block(e, env)
        raise AssertionError(e)

    def name(self, e: A.Name, env: dict[str, ir.Node]) -> ir.Node:
        if e.id in env:
            if env[e.id] is _FAILED:
                raise _Abort
            return env[e.id]
        if e.id in self.inputs and not self.def_stack:
            return self.inputs[e.id]
        if e.id in self.hypers and not self.def_stack:
            self.used.add(e.id)
            h = self.hypers[e.id]
            return ir.Hyper(kind="structural" if h.structural else "runtime", name=e.id, span=e.span)
        if e.id in self.rejected and not self.def_stack:
            raise _Abort  # its declaration already has an error
        if lookup(e.id) is not None or e.id in self.defs:
            self.rep.error(f"'{e.id}' is a {'primitive' if lookup(e.id) else 'def'}, not a value", e.span,
                           f"use it as a stage (`x |> {e.id}`) or call it (`{e.id}(x)`)")
            raise _Abort
        visible = [*env, *([] if self.def_stack else [*INPUTS, *self.hypers])]
        self.rep.error(f"unknown name '{e.id}'", e.span, did_you_mean(e.id, visible))
        raise _Abort

    def stage(self, stage: A.Stage, left: ir.Node, env: dict[str, ir.Node], bind_name: str | None) -> ir.Node:
        callee = stage.callee
        if isinstance(callee, A.Name):
            callee = A.Call(func=callee.id, span=callee.span)
            object.__setattr__(callee, "func_span", stage.callee.span)
        if isinstance(callee, A.Block):
            return self.block(callee, {**env, "_": left})
        return self.call(callee, env, piped=left, label=stage.label, bind_name=bind_name, label_span=stage.span)

    def binop(self, e: A.BinOp, env: dict[str, ir.Node]) -> ir.Node:
        if e.op in ("and", "or"):
            self.rep.error(f"`{e.op}` combines selector conditions; it has no meaning on values", e.span)
            raise _Abort
        a, b = self.expr(e.left, env), self.expr(e.right, env)
        if isinstance(a, ir.Const) and isinstance(b, ir.Const):
            try:
                return ir.Const(kind="const", value=const_value(e), span=e.span)
            except ConstError as err:
                self.rep.error(str(err), e.span)
                raise _Abort from None
        for v in (a, b):
            if isinstance(v, ir.TupleOf) or (isinstance(v, ir.Hyper) and self.hypers[v.name].type == "tuple"):
                self.rep.error("arithmetic on a tuple: index it first (e.g. `betas[0]`)", v.span)
                raise _Abort
        if e.op == "@":
            for v in (a, b):
                self.need_matrix(v, "`@`", v.span)
        kind = _max_kind([a, b])
        ndims = a.ndims if a.kind == "tensor" else b.ndims
        return ir.Op(kind=kind, op=e.op, operands=[a, b], span=e.span, ndims=ndims, frames=self.same_frame([a, b], e.span))

    def same_frame(self, values: list[ir.Node], span: Span) -> tuple[ir.Call, ...]:
        framed = {v.frames for v in values if v.frames}
        if len(framed) > 1:
            self.rep.error("this combines values from different rotated frames", span,
                           "close one frame before opening another (frames end at the first parameter-side stage)")
            raise _Abort
        return next(iter(framed), ())

    def leave_frames(self, v: ir.Node) -> ir.Node:
        """Map ``v`` back out of every frame it lives in (innermost first)."""
        for frame in reversed(v.frames):
            v = ir.Leave(kind=v.kind, span=v.span, ndims=v.ndims, frames=(), value=v, frame=frame)
        return v

    # ---- calls ---------------------------------------------------------------------------------
    def call(self, c: A.Call, env: dict[str, ir.Node], piped: ir.Node | None, label: str | None,
             bind_name: str | None, label_span: Span | None = None) -> ir.Node:
        if c.func in self.defs:
            return self.inline(self.defs[c.func], c, env, piped)
        if c.func in FORMS:
            if piped is not None:
                self.rep.error(f"`{c.func}` is a language form and takes its value as an argument, not from `|>`",
                               c.span, f"write `{FORMS[c.func]}`")
                raise _Abort
            return getattr(self, f"form_{c.func}")(c, env, bind_name)
        prim = lookup(c.func)
        if prim is None:
            names = [p.name for p in all_primitives()] + list(self.defs)
            self.rep.error(f"unknown primitive '{c.func}'", c.func_span, did_you_mean(c.func, names))
            raise _Abort
        pos = [self.expr(a, env) for a in c.args]
        if piped is None and prim.inputs and (not pos or pos[0].kind not in ("tensor", "scalar")):
            piped = self.inputs["grad"]  # a pipeline may begin with a stage: it starts from grad
        values = ([piped] if piped is not None else []) + pos
        params = [*prim.inputs, *prim.args]
        if len(values) > len(params):
            self.rep.error(f"{prim.name} takes at most {len(params) - (1 if piped is not None else 0)} "
                           f"argument(s) here, got {len(pos)}", c.span, f"signature: {prim.signature_text()}")
            raise _Abort
        bound: dict[str, tuple[ir.Node, Span]] = {p: (v, v.span) for p, v in zip(params, values)}
        for kw in c.kwargs:
            if kw.name not in params:
                self.rep.error(f"{prim.name} has no argument '{kw.name}'", kw.span,
                               did_you_mean(kw.name, params) or f"signature: {prim.signature_text()}")
                raise _Abort
            if kw.name in bound:
                self.rep.error(f"argument '{kw.name}' of {prim.name} given twice", kw.span)
                raise _Abort
            bound[kw.name] = (self.expr(kw.value, env), kw.value.span)
        node = ir.Call(kind="tensor" if prim.output == "tensor" else "scalar", prim=prim, span=c.span, label=label)
        for name in prim.inputs:
            if name not in bound:
                self.rep.error(f"{prim.name} needs a tensor input '{name}'", c.span, f"signature: {prim.signature_text()}")
                raise _Abort
            v, span = bound[name]
            if v.kind not in ("tensor", "scalar", "runtime"):
                self.rep.error(f"{prim.name}: input '{name}' must be a tensor, got a {v.kind} value", span)
                raise _Abort
            node.inputs.append(v)
        for name, arg in prim.args.items():
            if name in bound:
                node.args[name] = self.argument(prim, arg, *bound[name])
            elif arg.required:
                self.rep.error(f"{prim.name} needs argument '{name}'", c.span, f"signature: {prim.signature_text()}")
                raise _Abort
            elif not (prim.lr_from_apply and name == "lr"):
                node.args[name] = ir.Const(kind="const", value=arg.default)
        if prim.reads_param and node.inputs and node.inputs[0].frames:
            node.inputs[0] = self.leave_frames(node.inputs[0])  # frames end before the parameter
        node.frames = self.same_frame(node.inputs, c.span)
        if node.frames and any(not st.linear for st in prim.state):
            self.rep.error(f"{prim.name} keeps non-linear state, which cannot live inside a rotated frame",
                           c.func_span, f"move {prim.name} before the frame-opening stage")
            raise _Abort
        if prim.frame is not None:
            node.frames = (*node.frames, node)
        first = node.inputs[0] if node.inputs else None
        node.ndims = first.ndims if first is not None else frozenset()
        if prim.name == "as_matrix":
            bad = sorted(d for d in node.ndims if d < 2)
            if bad:
                self.rep.error(f"as_matrix needs parameters with at least 2 dims, but rule '{self.rule.label}' "
                               f"admits ndim={bad[0]}", c.func_span, "restrict the rule's selector (e.g. `ndim >= 2`)")
            node.ndims = frozenset({2})
        if prim.needs_matrix and first is not None:
            if first.kind != "tensor":
                self.rep.error(f"{prim.name} needs a matrix, got a {first.kind} value", c.func_span)
                raise _Abort
            self.need_matrix(first, prim.name, c.func_span)
        if prim.output == "scalar":
            node.ndims = frozenset()
        elif prim.elementwise and node.inputs and all(i.kind in ("scalar", "runtime") for i in node.inputs):
            # an elementwise primitive keeps the kind of its input: sqrt(v) of a per-parameter v is per-parameter
            node.kind = "scalar" if any(i.kind == "scalar" for i in node.inputs) else "runtime"
        if prim.state:
            self.name_states(node, label or bind_name)
        node.guard, node.restart = self.guard, self.restart
        if label:
            if label in self.labels:
                self.rep.error(f"stage label '{label}' used twice in rule '{self.rule.label}'", label_span or c.span)
            self.labels[label] = node
        self.calls.append(node)
        return node

    def argument(self, prim: Primitive, arg: Any, v: ir.Node, span: Span) -> ir.Node:
        if v.kind == "tensor":
            self.rep.error(f"{prim.name}: argument '{arg.name}' takes a scalar, got a tensor", span)
            raise _Abort
        if arg.structural and v.kind in ("runtime", "scalar"):
            what = f"the float hyperparameter '{v.name}'" if isinstance(v, ir.Hyper) else "a runtime value"
            self.rep.error(f"{prim.name}: argument '{arg.name}' is structural ({arg.doc_type}), but gets {what}",
                           span, "structural arguments are compile-time constants: use a literal or a hyperparameter "
                                 f"declared as `name: {arg.doc_type if arg.doc_type in HYPER_TYPES else 'int'} = ...`")
            raise _Abort
        value, hyper_names = _known_value(v, self.hypers)
        if value is not _UNKNOWN:
            try:
                arg.validate(value)
            except ValueError as err:
                via = f" (hyperparameter '{hyper_names[0]}' defaults to {value!r})" if hyper_names else ""
                self.rep.error(f"{prim.name}: {err}{via}", span)
        if isinstance(v, ir.Hyper):
            self.constraints.append(ir.Constraint(v.name, prim.name, arg, span))
        elif isinstance(v, ir.TupleOf):
            for i, item in enumerate(v.items):
                if isinstance(item, ir.Hyper):
                    self.constraints.append(ir.Constraint(item.name, prim.name, arg, span, item=i))
        return v

    def need_matrix(self, v: ir.Node, what: str, span: Span) -> None:
        small = sorted(d for d in v.ndims if d < 2)
        large = sorted(d for d in v.ndims if d > 2)
        if small:
            self.rep.error(f"{what} needs a matrix, but rule '{self.rule.label}' admits parameters with "
                           f"ndim={small[0]}", span,
                           "restrict the rule's selector (e.g. `ndim >= 2`) or send vectors to another rule")
            raise _Abort
        if large:
            self.rep.error(f"{what} needs a matrix, but rule '{self.rule.label}' admits parameters with "
                           f"ndim={large[0]}", span, "view them as matrices first: `|> as_matrix`")
            raise _Abort

    def name_states(self, node: ir.Call, base: str | None) -> None:
        taken = {n for c in self.calls for n in c.state_names.values()} | self.cache_names
        for st in node.prim.state:  # type: ignore[union-attr]
            want = st.name if base is None else (base if len(node.prim.state) == 1 else f"{base}_{st.name}")  # type: ignore[union-attr]
            name, k = want, 1
            while name in taken:
                name, k = f"{want}_{k}", k + 1
            taken.add(name)
            node.state_names[st.name] = name

    def inline(self, d: A.Def, c: A.Call, env: dict[str, ir.Node], piped: ir.Node | None) -> ir.Node:
        if d.name in self.def_stack:
            chain = " -> ".join([*self.def_stack[self.def_stack.index(d.name):], d.name])
            self.rep.error(f"def '{d.name}' is recursive ({chain})", c.span)
            raise _Abort
        values = ([piped] if piped is not None else []) + [self.expr(a, env) for a in c.args]
        names = [p.name for p in d.params]
        if len(values) > len(names):
            self.rep.error(f"def '{d.name}' takes {len(names)} argument(s), got {len(values)}", c.span)
            raise _Abort
        scope: dict[str, ir.Node] = dict(zip(names, values))
        for kw in c.kwargs:
            if kw.name not in names:
                self.rep.error(f"def '{d.name}' has no parameter '{kw.name}'", kw.span, did_you_mean(kw.name, names))
                raise _Abort
            scope[kw.name] = self.expr(kw.value, env)
        for p in d.params:
            if p.name not in scope:
                if p.default is None:
                    self.rep.error(f"def '{d.name}' needs argument '{p.name}'", c.span)
                    raise _Abort
                scope[p.name] = ir.Const(kind="const", value=const_value(p.default), span=p.default.span)
        self.def_stack.append(d.name)
        try:
            return self.block(d.body, {**scope, **{n: self.inputs[n] for n in INPUTS}}, track_unused=False)
        finally:
            self.def_stack.pop()
