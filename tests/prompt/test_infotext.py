"""Infotext: A1111's writer byte for byte, and parsing A1111 / Forge / Civitai texts field for field."""

import json

import pytest

from loradeck.errors import InvalidRequest
from loradeck.prompt.infotext import (
    format_infotext,
    format_lora_hashes,
    infotext_settings,
    loradeck_version,
    parse_infotext,
    parse_lora_hashes,
    quote,
)

A1111_EXAMPLE = (
    "masterpiece, 1girl, <lora:myStyle:0.8> <lora:charA:1>\n"
    "Negative prompt: lowres, bad anatomy\n"
    "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234567890, Size: 512x768, "
    'Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Lora hashes: "myStyle: 0123456789ab, charA: ba9876543210", '
    "Version: v1.10.1"
)


def test_writer_reproduces_the_a1111_example():
    params = {
        "Steps": 20,
        "Sampler": "DPM++ 2M",
        "Schedule type": "Karras",
        "CFG scale": 7,
        "Seed": 1234567890,
        "Size": "512x768",
        "Model hash": "6ce0161689",
        "Model": "v1-5-pruned-emaonly",
        "Lora hashes": {"myStyle": "0123456789abcdef", "charA": "ba9876543210ffff"},
        "Version": "v1.10.1",
    }
    text = format_infotext("masterpiece, 1girl, <lora:myStyle:0.8> <lora:charA:1>", "lowres, bad anatomy", params)
    assert text == A1111_EXAMPLE


def test_writer_orders_fields_and_drops_none():
    params = {
        "Version": "loradeck 0.1.0",
        "Lora hashes": "a: 0123456789ab",
        "Clip skip": 2,
        "Seed": 5,
        "Steps": 4,
        "Emphasis": "No norm",
        "Denoising strength": None,
        "Size": (64, 32),
        "RNG": "CPU",
    }
    line = format_infotext("p", "", params)
    assert line == (
        'p\nSteps: 4, Seed: 5, Size: 64x32, Clip skip: 2, RNG: CPU, Lora hashes: "a: 0123456789ab", '
        "Emphasis: No norm, Version: loradeck 0.1.0"
    )


def test_no_negative_line_when_empty_and_multiline_kept():
    text = format_infotext("line one\nline two", "", {"Steps": 1, "Seed": 2, "CFG scale": 3.0})
    assert text == "line one\nline two\nSteps: 1, CFG scale: 3.0, Seed: 2"


@pytest.mark.parametrize(
    "value, expected",
    [
        ("plain", "plain"),
        (7.0, "7.0"),
        (True, "True"),
        ("a, b", '"a, b"'),
        ("k: v", '"k: v"'),
        ('say "hi", ok', '"say \\"hi\\", ok"'),
        ("line\nbreak", '"line\\nbreak"'),
        ("café, ü", '"café, ü"'),  # non-ASCII kept
        ({"model": "abc", "vae": "def"}, '{"model": "abc", "vae": "def"}'),
    ],
)
def test_quote(value, expected):
    assert quote(value) == expected


def test_key_equal_to_value_is_written_alone():
    assert format_infotext("p", "", {"Steps": 1, "Seed": 1, "Tiling": "Tiling"}).endswith("Seed: 1, Tiling")


def test_lora_hashes_names_lose_colons_and_commas():
    assert (
        format_lora_hashes({"a:b,c": "0123456789abcdef", "d": "ffffffffffff"}) == "abc: 0123456789ab, d: ffffffffffff"
    )
    assert parse_lora_hashes("abc: 0123456789ab, d: ffffffffffff") == {"abc": "0123456789ab", "d": "ffffffffffff"}


def test_parse_a1111_field_for_field():
    res = parse_infotext(A1111_EXAMPLE)
    assert res == {
        "Prompt": "masterpiece, 1girl, <lora:myStyle:0.8> <lora:charA:1>",
        "Negative prompt": "lowres, bad anatomy",
        "Steps": "20",
        "Sampler": "DPM++ 2M",
        "Schedule type": "Karras",
        "CFG scale": "7",
        "Seed": "1234567890",
        "Size-1": "512",
        "Size-2": "768",
        "Model hash": "6ce0161689",
        "Model": "v1-5-pruned-emaonly",
        "Lora hashes": "myStyle: 0123456789ab, charA: ba9876543210",
        "Version": "v1.10.1",
        "Clip skip": "1",
        "RNG": "GPU",
        "Hires sampler": "Use same sampler",
        "FP8 weight": "Disable",
    }


def test_parse_forge_with_hires_and_emphasis_default():
    text = (
        "score_9, (1girl:1.2), solo, <lora:styleX:0.7>\nwhite background\n"
        "Negative prompt: worst quality,\nlow quality\n"
        "Steps: 25, Sampler: Euler a, Schedule type: Automatic, CFG scale: 5, Distilled CFG Scale: 3.5, Seed: 3057470591, "
        "Size: 896x1152, Model hash: 67ab2fd8ec, Model: ponyDiffusionV6XL_v6StartWithThisOne, Denoising strength: 0.4, "
        "Clip skip: 2, Hires upscale: 1.5, Hires steps: 10, Hires upscaler: R-ESRGAN 4x+ Anime6B, "
        'Lora hashes: "styleX: 1a2b3c4d5e6f", Version: f2.0.1v1.10.1-previous-313-g8a042934, Module 1: sdxl_vae'
    )
    res = parse_infotext(text)
    assert res["Prompt"] == "score_9, (1girl:1.2), solo, <lora:styleX:0.7>\nwhite background"
    assert res["Negative prompt"] == "worst quality,\nlow quality"
    assert (res["Size-1"], res["Size-2"], res["Clip skip"]) == ("896", "1152", "2")
    assert res["Distilled CFG Scale"] == "3.5" and res["Hires upscaler"] == "R-ESRGAN 4x+ Anime6B"
    assert res["Version"] == "f2.0.1v1.10.1-previous-313-g8a042934" and res["Module 1"] == "sdxl_vae"
    assert res["Lora hashes"] == "styleX: 1a2b3c4d5e6f"
    assert res["Emphasis"] == "Original"  # the prompt uses (x:1.2) and no Emphasis field was written


def test_parse_civitai_with_json_values_and_legacy_sampler():
    text = (
        "a cozy cabin in the woods, <lora:cabin:0.9>\n"
        "Negative prompt: blurry\n"
        "Steps: 30, CFG scale: 6.5, Sampler: DPM++ 2M Karras, Seed: 42, Size: 832x1216, Clip skip: 2, "
        "Created Date: 2024-06-01T10:11:12.1234567Z, "
        'Civitai resources: [{"type":"checkpoint","modelVersionId":128078,"modelName":"SDXL, base"},'
        '{"type":"lora","weight":0.9,"modelVersionId":1234}], Civitai metadata: {}, '
        'Hashes: {"model": "31e35c80fc", "lora:cabin": "abcdef1234"}'
    )
    res = parse_infotext(text)
    assert res["Sampler"] == "DPM++ 2M" and res["Schedule type"] == "Karras"
    assert res["Created Date"] == "2024-06-01T10:11:12.1234567Z"
    assert res["Civitai resources"][0]["modelName"] == "SDXL, base"
    assert res["Civitai resources"][1] == {"type": "lora", "weight": 0.9, "modelVersionId": 1234}
    assert res["Civitai metadata"] == {}
    assert res["Hashes"] == {"model": "31e35c80fc", "lora:cabin": "abcdef1234"}
    assert res["CFG scale"] == "6.5" and res["Seed"] == "42"


def test_legacy_sampler_split_keeps_an_explicit_schedule():
    res = parse_infotext("p\nSteps: 1, Sampler: DPM++ 2M Karras, Schedule type: Exponential, Seed: 1")
    assert res["Sampler"] == "DPM++ 2M" and res["Schedule type"] == "Exponential"


def test_short_last_line_is_prompt():
    # fewer than three fields: A1111 reads the last line as prompt text
    res = parse_infotext("a cat\nstyle: watercolor, mood: calm")
    assert res["Prompt"] == "a cat\nstyle: watercolor, mood: calm" and "style" not in res
    assert res["Clip skip"] == "1"


def test_quoted_values_are_json_decoded():
    res = parse_infotext('p\nSteps: 1, Seed: 2, Note: "a, b: \\"c\\"\\nd", Model: "x"')
    assert res["Note"] == 'a, b: "c"\nd' and res["Model"] == "x"


def test_broken_json_falls_back_to_a1111_text():
    res = parse_infotext("p\nSteps: 1, Seed: 2, Hashes: {broken, CFG scale: 7")
    assert res["Hashes"] == "{broken" and res["CFG scale"] == "7"


def test_round_trip_of_our_own_infotext():
    prompt = 'a castle, "quoted", ghibli style <lora:ghibli:0.7> <lora:detail:0.3>\nsecond line (sky:1.2)'
    negative = "blurry, lowres\nugly"
    params = {
        "Steps": 20,
        "Sampler": "DPM++ 2M",
        "Schedule type": "Karras",
        "CFG scale": 7.0,
        "Seed": 4294967295,
        "Size": "512x512",
        "Model hash": "0123456789",
        "Model": "model: v1, final",
        "Clip skip": 2,
        "RNG": "CPU",
        "Lora hashes": {"ghibli": "aaaaaaaaaaaa", "detail": "bbbbbbbbbbbb"},
        "Emphasis": "No norm",
        "Version": loradeck_version(),
    }
    res = parse_infotext(format_infotext(prompt, negative, params))
    assert res["Prompt"] == prompt and res["Negative prompt"] == negative
    assert res["Model"] == "model: v1, final"
    assert parse_lora_hashes(res["Lora hashes"]) == {"ghibli": "aaaaaaaaaaaa", "detail": "bbbbbbbbbbbb"}
    assert res["Version"] == loradeck_version() and res["Version"].startswith("loradeck ")
    s = infotext_settings(res)
    assert (s.steps, s.sampler, s.schedule_type, s.cfg_scale, s.seed) == (20, "DPM++ 2M", "Karras", 7.0, 4294967295)
    assert (s.width, s.height, s.clip_skip, s.rng, s.emphasis) == (512, 512, 2, "CPU", "No norm")
    assert s.lora_hashes == {"ghibli": "aaaaaaaaaaaa", "detail": "bbbbbbbbbbbb"}


def test_settings_reject_malformed_numbers():
    with pytest.raises(InvalidRequest, match="Steps: twenty"):
        infotext_settings("p\nSteps: twenty, Seed: 1, CFG scale: 7")
    with pytest.raises(InvalidRequest, match="Seed: 1.5"):
        infotext_settings("p\nSteps: 20, Seed: 1.5, CFG scale: 7")


def test_parse_is_json_serialisable():
    json.dumps(parse_infotext(A1111_EXAMPLE))
