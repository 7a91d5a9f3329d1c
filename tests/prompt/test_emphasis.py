"""A1111's attention parser: the documented examples, the docs/reference/a1111-compat.md §3.2 test vector, escapes, BREAK, edge cases."""

import pytest

from loradeck.prompt.emphasis import BREAK, parse_prompt_attention, uses_emphasis


def _rounded(fragments):
    return [(t, round(w, 6)) for t, w in fragments]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("normal text", [("normal text", 1.0)]),
        ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
        ("(unbalanced", [("unbalanced", 1.1)]),
        ("\\(literal\\]", [("(literal]", 1.0)]),
        ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
        ("[x]", [("x", 1 / 1.1)]),
        ("[[x]]", [("x", 1 / 1.1 / 1.1)]),
        ("(x:1.5)", [("x", 1.5)]),
        ("((x:1.5))", [("x", 1.65)]),
        ("(x: 1.5 )", [("x", 1.5)]),
        ("(x:-1)", [("x", -1.0)]),
        ("(a (b:2) c)", [("a ", 1.1), ("b", 2.2), (" c", 1.1)]),
        ("[unclosed", [("unclosed", 1 / 1.1)]),
        ("a) b] c", [("a) b] c", 1.0)]),  # closers without an opener are text
        ("x:1.2) y", [("x:1.2) y", 1.0)]),  # a weight without an open bracket is text
        ("a: b", [("a: b", 1.0)]),
        ("\\\\ \\)", [("\\ )", 1.0)]),  # escaped backslash, escaped paren
        ("a\\b", [("ab", 1.0)]),  # a lone backslash is dropped, as in A1111
        ("", [("", 1.0)]),
        ("()", [("", 1.0)]),
    ],
)
def test_a1111_examples(text, expected):
    assert _rounded(parse_prompt_attention(text)) == _rounded(expected)


def test_reference_vector_of_the_a1111_docs():
    text = "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky)))."
    got = parse_prompt_attention(text)
    assert [f.text for f in got] == ["a ", "house", " ", "on", " a ", "hill", ", sun, ", "sky", "."]
    weights = dict(zip([f.text for f in got], [f.weight for f in got], strict=True))
    # the exact products A1111's parser gives, float rounding included
    assert weights["house"] == 1.3 * 1.1 * 1.1 == 1.5730000000000004
    assert weights["on"] == 1.0 and weights["hill"] == 0.55 and weights["sky"] == 1.4641000000000006
    assert round(weights["house"], 3) == 1.573 and round(weights["sky"], 4) == 1.4641
    assert weights["a "] == 1.0 and weights[", sun, "] == 1.1 and weights["."] == 1.1


def test_break_splits_and_is_marked():
    assert parse_prompt_attention("a BREAK b") == [("a", 1.0), BREAK, ("b", 1.0)]
    assert parse_prompt_attention("a BREAK") == [("a", 1.0), BREAK, ("", 1.0)]
    assert parse_prompt_attention("BREAK a")[1].is_break  # leading BREAK: an empty chunk first, as A1111
    assert parse_prompt_attention("a\nBREAK\nb") == [("a", 1.0), BREAK, ("b", 1.0)]


def test_break_must_be_uppercase_and_a_whole_word():
    assert parse_prompt_attention("a break b BREAKS xBREAK") == [("a break b BREAKS xBREAK", 1.0)]


def test_break_keeps_weights_around_it_and_inside_brackets():
    got = parse_prompt_attention("(a BREAK b:1.2) c")
    assert _rounded(got) == [("a", 1.2), ("BREAK", -1.0), ("b", 1.2), (" c", 1.0)]
    assert got[1].is_break


def test_unparseable_weight_is_text_not_a_crash():
    assert _rounded(parse_prompt_attention("(x:.) y")) == [("x:.) y", 1.1)]


def test_uses_emphasis():
    assert uses_emphasis("a (b) c") and uses_emphasis("[x]")
    assert not uses_emphasis("a b BREAK c") and not uses_emphasis("\\(x\\)")
