"""benchmarks/word_reliance.py: how much a demo model's loss depends on its caption's shape and colour words."""

from __future__ import annotations

from benchmarks.word_reliance import captions, losses, swap_words
from demo.scenes import COLOUR_NAMES, SHAPES


def test_swaps_move_only_their_kind_of_word() -> None:
    caption = "a striped red diamond next to a blue circle on a checkered gray background"
    assert swap_words(caption, SHAPES) == "a striped red circle next to a blue square on a checkered gray background"
    moved = "a striped green diamond next to a yellow circle on a checkered gray background"
    assert swap_words(caption, COLOUR_NAMES) == moved
    assert captions([caption])["empty"] == [""]


def test_the_unet_demo_loses_much_more_with_a_wrong_shape_or_colour_word(comfy) -> None:
    """The UNet demo draws the prompted shape and colour (98-99 %, benchmarks/results/quality.txt): a wrong
    word must cost it clearly more than the true caption at mid flow time, and no caption more too."""
    by = losses("unet", scenes=32, times=(0.5,))[0.5]
    assert by["shape swapped"] > 1.5 * by["true"]
    assert by["colour swapped"] > 1.5 * by["true"]
    assert by["empty"] > by["true"]
