"""The printer: canonical text, ``parse(print_module(ast)) == ast`` over generated ASTs, a hash
that ignores layout and comments, and ``fmt``'s comment handling."""
from __future__ import annotations

import math
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optloom.lang.loader import SHIPPED
from optloom.lang import ast as A
from optloom.lang.comments import find_comments, format_source
from optloom.lang.parser import parse
from optloom.lang.transform import RESERVED
from optloom.lang.printer import canonical_hash, print_expr, print_module

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---- strategies: ASTs the parser can produce ---------------------------------------------------

names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,6}", fullmatch=True).filter(lambda s: s not in RESERVED)
ints = st.integers(min_value=0, max_value=2 ** 63 - 1).map(lambda v: A.Num(value=v, is_int=True))
floats = st.floats(min_value=0, max_value=1e300, allow_nan=False, allow_infinity=False).map(
    lambda v: A.Num(value=v, is_int=False))
texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8)
atoms = st.one_of(
    ints, floats, texts.map(lambda s: A.Str(value=s)), st.booleans().map(lambda b: A.Bool(value=b)),
    names.map(lambda n: A.Name(id=n)), st.just(A.NoneLit()), st.just(A.Num(value=math.inf, is_int=False)),
)

BINOPS = ["+", "-", "*", "/", "@", "**", "==", "!=", "<", "<=", ">", ">=", "and", "or", "??"]


def _starts_ambiguous(e: A.Node) -> bool:
    """Would the printed expression begin with '-', '(' or '['? After a statement such a block
    result would continue the statement (newlines are insignificant), so blocks avoid them."""
    return print_expr(e)[:1] in "-(["


def _kwargs(draw, depth: int) -> list[A.KwArg]:
    return [A.KwArg(name=draw(names), value=draw(exprs(depth))) for _ in range(draw(st.integers(0, 2)))]


def _list(draw, depth: int, most: int = 3) -> list:
    return [draw(exprs(depth)) for _ in range(draw(st.integers(0, most)))]


@st.composite
def exprs(draw, depth: int = 3):
    """Expressions of bounded depth (composites keep hypothesis' strategy reprs small)."""
    if depth <= 0 or draw(st.integers(0, 3)) == 0:
        return draw(atoms)
    d = depth - 1
    kind = draw(st.sampled_from(["bin", "un", "match", "index", "attr", "tuple", "list", "call", "pipe"]))
    if kind == "bin":
        return A.BinOp(op=draw(st.sampled_from(BINOPS)), left=draw(exprs(d)), right=draw(exprs(d)))
    if kind == "un":
        return A.UnaryOp(op=draw(st.sampled_from(["-", "not"])), operand=draw(exprs(d)))
    if kind == "match":
        return A.Match(subject=draw(exprs(d)), pattern=draw(texts))
    if kind == "index":
        return A.Index(value=draw(exprs(d)), index=draw(exprs(d)))
    if kind == "attr":
        return A.Attr(value=draw(exprs(d)), name=draw(names))
    if kind == "tuple":
        return A.TupleLit(items=_list(draw, d))
    if kind == "list":
        return A.ListLit(items=_list(draw, d))
    if kind == "call":
        return A.Call(func=draw(names), args=_list(draw, d), kwargs=_kwargs(draw, d))
    callee = draw(st.sampled_from(["name", "call", "block"]))
    if callee == "name":
        c = A.Name(id=draw(names))
    elif callee == "call":
        c = A.Call(func=draw(names), args=_list(draw, d, 2), kwargs=_kwargs(draw, d))
    else:
        c = draw(blocks(d))
    return A.Pipe(left=draw(exprs(d)), stage=A.Stage(label=draw(st.none() | names), callee=c))


@st.composite
def blocks(draw, depth: int = 3):
    ss = []
    for _ in range(draw(st.integers(0, 2))):
        k = draw(st.sampled_from(["let", "state", "assign"]))
        v = draw(exprs(depth - 1))
        if k == "let":
            ss.append(A.Let(name=draw(names), value=v))
        elif k == "state":
            ss.append(A.StateDecl(name=draw(names), dtype=draw(st.none() | names), init=v))
        else:
            ss.append(A.Assign(name=draw(names), value=v))
    result = draw(exprs(depth - 1))
    if ss and _starts_ambiguous(result):
        result = A.Pipe(left=A.Name(id="x"), stage=A.Stage(callee=A.Name(id="f")))
    return A.Block(stmts=ss, result=result)


params = st.builds(lambda n, t, d: A.Param(name=n, type=t, default=d), names,
                   st.none() | names | names.map(lambda n: n + "?"), st.none() | exprs(2))
rules = st.builds(lambda lab, sel, body: A.Rule(label=lab, selector=sel, body=body), names, st.none() | exprs(2),
                  blocks(2))
items = st.one_of(
    texts.map(lambda p: A.Import(path=p)),
    st.builds(lambda n, ps, b: A.Def(name=n, params=ps, body=b), names, st.lists(params, max_size=3), blocks(2)),
    st.builds(lambda n, ps, rs: A.Optimizer(name=n, params=ps, rules=rs), names, st.lists(params, max_size=4),
              st.lists(rules, max_size=2)),
)
modules = st.builds(lambda xs: A.Module(items=xs), st.lists(items, max_size=3))


@SETTINGS
@given(modules)
def test_print_parse_roundtrip(m: A.Module):
    text = print_module(m)
    back = parse(text)
    assert back == m, text
    assert print_module(back) == text  # canonical text is a fixed point


@SETTINGS
@given(exprs(4))
def test_expression_roundtrip(e):
    text = print_expr(e)
    m = parse(f"optimizer o() {{\n  r => {text}\n}}\n")
    assert m.optimizers[0].rules[0].body.result == e, text


# ---- canonical text ---------------------------------------------------------------------------------

def test_canonical_layout():
    src = ('optimizer o(lr=1e-3,betas=(0.9,0.999),eps=0.00000001,k:int=5) { m: ndim==2 and not name~"emb" => '
           'let u = grad|>ema(betas[0]) u|>newton_schulz(k)|>apply(lr) rest=>grad|>adam(betas,eps)|>apply(lr) }')
    assert print_module(parse(src)) == (
        'optimizer o(lr = 1e-3, betas = (0.9, 0.999), eps = 1e-8, k: int = 5) {\n'
        '  m: ndim == 2 and not name ~ "emb" =>\n'
        "    let u = grad |> ema(betas[0])\n"
        "    u |> newton_schulz(k) |> apply(lr)\n"
        "  rest =>\n"
        "    grad |> adam(betas, eps) |> apply(lr)\n"
        "}\n"
    )


def test_parentheses_only_where_needed():
    for src, out in [("(a + b) * c", "(a + b) * c"), ("a + (b * c)", "a + b * c"), ("(a - b) - c", "a - b - c"),
                     ("a - (b - c)", "a - (b - c)"), ("(a ** b) ** c", "(a ** b) ** c"), ("a ** (b ** c)", "a ** b ** c"),
                     ("(-a) ** b", "(-a) ** b"), ("-(a ** b)", "-a ** b"), ("(1).T", "(1).T"), ("(a |> f) + 1",
                                                                                                 "(a |> f) + 1"),
                     ("(not a) == b", "(not a) == b"), ("not (a == b)", "not a == b")]:
        e = parse(f"optimizer o() {{ r => {src} }}").optimizers[0].rules[0].body.result
        assert print_expr(e) == out, src


def test_new_syntax_prints_canonically():
    """Optional hyperparameters (`float?`), `none`, `inf`, `x ?? fallback` (right-associative, looser
    than `or`, tighter than `|>`) and state that starts from a value print as written."""
    src = ('optimizer o(lr=1e-3,w:float?=none,k:int?=5,cap=inf,low=-inf) { all => state z=param '
           'let a=w??k??2.0 z<-z-grad*(w??1.0) (w ?? 1.0) |> sign |> apply(lr * (w ?? lr)) }')
    assert print_module(parse(src)) == (
        "optimizer o(lr = 1e-3, w: float? = none, k: int? = 5, cap = inf, low = -inf) {\n"
        "  all =>\n"
        "    state z = param\n"
        "    let a = w ?? k ?? 2.0\n"
        "    z <- z - grad * (w ?? 1.0)\n"
        "    w ?? 1.0 |> sign |> apply(lr * (w ?? lr))\n"
        "}\n"
    )
    for text, out in [("(a ?? b) ?? c", "(a ?? b) ?? c"), ("a ?? (b ?? c)", "a ?? b ?? c"),
                      ("a ?? (b |> f)", "a ?? (b |> f)"), ("(a ?? b) |> f", "a ?? b |> f"),
                      ("a ?? (b or c)", "a ?? b or c"), ("(a or b) ?? c", "a or b ?? c")]:
        e = parse(f"optimizer o() {{ r => {text} }}").optimizers[0].rules[0].body.result
        assert print_expr(e) == out, text


def test_long_parameter_lists_break_one_per_line():
    names_ = ", ".join(f"hyperparameter_{i} = {i}.5" for i in range(6))
    text = print_module(parse(f"optimizer o({names_}) {{ r => grad }}"))
    assert text.startswith("optimizer o(\n  hyperparameter_0 = 0.5,\n")
    assert "  hyperparameter_5 = 5.5,\n) {\n" in text


def test_float_spelling():
    cases = {"1e-3": "1e-3", "0.001": "1e-3", "1e-08": "1e-8", "0.95": "0.95", "3e-4": "3e-4", "1.0": "1.0",
             "100.0": "100.0", "1e16": "1e16", "2.5e-07": "2.5e-7", "0.1": "0.1", "0.05": "0.05",
             "0.005": "5e-3", "1000000.0": "1e6", "123456789.0": "123456789.0"}
    for src, out in cases.items():
        assert print_expr(parse(f"optimizer o(a = {src}) {{}}").optimizers[0].params[0].default) == out


def test_shipped_specs_are_fmt_clean():
    for f in sorted(SHIPPED.glob("*.opt")):
        text = f.read_text()
        new, errors = format_source(text, str(f))
        assert errors == [] and new == text, f"{f.name} is not fmt-clean: run `optloom fmt specs/*.opt`"


# ---- hash ---------------------------------------------------------------------------------------

def test_hash_ignores_layout_and_comments():
    a = parse("optimizer o(lr = 0.1) { all => grad |> apply(lr) }")
    b = parse("# a comment\noptimizer o(\n  lr = 1e-1,  # the lr\n) {\n  all =>\n    grad\n    |> apply(lr)\n}\n")
    c = parse("optimizer o(lr = 0.2) { all => grad |> apply(lr) }")
    assert canonical_hash(a) == canonical_hash(b) != canonical_hash(c)
    assert len(canonical_hash(a)) == 16 and int(canonical_hash(a), 16) >= 0


@settings(max_examples=20, deadline=None)
@given(modules)
def test_hash_stable_under_reformatting_and_comments(m):
    text = print_module(m)
    commented = "# header comment\n" + text.replace("\n", "  # trailing\n", 1) + "# end\n"
    assert canonical_hash(parse(commented)) == canonical_hash(m) == canonical_hash(parse(text))


# ---- fmt and comments --------------------------------------------------------------------------

def test_find_comments_skips_strings():
    cs = find_comments('a = "# not" # yes\n  # own line\nb = "\\"#" #x')
    assert [(c.line, c.col, c.text, c.own_line) for c in cs] == [(1, 13, "# yes", False), (2, 3, "# own line", True),
                                                                 (3, 11, "#x", False)]


def test_fmt_keeps_header_and_item_comments():
    src = ("# License header\n#   second line\n\n# about f\ndef f(x)=x|>sign\n"
           "# the optimizer\n\noptimizer o(lr=0.1){all=>grad|>f|>apply(lr)}\n# trailing note\n")
    out, errors = format_source(src)
    assert errors == []
    assert out == ("# License header\n#   second line\n\n# about f\ndef f(x) =\n  x |> sign\n\n"
                   "# the optimizer\n\noptimizer o(lr = 0.1) {\n  all =>\n    grad |> f |> apply(lr)\n}\n\n"
                   "# trailing note\n")
    assert format_source(out) == (out, [])  # idempotent
    assert parse(out) == parse(src)


@pytest.mark.parametrize("src,line,col", [
    ("optimizer o(lr = 0.1) {\n  # inside\n  all => grad |> apply(lr)\n}\n", 2, 3),
    ("optimizer o(lr = 0.1) {  # end of line\n  all => grad |> apply(lr)\n}\n", 1, 26),
    ("def f(x) = x  # after code\n", 1, 15),
])
def test_fmt_refuses_comments_it_cannot_place(src, line, col):
    out, errors = format_source(src, "c.opt")
    [d] = errors
    assert (d.span.line, d.span.col) == (line, col) and "fmt cannot keep this comment" in d.message
    assert "--strip-comments" in d.hint
    stripped, errors = format_source(src, "c.opt", strip_comments=True)
    assert errors == [] and "#" not in stripped and parse(stripped) == parse(src)


def test_fmt_of_empty_and_comment_only_files():
    assert format_source("") == ("", [])
    assert format_source("# just a note\n\n\n# another\n") == ("# just a note\n\n# another\n", [])


ALPHABET = string.ascii_letters + string.digits + " \n#\"(){}|>=:,.*+-"


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=ALPHABET, max_size=80))
def test_fmt_never_loses_code(noise):
    src = f"# {noise.splitlines()[0] if noise.strip() else 'x'}\noptimizer o(lr = 0.1) {{ all => grad |> apply(lr) }}\n"
    out, errors = format_source(src)
    assert errors == [] and parse(out) == parse(src)
