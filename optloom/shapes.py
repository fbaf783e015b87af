"""Symbolic shapes: what a value's shape is, in terms of its parameter's dims, before any tensor
exists — the domain of the checker's shape inference (:mod:`optloom.check.shapes`) and of the
shape rule each primitive declares (``@primitive(shape=...)``). Torch-free.

A :class:`Dim` is ``coef · p[i] · p[j] · …`` — a constant times a product of the parameter's dims
(by index, in order) — or unknown; a shape is a tuple of them (``None``: not even the rank is
known). One number per parameter (a per-parameter scalar, a hyperparameter) has shape ``()``.
Two dims are *equal* when they are the same product, *different* when they are different
products (``m`` and ``n`` differ: the rule admits non-square matrices), and unknown otherwise.

A shape rule maps a :class:`ShapeCall` (the input shapes and the arguments known when the spec is
checked) to the output shape, or raises :class:`ShapeError`. The standard rules: :func:`same`
(elementwise: the inputs' broadcast shape), :func:`scalar` (one number per parameter),
:func:`matrix` (a matrix function: the shape of its matrix — or batch of matrices — input),
:func:`param_view` (the parameter's shape, or a view of it from ``as_matrix``), :func:`unknown`
(nothing is checked after it: a primitive declared without a rule) and the factories
:func:`square` and :func:`keep_axis`, and the rules of a few primitives.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class Dim:
    """``coef`` times the product of the parameter's dims ``factors`` (indices, in order), or
    unknown (``known=False``)."""

    coef: int = 1
    factors: tuple[int, ...] = ()
    known: bool = True

    def __mul__(self, other: "Dim") -> "Dim":
        if not (self.known and other.known):
            return UNKNOWN
        return Dim(self.coef * other.coef, self.factors + other.factors)

    @property
    def is_one(self) -> bool:
        return self.known and self.coef == 1 and not self.factors

    def text(self, names: list[str]) -> str:
        if not self.known:
            return "?"
        parts = ([str(self.coef)] if self.coef != 1 or not self.factors else []) + [names[i] for i in self.factors]
        return "·".join(parts)


UNKNOWN = Dim(known=False)
ONE = Dim()
Shape = tuple[Dim, ...]
UNKNOWN_ARG = object()  # an argument whose value is not known when the spec is checked


def const(n: int) -> Dim:
    return Dim(int(n))


def param_dim(i: int) -> Dim:
    return Dim(1, (i,))


def product(dims: tuple[Dim, ...] | list[Dim]) -> Dim:
    out = ONE
    for d in dims:
        out = out * d
    return out


def param_shape(ndim: int) -> Shape:
    """The symbolic shape of a parameter with ``ndim`` dims."""
    return tuple(param_dim(i) for i in range(ndim))


def equal(a: Dim, b: Dim) -> bool | None:
    """True: the same size for every parameter; False: different products; None: unknown."""
    if not (a.known and b.known):
        return None
    return a.coef == b.coef and sorted(a.factors) == sorted(b.factors)


class ShapeError(ValueError):
    """A shape rule's refusal; the checker reports it at the call, with ``hint``."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


def dim_names(ndim: int) -> list[str]:
    """How messages name a parameter's dims: ``(n,)``, ``(m, n)``, ``(d0, d1, d2)``."""
    return {1: ["n"], 2: ["m", "n"]}.get(ndim, [f"d{i}" for i in range(ndim)])


def show(shape: Shape | None, ndim: int) -> str:
    """A shape as messages print it, with the dims of a parameter of ``ndim`` dims."""
    if shape is None:
        return "(?)"
    names = dim_names(ndim)
    items = [d.text(names) for d in shape]
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def broadcast(shapes: list[Shape | None], ndim: int) -> Shape | None:
    """The broadcast shape of ``shapes`` (numpy rules; a dim of 1 stretches), or ShapeError."""
    known = [s for s in shapes if s is not None]
    if len(known) < len(shapes):
        return None
    out: list[Dim] = []
    for k in range(1, max((len(s) for s in known), default=0) + 1):
        dim = ONE
        for s in known:
            if k > len(s):
                continue
            d = s[-k]
            if dim.is_one:
                dim = d
            elif d.is_one:
                continue
            elif equal(dim, d) is False:
                raise ShapeError("shapes " + " and ".join(show(s, ndim) for s in known) + " do not broadcast",
                                 "transpose one side (`.T`), or reduce it to a row or column (`row_mean`, …)")
            elif not dim.known:
                dim = d  # an unknown dim is 1 or the other: the other
        out.append(dim)
    return tuple(reversed(out))


def is_view_of(u: Shape | None, p: Shape) -> bool:
    """Whether ``u`` is ``p`` with neighbouring dims merged (what ``as_matrix`` gives) — or not
    known well enough to tell. Dims of size 1 are ignored."""
    if u is None or any(not d.known for d in u):
        return True
    factors = [f for d in u for f in d.factors]
    coef = math.prod(d.coef for d in u)
    return coef == math.prod(d.coef for d in p) and factors == [f for d in p for f in d.factors]


@dataclass(frozen=True)
class ShapeCall:
    """What a shape rule sees: the primitive's name, its tensor inputs' shapes (in declaration
    order; ``()`` for a per-parameter scalar), the arguments known when the spec is checked
    (:data:`UNKNOWN_ARG` otherwise) and the parameter's shape."""

    name: str
    inputs: tuple[Shape | None, ...]
    args: dict[str, Any] = field(default_factory=dict)
    param: Shape = ()

    @property
    def ndim(self) -> int:
        return len(self.param)

    def show(self, shape: Shape | None) -> str:
        return show(shape, self.ndim)

    def matrix(self, i: int = 0) -> Shape | None:
        """Input ``i``, which must be a matrix (or a batch of matrices)."""
        s = self.inputs[i] if i < len(self.inputs) else None
        if s is not None and len(s) < 2:
            raise ShapeError(f"{self.name} needs a matrix, got shape {self.show(s)}",
                             "view the value as a matrix first (`|> as_matrix`)")
        return s


ShapeRule = Callable[[ShapeCall], "Shape | None"]


def same(c: ShapeCall) -> Shape | None:
    """Elementwise: the broadcast shape of the tensor inputs."""
    return _broadcast_inputs(c) if c.inputs else None


def scalar(c: ShapeCall) -> Shape:
    """One number per parameter (the tensor inputs must broadcast together)."""
    if len(c.inputs) > 1:
        _broadcast_inputs(c)
    return ()


def _broadcast_inputs(c: ShapeCall) -> Shape | None:
    try:
        return broadcast(list(c.inputs), c.ndim)
    except ShapeError as err:
        raise ShapeError(f"{c.name}: the inputs' {err}", err.hint) from None


def matrix(c: ShapeCall) -> Shape | None:
    """A matrix function: the shape of its (batch of) matrix input."""
    return c.matrix(0)


def unknown(c: ShapeCall) -> None:
    """Not declared: the output shape is unknown, so nothing is checked after it."""
    return None


def param_view(c: ShapeCall) -> Shape | None:
    """A parameter-side stage: the update has the parameter's shape or a view of it that merges
    neighbouring dims (``as_matrix``); it passes through unchanged."""
    u = c.inputs[0] if c.inputs else None
    if u is not None and not is_view_of(u, c.param):
        what = "is one number per parameter" if u == () else f"has shape {c.show(u)}"
        raise ShapeError(f"{c.name}: the update {what}, but the parameter has shape {c.show(c.param)}",
                         "an update must have the parameter's shape (or be `as_matrix`'s view of it)")
    return u


def square(side_arg: str = "side") -> ShapeRule:
    """``(…, m, m)`` when the argument ``side_arg`` is ``"rows"``, ``(…, n, n)`` when ``"cols"``."""
    def rule(c: ShapeCall) -> Shape | None:
        s = c.matrix(0)
        side = c.args.get(side_arg, UNKNOWN_ARG)
        if s is None or side not in ("rows", "cols"):
            return None
        d = s[-2] if side == "rows" else s[-1]
        return (*s[:-2], d, d)
    rule.__doc__ = f"A square matrix of the rows (``{side_arg} = \"rows\"``) or columns of the input."
    return rule


def keep_axis(axis: int) -> ShapeRule:
    """A reduction along ``axis`` of a matrix (or batch of matrices) that keeps it as a dim of 1:
    ``keep_axis(-1)`` gives a column ``(…, m, 1)`` (one value per row), ``keep_axis(-2)`` a row
    ``(…, 1, n)`` (one value per column)."""
    def rule(c: ShapeCall) -> Shape | None:
        s = c.matrix(0)
        if s is None:
            return None
        out = list(s)
        out[axis] = ONE
        return tuple(out)
    rule.__doc__ = f"The matrix input's shape with axis {axis} reduced to 1."
    return rule


def outer_rule(c: ShapeCall) -> Shape | None:
    """``outer(x, y)``: ``(m, n)`` of an m- and an n-vector, or ``(…, m, n)`` of a column
    ``(…, m, 1)`` or row ``(…, 1, m)`` and a column or row of n."""
    sides = []
    for s in c.inputs:
        if s is None:
            return None
        if len(s) == 1:
            sides.append(((), s[0]))
        elif len(s) >= 2 and (s[-1].is_one or s[-2].is_one):
            sides.append((s[:-2], s[-2] if s[-1].is_one else s[-1]))
        elif len(s) >= 2 and not (s[-1].known and s[-2].known):
            return None
        else:
            raise ShapeError(f"outer needs two vectors, or a column or row of a matrix each; got shape {c.show(s)}",
                             "reduce a matrix to a column or row first (e.g. `row_mean`, `col_mean`)")
    (lead_x, m), (lead_y, n) = sides
    lead = broadcast([lead_x, lead_y], c.ndim)
    return None if lead is None else (*lead, m, n)


def as_matrix_rule(c: ShapeCall) -> Shape | None:
    """``as_matrix``: ``(d0, d1·d2·…)`` (``flatten``), ``(d0·…·d_{k−3}, d_{k−2}, d_{k−1})``
    (``batch``); ``split`` cuts the rows into equal blocks; a vector ``(n,)`` is ``(n, 1)``
    (``vectors = "column"``) or ``(1, n)`` (``"row"``)."""
    s = c.inputs[0] if c.inputs else None
    if s is None:
        return None
    vectors = c.args.get("vectors", "refuse")
    if len(s) == 1 and vectors in ("column", "row"):
        return (s[0], ONE) if vectors == "column" else (ONE, s[0])
    if len(s) < 2:
        if vectors is UNKNOWN_ARG:
            return None
        raise ShapeError("as_matrix needs parameters with at least 2 dims",
                         "restrict the rule's selector (e.g. `ndim >= 2`), or view vectors with "
                         "`as_matrix(vectors = \"column\")`")
    mode, split = c.args.get("mode", UNKNOWN_ARG), c.args.get("split", UNKNOWN_ARG)
    if mode is UNKNOWN_ARG or split is UNKNOWN_ARG:
        return None
    out = (product(s[:-2]), s[-2], s[-1]) if mode == "batch" and len(s) > 2 else (s[0], product(s[1:]))
    if split:
        out = (*out[:-2], const(len(split)), UNKNOWN, out[-1])
    return tuple(out)


def default_rule(*, output: str, elementwise: bool, reads_param: bool) -> ShapeRule:
    """The rule of a primitive declared without one: per-parameter scalars, parameter-side stages
    and elementwise primitives have theirs; any other is :func:`unknown` (as before rules)."""
    if output == "scalar":
        return scalar
    if reads_param:
        return param_view
    return same if elementwise else unknown


def qr_q_rule(c: ShapeCall) -> Shape | None:
    """The reduced QR's ``Q`` of an ``m × n`` matrix: ``m × min(m, n)``."""
    s = c.matrix(0)
    if s is None:
        return None
    return (*s[:-1], s[-1] if equal(s[-2], s[-1]) else UNKNOWN)


def size(d: Dim, sizes: tuple[int, ...]) -> int | None:
    """The number ``d`` stands for, for a parameter of shape ``sizes`` (None: unknown)."""
    return d.coef * math.prod(sizes[i] for i in d.factors) if d.known else None


def one_per_parameter(c: ShapeCall) -> Shape:
    """``as_scalar``: its input must already be one value per parameter."""
    s = c.inputs[0] if c.inputs else None
    if s is not None and not all(d.is_one or not d.known for d in s):
        raise ShapeError(f"{c.name}: expected one value per parameter, got shape {c.show(s)}",
                         "reduce it first (`fro_norm`, `rms`, `inner`, …)")
    return ()
