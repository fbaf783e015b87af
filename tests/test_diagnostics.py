"""Table-driven bad specs: each asserts the diagnostic's message, line and column.

Most specs are written in canonical layout by :func:`spec`, so positions are easy to read off:
line 1 is the optimizer header ``optimizer o(`` (the first hyperparameter starts at column 13),
line 2 the rule head, line 3 ``    grad``, and stage ``k`` (1-based) is on line ``3 + k`` as
``      |> stage`` — the stage name starts at column 10 and its first argument at column
``10 + len("name(")``.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from optloom.check.program import check_source
from optloom.lang.diagnostics import SpecError
from optloom.lang.parser import parse


def spec(*stages: str, hypers: str = "lr = 0.1", head: str = "all =>", apply: bool = True) -> str:
    lines = [f"optimizer o({hypers}) {{", f"  {head}", "    grad"]
    lines += [f"      |> {s}" for s in stages]
    if apply:
        lines.append("      |> apply(lr)")
    return "\n".join(lines + ["}"]) + "\n"


@dataclass
class Bad:
    id: str
    source: str
    message: str
    line: int
    col: int
    hint: str | None = None
    severity: str = "error"


def one(body: str, hypers: str = "lr = 0.1") -> str:
    """A one-rule spec whose body starts at line 2, column 10."""
    return f"optimizer o({hypers}) {{\n  all => {body}\n}}\n"


H = "optimizer o(lr = 0.1) {\n"  # a one-line header; rules follow on line 2

CASES = [
    # ---- names, arity, arguments
    Bad("unknown-primitive-did-you-mean", spec("newton_shulz(5)", head="m: ndim == 2 =>"),
        "unknown primitive 'newton_shulz'", 4, 10, hint="did you mean 'newton_schulz'?"),
    Bad("unknown-primitive", spec("frobnicate"), "unknown primitive 'frobnicate'", 4, 10),
    Bad("wrong-arity", spec("ema(0.9, true, 3)"), "ema takes at most 2 argument(s) here, got 3", 4, 10,
        hint="signature: ema(x, beta"),
    Bad("unknown-kwarg", spec("ema(betta = 0.9)"), "ema has no argument 'betta'", 4, 14,
        hint="did you mean 'beta'?"),
    Bad("duplicate-kwarg", spec("ema(beta = 0.9, beta = 0.8)"), "argument 'beta' of ema given twice", 4, 26),
    Bad("positional-and-kwarg", spec("ema(0.9, beta = 0.8)"), "argument 'beta' of ema given twice", 4, 19),
    Bad("missing-tensor-input", spec("inner"), "inner needs a tensor input 'y'", 4, 10),
    Bad("unknown-name-in-expr", spec("scale(lr * foo)"), "unknown name 'foo'", 4, 21),
    Bad("unknown-attribute", H + "  all => grad.X |> apply(lr)\n}\n", "unknown attribute '.X'", 2, 10,
        hint="only `.T`"),
    Bad("primitive-as-value", spec("scale(sign)"), "'sign' is a primitive, not a value", 4, 16),
    Bad("and-on-values", spec("scale(1 and 2)"), "`and` combines selector conditions", 4, 16),
    # ---- ranges
    Bad("beta-1.5", spec("ema(1.5)"), "ema: argument 'beta' must be < 1.0 (got 1.5)", 4, 14),
    Bad("betas-tuple-item", spec("adam(betas = (0.9, 1.5))"), "must be < 1.0", 4, 23),
    Bad("ns-steps-1e9", spec("newton_schulz(1000000000)", head="m: ndim == 2 =>"),
        "argument 'steps' must be <= 100 (got 1000000000)", 4, 24),
    Bad("ns-steps-folded", spec("newton_schulz(10 ** 9)", head="m: ndim == 2 =>"),
        "argument 'steps' must be <= 100", 4, 24),
    Bad("negative-eps", spec("adam(eps = -1e-8)"), "adam: argument 'eps' must be > 0.0", 4, 21),
    Bad("negative-eps-hyper", spec("adam(eps = eps)", hypers="lr = 0.1, eps = -1e-8"),
        "(hyperparameter 'eps' defaults to -1e-08)", 4, 21),
    Bad("steps-hyper-default", spec("newton_schulz(steps)", hypers="lr = 0.1, steps: int = 1000",
                                    head="m: ndim == 2 =>"),
        "hyperparameter 'steps' defaults to 1000", 4, 24),
    Bad("bad-literal-choice", spec('nesterov(form = "foo")'), "nesterov: argument 'form' must be one of", 4, 26),
    Bad("tuple-index-range", spec("ema(betas[2])", hypers="lr = 0.1, betas = (0.9, 0.99)"),
        "index 2 is out of range for a tuple of 2", 4, 20),
    # ---- structural vs runtime
    Bad("float-hyper-to-int", spec("newton_schulz(k)", hypers="lr = 0.1, k = 5.0", head="m: ndim == 2 =>"),
        "argument 'steps' is structural (int), but gets the float hyperparameter 'k'", 4, 24,
        hint="structural arguments are compile-time constants"),
    Bad("runtime-expr-to-int", spec("newton_schulz(lr * 10)", head="m: ndim == 2 =>"),
        "argument 'steps' is structural (int), but gets a runtime value", 4, 24),
    # ---- matrix primitives and selectors
    Bad("matrix-ndim-lt-2", spec("newton_schulz(5)", head="m: ndim >= 1 =>"),
        "newton_schulz needs a matrix, but rule 'm' admits parameters with ndim=1", 4, 10,
        hint="restrict the rule's selector"),
    Bad("matrix-ndim-gt-2", spec("newton_schulz(5)", head="m: ndim >= 2 =>"),
        "newton_schulz needs a matrix, but rule 'm' admits parameters with ndim=3", 4, 10,
        hint="`|> as_matrix`"),
    Bad("matrix-catch-all", spec("newton_schulz"), "rule 'all' admits parameters with ndim=0", 4, 10),
    Bad("as-matrix-on-vectors", spec("as_matrix"), "as_matrix needs parameters with at least 2 dims", 4, 10),
    Bad("unknown-selector-name", spec(head="m: ndmi == 2 =>"), "unknown name 'ndmi' in the selector of rule 'm'",
        2, 6, hint="did you mean 'ndim'?"),
    Bad("invalid-regex", spec(head='m: name ~ "(abc" =>'), "invalid regular expression", 2, 6),
    Bad("contradictory-selector", spec(head="m: ndim >= 2 and ndim < 2 =>"),
        "rule 'm' can never match: its selector is false for every parameter", 2, 6),
    Bad("after-catch-all", H + "  a =>\n    grad |> apply(lr)\n  b: ndim == 2 =>\n    grad |> apply(lr)\n}\n",
        "rule 'b' can never match: rule 'a' (line 2) above it takes every parameter", 4, 3,
        hint="move catch-all rules last"),
    Bad("duplicate-rule-label", H + "  a: ndim == 2 =>\n    grad |> apply(lr)\n  a =>\n    grad |> apply(lr)\n}\n",
        "rule label 'a' used twice (first at line 2)", 4, 3),
    Bad("duplicate-stage-label", spec("m: ema(0.9)", "m: ema(0.8)"), "stage label 'm' used twice in rule 'all'", 5, 10),
    Bad("rule-without-apply", spec("ema(0.9)", apply=False), "rule 'all' never updates its parameters", 3, 5,
        hint="apply(lr)"),
    Bad("no-rules", "optimizer o(lr = 0.1) {\n}\n", "optimizer 'o' has no rules", 1, 1),
    # ---- hyperparameters
    Bad("duplicate-hyper", spec(hypers="lr = 0.1, lr = 0.2"), "hyperparameter 'lr' declared twice", 1, 23),
    Bad("unknown-hyper-type", spec(hypers="lr: flaot = 0.1"), "unknown type 'flaot'", 1, 13,
        hint="did you mean 'float'?"),
    Bad("bad-default-type", spec(hypers="lr = 0.1, k: int = 0.5"), "hyperparameter 'k' is declared int but its "
        "default is float", 1, 32),
    Bad("non-constant-default", spec(hypers="lr = 0.1, k = grad"), "default of 'k': must be a constant", 1, 27),
    Bad("missing-default", spec(hypers="lr"), "hyperparameter 'lr' needs a default value", 1, 13),
    Bad("reserved-hyper", spec(hypers="lr = 0.1, ndim = 2"), "'ndim' is reserved", 1, 23),
    Bad("let-shadows-hyper", H + "  all =>\n    let lr = 3\n    grad |> apply(0.1)\n}\n",
        "`let lr` shadows a hyperparameter", 3, 5),
    # ---- defs and module level
    Bad("cyclic-defs", "def f(x) = x |> g\ndef g(x) = x |> f\n" + spec("f"), "def 'f' is recursive (f -> g -> f)",
        2, 17),
    Bad("self-recursive-def", "def f(x) = x |> f\n" + spec("f"), "def 'f' is recursive (f -> f)", 1, 17),
    Bad("def-arity", "def f(x) = x |> sign\n" + spec("f(1, 2)"), "def 'f' takes 1 argument(s), got 3", 5, 10),
    Bad("unused-def-unknown-primitive", "def f(x) = x |> sgin\n" + spec(), "unknown primitive 'sgin'", 1, 17,
        hint="did you mean 'sign'?"),
    Bad("def-sees-no-hyperparameters", "def f(x) = x * lr\n" + spec(), "unknown name 'lr' in def 'f'", 1, 16),
    Bad("def-named-like-primitive", "def ema(x) = x\n" + spec(), "def 'ema' has the name of a primitive", 1, 1),
    Bad("duplicate-optimizer", spec() + spec(), "'o' is defined twice (first at line 1)", 6, 1),
    # ---- feedback state and the language forms every / gate / restart
    Bad("state-never-assigned", H + "  all =>\n    state R = zeros(grad)\n    grad + R |> apply(lr)\n}\n",
        "state 'R' is never assigned", 3, 5, severity="warning"),
    Bad("assign-undeclared", H + "  all =>\n    R <- grad\n    grad |> apply(lr)\n}\n",
        "'R' is not a feedback state", 3, 5, hint="state R = zeros(grad)"),
    Bad("assign-let", H + "  all =>\n    let a = grad\n    a <- grad\n    a |> apply(lr)\n}\n",
        "'a' is not a feedback state", 4, 5, hint="`let` binding"),
    Bad("state-in-def", "def f(x) {\n  state R = zeros(x)\n  x\n}\n" + one("grad |> f |> apply(lr)"),
        "`state` belongs at the top of a rule body", 2, 3),
    Bad("state-bad-init", H + "  all =>\n    state R = grad |> ema(0.9)\n    R <- grad\n    R |> apply(lr)\n}\n",
        "state 'R' cannot start from ema, which keeps state", 3, 23, hint="state R = zeros(grad)"),
    Bad("state-bad-dtype", H + "  all =>\n    state R: f16 = zeros(grad)\n    R <- grad\n    R |> apply(lr)\n}\n",
        "unknown state dtype 'f16'", 3, 5),
    Bad("state-twice", H + "  all =>\n    state R = zeros(grad)\n    state R = zeros(grad)\n"
        "    R <- grad\n    R |> apply(lr)\n}\n", "state 'R' declared twice", 4, 5),
    Bad("scalar-state-gets-tensor", H + "  all =>\n    state n = 0.0\n    n <- grad\n    grad * n |> apply(lr)\n}\n",
        "holds one number per parameter; this assigns a tensor", 4, 10),
    Bad("every-zero", one("every(0, grad |> sign) |> apply(lr)"), "every(T, ...): T must be >= 1", 2, 16),
    Bad("every-zero-default", one(hypers="lr = 0.1, T: int = 0", body="every(T, grad) |> apply(lr)"),
        "(hyperparameter 'T' defaults to 0)", 2, 16),
    Bad("every-float-period", one("every(lr, grad) |> apply(lr)"),
        "T must be an int literal or an int hyperparameter", 2, 16),
    Bad("every-piped", one("grad |> every(3) |> apply(lr)"), "`every` is a language form", 2, 18,
        hint="every(T, value)"),
    Bad("every-no-value", one("every(3) |> apply(lr)"), "every needs 'value'", 2, 10),
    Bad("gate-tensor-mask", one("gate(grad, grad) |> apply(lr)"), "the mask is one value per parameter", 2, 15),
    Bad("gate-nested", one("gate(sample_layers(0.5), gate(sample_layers(0.5), grad)) |> apply(lr)"),
        "gates cannot nest", 2, 35),
    # ---- syntax
    Bad("truncated", H + "  all => grad |>", "unexpected end of file", 2, 17),
    Bad("truncated-header", "optimizer o(lr = ", "unexpected end of file", 1, 18),
    Bad("unbalanced-open", H + "  all => grad |> ema(0.9 |> apply(lr)\n}\n", "unexpected '}'", 3, 1,
        hint="')'"),
    Bad("unbalanced-close", H + "  all => grad |> ema(0.9)) |> apply(lr)\n}\n", "unexpected ')'", 2, 26),
    Bad("bad-character", H + "  all => grad |> ema(0.9) $ apply(lr)\n}\n", "unexpected character '$'", 2, 27),
    Bad("bad-character-unicode", "optimizer o(lr = 0.1) { all => grad |> apply(lr) } λ\n",
        "unexpected character 'λ'", 1, 52),
    Bad("keyword-as-name", "optimizer let(lr = 0.1) {\n}\n", "'let' is a reserved word", 1, 11),
    Bad("keyword-as-hyper", spec(hypers="lr = 0.1, true = 1"), "'true' is a reserved word", 1, 23),
    Bad("empty-file", "", "no optimizer in this spec", 1, 1),
    Bad("only-comments", "# nothing but a comment\n", "no optimizer in this spec", 1, 1),
    Bad("nul-byte", "optimizer o(lr = 0.1) {\n\x00}\n", "NUL byte", 2, 1),
    Bad("number-out-of-range", spec(hypers="lr = 1e999"), "number 1e999 is out of range", 1, 18),
    Bad("int-out-of-range", spec(hypers="lr = 0.1, k = 99999999999999999999"), "is out of range", 1, 27),
    # ---- issue 14: messages that misled (each: what was read, what to write)
    Bad("scalar-first-constant", one("grad * sqrt(2.0) |> apply(lr)"),
        "`sqrt(2.0)`: 2.0 is a constant, not a tensor, so the call starts from `grad` (`sqrt(grad, 2.0, …)`), "
        "and then sqrt takes at most 0 argument(s) besides its input, got 1", 2, 17, hint="`2.0 ** 0.5`"),
    Bad("scalar-first-ambiguous", one("grad / min(cap) |> apply(lr)", hypers="lr = 0.1, cap = 1.0"),
        "`min(cap)` reads as `min(grad, cap)`: a call whose first argument is not a tensor starts from `grad`, "
        "which is ambiguous here, outside a pipeline's first stage", 2, 17,
        hint="write `grad |> min(cap)` for that, or give the input first: `min(x, cap)`"),
    Bad("scalar-first-ambiguous-let", H + "  all =>\n    let m = ema(lr)\n    m |> apply(lr)\n}\n",
        "`ema(lr)` reads as `ema(grad, lr)`", 3, 13, hint="grad |> ema(lr)"),
    Bad("newline-paren-after-let", H + "  all =>\n    let u = grad\n    (u + grad) |> apply(lr)\n}\n",
        "no result after the `let` on line 3: this line starts with '(', which continues it (after a name, '(' "
        "makes a call; newlines do not end a statement)", 4, 5, hint="bind it with another `let`"),
    Bad("newline-minus-after-let", H + "  all =>\n    let u = grad * 2.0\n    -u |> apply(lr)\n}\n",
        "no result after the `let` on line 3: this line starts with '-'", 4, 5, hint="`0.0 - u`"),
    Bad("newline-paren-before-next-rule", H + "  a: ndim == 2 =>\n    let u = grad\n    (u + grad) |> apply(lr)\n"
        "  b => grad |> apply(lr)\n}\n", "no result after the `let` on line 3", 4, 5),
    Bad("state-written-never-read", H + "  all =>\n    state z = zeros(grad)\n    z <- grad * 2.0\n    z |> apply(lr)\n}\n",
        "state 'z' is written but never read: no step uses the value the step before stored", 3, 5,
        hint="it is kept in state_dict()", severity="warning"),
    Bad("call-error-at-the-argument", spec("newton_schulz(step)", head="m: ndim == 2 =>"),
        "newton_schulz: argument 'steps' is structural (int), but gets a runtime value", 4, 24),
    # ---- issue 14: shapes, known before any tensor exists
    Bad("shape-transposed-update", H + "  m: ndim == 2 => grad.T |> apply(lr)\n  rest => grad |> apply(lr)\n}\n",
        "apply: the update has shape (n, m), but the parameter has shape (m, n)", 2, 29,
        hint="the parameter's shape"),
    Bad("shape-square-update", H + "  m: ndim == 2 => grad @ grad.T |> apply(lr)\n  rest => grad |> apply(lr)\n}\n",
        "apply: the update has shape (m, m), but the parameter has shape (m, n)", 2, 36),
    Bad("shape-no-broadcast", H + "  m: ndim == 2 => grad + grad.T |> apply(lr)\n  rest => grad |> apply(lr)\n}\n",
        "shapes (m, n) and (n, m) do not broadcast", 2, 19, hint="transpose one side"),
    Bad("shape-matmul-inner", H + "  m: ndim == 2 => grad @ grad |> apply(lr)\n  rest => grad |> apply(lr)\n}\n",
        "`@` of shapes (m, n) and (m, n): the inner dims n and m differ", 2, 19),
    Bad("shape-primitive-inputs", H + "  m: ndim == 2 => where(grad, grad.T, grad) |> apply(lr)\n"
        "  rest => grad |> apply(lr)\n}\n", "where: the inputs' shapes (m, n) and (n, m) and (m, n) do not broadcast",
        2, 19),
    Bad("shape-state-assign", H + "  m: ndim == 2 =>\n    state P = eye(grad, \"rows\")\n    P <- P @ grad\n"
        "    P @ grad |> apply(lr)\n  rest => grad |> apply(lr)\n}\n",
        "state 'P' has shape (m, m), but this assigns a value of shape (m, n)", 4, 10,
        hint="keeps its shape"),
    Bad("shape-per-ndim", H + "  all => grad |> fro_norm |> apply(lr)\n}\n",
        "apply: the update is one number per parameter, but the parameter has shape (n,) (rule 'all' admits "
        "parameters with ndim=1)", 2, 30),
    Bad("shape-row-reduction-of-vector", H + "  v: ndim == 1 => grad - row_mean(grad) |> apply(lr)\n"
        "  rest => grad |> apply(lr)\n}\n", "row_mean needs a matrix, got shape (n,)", 2, 26),
    Bad("shape-as-scalar-of-a-tensor", H + "  m: ndim == 2 => grad * (grad |> as_scalar) |> apply(lr)\n"
        "  rest => grad |> apply(lr)\n}\n", "as_scalar: expected one value per parameter, got shape (m, n)", 2, 35,
        hint="reduce it first"),
    Bad("shape-transpose-3d", H + "  c: ndim == 3 => grad.T |> apply(lr)\n  rest => grad |> apply(lr)\n}\n",
        "`.T` needs a matrix, but rule 'c' admits parameters with ndim=3", 2, 19, hint="as_matrix"),
    Bad("shape-as-matrix-then-transpose", H + "  c: ndim == 3 => grad |> as_matrix |> { _.T } |> apply(lr)\n"
        "  rest => grad |> apply(lr)\n}\n",
        "apply: the update has shape (d1·d2, d0), but the parameter has shape (d0, d1, d2)", 2, 51),
    # ---- issue 14: state initializers, optional hyperparameters, inf
    Bad("optional-in-arithmetic", one("grad * w |> apply(lr)", hypers="lr = 0.1, w: float? = none"),
        "hyperparameter 'w' may be unset (none): it has no value to compute with", 2, 17, hint="`w ?? value`"),
    Bad("optional-to-plain-argument", one("grad |> ema(w) |> apply(lr)", hypers="lr = 0.1, w: float? = none"),
        "ema: argument 'beta' needs a value, but hyperparameter 'w' may be unset (none)", 2, 22, hint="`w ?? 0.9`"),
    Bad("coalesce-not-optional", one("grad * (lr ?? 1.0) |> apply(lr)"),
        "`??` gives a fallback for an optional hyperparameter, but hyperparameter 'lr' is not optional", 2, 18,
        hint="float? = none"),
    Bad("none-default-not-optional", spec(hypers="lr = 0.1, w: float = none"),
        "hyperparameter 'w' defaults to none but is not optional", 1, 34, hint="`w: float? = none`"),
    Bad("none-default-untyped", spec(hypers="lr = 0.1, w = none"),
        "hyperparameter 'w' defaults to none but is not optional", 1, 27, hint="`w: float? = none`"),
    Bad("none-as-value", one("grad * none |> apply(lr)"), "`none` is not a value to compute with", 2, 17),
    Bad("inf-overflow", spec(hypers="lr = 1e300 * 1e300"), "default of 'lr': 1e+300 * 1e+300 is not finite", 1, 18),
    Bad("inf-minus-inf", spec(hypers="lr = inf - inf"), "default of 'lr': inf - inf is not a number", 1, 18),
    Bad("state-from-group-reduction", H + "  all =>\n    state R = group_reduce(fro_norm(grad))\n    R <- R * 0.5\n"
        "    grad * R |> apply(lr)\n}\n", "state 'R' cannot start from group_reduce, which reduces over the group",
        3, 15),
    # ---- warnings
    Bad("unused-hyper", spec(hypers="lr = 0.1, wd = 0.1"), "hyperparameter 'wd' is never used", 1, 23,
        severity="warning"),
    Bad("unused-let", H + "  all =>\n    let m = grad |> ema(0.9)\n    grad |> apply(lr)\n}\n",
        "binding 'm' is never used", 3, 5, severity="warning"),
]


def test_table_is_large_and_distinct():
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)
    assert len({c.source for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_spec(case: Bad):
    diags = check_source(case.source, "bad.opt")
    hits = [d for d in diags if case.message in d.message and d.severity == case.severity]
    assert hits, f"expected {case.severity} containing {case.message!r}, got:\n" + \
        "\n".join(f"{d.span.line}:{d.span.col} {d.severity}: {d.message}" for d in diags)
    d = hits[0]
    assert (d.span.line, d.span.col) == (case.line, case.col), d.render()
    assert d.span.file == "bad.opt"
    if case.hint is not None:
        assert d.hint is not None and case.hint in d.hint
    rendered = d.render()
    assert rendered.startswith(f"bad.opt:{case.line}:{case.col}: {case.severity}: ")
    if case.severity == "error":
        assert any(x.severity == "error" for x in diags)
    else:
        assert not any(x.severity == "error" for x in diags), [x.message for x in diags]


def test_no_diagnostic_points_at_builtin():
    """Every diagnostic of the table is located in the spec (never at ``<builtin>:1:1``)."""
    for case in CASES:
        for d in check_source(case.source, "bad.opt"):
            assert d.span.file == "bad.opt", (case.id, d.render())


# Issue 14's cases that now mean the obvious thing: they check without any diagnostic (their
# semantics are tested in tests/test_forms.py).
GOOD = {
    "scalar-first-call-is-its-input": one("grad * sqrt(step * 2.0) |> apply(lr)"),
    "pipeline-start-from-grad": one("min(cap) |> apply(lr)", hypers="lr = 0.1, cap = 1.0"),
    "state-from-hyperparameter": H + "  all =>\n    state a = fill(grad, lr)\n    a <- a * 0.5\n"
                                     "    grad * a |> apply(lr)\n}\n",
    "state-from-param": H + "  all =>\n    state z = param\n    z <- z - grad\n    grad + z * 0.0 |> apply(lr)\n}\n",
    "snapshot-of-param-never-assigned": H + "  all =>\n    state p0 = param\n    grad + (param - p0) |> apply(lr)\n}\n",
    "state-from-expression": H + "  all =>\n    state s = zeros(grad) + lr * grad ** 2\n    s <- s + grad ** 2\n"
                                 "    grad / sqrt(s) |> apply(lr)\n}\n",
    "inf-literals": "optimizer o(lr = 0.1, cap = inf) {\n  all =>\n    state m = -inf\n    m <- maximum(m, fro_norm(grad))\n"
                    "    grad |> clamp(-cap, cap) |> scale(m) |> apply(lr)\n}\n",
    "optional-hyperparameters": "optimizer o(lr = 0.1, w: float? = none, k: int? = none) {\n"
                                "  m: ndim == 2 => grad * (w ?? 2.0) |> newton_schulz(k ?? 5) |> decay(0.1, lr = w) |> apply(lr)\n"
                                "  rest => grad |> apply(lr * (w ?? 1.0))\n}\n",
    "comparisons-are-numbers": one("grad * (1.0 - (abs(grad) > 1.0)) |> apply(lr)"),
    "shapes-that-fit": "optimizer o(lr = 0.1) {\n  c: ndim == 4 => grad |> as_matrix |> newton_schulz(5) |> apply(lr)\n"
                       "  m: ndim == 2 =>\n    state P = eye(grad, \"rows\")\n    P <- P * 0.9 + grad @ grad.T\n"
                       "    let f = outer(row_mean(grad), col_mean(grad))\n    P @ grad / (f + 1.0) |> apply(lr)\n"
                       "  v: ndim == 1 => grad |> as_matrix(vectors = \"column\") |> { _ @ _.T @ _ } |> apply(lr)\n"
                       "  rest => grad |> apply(lr)\n}\n",
}


@pytest.mark.parametrize("case", sorted(GOOD))
def test_now_means_the_obvious_thing(case):
    assert check_source(GOOD[case], "good.opt") == []


# ---- imports need files on disk ---------------------------------------------------------------

def test_cyclic_import(tmp_path):
    (tmp_path / "a.opt").write_text('import "b.opt"\n' + spec())
    (tmp_path / "b.opt").write_text('import "a.opt"\ndef f(x) = x\n')
    diags = check_source((tmp_path / "a.opt").read_text(), str(tmp_path / "a.opt"))
    [d] = [d for d in diags if "cyclic import" in d.message]
    assert "cyclic import (a.opt -> b.opt -> a.opt)" in d.message
    assert d.span.file == str(tmp_path / "b.opt") and (d.span.line, d.span.col) == (1, 1)


def test_self_import(tmp_path):
    (tmp_path / "a.opt").write_text('import "a.opt"\n' + spec())
    diags = check_source((tmp_path / "a.opt").read_text(), str(tmp_path / "a.opt"))
    [d] = [d for d in diags if d.severity == "error"]
    assert "cyclic import (a.opt -> a.opt)" in d.message and (d.span.line, d.span.col) == (1, 1)


@pytest.mark.parametrize("target", ["../x.opt", "sub/../../x.opt", "ABS"])
def test_import_outside_search_path(tmp_path, target):
    (tmp_path / "x.opt").write_text("def f(x) = x\n")  # exists, but outside the importing folder
    sub = tmp_path / "specs"
    sub.mkdir()
    (sub / "sub").mkdir()
    if target == "ABS":
        target = str(tmp_path / "x.opt")
    text = f'import "{target}"\n' + spec()
    diags = check_source(text, str(sub / "a.opt"))
    [d] = [d for d in diags if d.severity == "error"]
    assert f'cannot import "{target}"' in d.message and (d.span.line, d.span.col) == (1, 1)
    assert "inside the spec search path" in (d.hint or "")


def test_import_not_found(tmp_path):
    text = 'def g(x) = x\nimport "nothere.opt"\n' + spec()
    [d] = [d for d in check_source(text, str(tmp_path / "a.opt")) if d.severity == "error"]
    assert 'cannot import "nothere.opt": not found on the spec search path' in d.message
    assert (d.span.line, d.span.col) == (2, 1) and "search path:" in (d.hint or "")


def test_errors_in_imported_file_point_into_it(tmp_path):
    (tmp_path / "lib.opt").write_text("def f(x) =\n  x |>\n")
    text = 'import "lib.opt"\n' + spec()
    [d] = check_source(text, str(tmp_path / "a.opt"))
    assert d.span.file == str(tmp_path / "lib.opt") and d.message == "unexpected end of file"
    assert (d.span.line, d.span.col) == (3, 1)


# ---- behaviour beyond single diagnostics ---------------------------------------------------------

def test_several_errors_are_all_reported():
    text = spec("ema(1.5)", "frobnicate", hypers="lr = 0.1, lr = 0.2") + \
        "optimizer p(lr = 0.1) {\n  m: ndim >= 1 =>\n    grad |> newton_schulz |> apply(lr)\n}\n"
    msgs = [(d.span.line, d.message) for d in check_source(text, "bad.opt") if d.severity == "error"]
    assert (1, "hyperparameter 'lr' declared twice") in msgs
    assert (4, "ema: argument 'beta' must be < 1.0 (got 1.5)") in msgs
    assert (5, "unknown primitive 'frobnicate'") in msgs
    assert any(line == 10 and "needs a matrix" in m for line, m in msgs)


def test_no_unused_hyper_warning_when_the_using_rule_failed():
    # `wd` is used by a rule that aborts on an unknown primitive: only the error is reported
    text = spec("decay(wd)", "nope", hypers="lr = 0.1, wd = 0.1")
    diags = check_source(text, "bad.opt")
    assert [d.message for d in diags] == ["unknown primitive 'nope'"]


def test_no_unused_hyper_warning_when_selector_failed():
    text = spec(head="m: ndim == k and ndmi == 2 =>", hypers="lr = 0.1, k: int = 2")
    diags = check_source(text, "bad.opt")
    assert [d.severity for d in diags] == ["error"]


def test_rejected_hyperparameter_does_not_cascade():
    diags = check_source(spec(hypers="lr: flaot = 0.1"), "bad.opt")
    assert [d.message for d in diags] == ["unknown type 'flaot'"]


def test_parse_raises_spec_error_with_diagnostics():
    with pytest.raises(SpecError) as info:
        parse("optimizer o(lr = 0.1) {\n  all => grad |> ema(0.9))\n}\n", "x.opt")
    [d] = info.value.diagnostics
    assert (d.span.file, d.span.line, d.span.col) == ("x.opt", 2, 26)
    assert "1 error(s)" in str(info.value)


def test_render_shows_source_line_caret_and_hint():
    [d] = check_source(spec("newton_shulz(5)", head="m: ndim == 2 =>"), "specs/bad.opt")
    assert d.render() == (
        "specs/bad.opt:4:10: error: unknown primitive 'newton_shulz'\n"
        "          |> newton_shulz(5)\n"
        "             ^^^^^^^^^^^^\n"
        "hint: did you mean 'newton_schulz'?"
    )


def test_undecodable_bytes():
    with pytest.raises(SpecError) as info:
        parse(b"optimizer \xff\xfe", "x.opt")
    assert "not UTF-8" in info.value.diagnostics[0].message


def test_failed_let_does_not_cascade():
    text = "optimizer o(lr = 0.1) {\n  all =>\n    let m = grad |> sgin\n    m |> apply(lr)\n}\n"
    diags = check_source(text, "bad.opt")
    assert [(d.span.line, d.span.col, d.message) for d in diags] == [(3, 21, "unknown primitive 'sgin'")]


def test_def_error_reported_once_when_used():
    text = "def f(x) = x |> sgin\n" + spec("f")
    diags = check_source(text, "bad.opt")
    assert [(d.span.line, d.span.col, d.message) for d in diags] == [(1, 17, "unknown primitive 'sgin'")]


def test_several_syntax_errors_are_all_reported():
    text = (
        "optimizer a(lr = 0.1) {\n"               # 1
        "  all => grad |> ema(0.9)) |> apply(lr)\n"  # 2: stray ')' at col 26
        "}\n"                                      # 3
        "\n"                                       # 4
        "optimizer b(lr = 0.1) {\n"               # 5
        "  all => grad |> apply(lr) $\n"           # 6: '$' at col 28
        "}\n"                                      # 7
        "def f(x) = x |>\n"                        # 8: incomplete, next item starts on line 9
        "optimizer c(lr = 0.1) {\n"               # 9
        "  all => grad |> apply(lr)\n"             # 10
        "}\n"                                      # 11
    )
    with pytest.raises(SpecError) as info:
        parse(text, "m.opt")
    got = [(d.span.line, d.span.col, d.message) for d in info.value.diagnostics]
    assert got == [(2, 26, "unexpected ')'"), (6, 28, "unexpected character '$'"), (9, 1, "unexpected 'optimizer'")]
    assert str(info.value).endswith("3 error(s)")


@pytest.mark.parametrize("target", ["a" * 5000 + ".opt", "x/" * 3000, "~/x.opt", "C:\\\\x.opt"])
def test_unresolvable_import_paths_are_diagnostics(target):
    text = f'import "{target}"\n' + spec()
    [d] = check_source(text, "a.opt")
    assert "cannot import" in d.message and (d.span.line, d.span.col) == (1, 1)


@pytest.mark.parametrize("head", ["m: ndim > 6 =>", "m: len(shape) == 2 and shape[0] > 1 =>", "m: min(shape) >= 2 =>",
                                  "m: prod(shape) > 10 and group == 0 =>", "m: numel - 1 - 1 > 2 * 2 =>"])
def test_selectors_that_can_match_are_accepted(head):
    assert check_source(spec(head=head) + "", "ok.opt") == []


def test_compile_reports_the_same_def_errors_once():
    from optloom.check.program import compile

    text = "def f(x) = x |> sgin\ndef g(x) = x |> sign\n" + spec("f")
    with pytest.raises(SpecError) as info:
        compile(text)
    assert [(d.span.line, d.span.col, d.message) for d in info.value.diagnostics] == \
        [(1, 17, "unknown primitive 'sgin'")]
