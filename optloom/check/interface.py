"""The rule checker as the language forms (:mod:`.forms`) see it: a small protocol that
:class:`~.rule.RuleChecker` implements, so that the forms depend on it and not the other way."""
from __future__ import annotations

from typing import Protocol

from ..lang import ast as A
from ..lang.diagnostics import Reporter, Span
from . import ir
from .common import StateNames

Env = dict[str, ir.Node]  # the names a block sees, bound to their IR values


class Checker(Protocol):
    """What a form, statement or call handler may read, write and call while it checks one rule body."""

    rep: Reporter
    rule: A.Rule
    hypers: dict[str, ir.HyperParam]
    inputs: dict[str, ir.Input]  # grad, param, step
    feedback: dict[str, ir.StateRef]  # the rule's `state` declarations so far
    assignments: list[tuple[ir.StateRef, ir.Node, Span]]  # every `NAME <- expr` so far, with its value's span
    labels: dict[str, ir.Call]  # labelled stages so far
    constraints: list[ir.Constraint]  # hyperparameters passed to ranged arguments
    periods: list[ir.Node]  # the T of every every(T, ...) / restart(T, ...), in order
    calls: list[ir.Call]  # every primitive call checked so far, in order
    state_names: StateNames  # the state names the rule has taken so far
    guard: ir.Node | None  # inside gate(mask, ...): the mask
    restart: ir.Node | None  # inside restart(T, ...): T

    def expr(self, e: A.Expr, env: Env) -> ir.Node:
        """Check an expression (raises :class:`~.common.Abort` after reporting an error)."""

    def call(self, c: A.Call, env: Env, piped: ir.Node | None = None, label: str | None = None,
             bind_name: str | None = None, label_span: Span | None = None, head: bool = False) -> ir.Node:
        """Check a call of a primitive, a def or a form."""

    def scoped(self, e: A.Expr, env: Env, *, guard: ir.Node | None = None,
               restart: ir.Node | None = None) -> ir.Node:
        """Check ``e`` with its calls under ``guard`` / restarted every ``restart`` steps."""

    def usable(self, v: ir.Node, span: Span) -> None:
        """Refuse (report, then raise Abort) a value that may be none: an optional hyperparameter."""

    def need_matrix(self, v: ir.Node, what: str, span: Span) -> None:
        """Refuse a value whose dims are not a matrix's (report, then raise Abort)."""

    def shadows(self, name: str, span: Span, what: str) -> bool:
        """Report and return True when a binding would shadow an input or a hyperparameter."""

    def leave_frames(self, v: ir.Node) -> ir.Node:
        """Map ``v`` back out of every rotated frame it lives in."""

    def same_frame(self, values: list[ir.Node], span: Span) -> tuple[ir.Call, ...]:
        """The frames ``values`` share (reports values from different frames)."""
