"""The parser: every construct of the grammar builds the expected AST, with spans."""
from __future__ import annotations

from pathlib import Path

import pytest

from optloom.lang.loader import SHIPPED
from optloom.check.program import check_source
from optloom.lang import ast as A
from optloom.lang.diagnostics import SpecError
from optloom.lang.parser import parse
from optloom.primitives import lookup

N = A.Name


def expr(text: str) -> A.Node:
    """Parse ``text`` as the result expression of a rule."""
    m = parse(f"optimizer o() {{\n  r => {text}\n}}\n")
    return m.items[0].rules[0].body.result


def num(v: float | int) -> A.Num:
    return A.Num(value=v, is_int=isinstance(v, int))


def test_shipped_specs_parse_and_check():
    files = sorted(SHIPPED.glob("*.opt"))
    assert {f.stem for f in files} >= {"sgd", "adamw", "lion", "signum", "muon"}
    for f in files:
        m = parse(f.read_text(), str(f))
        assert m.optimizers or m.defs
        assert [d for d in check_source(f.read_text(), str(f)) if d.severity == "error"] == []


def test_optimizer_hyperparameters_and_rules():
    m = parse('optimizer o(lr = 1e-3, steps: int = 5, flag: bool = true, p: str = "x", b = (0.9, 0.99),) {\n'
              '  m: ndim == 2 => grad |> apply(lr)\n'
              '  star: * => grad |> apply(lr)\n'
              '  rest => grad |> apply(lr)\n}\n')
    [o] = m.optimizers
    assert [(p.name, p.type) for p in o.params] == [("lr", None), ("steps", "int"), ("flag", "bool"),
                                                     ("p", "str"), ("b", None)]
    assert o.params[0].default == num(0.001)
    assert o.params[4].default == A.TupleLit(items=[num(0.9), num(0.99)])
    assert [r.label for r in o.rules] == ["m", "star", "rest"]
    assert o.rules[0].selector == A.BinOp(op="==", left=N(id="ndim"), right=num(2))
    assert o.rules[1].selector is None and o.rules[2].selector is None


def test_pipeline_stages():
    e = expr("grad |> ema(0.9) |> m: nesterov(beta = 0.95) |> sign |> { _ * 2 } |> apply(lr)")
    stages = []
    while isinstance(e, A.Pipe):
        stages.append(e.stage)
        e = e.left
    stages.reverse()
    assert e == N(id="grad")
    assert stages[0] == A.Stage(callee=A.Call(func="ema", args=[num(0.9)]))
    assert stages[1] == A.Stage(label="m", callee=A.Call(func="nesterov", kwargs=[A.KwArg(name="beta",
                                                                                          value=num(0.95))]))
    assert stages[2] == A.Stage(callee=N(id="sign"))
    assert stages[3].callee == A.Block(stmts=[], result=A.BinOp(op="*", left=N(id="_"), right=num(2)))
    assert stages[4].callee == A.Call(func="apply", args=[N(id="lr")])


def test_precedence_and_associativity():
    a, b, c = N(id="a"), N(id="b"), N(id="c")
    assert expr("a + b * c") == A.BinOp(op="+", left=a, right=A.BinOp(op="*", left=b, right=c))
    assert expr("a - b - c") == A.BinOp(op="-", left=A.BinOp(op="-", left=a, right=b), right=c)
    assert expr("a ** b ** c") == A.BinOp(op="**", left=a, right=A.BinOp(op="**", left=b, right=c))
    assert expr("-a ** b") == A.UnaryOp(op="-", operand=A.BinOp(op="**", left=a, right=b))
    assert expr("a @ b.T") == A.BinOp(op="@", left=a, right=A.Attr(value=b, name="T"))
    assert expr("a[0] / 2") == A.BinOp(op="/", left=A.Index(value=a, index=num(0)), right=num(2))
    assert expr("not a == b and c or a") == A.BinOp(
        op="or", left=A.BinOp(op="and", left=A.UnaryOp(op="not", operand=A.BinOp(op="==", left=a, right=b)),
                              right=c), right=a)
    assert expr('name ~ "emb|head"') == A.Match(subject=N(id="name"), pattern="emb|head")
    assert expr("(a + b) * c") == A.BinOp(op="*", left=A.BinOp(op="+", left=a, right=b), right=c)
    assert expr("a * 2 |> f") == A.Pipe(left=A.BinOp(op="*", left=a, right=num(2)),
                                         stage=A.Stage(callee=N(id="f")))


def test_literals():
    assert expr("()") == A.TupleLit(items=[])
    assert expr("(1,)") == A.TupleLit(items=[num(1)])
    assert expr("(1, 2.5, \"s\", true, false)") == A.TupleLit(
        items=[num(1), num(2.5), A.Str(value="s"), A.Bool(value=True), A.Bool(value=False)])
    assert expr("[1, 2,]") == A.ListLit(items=[num(1), num(2)])
    assert expr("[]") == A.ListLit(items=[])
    assert expr(".5") == num(0.5) and expr("1.") == num(1.0) and expr("2E3") == num(2000.0)
    assert expr(r'"a\"b\\c\n"') == A.Str(value='a"b\\c\n')
    assert expr(r'"\d+"') == A.Str(value="\\d+")  # unknown escapes are kept as written (regexes)


def test_none_inf_and_coalesce():
    """`none` and `inf` are literals (reserved words); `x ?? y` is right-associative, binds looser
    than `or` and tighter than `|>`."""
    a, b, c = N(id="a"), N(id="b"), N(id="c")
    inf = A.Num(value=float("inf"), is_int=False)
    assert expr("none") == A.NoneLit() and expr("inf") == inf
    assert expr("-inf") == A.UnaryOp(op="-", operand=inf)
    assert expr("info") == N(id="info") and expr("nonempty") == N(id="nonempty")  # keywords are whole words
    assert expr("a ?? b ?? c") == A.BinOp(op="??", left=a, right=A.BinOp(op="??", left=b, right=c))
    assert expr("a ?? b or c") == A.BinOp(op="??", left=a, right=A.BinOp(op="or", left=b, right=c))
    assert expr("a ?? b |> f") == A.Pipe(left=A.BinOp(op="??", left=a, right=b), stage=A.Stage(callee=N(id="f")))
    for word in ("none", "inf"):
        with pytest.raises(SpecError, match="reserved word"):
            parse(f"optimizer o({word} = 1.0) {{\n  r => grad |> apply(0.1)\n}}\n")


def test_optional_hyperparameter_types():
    m = parse("optimizer o(a: float? = none, b: int ? = 3, c: float = inf) {\n  r => grad |> apply(0.1)\n}\n")
    assert [(p.type, p.default) for p in m.optimizers[0].params] == [
        ("float?", A.NoneLit()), ("int?", num(3)), ("float", A.Num(value=float("inf"), is_int=False))]


def test_let_state_assign_blocks():
    m = parse("optimizer o(lr = 1.0) {\n  r =>\n    let m = grad |> ema(0.9)\n    state R: f32 = 1\n"
              "    R <- m\n    m |> apply(lr)\n}\n")
    body = m.optimizers[0].rules[0].body
    assert [type(s) for s in body.stmts] == [A.Let, A.StateDecl, A.Assign]
    assert body.stmts[1] == A.StateDecl(name="R", dtype="f32", init=num(1))
    assert body.stmts[2] == A.Assign(name="R", value=N(id="m"))


def test_defs_and_imports():
    m = parse('import "lib.opt"\ndef f(x, k: int = 2) = x |> scale(k)\n'
              "def g(x) {\n  let y = x |> f\n  y |> sign\n}\n")
    assert m.imports == [A.Import(path="lib.opt")]
    f, g = m.defs
    assert [p.name for p in f.params] == ["x", "k"] and f.params[1].default == num(2)
    assert f.body.stmts == [] and isinstance(f.body.result, A.Pipe)
    assert [type(s) for s in g.body.stmts] == [A.Let]


def test_comments_and_whitespace_are_insignificant():
    a = parse("optimizer o(lr = 0.1) { all => grad |> apply(lr) }")
    b = parse('# header\noptimizer o(  # c\n  lr = 0.1  # "not a string\n) {\n\tall =>  # x\n'
              '    grad\n    |> apply(lr)  # done\n}\n# end')
    assert a == b


def test_spans():
    m = parse("optimizer o(lr = 0.1) {\n  all =>\n    grad |> newton_schulz(5) |> apply(lr)\n}\n", "s.opt")
    o = m.optimizers[0]
    assert (o.span.file, o.span.line, o.span.col, o.span.end_line) == ("s.opt", 1, 1, 4)
    assert (o.params[0].span.line, o.params[0].span.col, o.params[0].span.end_col) == (1, 13, 21)
    call = o.rules[0].body.result.left.stage.callee
    assert call.func == "newton_schulz"
    assert (call.func_span.line, call.func_span.col, call.func_span.end_col) == (3, 13, 26)
    assert (call.span.col, call.span.end_col) == (13, 29)


def test_walk_is_in_source_order_and_rewrite_shares_what_it_keeps():
    m = parse("optimizer o(lr = 0.1) { r: ndim == 2 => grad |> scale(lr * 2.0) |> apply(lr) }")
    assert [n.id for n in A.walk(m) if isinstance(n, A.Name)] == ["ndim", "grad", "lr", "lr"]
    assert next(A.walk(m)) is m
    rule = m.optimizers[0].rules[0]
    doubled = A.rewrite(rule, lambda n: A.Num(value=3.0, is_int=False) if n == A.Num(value=2.0, is_int=False) else n)
    assert doubled.selector is rule.selector and doubled != rule
    assert "3.0" in str(doubled.body.result) and "2.0" in str(rule.body.result)


def test_ast_equality_ignores_spans():
    assert parse("optimizer o() { r => grad }") == parse("optimizer o()\n{\n  r =>\n\n  grad\n}", "other.opt")
    assert parse("optimizer o() { r => grad }") != parse("optimizer o() { r => param }")


def test_bytes_input_and_utf8():
    m = parse("# ünïcode ok\noptimizer o() { r => grad }".encode())
    assert m.optimizers[0].name == "o"


# `rotate` / `clip_spectral` are registered by the primitive-library issue; this checks the exact
# line that describes the project (its semantics arrive with the frontier issues).
PROJECT_LINE = "rotate(norm_policy) |> momentum |> newton_schulz(5) |> clip_spectral"


@pytest.mark.xfail(lookup("rotate") is None or lookup("clip_spectral") is None, strict=False,
                   reason="rotate/clip_spectral not registered yet")
def test_project_line_is_valid_optloom():
    text = (
        'optimizer loom(lr = 0.02, norm_policy: str = "sinkhorn") {\n'
        "  matrices: ndim == 2 =>\n"
        f"    let u = {PROJECT_LINE}\n"
        "    u |> apply(lr)\n"
        "  rest =>\n"
        "    grad |> apply(lr)\n"
        "}\n"
    )
    assert PROJECT_LINE in text
    assert check_source(text, "loom.opt") == []
    # bare names take their defaults and a pipeline that begins with a stage starts from grad
    u = parse(text).optimizers[0].rules[0].body.stmts[0].value
    assert u.stage.callee == N(id="clip_spectral")
    head = u.left.left.left
    assert head == A.Call(func="rotate", args=[N(id="norm_policy")])


def test_import_resolves_next_to_the_importing_file(tmp_path):
    (tmp_path / "lib.opt").write_text("def twice(x) = x |> scale(2.0)\n")
    text = 'import "lib.opt"\noptimizer o(lr = 0.1) {\n  all => grad |> twice |> apply(lr)\n}\n'
    assert check_source(text, str(tmp_path / "main.opt")) == []


def test_import_resolves_on_optloom_spec_path(tmp_path, monkeypatch):
    lib = tmp_path / "lib"
    (lib / "sub").mkdir(parents=True)
    (lib / "sub" / "util.opt").write_text("def half(x) = x |> scale(0.5)\n")
    monkeypatch.setenv("OPTLOOM_SPEC_PATH", str(lib))
    text = 'import "sub/util.opt"\noptimizer o(lr = 0.1) {\n  all => grad |> half |> apply(lr)\n}\n'
    work = tmp_path / "work"
    work.mkdir()
    assert check_source(text, str(work / "main.opt")) == []
    monkeypatch.delenv("OPTLOOM_SPEC_PATH")
    assert any("cannot import" in d.message for d in check_source(text, str(work / "main.opt")))


def test_parse_file_reports_unreadable(tmp_path):
    from optloom.lang.diagnostics import SpecError
    from optloom.lang.parser import parse_file

    with pytest.raises(SpecError) as info:
        parse_file(str(tmp_path / "missing.opt"))
    assert "cannot read spec" in info.value.diagnostics[0].message
    assert Path(info.value.diagnostics[0].span.file).name == "missing.opt"


def test_byte_order_mark_is_ignored():
    from optloom.lang.comments import format_source

    text = "\ufeff# header\noptimizer o(lr = 0.1) {\n  all =>\n    grad |> apply(lr)\n}\n"
    assert parse(text) == parse(text[1:]) == parse(text.encode())
    assert check_source(text, "bom.opt") == []
    assert format_source(text) == (text[1:], [])
