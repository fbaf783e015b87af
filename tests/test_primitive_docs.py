"""``docs/primitives.md`` is generated from the registry; this fails when it is stale. The
examples it shows are checked as spec code."""
from __future__ import annotations

from pathlib import Path

import pytest

from optloom.check.program import check_source
from optloom.primitives import all_primitives
from optloom.primitives.docs import example_text, main, primitive_info, range_text, render_markdown

DOC = Path(__file__).resolve().parent.parent / "docs" / "primitives.md"
REGEN = "python -m optloom.primitives.docs > docs/primitives.md"


def test_primitives_md_is_up_to_date():
    assert DOC.exists(), f"docs/primitives.md is missing: run `{REGEN}`"
    assert DOC.read_text() == render_markdown(), f"docs/primitives.md is stale: run `{REGEN}`"


def test_module_entry_point_prints_the_page(capsys):
    main()
    assert capsys.readouterr().out == render_markdown()


def test_every_primitive_is_documented_with_its_declaration():
    text = render_markdown()
    for p in all_primitives():
        assert f"### `{p.name}`\n\n```text\n{p.signature_text()}\n```" in text
        for s in p.state:
            assert f"`{s.name}`" in text
        first_doc_line = p.doc.strip().splitlines()[0] if p.doc else ""
        assert first_doc_line in text
        for e in p.examples:
            assert f"`{example_text(p, e)}`" in text
    assert f"## {all_primitives()[0].family}\n" in text


@pytest.mark.parametrize("prim", all_primitives(), ids=lambda p: p.name)
def test_examples_are_valid_spec_code(prim):
    """Every example, as the page shows it, passes the checker in a rule for matrices."""
    for e in prim.examples:
        src = f"optimizer o() {{\n  m: ndim == 2 =>\n    let v = {example_text(prim, e)}\n    grad |> apply(0.1)\n" \
              "  rest => grad |> apply(0.1)\n}\n"
        errors = [d.message for d in check_source(src, "<example>") if d.severity == "error"]
        assert not errors, f"{prim.name} example {e!r}: {errors}"


def test_flags_and_ranges():
    from optloom.primitives import lookup

    ns = lookup("newton_schulz")
    assert range_text(ns.args["steps"]) == ">= 1, <= 100"
    assert range_text(lookup("ema").args["beta"]) == ">= 0.0, < 1.0"
    info = primitive_info(lookup("adam"))
    assert info["state"] == ["exp_avg", "exp_avg_sq"] and info["elementwise"] is True
    assert info["args"][0]["kind"] == "runtime" and info["args"][0]["default"] == [0.9, 0.999]
    section = render_markdown().split("### `newton_schulz`")[1].split("### ")[0]
    assert "needs_matrix: yes" in section and "| `steps` | `int` | `5` | structural | >= 1, <= 100 |" in section
