"""X/Y/Z axes: A1111's value reading (CSV, ranges), our axis kinds, and how each changes a request."""

from __future__ import annotations

import pytest

from loradeck.errors import InvalidRequest
from loradeck.prompt.grid_axes import check_size, parse_axis, split_values
from loradeck.prompt.tags import parse_prompt
from loradeck.vocab import GenerationRequest, HiresFix


def test_values_read_as_a1111_csv_with_ranges():
    assert split_values(' a, "b, c" ,, d ') == ["a", "b, c", "d"]
    assert parse_axis("seed=1-4").values == (1, 2, 3, 4)
    assert parse_axis("steps=10-20 (+5)").values == (10, 15, 20)
    assert parse_axis("steps=1-9 [3]").values == (1, 5, 9)
    assert parse_axis("cfg=0-1 [5]").values == (0.0, 0.25, 0.5, 0.75, 1.0)
    assert parse_axis("cfg=1-2 (+0.5)").values == (1.0, 1.5, 2.0)
    assert parse_axis("seed=5-3 (-1)").values == (5, 4, 3)
    assert parse_axis("size=64x32, 32×64").values == ((64, 32), (32, 64))


@pytest.mark.parametrize(
    "text, message",
    [
        ("seed", "is not KIND=VALUE"),
        ("bogus=1", "Unknown grid axis 'bogus'"),
        ("seed=one", "is not a number"),
        ("lora=0,1", "names its LoRA"),
        ("lora:x:middle=1", "varies te, unet or both"),
        ("size=64", "is not WIDTHxHEIGHT"),
        ("seed=", "has no values"),
    ],
)
def test_bad_axes_are_one_sentence(text, message):
    with pytest.raises(InvalidRequest, match=message):
        parse_axis(text)


def test_cell_limit():
    with pytest.raises(InvalidRequest, match="limit is 1000"):
        check_size([parse_axis("seed=1-100"), parse_axis("steps=1-11")])


def test_lora_weight_axis_rewrites_or_adds_the_tag():
    base = GenerationRequest("a cat <lora:style:0.8> <lora:other:1>")
    both = parse_axis("lora:style=0.25")
    assert [(t.name, t.te, t.unet) for t in parse_prompt(both.apply(base, 0.25).prompt).loras][0] == (
        "style",
        0.25,
        0.25,
    )
    te_only = parse_axis("lora:style:te=0")
    assert [(t.te, t.unet) for t in parse_prompt(te_only.apply(base, 0.0).prompt).loras][0] == (0.0, 0.8)
    added = parse_axis("lora:new=0.5").apply(base, 0.5)
    assert [(t.name, t.te) for t in parse_prompt(added.prompt).loras] == [("style", 0.8), ("other", 1.0), ("new", 0.5)]


def test_swap_renames_the_tag_and_keeps_its_weights():
    base = GenerationRequest("a cat <lora:style:0.8:0.4> <lora:other:1>")
    swapped = parse_axis("swap:style=ink,dots").apply(base, "ink")
    assert swapped.prompt == "a cat <lora:ink:0.8:0.4> <lora:other:1>"
    with pytest.raises(InvalidRequest, match="needs <lora:absent"):
        parse_axis("swap:absent=x").apply(base, "x")


def test_prompt_sr_replaces_several_terms_at_once_in_both_prompts():
    base = GenerationRequest("a red circle", negative_prompt="blurry red")
    axis = parse_axis("sr=red|circle,blue|square")
    assert axis.values == (("red", "circle"), ("blue", "square"))
    out = axis.apply(base, ("blue", "square"))
    assert (out.prompt, out.negative_prompt) == ("a blue square", "blurry blue")
    assert axis.apply(base, ("red", "circle")) == base  # the first value is the prompt as written
    with pytest.raises(InvalidRequest, match="did not find 'green'"):
        parse_axis("sr=green,blue").apply(base, ("blue",))


def test_field_axes():
    base = GenerationRequest("x", hires=HiresFix())
    assert parse_axis("sampler=DPM++ 2M").apply(base, "DPM++ 2M").sampler == "DPM++ 2M"
    assert parse_axis("size=64x32").apply(base, (64, 32)).width == 64
    assert parse_axis("hires-steps=3").apply(base, 3).hires.steps == 3
    with pytest.raises(InvalidRequest, match="hires fix turned on"):
        parse_axis("hires-steps=3").apply(GenerationRequest("x"), 3)
    assert parse_axis("styles=a,b").apply(base, "a").styles == ["a"]
