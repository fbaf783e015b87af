"""The checked intermediate representation: one dataflow DAG per rule.

Every node carries a *kind* — ``tensor`` (one value per parameter entry), ``scalar`` (one value
per parameter), ``runtime`` (a float hyperparameter or an expression of them: a 0-d tensor at
run time, never a recompile), ``structural`` (an int/bool/str/tuple hyperparameter: a
compile-time constant per param group; changing it rebuilds the step),
``const`` (a literal) — and, for tensors, the set of dims its members can have.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..dsl import ast as A
from ..dsl.diagnostics import NO_SPAN, Span
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


@dataclass(eq=False)
class TupleOf(Node):
    items: list[Node] = field(default_factory=list)

    def children(self) -> list[Node]:
        return list(self.items)


@dataclass(eq=False)
class Op(Node):
    """Arithmetic: ``+ - * / ** @ == != < <= > >= neg not index transpose``."""

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

    def children(self) -> list[Node]:
        return [*self.inputs, *self.args.values()]


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

    @property
    def structural(self) -> bool:
        return self.type in ("int", "bool", "str", "tuple")

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
    layout: Literal["flat", "stacked"]
    primitives: list[str]
    span: Span = NO_SPAN
    labels: dict[str, Call] = field(default_factory=dict)

    @property
    def selector_text(self) -> str:
        from ..dsl.printer import print_expr

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


def walk(root: Node) -> list[Node]:
    """All nodes reachable from ``root`` in dependency (post-)order, each once."""
    seen: set[int] = set()
    order: list[Node] = []
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for child in reversed(node.children()):
            if id(child) not in seen:
                stack.append((child, False))
    return order
