"""The primitive registry: each primitive is declared once, and everything else — the checker's
signatures and range checks, ``optloom list``, ``docs/primitives.md`` and the contract test
suite — is derived from that declaration.

A declaration is a decorated function, the *fast* (batched) implementation::

    @primitive(family="moments", state=(State("exp_avg"),), examples=("ema(0.9)",))
    def ema(ctx: Ctx, x: Tensor, beta: Beta = 0.9) -> Tensor:
        '''Exponential moving average ``s ← β s + (1−β) x``.'''
        ...

    @ema.reference
    def _(ctx, x, beta): ...      # per-parameter, straightforward, run in float64 by the tests

Parameters annotated ``Tensor`` are tensor inputs (the first one receives the piped value);
``float`` (and tuples of floats) are *runtime* arguments — a Python float, a 0-d hyperparameter
tensor or a per-parameter scalar; ``int``/``bool``/``str``/``Literal``/lists are *structural*
(compile-time constants). ``Annotated[..., Field(ge=..., lt=...)]`` declares allowed ranges.

``examples`` are calls in the language (``grad |> <example>``, or the bare call for a primitive
without tensor inputs); the contract test runs the fast implementation against the reference
for each, on fresh random inputs of one parameter: :meth:`Primitive.sample_inputs`, a standard
normal tensor of the parameter's shape per tensor input unless ``samples`` declares them
(inputs whose shapes depend on each other or on the arguments, such as a basis and the matrix
it acts on).
"""
from __future__ import annotations

import difflib
import inspect
import typing
from dataclasses import dataclass
from typing import Any, Callable, Literal, get_args, get_origin

import torch
from pydantic import Field, TypeAdapter, ValidationError

from ..kinds import structural_annotation
from ..shapes import ShapeRule, default_rule

Tensor = torch.Tensor

# argument types shared by the families
Beta = typing.Annotated[float, Field(ge=0.0, lt=1.0)]
Positive = typing.Annotated[float, Field(gt=0.0)]
NonNegative = typing.Annotated[float, Field(ge=0.0)]
Fraction = typing.Annotated[float, Field(gt=0.0, le=1.0)]
Iters = typing.Annotated[int, Field(ge=1, le=100)]  # iterations of a matrix iteration

Family = Literal["moments", "elementwise", "reductions", "normalizers", "orthogonalize", "spectral",
                 "kronecker", "subspace", "rotation", "shape", "sampling", "init", "apply", "precision"]

# the contract inputs of one parameter: samples(generator, parameter shape, bound arguments)
Samples = Callable[[torch.Generator, tuple[int, ...], dict[str, Any]], tuple[Tensor, ...]]


def sample_normal(gen: torch.Generator, shape: tuple[int, ...]) -> Tensor:
    """A float64 standard normal tensor of ``shape`` (the contract's random inputs)."""
    return torch.randn(shape, generator=gen, dtype=torch.float64)


@dataclass(frozen=True)
class State:
    """A persistent per-parameter buffer owned by a primitive call site.

    ``init(ctx, x)`` builds the initial value from the *shape* of the call's first input ``x``
    (never its values): zeros like ``x`` by default. ``dtype`` forces a dtype (``"float32"``).
    """

    name: str
    init: Callable[[Any, Tensor], Tensor] | None = None
    dtype: str | None = None
    doc: str = ""
    linear: bool = True  # transforms linearly with its input (first moments): may live in a rotated frame

    def initial(self, ctx: Any, x: Tensor) -> Tensor:
        value = torch.zeros_like(x) if self.init is None else self.init(ctx, x)
        return value.to(getattr(torch, self.dtype)) if self.dtype else value


@dataclass(frozen=True)
class Frame:
    """A primitive that opens a frame: its output is its input in another basis, the rest of the
    pipeline runs there, and the compiler maps the result back with ``leave(y, op)`` before the
    first parameter-side stage. ``op`` is the (new) value of the primitive's state ``state``.
    Stateful stages inside the frame keep their (linear) state in the parameter's frame: they
    read ``enter(S, op)`` and store ``leave(S', op)``."""

    state: str
    enter: Callable[[Tensor, Tensor], Tensor]
    leave: Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class Arg:
    name: str
    annotation: Any
    default: Any
    structural: bool
    doc_type: str

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty

    def validate(self, value: Any, item: int | None = None) -> Any:
        """Validate a known (constant) value — or, with ``item``, the value of one item of a tuple
        argument (a hyperparameter written inside a tuple literal: ``adam((b1, 0.999))``); raise
        ValueError with a readable message."""
        ann, name = self.annotation, self.name
        if item is not None:
            ann, name = _item_annotation(ann, item), f"{self.name}[{item}]"
        try:
            return _adapter(ann).validate_python(value)
        except ValidationError as e:
            msgs = "; ".join(_pretty_pydantic(err) for err in e.errors())
            raise ValueError(f"argument '{name}' {msgs} (got {show_value(value)})") from None


def _item_annotation(ann: Any, item: int) -> Any:
    """The declared type of item ``item`` of a tuple annotation (``Any`` where none is declared)."""
    while get_origin(ann) is typing.Annotated:
        ann = get_args(ann)[0]
    if get_origin(ann) is not tuple:
        return Any
    items = get_args(ann)
    if len(items) == 2 and items[1] is Ellipsis:
        return items[0]
    return items[item] if item < len(items) else Any


@dataclass
class Primitive:
    name: str
    fn: Callable[..., Any]
    family: Family
    doc: str
    inputs: tuple[str, ...]
    args: dict[str, Arg]
    state: tuple[State, ...] = ()
    elementwise: bool = True
    needs_matrix: bool = False
    reads_param: bool = False
    writes_param: bool = False
    output: Literal["tensor", "scalar"] = "tensor"
    lr_from_apply: bool = False
    ref: Callable[..., Any] | None = None
    examples: tuple[str, ...] = ()
    frame: Frame | None = None
    group: bool = False  # reads the rule's parameter group (ctx.group): samplers
    reduces_group: bool = False  # reduces one value per parameter over the rule's group (all buckets)
    samples: Samples | None = None  # the contract's inputs when a normal per tensor input won't do
    shape: ShapeRule | None = None  # the output's shape from the inputs' (optloom.shapes); see primitive()

    def reference(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Decorator: register the per-parameter reference implementation."""
        self.ref = fn
        return fn

    def __call__(self, ctx: Any, *inputs: Any, **args: Any) -> Any:
        return self.fn(ctx, *inputs, **args)

    def sample_inputs(self, gen: torch.Generator, shape: tuple[int, ...], args: dict[str, Any]) -> tuple[Tensor, ...]:
        """Fresh random tensor inputs of one parameter of ``shape`` (float64) for the contract test:
        the declared ``samples``, else a standard normal tensor of ``shape`` per tensor input."""
        if self.samples is not None:
            return self.samples(gen, shape, args)
        return tuple(sample_normal(gen, shape) for _ in self.inputs)

    @property
    def stateful(self) -> bool:
        return bool(self.state)

    @property
    def summary(self) -> str:
        return self.doc.strip().split("\n")[0] if self.doc else ""

    def signature_text(self) -> str:
        parts = list(self.inputs)
        for a in self.args.values():
            parts.append(f"{a.name}: {a.doc_type}" + ("" if a.required else f" = {show_value(a.default)}"))
        return f"{self.name}({', '.join(parts)})"


REGISTRY: dict[str, Primitive] = {}



def primitive(
    *,
    family: Family,
    state: tuple[State, ...] = (),
    elementwise: bool = True,
    needs_matrix: bool = False,
    reads_param: bool = False,
    writes_param: bool = False,
    output: Literal["tensor", "scalar"] = "tensor",
    lr_from_apply: bool = False,
    name: str | None = None,
    examples: tuple[str, ...] = (),
    group: bool = False,
    reduces_group: bool = False,
    samples: Samples | None = None,
    shape: ShapeRule | None = None,
) -> Callable[[Callable[..., Any]], Primitive]:
    """Declare a primitive; the decorated function is its batched implementation.

    ``shape`` is the output's shape rule (:mod:`optloom.shapes`: ``same``, ``scalar``, ``matrix``,
    ``param_view``, ``square(...)``, ``keep_axis(...)`` or a function of a ``ShapeCall``), which
    the checker uses to infer every value's shape. Without one: ``scalar`` for ``output="scalar"``,
    ``param_view`` for parameter-side stages, ``same`` for elementwise primitives, else ``unknown``
    (nothing is checked downstream): a primitive that changes shapes should declare its rule."""
    if family not in get_args(Family):
        raise ValueError(f"unknown primitive family {family!r} ({' | '.join(get_args(Family))})")

    def wrap(fn: Callable[..., Any]) -> Primitive:
        prim_name = name or fn.__name__.rstrip("_")
        if prim_name in REGISTRY:
            raise ValueError(f"primitive {prim_name!r} declared twice")
        hints = typing.get_type_hints(fn, include_extras=True)
        params = list(inspect.signature(fn).parameters.values())[1:]  # drop ctx
        inputs: list[str] = []
        args: dict[str, Arg] = {}
        for p in params:
            ann = hints.get(p.name, Any)
            if _is_tensor(ann):
                inputs.append(p.name)
            else:
                args[p.name] = Arg(p.name, ann, p.default, structural_annotation(ann), _type_text(ann))
        prim = Primitive(
            name=prim_name, fn=fn, family=family, doc=inspect.getdoc(fn) or "", inputs=tuple(inputs),
            args=args, state=state, elementwise=elementwise, needs_matrix=needs_matrix,
            reads_param=reads_param or writes_param, writes_param=writes_param, output=output,
            lr_from_apply=lr_from_apply, examples=examples, group=group,
            reduces_group=reduces_group, samples=samples,
            shape=shape or default_rule(output=output, elementwise=elementwise, reads_param=reads_param or writes_param),
        )
        REGISTRY[prim_name] = prim
        return prim

    return wrap


# Importing this module imports its package first, whose ``__init__`` imports every family module:
# the registry is complete before anyone can look a primitive up.

def lookup(name: str) -> Primitive | None:
    return REGISTRY.get(name)


def all_primitives() -> list[Primitive]:
    return sorted(REGISTRY.values(), key=lambda p: (p.family, p.name))


def did_you_mean(name: str, candidates: list[str]) -> str | None:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


# ---- type helpers ---------------------------------------------------------------------------

def _strip(ann: Any) -> Any:
    while get_origin(ann) is typing.Annotated:
        ann = get_args(ann)[0]
    return ann


def _is_tensor(ann: Any) -> bool:
    return _strip(ann) is torch.Tensor


def _type_text(ann: Any) -> str:
    ann = _strip(ann)
    origin = get_origin(ann)
    if origin is Literal:
        return " | ".join(repr(a).replace("'", '"') for a in get_args(ann))
    if origin is tuple:
        return "(" + ", ".join(_type_text(a) for a in get_args(ann) if a is not Ellipsis) + ")"
    if origin is list:
        return f"[{_type_text(get_args(ann)[0])}]"
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " | ".join(_type_text(a) for a in get_args(ann) if a is not type(None))
    return getattr(ann, "__name__", str(ann))


_ADAPTERS: dict[Any, TypeAdapter] = {}


def _adapter(ann: Any) -> TypeAdapter:
    key = repr(ann)
    if key not in _ADAPTERS:
        _ADAPTERS[key] = TypeAdapter(ann)
    return _ADAPTERS[key]


def _pretty_pydantic(err: dict[str, Any]) -> str:
    ctx = err.get("ctx", {})
    kind = err.get("type", "")
    table = {
        "greater_than": "must be > {gt}", "greater_than_equal": "must be >= {ge}",
        "less_than": "must be < {lt}", "less_than_equal": "must be <= {le}",
        "literal_error": "must be one of {expected}",
    }
    if kind in table:
        msg = table[kind].format(**ctx)
    else:
        msg = err.get("msg", "is invalid").lower()
    loc = [str(x) for x in err.get("loc", ()) if not isinstance(x, str) or not x.startswith(("tuple", "list"))]
    return (f"[{']['.join(loc)}] " if loc else "") + msg


def show_value(value: Any) -> str:
    """A value as the language writes it: strings quoted, ``true``/``false``, ``none``, tuples."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "(" + ", ".join(show_value(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, list):
        return "[" + ", ".join(show_value(v) for v in value) + "]"
    if value is None:
        return "none"
    return repr(value)
