"""Bad input never crashes or hangs: random text, random bytes, grammar-aware mutations of valid
specs, huge lines, deep nesting and binary junk all end in diagnostics (a ``SpecError`` from
``parse``, a list from ``check_source``) — never any other exception."""
from __future__ import annotations

import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optloom.lang.loader import SHIPPED
from optloom.check.program import check_source
from optloom.lang.diagnostics import Diagnostic, SpecError
from optloom.lang.parser import parse
from optloom.primitives import all_primitives

FUZZ = settings(max_examples=80, deadline=2000, suppress_health_check=[HealthCheck.too_slow])

SEEDS = [f.read_text() for f in sorted(SHIPPED.glob("*.opt"))] + [
    'import "lib.opt"\ndef f(x, k: int = 2) { let y = x |> scale(k) y |> sign }\n'
    "optimizer o(lr = 0.1, b = (0.9, 0.99)) {\n  m: ndim == 2 and name ~ \"w\" => grad |> f |> ema(b[0]) |> apply(lr)\n"
    "  rest => let u = -grad * 2 ** 3 grad |> m: ema |> { _ @ _.T } |> apply(lr)\n}\n",
]
TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*|\d+\.?\d*(?:[eE][+-]?\d+)?|\w+|\|>|=>|<-|\*\*|[=!<>]=|\S')


def must_diagnose(text: str | bytes, file: str = "fuzz.opt") -> None:
    """parse and check_source either succeed or report diagnostics; nothing else escapes."""
    try:
        parse(text, file)
    except SpecError as e:
        assert e.diagnostics and all(isinstance(d, Diagnostic) for d in e.diagnostics)
        assert any(d.severity == "error" for d in e.diagnostics)
        for d in e.diagnostics:
            d.render()
    if isinstance(text, str):
        diags = check_source(text, file)
        assert isinstance(diags, list)
        for d in diags:
            assert d.span.line >= 1 and d.span.col >= 1
            d.render()


@FUZZ
@given(st.text(max_size=300))
def test_random_text(text):
    must_diagnose(text)


@FUZZ
@given(st.text(alphabet='optimizerdefimportlet()[]{}|>=:,.*+-/@~<>!"#\n 0123456789._abgrdn', max_size=200))
def test_random_text_from_spec_alphabet(text):
    must_diagnose(text)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(data):
    must_diagnose(data)


@st.composite
def mutated(draw):
    toks = TOKEN.findall(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        if not toks:
            break
        i = draw(st.integers(0, len(toks) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "replace", "truncate"]))
        if op == "delete":
            del toks[i]
        elif op == "duplicate":
            toks.insert(i, toks[i])
        elif op == "swap":
            j = draw(st.integers(0, len(toks) - 1))
            toks[i], toks[j] = toks[j], toks[i]
        elif op == "replace":
            toks[i] = draw(st.sampled_from(["(", ")", "{", "}", "[", "]", "|>", "=>", ",", ":", "=", "-", "*", "let",
                                            "def", "optimizer", "state", "<-", "1e999", "99999999999999999999",
                                            "ndim", "grad", "apply", "newton_schulz", '"', "#", "not", "and"]))
        else:
            toks = toks[:i]
    return " ".join(toks) if draw(st.booleans()) else "\n".join(toks)


@settings(max_examples=100, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_grammar_mutations(text):
    must_diagnose(text)


def _timed(text: str, limit: float = 10.0) -> float:
    t = time.perf_counter()
    must_diagnose(text)
    elapsed = time.perf_counter() - t
    assert elapsed < limit, f"took {elapsed:.1f}s"
    return elapsed


def test_one_megabyte_line():
    _timed("optimizer o(lr = 0.1) { all => grad |> apply(lr) } " + "x" * (1 << 20))
    _timed("# " + "a" * (1 << 20) + "\noptimizer o(lr = 0.1) { all => grad |> apply(lr) }\n")
    _timed("optimizer o(lr = 0.1) { all => grad " + "|> sign " * 1000 + "|> apply(lr) }")  # many stages


def test_one_megabyte_line_diagnostic_is_short():
    diags = check_source("optimizer o(lr = 0.1) { all => grad |> apply(lr) } " + "x" * (1 << 20), "big.opt")
    assert diags[0].span.col == 52
    assert len(diags[0].render()) < 1000


def test_oversized_spec():
    with pytest.raises(SpecError, match="too large"):
        parse("#" * (5 * 1024 * 1024))


@pytest.mark.parametrize("depth", [50, 199, 250, 2000, 100_000])
def test_deep_nesting(depth):
    for text in [
        "optimizer o(lr = 0.1) { all => grad |> scale(" + "(" * depth + "1" + ")" * depth + ") |> apply(lr) }",
        "optimizer o(lr = 0.1) { all => grad |> scale(" + "-" * depth + "1) |> apply(lr) }",
        "optimizer o(lr = 0.1) { all => grad |> scale(" + "[" * depth + "]" * depth + ") |> apply(lr) }",
        "optimizer o(lr = 0.1) { all => grad |> scale(" + "f(" * depth + ")" * depth + ") |> apply(lr) }",
        "optimizer o(lr = 0.1) { all => grad |> scale(" + "1 + " * depth + "1) |> apply(lr) }",
        "optimizer o(lr = 0.1) { all => " + "(" * depth,  # unbalanced
    ]:
        _timed(text)


def test_deep_nesting_reports_depth():
    with pytest.raises(SpecError) as info:
        parse("optimizer o() { r => " + "-" * 500 + "1 }")
    assert "nested too deeply" in info.value.diagnostics[0].message


@pytest.mark.parametrize("junk", [
    b"\x00\x01\x02", b"\xff\xfe\xfd", b"\x7fELF\x02\x01\x01" + bytes(range(256)), "\ufeffoptimizer".encode(),
    b"optimizer o() {\r\n  r => grad\r\n}\r\n", "optimizer o() { r => grad \u2028 }".encode(),
])
def test_binary_junk(junk):
    must_diagnose(junk)
    try:
        text = junk.decode("utf-8")
    except UnicodeDecodeError:
        return
    must_diagnose(text)


# ---- checker fuzz: well-formed specs built from the real vocabulary (primitives, selectors,
# hyperparameter declarations, values of every kind), so that the checker's paths are exercised

PRIMS = sorted(p.name for p in all_primitives())
HYPERS = ["lr", "beta", "betas", "eps", "k", "flag", "mode", "wd"]
HYPER_DECLS = ["lr = 0.1", "beta = 0.9", "betas = (0.9, 0.99)", "eps = 1e-8", "k: int = 5", "flag: bool = true",
               'mode: str = "muon"', "wd = -0.1", "k: int = 0", "beta: float = 2", "betas = (1.5,)", "eps: tuple = 1",
               'mode: str = "polar_express"', "k: int = 1000"]
SELECTORS = ["ndim == 2", "ndim >= 2", "ndim <= 1", "ndim == k", "numel > 10", 'name ~ "w"', "shape[0] > 2",
             "group == 0", "flag", "not flag", "ndim == 4", "ndim > 2 and ndim < 2", "mode == \"muon\"", "*"]
VALUES = ["0", "1", "5", "0.5", "1.5", "-1", "1e-8", "10 ** 9", "(0.9, 0.99)", "(1, 2, 3)", '"muon"', '"sum"',
          "true", "[(3.4, -4.7, 2.0)]", "grad", "param", "step", "x", "_", "betas[0]", "betas[5]", "lr * 2",
          "grad.T", "grad @ grad", "()", "[]"] + HYPERS


@st.composite
def value(draw, depth=2):
    if depth == 0 or draw(st.booleans()):
        return draw(st.sampled_from(VALUES))
    kind = draw(st.sampled_from(["bin", "neg", "call", "pipe", "paren"]))
    if kind == "bin":
        return f"{draw(value(depth - 1))} {draw(st.sampled_from(['+', '-', '*', '/', '**', '@', '<', '==']))} {draw(value(depth - 1))}"
    if kind == "neg":
        return f"-{draw(value(depth - 1))}"
    if kind == "call":
        return draw(stage(depth - 1))
    if kind == "pipe":
        return f"{draw(value(depth - 1))} |> {draw(stage(depth - 1))}"
    return f"({draw(value(depth - 1))})"


@st.composite
def stage(draw, depth=2):
    name = draw(st.sampled_from(PRIMS + ["f", "g", "nope"]))
    label = draw(st.sampled_from(["", "", "m: ", "a: "]))
    if draw(st.booleans()):
        return label + name
    if draw(st.integers(0, 5)) == 0:
        return label + "{ " + draw(value(depth)) + " }"
    args = [draw(value(depth - 1)) for _ in range(draw(st.integers(0, 3)))]
    args += [f"{draw(st.sampled_from(['beta', 'steps', 'coeffs', 'lr', 'eps', 'form', 'mode', 'x']))} = {draw(value(depth - 1))}"
             for _ in range(draw(st.integers(0, 2)))]
    return f"{label}{name}({', '.join(args)})"


@st.composite
def body(draw):
    lines = []
    for _ in range(draw(st.integers(0, 2))):
        lines.append(f"let {draw(st.sampled_from(['m', 'v', 'u', 'lr', 'grad']))} = {draw(value())}")
    head = draw(st.sampled_from(["grad", "m", "param", "u", ""]))
    stages = [draw(stage()) for _ in range(draw(st.integers(1, 4)))]
    if draw(st.integers(0, 3)):
        stages.append(draw(st.sampled_from(["apply(lr)", "apply(beta)", "apply", "apply(k)"])))
    pipe = " |> ".join(stages)
    lines.append(f"{head} |> {pipe}" if head else pipe)
    return "\n    ".join(lines)


@st.composite
def specs(draw):
    defs = []
    for name in draw(st.lists(st.sampled_from(["f", "g"]), max_size=2, unique=True)):
        params = draw(st.sampled_from(["x", "x, s = 1.0", "x, k: int = 2", ""]))
        defs.append(f"def {name}({params}) = {draw(value())}")
    hypers = ", ".join(draw(st.lists(st.sampled_from(HYPER_DECLS), max_size=5)))
    rules = []
    for label in draw(st.lists(st.sampled_from(["a", "b", "c", "a"]), min_size=0, max_size=3)):
        sel = draw(st.sampled_from(SELECTORS + [None]))
        head = f"{label} =>" if sel is None else f"{label}: {sel} =>"
        rules.append(f"  {head}\n    {draw(body())}")
    return "\n".join(defs) + f"\noptimizer o({hypers}) {{\n" + "\n".join(rules) + "\n}\n"


@settings(max_examples=60, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_checker_on_vocabulary_specs(text):
    diags = check_source(text, "vocab.opt")
    assert isinstance(diags, list)
    for d in diags:
        d.render()


@pytest.mark.parametrize("selector", ['-"M" > 1', '0 ~ ""', "len(5) > 1", "ndim ** 100000000 > 1",
                                      '"a" * 1000000000000 == 1', "min() > 1", "shape[0] / 0 > 1 and ndim == 1"])
def test_hostile_selectors(selector):
    text = f"optimizer o(lr = 0.1) {{\n  m: {selector} => grad |> apply(lr)\n  r => grad |> apply(lr)\n}}\n"
    must_diagnose(text)
