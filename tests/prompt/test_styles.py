"""A1111 prompt styles: styles.csv reading and merge_prompts' rule ({prompt} placeholder, else appended)."""

from __future__ import annotations

import pytest

from loradeck.errors import FormatError
from loradeck.prompt.styles import Style, apply_styles, merge_prompt, read_styles


def test_merge_rule():
    assert merge_prompt("masterpiece, {prompt}, 8k", "a cat") == "masterpiece, a cat, 8k"
    assert merge_prompt("oil painting", "a cat ") == "a cat, oil painting"
    assert merge_prompt("oil painting", "") == "oil painting"
    assert merge_prompt("", "a cat") == "a cat"


def test_styles_apply_in_order_and_unknown_names_warn():
    styles = {"frame": Style("frame", "best, {prompt}", "blurry"), "ink": Style("ink", "ink wash", "{prompt}, photo")}
    prompt, negative, warnings = apply_styles("a cat", "ugly", ["frame", "nope", "ink"], styles)
    assert prompt == "best, a cat, ink wash"
    assert negative == "ugly, blurry, photo"
    assert warnings == ["Style nope is not in styles.csv; it was skipped."]


def test_read_a1111_csv(tmp_path):
    path = tmp_path / "styles.csv"
    path.write_text(
        '\ufeffname,prompt,negative_prompt\n"Cinematic","{prompt}, film grain, 35mm","cartoon, drawing"\nEmpty,,\n',
        encoding="utf-8",
    )
    styles = read_styles(path)
    assert styles["Cinematic"] == Style("Cinematic", "{prompt}, film grain, 35mm", "cartoon, drawing")
    assert styles["Empty"] == Style("Empty")
    assert read_styles(tmp_path / "absent.csv") == {}
    bad = tmp_path / "bad.csv"
    bad.write_text("title,prompt\nx,y\n")
    with pytest.raises(FormatError, match="bad.csv.*name"):
        read_styles(bad)
