"""The checked intermediate representation: one dataflow DAG per rule.

Every node carries a *kind* — ``tensor`` (one value per parameter entry), ``scalar`` (one value
per parameter), ``runtime`` (a float hyperparameter or an expression of them: a 0-d tensor at
run time, never a recompile), ``structural`` (an int/bool/str/tuple hyperparameter: a
compile-time constant per param group; changing it rebuilds the step),
``const`` (a literal) — and, for tensors, the set of dims its members can have.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Literal

from ..lang import ast as A
from ..lang.diagnostics import NO_SPAN, Span
from ..lang.printer import print_expr
from ..primitives.registry import Primitive

Kind = Literal["tensor", "scalar", "runtime", "structural", "const"]
KIND_ORDER = {"const": 0, "structural": 1, "runtime": 2, "scalar": 3, "tensor": 4}


@dataclass(eq=False)
class Node:
    kind: Kind
    span: Span = field(default=NO_SPAN, repr=False)
    ndims: frozenset[int] = frozenset()
    frames: tuple["Call", ...] = ()  # open frames (e.g. ARO's rotation) this value lives in

    def children(self) -> list["Node"]:
        return []


@dataclass(eq=False)
class Input(Node):
    name: str = "grad"  # grad | param


@dataclass(eq=False)
class Const(Node):
    value: Any = None


@dataclass(eq=False)
class Hyper(Node):
    name: str = ""
    optional: bool = False  # declared `name: T? = ...`: may be none (unset)


@dataclass(eq=False)
class TupleOf(Node):
    items: list[Node] = field(default_factory=list)

    def children(self) -> list[Node]:
        return list(self.items)


@dataclass(eq=False)
class Op(Node):
    """Arithmetic: ``+ - * / ** @ == != < <= > >= neg not index transpose``, and ``??`` (an
    optional hyperparameter, its first operand, or the second when it is unset)."""

    op: str = "+"
    operands: list[Node] = field(default_factory=list)

    def children(self) -> list[Node]:
        return list(self.operands)


@dataclass(eq=False)
class Call(Node):
    prim: Primitive | None = None
    inputs: list[Node] = field(default_factory=list)
    args: dict[str, Node] = field(default_factory=dict)
    state_names: dict[str, str] = field(default_factory=dict)  # local -> unique per rule
    label: str | None = None
    guard: Node | None = None  # inside gate(mask, ...): state and parameter writes kept where mask holds
    restart: Node | None = None  # inside restart(T, ...): T; its state starts afresh every T steps
    reduction: int | None = None  # a group reduction: its index among the rule's reductions (see check.finish)

    def children(self) -> list[Node]:
        return [*self.inputs, *self.args.values(), *([self.guard] if self.guard is not None else [])]


@dataclass(eq=False)
class StateRef(Node):
    """Feedback state ``name`` as it was at the start of the step (``state NAME = init``).
    Either ``init`` is an initializer primitive applied to ``like``, of which it reads only the
    shape (the buffer is allocated with it), or the state starts from ``value``: an expression
    computed on the parameter's first step, before anything else runs."""

    name: str = ""
    init: Primitive | None = None
    init_args: dict[str, Any] = field(default_factory=dict)
    like: Node | None = None
    dtype: str | None = None
    value: Node | None = None

    def children(self) -> list[Node]:
        return [self.value if self.value is not None else self.like]  # type: ignore[list-item]


@dataclass(eq=False)
class Every(Node):
    """``every(T, value)``: ``value`` is computed on steps 1, T+1, 2T+1, … and cached in state
    ``name``; on the other steps its subgraph does not run."""

    period: Node | None = None  # a structural int
    value: Node | None = None
    name: str = ""

    def children(self) -> list[Node]:
        return [self.value]  # type: ignore[list-item]


@dataclass(eq=False)
class Gate(Node):
    """``gate(mask, then, else)``: per parameter, ``then`` where ``mask`` holds, else ``other``
    (zeros when absent). Calls made only by a branch carry the branch's mask as their guard."""

    mask: Node | None = None
    then: Node | None = None
    other: Node | None = None

    def children(self) -> list[Node]:
        return [n for n in (self.mask, self.then, self.other) if n is not None]


@dataclass(eq=False)
class Leave(Node):
    """Map a value out of the frame opened by ``frame`` (a Call of a frame-opening primitive)."""

    value: Node | None = None
    frame: Call | None = None

    def children(self) -> list[Node]:
        return [self.value, self.frame]  # type: ignore[list-item]


@dataclass
class HyperParam:
    name: str
    type: str  # float | int | bool | str | tuple
    default: Any
    span: Span = NO_SPAN
    optional: bool = False  # `name: T? = ...`: the value may be None (unset)

    @property
    def structural(self) -> bool:
        """Known when the spec is checked: ints, bools, strings, tuples (their length and form) and
        optional hyperparameters (whether they are set). A tuple of floats may still reach the step
        graph as runtime values (see :func:`optloom.lowering.hypers.runtime_values`)."""
        return self.optional or self.type in ("int", "bool", "str", "tuple")

    @property
    def runtime(self) -> bool:
        return not self.structural


@dataclass
class StateInfo:
    name: str
    primitive: str
    doc: str = ""


@dataclass
class RuleIR:
    label: str
    selector: A.Expr | None
    result: Node
    states: list[StateInfo]
    elementwise: bool  # every node acts entry by entry: lowering may run it on a flat bucket
    primitives: list[str]
    span: Span = NO_SPAN
    labels: dict[str, Call] = field(default_factory=dict)
    writes: list[tuple[str, Node]] = field(default_factory=list)  # feedback state <- final value
    periods: list[Node] = field(default_factory=list)  # the T of every `every`/`restart`, in order
    kept: list[StateRef] = field(default_factory=list)  # states written but never read: stored all the same

    @cached_property
    def reductions(self) -> list[Call]:
        """The rule's group reductions (across buckets), in index order (computed once: read every step)."""
        found = [n for n in walk(self.roots) if isinstance(n, Call) and n.reduction is not None]
        return sorted(found, key=lambda c: c.reduction)  # type: ignore[arg-type, return-value]

    @cached_property
    def uses_group(self) -> bool:
        """Some primitive reads the rule's parameter group (its graphs depend on the group); once."""
        return any(isinstance(n, Call) and n.prim is not None and n.prim.group for n in walk(self.roots))

    @cached_property
    def hyper_names(self) -> frozenset[str]:
        """Hyperparameters the rule's graph reads, periods included (they key the graphs); once."""
        names = {n.name for n in walk(self.roots) if isinstance(n, Hyper)}
        return frozenset(names | {p.name for p in self.periods if isinstance(p, Hyper)})

    @cached_property
    def runtime_args_only(self) -> frozenset[str]:
        """Hyperparameters used only as runtime arguments of primitive calls (never baked by a
        primitive, a period, an operator or a tuple): a tuple of floats among them may be fed to
        the step graph at run time. Computed once."""
        nodes = walk(self.roots)
        everywhere = {n.name for n in nodes if isinstance(n, Hyper)}
        as_runtime_arg = {v.name for c in nodes if isinstance(c, Call) and c.prim is not None
                          for k, v in c.args.items() if isinstance(v, Hyper) and not c.prim.args[k].structural}
        elsewhere = {v.name for n in nodes if not isinstance(n, Call) for v in n.children() if isinstance(v, Hyper)}
        elsewhere |= {v.name for c in nodes if isinstance(c, Call) for v in [*c.inputs, c.guard, c.restart]
                      if isinstance(v, Hyper)}
        elsewhere |= {v.name for c in nodes if isinstance(c, Call) and c.prim is not None
                      for k, v in c.args.items() if isinstance(v, Hyper) and c.prim.args[k].structural}
        elsewhere |= {p.name for p in self.periods if isinstance(p, Hyper)}
        elsewhere |= {n.name for n in nodes if isinstance(n, Hyper) and n.optional}
        return frozenset((everywhere & as_runtime_arg) - elsewhere)

    @cached_property
    def first_step(self) -> bool:
        """Some state starts from a value computed on the first step (its graphs depend on it); once."""
        return any(isinstance(n, StateRef) and n.value is not None for n in walk(self.roots))

    @property
    def roots(self) -> list[Node]:
        """What one step computes: the result, the final value of each feedback state, and the
        states nothing reads (so that they are stored)."""
        return [self.result, *(v for _, v in self.writes), *self.kept]

    @property
    def selector_text(self) -> str:
        return "*" if self.selector is None else print_expr(self.selector)


@dataclass
class Constraint:
    """A hyperparameter passed directly to a primitive argument with a declared range."""

    hyper: str
    prim: str
    arg: Any
    span: Span
    item: int | None = None  # index into a tuple hyperparameter


@dataclass
class OptimizerIR:
    name: str
    hyperparams: dict[str, HyperParam]
    rules: list[RuleIR]
    constraints: list[Constraint]
    source: str
    file: str
    span: Span = NO_SPAN


def walk(root: Node | list[Node], prune: Callable[[Node], bool] | None = None) -> list[Node]:
    """All nodes reachable from ``root`` (or several roots) in dependency (post-)order, each once.
    ``prune(node)`` true: the node is kept but its children are not visited through it."""
    seen: set[int] = set()
    order: list[Node] = []
    roots = root if isinstance(root, list) else [root]
    stack: list[tuple[Node, bool]] = [(r, False) for r in reversed(roots)]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        if prune is not None and prune(node):
            continue
        for child in reversed(node.children()):
            if id(child) not in seen:
                stack.append((child, False))
    return order
