"""Prompt editing and alternation schedules: A1111's published examples (prompt_parser.py doctests, 10 steps)."""

from __future__ import annotations

import pytest

from loradeck.prompt.editing import prompt_schedule, text_for_step

A1111_EXAMPLES = [
    ("test", [(10, "test")]),
    ("a [b:3]", [(3, "a "), (10, "a b")]),
    ("a [b: 3]", [(3, "a "), (10, "a b")]),
    ("a [[[b]]:2]", [(2, "a "), (10, "a [[b]]")]),
    ("[(a:2):3]", [(3, ""), (10, "(a:2)")]),
    ("a [b : c : 1] d", [(1, "a b  d"), (10, "a  c  d")]),
    ("a[b:[c:d:2]:1]e", [(1, "abe"), (2, "ace"), (10, "ade")]),
    ("a [unbalanced", [(10, "a [unbalanced")]),
    ("a [b:.5] c", [(5, "a  c"), (10, "a b c")]),
    ("((a][:b:c [d:3]", [(3, "((a][:b:c "), (10, "((a][:b:c d")]),
    ("[a|(b:1.1)]", [(i, "a" if i % 2 else "(b:1.1)") for i in range(1, 11)]),
    ("[fe|]male", [(i, "female" if i % 2 else "male") for i in range(1, 11)]),
    ("[fe|||]male", [(i, "female" if i % 4 == 1 else "male") for i in range(1, 11)]),
]


@pytest.mark.parametrize("prompt,expected", A1111_EXAMPLES)
def test_a1111_examples(prompt, expected):
    assert prompt_schedule(prompt, 10) == expected


def test_step_numbers_fractions_and_caps():
    assert prompt_schedule("[cat:dog:0.25]", 20) == [(5, "cat"), (20, "dog")]
    assert prompt_schedule("[cat:dog:50]", 20) == [(20, "cat")]  # capped at the step count: never switches
    assert prompt_schedule("[cat:dog:-1]", 20) == [(20, "dog")]  # signed numbers parse; ≤ 0 means "after" throughout
    assert prompt_schedule("[cat:dog:x]", 20) == [(20, "[cat:dog:x]")]  # not a number: plain text, as in A1111
    assert prompt_schedule("[cat::5]", 20) == [(5, "cat"), (20, "")]
    assert prompt_schedule(r"\[cat:dog:5\]", 20) == [(20, r"\[cat:dog:5\]")]  # escaped brackets stay text


def test_emphasis_and_loras_pass_through():
    sched = prompt_schedule("(red:1.2) [circle:square:3], [blue]", 10)
    assert sched == [(3, "(red:1.2) circle, [blue]"), (10, "(red:1.2) square, [blue]")]
    assert prompt_schedule("a|b (c:1.1)", 10) == [(10, "a|b (c:1.1)")]  # a bare | does not parse: used as is


def test_text_for_step_uses_a1111_boundaries():
    sched = prompt_schedule("[cat:dog:10]", 20)
    texts = [text_for_step(sched, s) for s in range(20)]
    assert texts == ["cat"] * 11 + ["dog"] * 9  # steps 0–10 inclusive draw "cat"
    alt = prompt_schedule("[a|b]", 6)
    assert [text_for_step(alt, s) for s in range(6)] == ["a", "a", "b", "a", "b", "a"]
