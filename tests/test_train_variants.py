"""Variant derivation (--remove / --replace / --set grids) and structural diff, no training."""
from __future__ import annotations

import pytest

from optloom.lang.diagnostics import SpecError
from optloom.lang.parser import parse
from optloom.lang.diff import diff_optimizers
from optloom.train.experiment import UsageError, parse_value, split_values
from optloom.lang.edits import LabelError, derive, grid, parse_stage, stage_labels

SPEC = """\
optimizer mini(lr = 0.02, momentum = 0.9) {
  hidden: ndim >= 2 =>
    grad |> mom: ema(momentum) |> as_matrix |> ortho: newton_schulz(5) |> apply(lr)
  rest =>
    grad |> mom: ema(momentum) |> sign |> apply(lr)
}
"""


def test_labels_in_source_order():
    assert stage_labels(parse(SPEC, "<t>")) == ["mom", "ortho"]


def test_remove_splices_stage_out_of_every_rule():
    text = derive(SPEC, "<t>", remove="mom")
    assert "mom:" not in text and "ema(" not in text
    assert "grad |> sign |> apply(lr)" in text
    assert "as_matrix" in text and "ortho: newton_schulz(5)" in text
    parse(text, "<derived>")  # still a valid spec


def test_replace_parses_one_stage_and_keeps_label():
    text = derive(SPEC, "<t>", replace=("ortho", "normalize()"))
    assert "ortho: normalize()" in text and "newton_schulz" not in text
    text = derive(SPEC, "<t>", replace=("ortho", "pol: polar()"))
    assert "pol: polar()" in text


def test_unknown_label_lists_existing_labels():
    with pytest.raises(LabelError, match=r"no stage labeled 'orth' \(labels in this spec: mom, ortho\)"):
        derive(SPEC, "<t>", remove="orth")


def test_spec_without_labels_says_how_to_label():
    with pytest.raises(LabelError, match="labels no stage"):
        derive("optimizer s(lr = 0.1) { all => grad |> apply(lr) }", "<t>", remove="x")


@pytest.mark.parametrize("bad", ["normalize() } optimizer y() { a => grad", "", "a |> b", "normalize("])
def test_replacement_must_be_one_stage(bad):
    with pytest.raises(SpecError, match="not one pipeline stage"):
        parse_stage(bad)


def test_values_and_grid():
    assert split_values("0.01,0.02") == ["0.01", "0.02"]
    assert split_values("(0.9,0.95),(0.9,0.99)") == ["(0.9,0.95)", "(0.9,0.99)"]
    assert parse_value("true") is True and parse_value("3") == 3 and parse_value("(0.9, 0.95)") == (0.9, 0.95)
    assert parse_value("original") == "original"
    with pytest.raises(UsageError):
        parse_value("('a', 1)")
    assert grid({"lr": [1, 2], "m": [3, 4]}) == [{"lr": 1, "m": 3}, {"lr": 1, "m": 4},
                                                 {"lr": 2, "m": 3}, {"lr": 2, "m": 4}]


def test_structural_diff():
    other = SPEC.replace("momentum = 0.9", "momentum = 0.95, eps = 1e-8").replace(
        "ortho: newton_schulz(5)", "ortho: normalize()").replace("|> sign ", "")
    a, b = parse(SPEC, "a").optimizers[0], parse(other, "b").optimizers[0]
    lines = diff_optimizers(a, b).lines
    assert "  + eps = 1e-8" in lines
    assert "  ~ momentum = 0.9  ->  momentum = 0.95" in lines
    assert "      ~ stage ortho: newton_schulz(5)  ->  ortho: normalize()" in lines
    assert "      - stage sign" in lines
    assert diff_optimizers(a, a).same
