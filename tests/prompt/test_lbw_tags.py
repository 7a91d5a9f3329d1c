"""``lbw=`` in LoRA tags: read as the block-weight extension writes it, kept through rewrites and the infotext."""

from __future__ import annotations

import pytest

from loradeck.errors import InvalidRequest
from loradeck.prompt.infotext import format_infotext, parse_infotext
from loradeck.prompt.tags import format_tag, normalize_weights, parse_prompt, rewrite_tag_weight, rewrite_tag_weights

VECTOR = "1,0,0,0,0,0,0,0,1,1,1,1,1,1,1,1,1"


@pytest.mark.parametrize(
    ("tag", "te", "unet", "lbw"),
    [
        ("<lora:x:1:lbw=OUTD>", 1.0, 1.0, "OUTD"),
        ("<lora:x:0.8:0.5:lbw=INS>", 0.8, 0.5, "INS"),
        (f"<lora:x:1:lbw={VECTOR}>", 1.0, 1.0, VECTOR),
        ("<lora:x:lbw=ALL:0.6>", 0.6, 0.6, "ALL"),  # named arguments may come anywhere (A1111)
        ("<lora:x:0.7>", 0.7, 0.7, None),
    ],
)
def test_lbw_is_read(tag, te, unet, lbw):
    parsed = parse_prompt(f"a cat {tag}")
    (got,) = parsed.loras
    assert (got.te, got.unet, got.lbw) == (te, unet, lbw)
    assert not parsed.warnings and parsed.text == "a cat "


def test_old_positional_form_points_at_lbw():
    with pytest.raises(InvalidRequest, match="lbw=OUTD"):
        parse_prompt("<lora:x:1:OUTD>")
    with pytest.raises(InvalidRequest, match="empty lbw"):
        parse_prompt("<lora:x:1:lbw=>")


def test_rewrites_keep_lbw():
    prompt = f"a <lora:x:1:lbw={VECTOR}> b <lora:y:0.5:lbw=INS>"
    tags = normalize_weights(parse_prompt(prompt).loras)
    out = rewrite_tag_weights(prompt, tags)
    assert out == f"a <lora:x:0.6667:lbw={VECTOR}> b <lora:y:0.3333:lbw=INS>"
    assert [t.lbw for t in parse_prompt(out).loras] == [VECTOR, "INS"]
    assert rewrite_tag_weight(prompt, "y", 0.9) == f"a <lora:x:1:lbw={VECTOR}> b <lora:y:0.9:lbw=INS>"
    assert format_tag("x", 1, 0.5, lbw="OUTS") == "<lora:x:1:0.5:lbw=OUTS>"


def test_infotext_round_trip_keeps_the_tag_as_written():
    prompt = f"a castle <lora:x:0.8:lbw={VECTOR}>, sky <lora:y:1:1:lbw=MIDD>"
    text = format_infotext(prompt, "blurry", {"Steps": 20, "Seed": 1, "Lora hashes": {"x": "a" * 12}})
    res = parse_infotext(text)
    assert res["Prompt"] == prompt
    assert [(t.name, t.lbw) for t in parse_prompt(res["Prompt"]).loras] == [("x", VECTOR), ("y", "MIDD")]
