"""The layer kinds are spelled once: LayerKind, with a style for each in LAYER_KINDS."""

from typing import get_args

from backend.layers.cog import LAYER_KINDS, LayerKind, ScoreKind


def test_every_layer_kind_has_a_style_and_no_other_does():
    assert tuple(LAYER_KINDS) == get_args(LayerKind)


def test_the_score_kinds_are_layer_kinds_without_the_evaluation_counts():
    assert set(get_args(ScoreKind)) == set(get_args(LayerKind)) - {"evaluations"}
