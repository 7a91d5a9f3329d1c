"""``one_line``: text from files printed on one line, control characters visible but inert."""

from loradeck.text import one_line


def test_one_line_escapes_controls_and_keeps_markup_and_spacing():
    assert one_line("a\nb\r\tc") == "a b  c"
    assert one_line("red \x1b[31m x\x00") == "red \\x1b[31m x\\x00"
    assert one_line("abc\u202egnp.exe") == "abc\\u202egnp.exe"
    assert one_line("[/foo] [bold]x") == "[/foo] [bold]x"  # markup is the printer's business (rich Text)
    assert one_line("x" * 50, limit=10) == "x" * 9 + "…"
