"""Sidecar files: A1111 name.json round trips, Civitai .civitai.info, preview order, descriptions."""

from __future__ import annotations

import json

import pytest

from loradeck.errors import FormatError
from loradeck.families import Family
from loradeck.formats.sidecars import (
    UserMetadata,
    civitai_info_path,
    find_preview,
    read_civitai_info,
    read_description,
    read_sidecars,
    read_user_metadata,
    update_user_metadata,
    user_metadata_from_civitai,
    user_metadata_path,
    write_civitai_info,
    write_preview,
    write_user_metadata,
)


def test_sidecar_paths_keep_dots_in_the_stem(tmp_path):
    model = tmp_path / "style.v2.safetensors"
    assert user_metadata_path(model) == tmp_path / "style.v2.json"
    assert civitai_info_path(model) == tmp_path / "style.v2.civitai.info"


def test_user_metadata_round_trip_is_a1111_json(tmp_path):
    model = tmp_path / "x.safetensors"
    meta = UserMetadata(
        description="dessin à l'encre",
        sd_version="SDXL",
        activation_text="inkstyle, 日本",
        preferred_weight=0.7,
        negative_text="blurry",
        notes="n",
    )
    path = write_user_metadata(model, meta)
    expected = {
        "description": "dessin à l'encre",
        "sd version": "SDXL",
        "activation text": "inkstyle, 日本",
        "preferred weight": 0.7,
        "negative text": "blurry",
        "notes": "n",
    }
    assert path.read_bytes() == json.dumps(expected, indent=4, ensure_ascii=False).encode("utf-8")
    back = read_user_metadata(model)
    assert back == meta
    assert back.family is Family.SDXL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]  # no temp file left behind


def test_rewrite_preserves_unknown_keys(tmp_path):
    model = tmp_path / "x.safetensors"
    user_metadata_path(model).write_text(
        json.dumps({"activation text": "old", "pinned": True, "sha256": "ABC", "modelId": 5}), encoding="utf-8"
    )
    update_user_metadata(model, activation_text="new words", preferred_weight=0.8)
    doc = json.loads(user_metadata_path(model).read_text(encoding="utf-8"))
    assert doc["activation text"] == "new words"
    assert doc["preferred weight"] == 0.8
    assert (doc["pinned"], doc["sha256"], doc["modelId"]) == (True, "ABC", 5)
    with pytest.raises(TypeError):
        update_user_metadata(model, nonsense=1)


def test_broken_user_metadata_is_a_format_error_naming_the_file(tmp_path):
    model = tmp_path / "x.safetensors"
    user_metadata_path(model).write_text("{not json", encoding="utf-8")
    with pytest.raises(FormatError, match="x.json"):
        read_user_metadata(model)
    side = read_sidecars(model)
    assert side.user is None and len(side.errors) == 1 and "x.json" in side.errors[0]
    assert read_user_metadata(tmp_path / "absent.safetensors") is None


VERSION = {
    "id": 67890,
    "modelId": 12345,
    "name": "v2.0",
    "baseModel": "SD 1.5",
    "trainedWords": ["ghibli style", "<lora:ghibli:1> soft light"],
    "model": {"name": "Ghibli Style", "type": "LORA"},
    "description": "<p>nice</p>",
}


def test_civitai_info_round_trip(tmp_path):
    model = tmp_path / "ghibli.safetensors"
    write_civitai_info(model, VERSION)
    info = read_civitai_info(model)
    assert info.raw == VERSION
    assert info.trained_words == ["ghibli style", "<lora:ghibli:1> soft light"]
    assert (info.model_name, info.version_name, info.base_model) == ("Ghibli Style", "v2.0", "SD 1.5")
    assert (info.model_id, info.version_id, info.family) == (12345, 67890, Family.SD1)
    write_civitai_info(model, {})
    assert read_civitai_info(model).found is False


def test_user_metadata_from_civitai():
    meta = user_metadata_from_civitai(VERSION, preferred_weight=0.8)
    assert meta.activation_text == "ghibli style, soft light"  # tags stripped
    assert (meta.sd_version, meta.preferred_weight) == ("SD1", 0.8)
    prompts = user_metadata_from_civitai({**VERSION, "trainedWords": ["a, b", "c"]})
    assert prompts.activation_text == "a, b || c"
    kept = user_metadata_from_civitai(VERSION, keep=UserMetadata(activation_text="mine", preferred_weight=0.5))
    assert (kept.activation_text, kept.preferred_weight) == ("mine", 0.5)
    assert user_metadata_from_civitai({"baseModel": "Flux.1 D"}).sd_version == "Unknown"


@pytest.mark.parametrize(
    "present, expected",
    [
        (["m.preview.png", "m.png"], "m.png"),  # user's name.png beats the downloaded preview
        (["m.preview.png", "m.jpg"], "m.preview.png"),  # png before jpg, whatever the form
        (["m.gif", "m.preview.webp"], "m.preview.webp"),
        (["m.preview.jpeg"], "m.preview.jpeg"),
        (["other.png"], None),
    ],
)
def test_preview_order(tmp_path, present, expected):
    for name in present:
        (tmp_path / name).write_bytes(b"img")
    model = tmp_path / "m.safetensors"
    found = find_preview(model)
    assert (found.name if found else None) == expected
    listed = find_preview(model, siblings={p.name for p in tmp_path.iterdir()})
    assert listed == found


def test_write_preview(tmp_path):
    path = write_preview(tmp_path / "m.safetensors", b"\x89PNG", "PNG")
    assert path == tmp_path / "m.preview.png" and path.read_bytes() == b"\x89PNG"
    with pytest.raises(ValueError):
        write_preview(tmp_path / "m.safetensors", b"", "exe")


def test_descriptions(tmp_path):
    model = tmp_path / "m.safetensors"
    (tmp_path / "m.description.txt").write_text("from description.txt\n", encoding="utf-8")
    assert read_description(model) == "from description.txt"
    (tmp_path / "m.txt").write_text("from txt", encoding="utf-8")
    assert read_description(model) == "from txt"
    assert read_sidecars(model).description == "from txt"
    write_user_metadata(model, UserMetadata(description="from json"))
    assert read_sidecars(model).description == "from json"  # the .json description wins


def test_atomic_write_gives_the_usual_file_mode(tmp_path):
    import os
    import stat

    from loradeck.formats.sidecars import atomic_write_bytes

    mask = os.umask(0o022)
    try:
        path = atomic_write_bytes(tmp_path / "x.json", b"{}")
    finally:
        os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644 and path.read_bytes() == b"{}"
