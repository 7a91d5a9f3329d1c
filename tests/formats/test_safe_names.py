"""The pure name checks behind the server's confinement: judged by spelling alone, in every decoded form."""

from __future__ import annotations

import pytest

from loradeck.errors import InvalidRequest
from loradeck.formats.safe_names import check_file_name, decoded_forms, looks_like_path


@pytest.mark.parametrize(
    "name",
    [
        "/etc/shadow",
        "../x",
        "a/../../x",
        "..\\x",
        "\\\\server\\share\\x",
        "C:\\models\\x.safetensors",
        "c:x",
        "~/x",
        "~root/x",
        "%2e%2e%2fetc",
        "%2E%2E/etc",
        "%2Fetc%2Fshadow",
        "%252e%252e%252fetc",  # encoded twice
        "./x",
        ".",
        "x\x00y",
        "x\ny",
        "\u202ex",  # a bidi override
    ],
)
def test_paths_in_disguise(name):
    assert looks_like_path(name)


@pytest.mark.parametrize(
    "name",
    [
        "demo",
        "sd15.safetensors",
        "sub/x.safetensors [abcdef1234]",
        "sub\\x.safetensors",
        "a..b",
        "x%20y",
        "50%",
        "d3adb33f",
    ],
)
def test_library_names_are_not_paths(name):
    assert not looks_like_path(name)


def test_decoded_forms_stop_when_nothing_changes():
    assert decoded_forms("%252e") == ["%252e", "%2e", "."]
    assert decoded_forms("plain") == ["plain"]
    assert decoded_forms("a\\b") == ["a/b"]


@pytest.mark.parametrize("name", ["mystyle", "my_style-v2.1", "Ünïcode name", "x" * 200])
def test_plain_file_names_pass(name):
    assert check_file_name(name) == name


@pytest.mark.parametrize(
    "name, why",
    [
        ("..", "names a folder"),
        ("%2e%2e", "names a folder"),
        ("a/b", "folder separator"),
        ("a%2fb", "folder separator"),
        (".env", "hidden"),
        ("a:b", "one of the characters"),
        ("nul.txt", "reserved device name"),
        ("x ", "ends with a dot or a space"),
        ("x" * 201, "longer than 200"),
        ("\t", "empty"),
    ],
)
def test_bad_file_names_say_why(name, why):
    with pytest.raises(InvalidRequest, match=why):
        check_file_name(name, "The LoRA name")
