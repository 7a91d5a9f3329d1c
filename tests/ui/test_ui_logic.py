"""The UI's pure parts, without a browser: cards, prompt edits, the weights panel, form ↔ infotext, progress."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from loradeck.errors import InvalidRequest, LoradeckError
from loradeck.families import Family
from loradeck.prompt.infotext import format_infotext
from loradeck.prompt.tags import parse_prompt
from loradeck.ui.catalog import ALL_FOLDERS, TOP_LEVEL, Card, folders, select_cards, toggle_card
from loradeck.ui.fields import build_request, fields_from_infotext, seed_of
from loradeck.ui.generation import Run, progress_html
from loradeck.ui.lora_cards import card_html
from loradeck.ui.weights import normalise, prompt_loras, set_weight
from loradeck.vocab import GenerationRequest, HiresFix


def card(name="pix", alias=None, sub="", family=Family.DEMO, words=("pixart",), act="pixart", neg="", w=0.7, mtime=0.0):
    return Card(
        key=f"{sub}/{name}" if sub else name,
        name=name,
        alias=alias or name,
        prompt_name=alias or name,
        subfolder=sub,
        family=family,
        trigger_words=tuple(words),
        activation_text=act,
        negative_text=neg,
        preferred_weight=w,
        mtime=mtime,
        has_preview=False,
    )


# ------------------------------------------------------------------------------------------------ cards
def test_search_folder_and_sort():
    cards = [
        card("beta", sub="styles", mtime=3),
        card("alpha", words=("castle",), mtime=1),
        card("gamma", sub="styles/old", mtime=2),
    ]
    assert [c.name for c in select_cards(cards)] == ["alpha", "beta", "gamma"]
    assert [c.name for c in select_cards(cards, sort="Newest first")] == ["beta", "gamma", "alpha"]
    assert [c.name for c in select_cards(cards, "CAST")] == ["alpha"]  # trigger words, any case
    assert [c.name for c in select_cards(cards, "sty gam")] == ["gamma"]  # every word must match
    assert [c.name for c in select_cards(cards, folder="styles")] == ["beta", "gamma"]  # subfolders included
    assert [c.name for c in select_cards(cards, folder=TOP_LEVEL)] == ["alpha"]
    assert folders(cards) == [ALL_FOLDERS, TOP_LEVEL, "styles", "styles/old"]


def test_click_adds_tag_activation_and_negative_then_removes_them():
    c = card(alias="pixie", act="pixart, bold", neg="blurry", w=0.7)
    prompt, negative = toggle_card("a castle", "lowres", c)
    assert prompt == "a castle, <lora:pixie:0.7> pixart, bold"
    assert negative == "lowres, blurry"
    (tag,) = parse_prompt(prompt).loras
    assert (tag.name, tag.weight) == ("pixie", 0.7)
    assert toggle_card(prompt, negative, c) == ("a castle", "lowres")


def test_click_on_empty_prompt_and_default_weight():
    c = card(act="", w=0.0)  # 0 = "use the default multiplier"
    assert toggle_card("", "", c) == ("<lora:pix:1>", "")


def test_card_shows_warning_badge_for_another_family_and_escapes_text():
    c = card(name="x<script>", family=Family.SDXL, words=("<b>bold</b>",))
    page = card_html(c, Family.SD1)
    assert "ld-mismatch" in page and "not for SD1" in page and "Made for SDXL" in page
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;b&gt;bold" in page
    assert "ld-mismatch" not in card_html(card(family=Family.UNKNOWN), Family.SD1)
    assert "no preview" in page  # placeholder when there is no preview file


# ------------------------------------------------------------------------------------------------ weights panel
def test_weights_panel_lists_sums_and_rewrites():
    prompt = "a <lora:a:0.5> b <lora:b:0.25:0.75> <lora:a:0.5>"
    found = prompt_loras(prompt)
    assert [(lo.name, lo.weight, lo.count) for lo in found.loras] == [("a", 0.5, 2), ("b", 0.75, 1)]
    assert found.total == pytest.approx(0.5 * 2 + 0.75)
    assert found.summary() == "Sum of weights: 1.75"
    moved = set_weight(prompt, "b", 0.9)
    assert [(t.name, t.te, t.unet) for t in parse_prompt(moved).loras][1] == ("b", 0.25, 0.9)  # te kept
    moved = set_weight(prompt, "a", 1.2)
    assert [t.unet for t in parse_prompt(moved).loras if t.name == "a"] == [1.2, 1.2]


def test_normalise_to_one():
    out = normalise("x <lora:a:0.6> y <lora:b:-0.2>")
    weights = [t.unet for t in parse_prompt(out).loras]
    assert sum(abs(w) for w in weights) == pytest.approx(1.0)
    assert weights == [pytest.approx(0.75), pytest.approx(-0.25)]
    assert out.startswith("x <lora:a:0.75> y")


def test_weights_panel_reports_a_half_typed_tag():
    found = prompt_loras("a <lora:pix:> b")
    assert found.loras == () and "not a number" in found.summary()


# ------------------------------------------------------------------------------------------------ fields
def test_infotext_to_form_and_back():
    text = format_infotext(
        "a castle <lora:old_name:0.8>",
        "blurry",
        {
            "Steps": 12,
            "Sampler": "DPM++ 2M Karras",
            "CFG scale": 5.5,
            "Seed": 42,
            "Size": "32x48",
            "Lora hashes": "old_name: abcdef123456",
        },
    )
    values = fields_from_infotext(text, lambda h: "new_name" if h == "abcdef123456" else None)
    assert values["prompt"] == "a castle <lora:new_name:0.8>"
    assert (values["sampler"], values["schedule"]) == ("DPM++ 2M", "Karras")
    assert (values["steps"], values["cfg"], values["seed"], values["width"], values["height"]) == (12, 5.5, 42, 32, 48)
    request = build_request(values, "demo")
    assert request == GenerationRequest(
        prompt="a castle <lora:new_name:0.8>",
        negative_prompt="blurry",
        steps=12,
        cfg_scale=5.5,
        sampler="DPM++ 2M",
        scheduler="Karras",
        seed=42,
        width=32,
        height=48,
        checkpoint="demo",
    )
    assert seed_of(text) == 42


def test_hires_fields_round_trip_through_the_infotext():
    text = format_infotext(
        "a castle",
        "",
        {
            "Steps": 10,
            "Size": "32x32",
            "Denoising strength": 0.45,
            "Hires upscale": 1.5,
            "Hires steps": 6,
            "Hires upscaler": "Latent (bicubic)",
        },
    )
    values = fields_from_infotext(text)
    assert (values["hires"], values["hr_scale"], values["hr_upscaler"]) == (True, 1.5, "Latent (bicubic)")
    assert (values["hr_steps"], values["hr_denoise"]) == (6, 0.45)
    assert build_request(values, None).hires == HiresFix(1.5, "Latent (bicubic)", 6, 0.45)
    assert fields_from_infotext(format_infotext("x", "", {"Steps": 3}))["hires"] is False
    varied = fields_from_infotext(
        format_infotext("x", "", {"Steps": 3, "Variation seed": 77, "Variation seed strength": 0.25})
    )
    assert (varied["variation_seed"], varied["variation_strength"]) == (77, 0.25)
    request = build_request(varied, None)
    assert (request.variation_seed, request.variation_strength) == (77, 0.25)
    assert build_request({"prompt": "x", "hires": False, "hr_scale": 3}, None).hires is None


def test_form_zero_size_means_the_models_own_and_bad_numbers_say_which_field():
    request = build_request({"prompt": "x", "width": 0, "height": 0, "steps": 5.0}, None)
    assert (request.width, request.height, request.steps, request.checkpoint) == (None, None, 5, None)
    with pytest.raises(InvalidRequest, match="cfg must be a number"):
        build_request({"prompt": "x", "cfg": "lots"}, None)
    with pytest.raises(InvalidRequest, match="no infotext"):
        fields_from_infotext("  ")


# ------------------------------------------------------------------------------------------------ progress
def test_progress_fraction_over_batches():
    from loradeck.services.jobs import RUNNING, Job
    from loradeck.vocab import Progress

    job = Job(fn=lambda j: None, state=RUNNING)
    run = Run(studio=None, request=GenerationRequest("x", batch_count=4, batch_size=2), job=job)
    job.report(Progress(5, 10, phase="sample", batch=2, batches=4, first_image=4))  # batch 3 of 4, half way
    assert run.fraction == pytest.approx((2 + 0.5) / 4)
    assert "images 5–6 of 8 · step 5/10" in run.describe()
    page = progress_html(0.625, "a <b>")
    assert 'aria-valuenow="62"' in page or 'aria-valuenow="63"' in page
    assert "a &lt;b&gt;" in page and "width:62.5%" in page


# ------------------------------------------------------------------------------------------------ PNG info
def test_png_info_reads_parameters_and_says_when_there_are_none(tmp_path):
    from loradeck.prompt.pnginfo import save_with_infotext
    from loradeck.ui.pnginfo_tab import read_picture

    text = format_infotext("a cat", "", {"Steps": 3, "Seed": 9, "Size": "8x8"})
    with_info = tmp_path / "a.png"
    save_with_infotext(Image.new("RGB", (8, 8)), with_info, text)
    got, table, note = read_picture(str(with_info))
    assert got == text and "<th>Seed</th><td>9</td>" in table and note == ""
    bare = tmp_path / "b.png"
    Image.new("RGB", (8, 8)).save(bare)
    got, table, note = read_picture(str(bare))
    assert got == "" and "no generation parameters" in note


def test_thumbnails_enlarge_tiny_previews_crisply(tmp_path):
    from loradeck.ui.app import _Thumbnails

    tiny = tmp_path / "t.png"
    pixels = np.zeros((2, 2, 3), np.uint8)
    pixels[0, 0] = (255, 0, 0)
    Image.fromarray(pixels).save(tiny)
    thumb = Image.open(io.BytesIO(_Thumbnails().get(tiny)))
    assert thumb.size == (320, 320)
    big = np.asarray(thumb)
    assert (big[:160, :160] == (255, 0, 0)).all() and (big[160:, 160:] == 0).all()  # nearest neighbour: no blur


def test_catalog_reads_sidecars_through_the_studio(home, tmp_path):
    from loradeck.services.studio import Studio
    from loradeck.ui.catalog import LoraCatalog
    from tests.ui.helpers import write_demo_lora, write_sidecars

    path = write_demo_lora(home / "models" / "Lora" / "sub" / "pix.safetensors", seed=1)
    write_sidecars(path, activation="pixart", weight=0.6, negative="blurry")
    catalog = LoraCatalog(Studio(home=home))
    (c,) = [c for c in catalog.cards() if c.key == "sub/pix"]
    assert (c.activation_text, c.preferred_weight, c.negative_text, c.has_preview) == ("pixart", 0.6, "blurry", True)
    assert catalog.preview_path("sub/pix") == path.with_name("pix.preview.png")
    assert catalog.preview_path("../../etc/passwd") is None  # only previews the library found
    doc = json.loads(path.with_suffix(".json").read_text())
    assert doc["activation text"] == "pixart"


# ------------------------------------------------------------------------------------------------ grid tab
def test_grid_form_becomes_a_grid_request():
    from loradeck.ui.grid_tab import grid_request

    request = grid_request("a cat <lora:s:1>", "", "lora:s=0,1", "", "seed=1-3", 5, 6.5, 7)
    assert request.x.values == (0.0, 1.0) and request.y is None and request.z.values == (1, 2, 3)
    assert (request.base.steps, request.base.cfg_scale, request.base.seed) == (5, 6.5, 7)
    assert len(request.cell_requests()) == 6
    with pytest.raises(LoradeckError, match="at least one axis"):
        grid_request("a cat", "", "", " ", "", 5, 7, 1)
    with pytest.raises(InvalidRequest, match="Unknown grid axis"):
        grid_request("a cat", "", "nope=1", "", "", 5, 7, 1)


def test_weights_panel_shows_and_keeps_block_weights():
    prompt = "a cat <lora:a:0.8:lbw=OUTD> <lora:b:0.5>"
    found = prompt_loras(prompt)
    assert [(lo.name, lo.lbw) for lo in found.loras] == [("a", "OUTD"), ("b", None)]
    moved = set_weight(prompt, "a", 0.3)
    assert moved == "a cat <lora:a:0.3:lbw=OUTD> <lora:b:0.5>"  # the slider changes the weight, not the blocks
    assert normalise(moved) == "a cat <lora:a:0.375:lbw=OUTD> <lora:b:0.625>"
