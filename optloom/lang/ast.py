"""AST of the optloom language: pydantic models carrying source spans, and the one walker
(:func:`walk`) and rewriter (:func:`rewrite`) over them.

Equality ignores spans, so ``parse(print(ast)) == ast`` compares structure only.
"""
from __future__ import annotations

from typing import Annotated, Callable, Iterator, Literal, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Field

from .diagnostics import NO_SPAN, Span


class Node(BaseModel):
    model_config = ConfigDict(frozen=True)
    span: Span = Field(default=NO_SPAN, exclude=True, repr=False)

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.model_dump() == other.model_dump()  # type: ignore[union-attr]

    def __hash__(self) -> int:
        return hash(repr(self.model_dump()))


class Num(Node):
    kind: Literal["num"] = "num"
    value: float | int
    is_int: bool


class Str(Node):
    kind: Literal["str"] = "str"
    value: str


class Bool(Node):
    kind: Literal["bool"] = "bool"
    value: bool


class NoneLit(Node):
    """``none``: an optional hyperparameter's unset value."""

    kind: Literal["none"] = "none"


class Name(Node):
    kind: Literal["name"] = "name"
    id: str


class TupleLit(Node):
    kind: Literal["tuple"] = "tuple"
    items: list["Expr"]


class ListLit(Node):
    kind: Literal["list"] = "list"
    items: list["Expr"]


class KwArg(Node):
    name: str
    value: "Expr"


class Call(Node):
    kind: Literal["call"] = "call"
    func: str
    args: list["Expr"] = []
    kwargs: list[KwArg] = []
    func_span: Span = Field(default=NO_SPAN, exclude=True, repr=False)


BinOpName = Literal["+", "-", "*", "/", "@", "**", "==", "!=", "<", "<=", ">", ">=", "and", "or", "??"]


class BinOp(Node):
    kind: Literal["binop"] = "binop"
    op: BinOpName
    left: "Expr"
    right: "Expr"


class UnaryOp(Node):
    kind: Literal["unary"] = "unary"
    op: Literal["-", "not"]
    operand: "Expr"


class Match(Node):
    """``subject ~ "regex"`` (a selector on parameter names)."""

    kind: Literal["match"] = "match"
    subject: "Expr"
    pattern: str


class Index(Node):
    kind: Literal["index"] = "index"
    value: "Expr"
    index: "Expr"


class Attr(Node):
    kind: Literal["attr"] = "attr"
    value: "Expr"
    name: str


class Stage(Node):
    """One stage of a pipeline: a call, a bare name or a block, with an optional label."""

    label: str | None = None
    callee: Union[Call, Name, "Block"]


class Pipe(Node):
    """``left |> stage``: the stage is applied to ``left`` (its first input)."""

    kind: Literal["pipe"] = "pipe"
    left: "Expr"
    stage: Stage


class Let(Node):
    kind: Literal["let"] = "let"
    name: str
    value: "Expr"


class StateDecl(Node):
    """``state NAME[: dtype] = init`` — explicit feedback state, persists across steps."""

    kind: Literal["state"] = "state"
    name: str
    dtype: str | None = None
    init: "Expr"


class Assign(Node):
    """``NAME <- expr`` — writes the next value of a feedback state."""

    kind: Literal["assign"] = "assign"
    name: str
    value: "Expr"


Stmt = Annotated[Union[Let, StateDecl, Assign], Field(discriminator="kind")]


class Block(Node):
    kind: Literal["block"] = "block"
    stmts: list[Stmt] = []
    result: "Expr"


Expr = Annotated[
    Union[Num, Str, Bool, NoneLit, Name, TupleLit, ListLit, Call, BinOp, UnaryOp, Match, Index, Attr, Pipe, Block],
    Field(discriminator="kind"),
]


class Param(Node):
    """A hyperparameter (of an optimizer) or a parameter (of a def)."""

    name: str
    type: str | None = None
    default: Expr | None = None


class Rule(Node):
    label: str
    selector: Expr | None  # None: catch-all (``*`` or no selector)
    body: Block


class Def(Node):
    kind: Literal["def"] = "def"
    name: str
    params: list[Param]
    body: Block


class Optimizer(Node):
    kind: Literal["optimizer"] = "optimizer"
    name: str
    params: list[Param]
    rules: list[Rule]


class Import(Node):
    kind: Literal["import"] = "import"
    path: str


Item = Annotated[Union[Import, Def, Optimizer], Field(discriminator="kind")]


class Module(Node):
    items: list[Item] = []
    file: str = Field(default="<spec>", exclude=True)

    @property
    def optimizers(self) -> list[Optimizer]:
        return [i for i in self.items if isinstance(i, Optimizer)]

    @property
    def defs(self) -> list[Def]:
        return [i for i in self.items if isinstance(i, Def)]

    @property
    def imports(self) -> list[Import]:
        return [i for i in self.items if isinstance(i, Import)]


for _m in list(globals().values()):
    if isinstance(_m, type) and issubclass(_m, Node) and _m is not Node:
        _m.model_rebuild()


def children(node: Node) -> list[Node]:
    """The nodes directly below ``node``, in source order."""
    out: list[Node] = []
    for name in type(node).model_fields:
        value = getattr(node, name)
        if isinstance(value, Node):
            out.append(value)
        elif isinstance(value, list):
            out.extend(v for v in value if isinstance(v, Node))
    return out


def walk(node: Node) -> Iterator[Node]:
    """``node`` and every node below it, parents before children, in source order (no recursion)."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(children(n)))


N = TypeVar("N", bound=Node)


def rewrite(node: N, fn: Callable[[Node], Node]) -> N:
    """Bottom-up rewrite: the children first, then ``fn`` on the node rebuilt from them (nodes
    are frozen: changed nodes are new copies, unchanged subtrees are shared)."""
    updates = {}
    for name in type(node).model_fields:
        value = getattr(node, name)
        if isinstance(value, Node):
            new = rewrite(value, fn)
            if new is not value:
                updates[name] = new
        elif isinstance(value, list):
            items = [rewrite(v, fn) if isinstance(v, Node) else v for v in value]
            if any(a is not b for a, b in zip(items, value)):
                updates[name] = items
    return fn(node.model_copy(update=updates) if updates else node)  # type: ignore[return-value]
