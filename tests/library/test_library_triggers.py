"""Trigger words: source priority, prompt check and the append helper."""

from __future__ import annotations

import json

from library_helpers import write_lora

from loradeck.library import add_trigger_words, missing_trigger_words, trigger_warning
from loradeck.library.triggers import contains_word, split_words, top_tags

FREQ = {"10_inkstyle": {"inkstyle": 20, "1girl": 7, "cat": 9, "dog": 9}, "5_extra": {"cat": 2}}


def _setup(lora, activation=None, trained=None, phrase=None):
    md = {"ss_tag_frequency": FREQ}
    if phrase:
        md["modelspec.trigger_phrase"] = phrase
    write_lora(lora / "x.safetensors", md)
    if activation is not None:
        (lora / "x.json").write_text(json.dumps({"activation text": activation}))
    if trained is not None:
        (lora / "x.civitai.info").write_text(json.dumps({"trainedWords": trained, "baseModel": "SD 1.5"}))


def test_priority_activation_text_first(dirs, make_library):
    _setup(dirs[0], activation="ink, sketchy", trained=["civ"], phrase="spec")
    e = make_library().resolve_lora("x")
    assert (e.trigger_words, e.trigger_source) == (["ink", "sketchy"], "activation_text")


def test_priority_civitai_then_modelspec_then_tags(dirs, make_library):
    lora = dirs[0]
    _setup(lora, activation="", trained=["civ word", "<lora:x:1> other"], phrase="spec")
    lib = make_library()
    e = lib.resolve_lora("x")
    assert (e.trigger_words, e.trigger_source) == (["civ word", "other"], "civitai")
    (lora / "x.civitai.info").write_text("{}")  # "not on Civitai"
    e = lib.refresh() and lib.resolve_lora("x")
    assert (e.trigger_words, e.trigger_source) == (["spec"], "modelspec")
    (lora / "x.civitai.info").unlink()
    (lora / "x.json").unlink()
    write_lora(lora / "x.safetensors", {"ss_tag_frequency": FREQ}, seed=9)
    lib.refresh()
    e = lib.resolve_lora("x")
    # summed over folders: cat 11, inkstyle 20, dog 9, 1girl 7 → top three
    assert (e.trigger_words, e.trigger_source) == (["inkstyle", "cat", "dog"], "tag_frequency")


def test_top_tags_and_split():
    assert top_tags({"a": {"x": 1, "y": 1}}) == ["x", "y"]  # ties keep first-seen order
    assert top_tags("not a dict") == []
    assert split_words("a, b || c\nA") == ["a", "b", "c"]


def test_word_matching():
    assert contains_word("a (inkstyle:1.2) cat", "inkstyle")
    assert contains_word("Red_Hair girl", "red hair")
    assert not contains_word("category", "cat")
    assert not contains_word("a dog <lora:inkstyle:1>", "inkstyle")  # the tag itself does not count


class E:
    def __init__(self, name, words):
        self.name, self.trigger_words = name, words


def test_missing_and_add():
    a, b, c = E("a", ["ink", "sketchy"]), E("b", ["hero"]), E("c", [])
    prompt = "a castle, SKETCHY lines <lora:a:1> <lora:b:1> <lora:c:1>"
    missing = missing_trigger_words(prompt, [a, b, c])
    assert [(m[0].name, m[1]) for m in missing] == [("b", ["hero"])]
    assert add_trigger_words(prompt, [a, b, c]) == prompt + ", hero"
    assert add_trigger_words("x,", [b]) == "x, hero"
    assert add_trigger_words("", [b]) == "hero"
    assert add_trigger_words("hero", [b]) == "hero"
    assert "hero" in trigger_warning(b, ["hero"]) and "b" in trigger_warning(b, ["hero"])
