"""Bad input never crashes or hangs: random text, random bytes, grammar-aware mutations of valid
specs, huge lines, deep nesting and binary junk all end in diagnostics (a ``SpecError`` from
``parse``, a list from ``check_source``) — never any other exception."""
from __future__ import annotations

import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optloom.compiler.loader import SHIPPED
from optloom.compiler.program import check_source
from optloom.dsl.diagnostics import Diagnostic, SpecError
from optloom.dsl.parser import parse

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
