"""The primitive registry: each primitive is declared once, and everything else — the checker's
signatures and range checks, ``optloom list``, ``docs/primitives.md`` and the contract test
suite — is derived from that declaration.

A declaration is a decorated function, the *fast* (batched) implementation::

    @primitive(family="moments", state=(State("exp_avg"),), elementwise=True)
    def ema(ctx: Ctx, x: Tensor, beta: Beta = 0.9) -> Tensor:
        '''Exponential moving average ``s ← β s + (1−β) x`` (algorithms.md §0).'''
        ...

    @ema.reference
    def _(ctx, x, beta): ...      # per-parameter, straightforward, run in float64 by the tests

Parameters annotated ``Tensor`` are tensor inputs (the first one receives the piped value);
``float`` (and tuples of floats) are *runtime* arguments — a Python float, a 0-d hyperparameter
tensor or a per-parameter scalar; ``int``/``bool``/``str``/``Literal``/lists are *structural*
(compile-time constants). ``Annotated[..., Field(ge=..., lt=...)]`` declares allowed ranges.
"""
from __future__ import annotations

import difflib
import inspect
import typing
from dataclasses import dataclass
from typing import Any, Callable, Literal, get_args, get_origin

import torch
from pydantic import Field, TypeAdapter, ValidationError

Tensor = torch.Tensor

Beta = typing.Annotated[float, Field(ge=0.0, lt=1.0)]
Positive = typing.Annotated[float, Field(gt=0.0)]
NonNegative = typing.Annotated[float, Field(ge=0.0)]

Family = Literal["moments", "elementwise", "reductions", "orthogonalize", "spectral", "subspace",
                 "shape", "apply", "routing", "math", "init", "sampling"]


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

    def validate(self, value: Any) -> Any:
        """Validate a known (constant) value; raise ValueError with a readable message."""
        try:
            return _adapter(self.annotation).validate_python(value)
        except ValidationError as e:
            msgs = "; ".join(_pretty_pydantic(err) for err in e.errors())
            raise ValueError(f"argument '{self.name}' {msgs} (got {_show(value)})") from None


@dataclass
class Primitive:
    name: str
    fn: Callable[..., Any]
    family: str
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

    def reference(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Decorator: register the per-parameter reference implementation."""
        self.ref = fn
        return fn

    def __call__(self, ctx: Any, *inputs: Any, **args: Any) -> Any:
        return self.fn(ctx, *inputs, **args)

    @property
    def stateful(self) -> bool:
        return bool(self.state)

    @property
    def summary(self) -> str:
        return self.doc.strip().split("\n")[0] if self.doc else ""

    def signature_text(self) -> str:
        parts = list(self.inputs)
        for a in self.args.values():
            parts.append(f"{a.name}: {a.doc_type}" + ("" if a.required else f" = {_show(a.default)}"))
        return f"{self.name}({', '.join(parts)})"


REGISTRY: dict[str, Primitive] = {}

_STRUCTURAL_BASES = (int, bool, str)


def primitive(
    *,
    family: str,
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
) -> Callable[[Callable[..., Any]], Primitive]:
    """Declare a primitive; the decorated function is its batched implementation."""

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
                args[p.name] = Arg(p.name, ann, p.default, _is_structural(ann), _type_text(ann))
        prim = Primitive(
            name=prim_name, fn=fn, family=family, doc=inspect.getdoc(fn) or "", inputs=tuple(inputs),
            args=args, state=state, elementwise=elementwise, needs_matrix=needs_matrix,
            reads_param=reads_param or writes_param, writes_param=writes_param, output=output,
            lr_from_apply=lr_from_apply, examples=examples, group=group,
            reduces_group=reduces_group,
        )
        REGISTRY[prim_name] = prim
        return prim

    return wrap


def lookup(name: str) -> Primitive | None:
    _load_library()
    return REGISTRY.get(name)


def all_primitives() -> list[Primitive]:
    _load_library()
    return sorted(REGISTRY.values(), key=lambda p: (p.family, p.name))


def did_you_mean(name: str, candidates: list[str]) -> str | None:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


_loaded = False


def _load_library() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        import optloom.primitives  # noqa: F401  (registers the library modules)


# ---- type helpers ---------------------------------------------------------------------------

def _strip(ann: Any) -> Any:
    while get_origin(ann) is typing.Annotated:
        ann = get_args(ann)[0]
    return ann


def _is_tensor(ann: Any) -> bool:
    return _strip(ann) is torch.Tensor


def _is_structural(ann: Any) -> bool:
    ann = _strip(ann)
    origin = get_origin(ann)
    if ann in _STRUCTURAL_BASES or origin is Literal or origin is list:
        return True
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return all(_is_structural(a) or a is type(None) for a in get_args(ann))
    if origin is tuple:
        return all(_is_structural(a) for a in get_args(ann) if a is not Ellipsis)
    return False


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


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "(" + ", ".join(_show(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if value is None:
        return "none"
    return repr(value)
