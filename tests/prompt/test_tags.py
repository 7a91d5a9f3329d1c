"""Extra-network tags: every form of docs/reference/a1111-compat.md §1.2, stripping, negative prompt, malformed tags, weight helpers."""

import pytest

from loradeck.errors import InvalidRequest
from loradeck.prompt.tags import (
    LoraTag,
    format_tag,
    normalize_weights,
    parse_prompt,
    rename_by_hashes,
    rewrite_tag_weight,
    rewrite_tag_weights,
    strip_tags,
)


@pytest.mark.parametrize(
    "tag, te, unet, dyn",
    [
        ("<lora:name>", 1.0, 1.0, None),
        ("<lora:name:0.8>", 0.8, 0.8, None),
        ("<lora:name:0.8:0.5>", 0.8, 0.5, None),
        ("<lora:name:1:1:16>", 1.0, 1.0, 16),
        ("<lora:name:te=0.5:unet=1.2:dyn=8>", 0.5, 1.2, 8),
        ("<lora:name:0.7:unet=0.2>", 0.7, 0.2, None),
        ("<lora:name:te=0.3>", 0.3, 0.3, None),  # unet defaults to te, named or not
        ("<lora:name:0.5:te=0.9>", 0.9, 0.9, None),  # named te overrides positional, and unet follows it
        ("<lora:name:-0.4>", -0.4, -0.4, None),
        ("<lora:name: 0.25 >", 0.25, 0.25, None),
        ("<lyco:name:0.6>", 0.6, 0.6, None),
    ],
)
def test_lora_argument_forms(tag, te, unet, dyn):
    parsed = parse_prompt(f"a castle, {tag} at dusk")
    assert parsed.loras == (LoraTag("name", te, unet, dyn, tag),)
    assert parsed.text == "a castle,  at dusk"
    assert parsed.warnings == ()


def test_several_tags_in_order_and_text_untouched():
    p = parse_prompt("<lora:a:0.7>a castle,<lora:b:0.3:0.1> ghibli style<lora:c>")
    assert [(t.name, t.te, t.unet) for t in p.loras] == [("a", 0.7, 0.7), ("b", 0.3, 0.1), ("c", 1.0, 1.0)]
    assert p.text == "a castle, ghibli style"


def test_every_kind_is_stripped_and_unknown_kinds_reported():
    p = parse_prompt("x <hypernet:h:0.5> y <foo:bar> z <lora:l:1>")
    assert p.text == "x  y  z "
    assert [t.name for t in p.loras] == ["l"]
    assert len(p.warnings) == 2
    assert "<hypernet:h:0.5>" in p.warnings[0] and "<foo:bar>" in p.warnings[1]


def test_not_a_tag_stays():
    # no kind, no args, or a non-word kind: not tags in A1111's grammar, so the text is kept
    text = "a <b> c <:x> d <lora:> e <my-kind:x>"
    p = parse_prompt(text)
    assert p.text == text and p.loras == ()


def test_negative_prompt_never_activates_a_lora():
    p = parse_prompt("blurry, <lora:bad:1>", negative=True)
    assert p.loras == ()
    assert p.text == "blurry, "
    assert "<lora:bad:1>" in p.warnings[0]


def test_negative_prompt_does_not_validate_weights():
    assert parse_prompt("<lora:x:abc>", negative=True).loras == ()


@pytest.mark.parametrize(
    "tag, needle",
    [
        ("<lora:name:abc>", "'abc'"),
        ("<lora:name:0.8:high>", "'high'"),
        ("<lora:name:te=x>", "'x'"),
        ("<lora:name:1:1:8.5>", "'8.5'"),
        ("<lora:name:1:1:0>", "'0'"),
        ("<lora:name:nan>", "'nan'"),
        ("<lora::0.8>", "no LoRA name"),
        ("<lora:te=0.8>", "no LoRA name"),
    ],
)
def test_malformed_tags_raise_naming_the_tag(tag, needle):
    with pytest.raises(InvalidRequest) as err:
        parse_prompt(f"a {tag} b")
    message = str(err.value)
    assert tag in message and needle in message


def test_unknown_named_argument_and_extra_positionals_are_warned():
    p = parse_prompt("<lora:n:0.5:foo=1> <lora:m:1:1:4:9>")
    assert [t.name for t in p.loras] == ["n", "m"]
    assert any("foo" in w for w in p.warnings) and any("<lora:m:1:1:4:9>" in w for w in p.warnings)


def test_a_duplicate_is_kept_and_warned():
    p = parse_prompt("<lora:a:0.5> <lora:a:0.2>")
    assert [t.te for t in p.loras] == [0.5, 0.2]
    assert any("more than once" in w for w in p.warnings)


def test_strip_tags_is_idempotent():
    s = strip_tags("a <lora:x:1> b <q:r>")
    assert s == "a  b " and strip_tags(s) == s


def test_normalize_weights_sum_to_one_and_keep_ratios():
    tags = [LoraTag("a", 0.8, 0.8), LoraTag("b", 0.4, 0.2), LoraTag("c", -0.6, -0.6)]
    out = normalize_weights(tags)
    assert sum(abs(t.unet) for t in out) == pytest.approx(1.0, abs=2e-4)
    assert [t.unet for t in out] == [0.5, 0.125, -0.375]  # factor 1/1.6
    assert [t.te for t in out] == [0.5, 0.25, -0.375]  # te scaled by the same factor
    assert [t.name for t in out] == ["a", "b", "c"]


def test_normalize_rounds_so_the_written_weight_is_the_applied_one():
    out = normalize_weights([LoraTag("a"), LoraTag("b"), LoraTag("c")])
    assert [t.unet for t in out] == [0.3333] * 3
    recorded = rewrite_tag_weights("<lora:a> <lora:b> <lora:c>", out)
    assert recorded == "<lora:a:0.3333> <lora:b:0.3333> <lora:c:0.3333>"
    assert parse_prompt(recorded).loras[0].unet == out[0].unet


def test_normalize_zero_sum_is_unchanged():
    tags = [LoraTag("a", 0.0, 0.0)]
    assert normalize_weights(tags) == tags


@pytest.mark.parametrize(
    "args, expected",
    [
        (("n", 1.0), "<lora:n:1>"),
        (("n", 0.8), "<lora:n:0.8>"),
        (("n", 0.8, 0.8), "<lora:n:0.8>"),
        (("n", 0.8, 0.5), "<lora:n:0.8:0.5>"),
        (("n", 1.0, None, 8), "<lora:n:1:1:8>"),
        (("n", 0.1 + 0.2), "<lora:n:0.30000000000000004>"),  # never rounds away what was applied
    ],
)
def test_format_tag(args, expected):
    assert format_tag(*args) == expected
    tag = parse_prompt(expected).loras[0]
    assert tag.te == args[1]


def test_rewrite_tag_weight_keeps_kind_dyn_and_other_tags():
    prompt = "x <lyco:a:1:1:4> y <lora:b:0.5> <lora:a:0.2> <hypernet:h>"
    out = rewrite_tag_weight(prompt, "a", 0.6)
    assert out == "x <lyco:a:0.6:0.6:4> y <lora:b:0.5> <lora:a:0.6> <hypernet:h>"
    assert rewrite_tag_weight(prompt, "b", 0.3, 0.1) == "x <lyco:a:1:1:4> y <lora:b:0.3:0.1> <lora:a:0.2> <hypernet:h>"


def test_rewrite_tag_weights_in_order():
    prompt = "p <lora:a:2> q <foo:x> <lora:b:2>"
    tags = normalize_weights(parse_prompt(prompt).loras)
    assert rewrite_tag_weights(prompt, tags) == "p <lora:a:0.5> q <foo:x> <lora:b:0.5>"


def test_rename_by_hashes_as_a1111_paste():
    prompt = "x <lora:theirName:0.7> <lora:unknown:1> <lora:kept:0.5> <lyco:other>"
    hashes = {"theirName": "0123456789ab", "unknown": "ffffffffffff", "other": "aaaaaaaaaaaa"}
    local = {"0123456789ab": "myName", "aaaaaaaaaaaa": "lyco_local"}
    out = rename_by_hashes(prompt, hashes, local.get)
    assert out == "x <lora:myName:0.7> <lora:unknown:1> <lora:kept:0.5> <lyco:lyco_local>"
