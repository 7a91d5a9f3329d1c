"""The Embeddings tab: the cards' HTML (family badge, mismatch warning, escaping), search, and the click's prompt
edit — without a browser; then in the browser (slow) a click puts the name in the negative prompt."""

from __future__ import annotations

import html

import torch
from safetensors.torch import save_file

from loradeck.services.studio import Studio
from loradeck.ui.embedding_cards import cards_html, toggle_name


def test_a_click_adds_the_name_and_a_second_click_takes_it_out():
    assert toggle_name("", "easyneg") == "easyneg"
    assert toggle_name("blurry", "easyneg") == "blurry, easyneg"
    assert toggle_name("blurry, easyneg", "easyneg") == "blurry"
    assert toggle_name("easyneg, blurry", "easyneg") == "blurry"
    assert toggle_name("easynegative", "easyneg") == "easynegative, easyneg"  # inside a longer word it is not there
    assert toggle_name("(easyneg:1.2)", "easyneg") == ""


def test_cards_show_family_vectors_mismatch_and_escape_names(tmp_path):
    folder = tmp_path / "models" / "embeddings"
    folder.mkdir(parents=True)
    save_file({"emb_params": torch.zeros(2, 64)}, str(folder / "dots.safetensors"))
    save_file({"emb_params": torch.zeros(1, 768)}, str(folder / "<b>neg.safetensors"))
    (folder / "broken.pt").write_bytes(b"not a pickle")
    studio = Studio(home=tmp_path)
    page = cards_html(studio, "", "demo")
    assert "2 embeddings" in page and "1 file(s) could not be read" in page and "broken.pt" in page
    assert 'data-key="dots"' in page and "2 vectors" in page and 'ld-fam-demo">Demo<' in page
    assert "<b>neg" not in page and html.escape("<b>neg") in page  # a file name is text, never markup
    assert page.count("⚠ not for Demo") == 1  # the SD1 one, shown with a warning rather than hidden
    assert "1 of 2 embeddings" in cards_html(studio, "dot", "demo")
    empty = cards_html(Studio(home=tmp_path / "none"), "", None)
    assert "No embeddings yet" in empty and str(tmp_path / "none" / "models" / "embeddings") in empty
