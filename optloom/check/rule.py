"""The rule checker: resolves names, hyperparameters and ``def``s against the primitive registry
and turns one rule body into a typed dataflow DAG (:mod:`.ir`). Feedback state is handled by
:mod:`.statements`, the language forms by :mod:`.forms`, primitive calls by :mod:`.calls`; the
shapes of the finished DAG are checked by :mod:`.shapes`.

All problems of a file are reported together as diagnostics; nothing is evaluated as Python.
"""
from __future__ import annotations

from ..lang import ast as A
from ..lang.diagnostics import Reporter, Span
from ..primitives.registry import all_primitives, did_you_mean, lookup
from . import ir
from .calls import primitive_call
from .consts import ConstError, const_value
from .common import FAILED, INPUTS, Abort, StateNames, max_kind, tuple_len
from .forms import FORMS
from .interface import Env
from .statements import STATEMENTS


class RuleChecker:
    """Checks one rule body in the scope of its optimizer (hyperparameters, defs); implements the
    :class:`~.interface.Checker` interface the form handlers use."""

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
        self.state_names = StateNames()
        self.periods: list[ir.Node] = []  # every(T) / restart(T) periods
        self.guard: ir.Node | None = None  # inside gate(mask, ...): the mask its calls write under
        self.restart: ir.Node | None = None  # inside restart(T, ...): T
        self.assignments: list[tuple[ir.StateRef, ir.Node, Span]] = []  # every `NAME <- expr`, checked
        self.bound: list[ir.Node] = []  # every value bound by a `let` (used or not: its shapes are checked)
        self.kept: list[ir.StateRef] = []  # states written but never read: stored all the same

    # ---- statements and blocks -----------------------------------------------------------------
    def block(self, block: A.Block, env: Env, track_unused: bool = True, top: bool = False) -> ir.Node:
        """Check a block; ``top``: the rule's own body, the only place feedback state may live."""
        env = dict(env)
        lets: dict[str, tuple[A.Let, ir.Node]] = {}
        for stmt in block.stmts:
            if isinstance(stmt, A.Let):
                if self.shadows(stmt.name, stmt.span, "let"):
                    continue
                try:
                    node = self.expr(stmt.value, env, bind_name=stmt.name)
                except Abort:
                    env[stmt.name] = FAILED  # later uses abort quietly: the error is already reported
                    continue
                env[stmt.name] = node
                lets[stmt.name] = (stmt, node)
                self.bound.append(node)
            elif not top:
                what = "`state`" if isinstance(stmt, A.StateDecl) else "`<-`"
                self.rep.error(f"{what} belongs at the top of a rule body, not inside a def or a nested block",
                               stmt.span, "feedback state is per rule: declare and assign it in the rule itself")
            else:
                STATEMENTS[type(stmt)](self, stmt, env, lets)
        result = self.expr(block.result, env)
        if result.frames and track_unused:
            result = self.leave_frames(result)
        if top:
            self.finish_states(result, env)
        if track_unused:
            reachable = {id(n) for n in ir.walk([result, *(v for _, v in self.writes)])}
            for name, (stmt, node) in lets.items():
                if id(node) not in reachable:
                    self.rep.warning(f"binding '{name}' is never used", stmt.span)
        return result

    def finish_states(self, result: ir.Node, env: Env) -> None:
        """The final value of each feedback state is stored; a state never assigned (unless it
        snapshots a first-step value), or never read before it is assigned, is reported (the latter
        is stored all the same)."""
        for name, ref in self.feedback.items():
            if env.get(name) is ref and ref.value is not None:
                continue  # a snapshot of a first-step value (Prodigy's `state p0 = param`): kept as is
            if env.get(name) is ref:
                self.rep.warning(f"state '{name}' is never assigned: it keeps its initial value",
                                 ref.span, f"update it with `{name} <- ...`")
            elif env.get(name) is not FAILED:
                self.writes.append((name, env[name]))
        read = {id(n) for n in ir.walk([result, *(v for _, v in self.writes)])}
        for name, ref in self.feedback.items():
            if env.get(name) not in (ref, FAILED) and id(ref) not in read:
                self.kept.append(ref)
                self.rep.warning(f"state '{name}' is written but never read: no step uses the value the step "
                                 "before stored", ref.span, f"it is kept in state_dict(); to use it, read `{name}` "
                                 f"before `{name} <- ...` (or make it a `let` if it needs no memory)")

    def usable(self, v: ir.Node, span: Span) -> None:
        """Refuse a value that may be none: an optional hyperparameter, or `none` itself."""
        if isinstance(v, ir.Hyper) and v.optional:
            self.rep.error(f"hyperparameter '{v.name}' may be unset (none): it has no value to compute with",
                           span, f"give a fallback for when it is unset: `{v.name} ?? value`, or pass it to an "
                                 "argument that accepts none")
            raise Abort
        if isinstance(v, ir.Const) and v.value is None and v is not FAILED:
            self.rep.error("`none` is not a value to compute with", span,
                           "it is the default of an optional hyperparameter (`x: float? = none`) or an argument "
                           "that accepts none")
            raise Abort

    def shadows(self, name: str, span: Span, what: str) -> bool:
        """Report and return True when ``name`` would shadow an input or a hyperparameter."""
        if name in INPUTS or name in self.hypers:
            self.rep.error(f"`{what} {name}` shadows {'an input' if name in INPUTS else 'a hyperparameter'}",
                           span, "choose another name")
            return True
        return False

    # ---- expressions ---------------------------------------------------------------------------
    def expr(self, e: A.Expr, env: Env, bind_name: str | None = None) -> ir.Node:
        if isinstance(e, A.Num | A.Str | A.Bool):
            return ir.Const(kind="const", value=e.value, span=e.span)
        if isinstance(e, A.NoneLit):
            return ir.Const(kind="const", value=None, span=e.span)
        if isinstance(e, A.Name):
            return self.name(e, env)
        if isinstance(e, A.TupleLit | A.ListLit):
            items = [self.expr(i, env) for i in e.items]
            if isinstance(e, A.ListLit) or all(isinstance(i, ir.Const) for i in items):
                if not all(isinstance(i, ir.Const) for i in items):
                    self.rep.error("list items must be constants", e.span)
                    raise Abort
                vals = [i.value for i in items]  # type: ignore[attr-defined]
                return ir.Const(kind="const", value=vals if isinstance(e, A.ListLit) else tuple(vals), span=e.span)
            for i, item in zip(items, e.items):
                self.usable(i, item.span)
                if i.kind in ("tensor", "scalar"):
                    self.rep.error("tuples hold constants or hyperparameters, not tensors", i.span)
                    raise Abort
            return ir.TupleOf(kind=max_kind(items), items=items, span=e.span)
        if isinstance(e, A.Call):
            return self.call(e, env, piped=None, label=None, bind_name=bind_name)
        if isinstance(e, A.Pipe):
            left = self.call(e.left, env, head=True) if isinstance(e.left, A.Call) else self.expr(e.left, env)
            return self.stage(e.stage, left, env, bind_name)
        if isinstance(e, A.BinOp):
            return self.binop(e, env)
        if isinstance(e, A.UnaryOp):
            v = self.expr(e.operand, env)
            self.usable(v, e.operand.span)
            if isinstance(v, ir.Const):
                try:
                    return ir.Const(kind="const", value=const_value(e), span=e.span)
                except ConstError as err:
                    self.rep.error(str(err), e.span)
                    raise Abort from None
            return ir.Op(kind=v.kind, op="neg" if e.op == "-" else "not", operands=[v], span=e.span, ndims=v.ndims)
        if isinstance(e, A.Index):
            v, i = self.expr(e.value, env), self.expr(e.index, env)
            self.usable(v, e.value.span)
            if not isinstance(i, ir.Const) or not isinstance(i.value, int) or isinstance(i.value, bool):
                self.rep.error("an index must be a constant integer", e.index.span)
                raise Abort
            size = tuple_len(v, self.hypers)
            if size is None:
                self.rep.error("only tuples can be indexed", e.value.span)
                raise Abort
            if not -size <= i.value < size:
                self.rep.error(f"index {i.value} is out of range for a tuple of {size}", e.index.span)
                raise Abort
            if isinstance(v, ir.Const):
                return ir.Const(kind="const", value=v.value[i.value], span=e.span)
            if isinstance(v, ir.TupleOf):
                return v.items[i.value]
            return ir.Op(kind=v.kind, op="index", operands=[v, i], span=e.span)
        if isinstance(e, A.Attr):
            v = self.expr(e.value, env)
            if e.name != "T":
                self.rep.error(f"unknown attribute '.{e.name}'", e.span, "only `.T` (transpose) exists")
                raise Abort
            self.need_matrix(v, "`.T`", e.span)
            return ir.Op(kind="tensor", op="transpose", operands=[v], span=e.span, ndims=frozenset({2}))
        if isinstance(e, A.Match):
            self.rep.error("`~` matches parameter names and belongs in a rule's selector", e.span)
            raise Abort
        if isinstance(e, A.Block):
            return self.block(e, env)
        raise AssertionError(e)

    def name(self, e: A.Name, env: Env) -> ir.Node:
        if e.id in env:
            if env[e.id] is FAILED:
                raise Abort
            return env[e.id]
        if e.id in self.inputs and not self.def_stack:
            return self.inputs[e.id]
        if e.id in self.hypers and not self.def_stack:
            self.used.add(e.id)
            h = self.hypers[e.id]
            return ir.Hyper(kind="structural" if h.structural else "runtime", name=e.id, span=e.span,
                            optional=h.optional)
        if e.id in self.rejected and not self.def_stack:
            raise Abort  # its declaration already has an error
        if lookup(e.id) is not None or e.id in self.defs:
            self.rep.error(f"'{e.id}' is a {'primitive' if lookup(e.id) else 'def'}, not a value", e.span,
                           f"use it as a stage (`x |> {e.id}`) or call it (`{e.id}(x)`)")
            raise Abort
        visible = [*env, *([] if self.def_stack else [*INPUTS, *self.hypers])]
        self.rep.error(f"unknown name '{e.id}'", e.span, did_you_mean(e.id, visible))
        raise Abort

    def stage(self, stage: A.Stage, left: ir.Node, env: Env, bind_name: str | None) -> ir.Node:
        callee = stage.callee
        if isinstance(callee, A.Name):
            callee = A.Call(func=callee.id, span=callee.span, func_span=callee.span)
        if isinstance(callee, A.Block):
            return self.block(callee, {**env, "_": left})
        return self.call(callee, env, piped=left, label=stage.label, bind_name=bind_name, label_span=stage.span)

    def binop(self, e: A.BinOp, env: Env) -> ir.Node:
        if e.op in ("and", "or"):
            self.rep.error(f"`{e.op}` combines selector conditions; it has no meaning on values", e.span)
            raise Abort
        if e.op == "??":
            return self.coalesce(e, env)
        a, b = self.expr(e.left, env), self.expr(e.right, env)
        self.usable(a, e.left.span)
        self.usable(b, e.right.span)
        if isinstance(a, ir.Const) and isinstance(b, ir.Const):
            try:
                return ir.Const(kind="const", value=const_value(e), span=e.span)
            except ConstError as err:
                self.rep.error(str(err), e.span)
                raise Abort from None
        for v, side in ((a, e.left), (b, e.right)):
            if isinstance(v, ir.TupleOf) or (isinstance(v, ir.Hyper) and self.hypers[v.name].type == "tuple") or \
                    isinstance(v, ir.Const) and isinstance(v.value, tuple):
                self.rep.error("arithmetic on a tuple: index it first (e.g. `betas[0]`)", side.span)
                raise Abort
        if e.op == "@":
            for v, side in ((a, e.left), (b, e.right)):
                self.need_matrix(v, "`@`", side.span)
        kind = max_kind([a, b])
        ndims = a.ndims if a.kind == "tensor" else b.ndims
        return ir.Op(kind=kind, op=e.op, operands=[a, b], span=e.span, ndims=ndims, frames=self.same_frame([a, b], e.span))

    def coalesce(self, e: A.BinOp, env: Env) -> ir.Node:
        """``x ?? fallback``: the optional hyperparameter ``x``, or ``fallback`` when it is unset."""
        a = self.expr(e.left, env)
        if not (isinstance(a, ir.Hyper) and a.optional):
            what = f"hyperparameter '{a.name}' is not optional" if isinstance(a, ir.Hyper) else \
                "its left side is not a hyperparameter"
            self.rep.error(f"`??` gives a fallback for an optional hyperparameter, but {what}", e.left.span,
                           "declare it optional: `x: float? = none`")
            raise Abort
        b = self.expr(e.right, env)
        self.usable(b, e.right.span)
        return ir.Op(kind=max_kind([a, b]), op="??", operands=[a, b], span=e.span, ndims=b.ndims, frames=b.frames)

    def same_frame(self, values: list[ir.Node], span: Span) -> tuple[ir.Call, ...]:
        framed = {v.frames for v in values if v.frames}
        if len(framed) > 1:
            self.rep.error("this combines values from different rotated frames", span,
                           "close one frame before opening another (frames end at the first parameter-side stage)")
            raise Abort
        return next(iter(framed), ())

    def leave_frames(self, v: ir.Node) -> ir.Node:
        """Map ``v`` back out of every frame it lives in (innermost first)."""
        for frame in reversed(v.frames):
            v = ir.Leave(kind=v.kind, span=v.span, ndims=v.ndims, frames=(), value=v, frame=frame)
        return v

    def scoped(self, e: A.Expr, env: Env, *, guard: ir.Node | None = None,
               restart: ir.Node | None = None) -> ir.Node:
        """Check ``e`` with the calls it makes written under ``guard`` (inside a gate) or restarted every
        ``restart`` steps (inside a restart); the enclosing scope is restored afterwards."""
        saved = self.guard, self.restart
        self.guard = guard if guard is not None else self.guard
        self.restart = restart if restart is not None else self.restart
        try:
            return self.expr(e, env)
        finally:
            self.guard, self.restart = saved

    # ---- calls ---------------------------------------------------------------------------------
    def call(self, c: A.Call, env: Env, piped: ir.Node | None = None, label: str | None = None,
             bind_name: str | None = None, label_span: Span | None = None, head: bool = False) -> ir.Node:
        """A call of a def (inlined), a language form or a primitive; ``piped``: the value of ``|>``;
        ``head``: the call is the first stage of a pipeline (it may start from ``grad``)."""
        if c.func in self.defs:
            return self.inline(self.defs[c.func], c, env, piped)
        if c.func in FORMS:
            if piped is not None:
                self.rep.error(f"`{c.func}` is a language form and takes its value as an argument, not from `|>`",
                               c.span, f"write `{FORMS[c.func].usage}`")
                raise Abort
            return FORMS[c.func].check(self, c, env, bind_name)
        prim = lookup(c.func)
        if prim is None:
            names = [p.name for p in all_primitives()] + list(self.defs)
            self.rep.error(f"unknown primitive '{c.func}'", c.func_span, did_you_mean(c.func, names))
            raise Abort
        return primitive_call(self, prim, c, env, piped, label, bind_name, label_span, head)

    def need_matrix(self, v: ir.Node, what: str, span: Span) -> None:
        small = sorted(d for d in v.ndims if d < 2)
        large = sorted(d for d in v.ndims if d > 2)
        if small:
            self.rep.error(f"{what} needs a matrix, but rule '{self.rule.label}' admits parameters with "
                           f"ndim={small[0]}", span,
                           "restrict the rule's selector (e.g. `ndim >= 2`) or send vectors to another rule")
            raise Abort
        if large:
            self.rep.error(f"{what} needs a matrix, but rule '{self.rule.label}' admits parameters with "
                           f"ndim={large[0]}", span, "view them as matrices first: `|> as_matrix`")
            raise Abort

    def inline(self, d: A.Def, c: A.Call, env: Env, piped: ir.Node | None) -> ir.Node:
        if d.name in self.def_stack:
            chain = " -> ".join([*self.def_stack[self.def_stack.index(d.name):], d.name])
            self.rep.error(f"def '{d.name}' is recursive ({chain})", c.span)
            raise Abort
        values = ([piped] if piped is not None else []) + [self.expr(a, env) for a in c.args]
        names = [p.name for p in d.params]
        if len(values) > len(names):
            self.rep.error(f"def '{d.name}' takes {len(names)} argument(s), got {len(values)}", c.span)
            raise Abort
        scope: Env = dict(zip(names, values))
        for kw in c.kwargs:
            if kw.name not in names:
                self.rep.error(f"def '{d.name}' has no parameter '{kw.name}'", kw.span, did_you_mean(kw.name, names))
                raise Abort
            scope[kw.name] = self.expr(kw.value, env)
        for p in d.params:
            if p.name not in scope:
                if p.default is None:
                    self.rep.error(f"def '{d.name}' needs argument '{p.name}'", c.span)
                    raise Abort
                scope[p.name] = ir.Const(kind="const", value=const_value(p.default), span=p.default.span)
        self.def_stack.append(d.name)
        try:
            return self.block(d.body, {**scope, **{n: self.inputs[n] for n in INPUTS}}, track_unused=False)
        finally:
            self.def_stack.pop()
