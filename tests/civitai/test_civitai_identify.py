"""Identify local files by hash: batched SHA256 first, AutoV3 for files whose metadata was rewritten."""

from __future__ import annotations

import hashlib
import json

from loradeck.civitai import identify
from loradeck.civitai.records import ModelImage
from loradeck.civitai.sidecars import html_to_text, preview_url
from tests.civitai.fake_server import lora_bytes, tensor_sha256


def test_identify_by_sha256_then_autov3(fake, client, tmp_path):
    original = lora_bytes(1, metadata={"ss_output_name": "one"})
    other = lora_bytes(2)
    fake.add_model("One", original, trained_words=["one style"])
    e2 = fake.add_model("Two", other, trained_words=["two"])
    # Same tensors, rewritten metadata (what SwarmUI does): a new SHA256, the same AutoV3.
    rewritten = lora_bytes(1, metadata={"ss_output_name": "one", "modelspec.title": "renamed"})
    assert hashlib.sha256(rewritten).digest() != hashlib.sha256(original).digest()
    assert tensor_sha256(rewritten) == tensor_sha256(original)
    folder = tmp_path / "Lora"
    (folder / "sub").mkdir(parents=True)
    (folder / "mine.safetensors").write_bytes(original)
    (folder / "sub" / "renamed.safetensors").write_bytes(rewritten)
    (folder / "two.safetensors").write_bytes(other)
    (folder / "unknown.safetensors").write_bytes(lora_bytes(3))
    (folder / "two.png").write_bytes(b"user preview")  # a user's preview must survive
    (folder / "notes.txt").write_text("not a model")

    seen = []
    report = identify(client, [folder], on_hashed=lambda p, i, n: seen.append((p.name, i, n)))

    by_name = {m.path.name: m for m in report.matched}
    assert by_name["mine.safetensors"].matched_by == "SHA256"
    assert by_name["renamed.safetensors"].matched_by == "AutoV3"
    assert by_name["two.safetensors"].version.id == e2.version["id"]
    assert [p.name for p in report.unmatched] == ["unknown.safetensors"] and report.failed == ()
    assert [n for _, _, n in seen] == [4] * 4
    posts = [r for r in fake.requests if r.method == "POST"]
    assert len(posts) == 1  # all four SHA256s in one batch
    autov3_gets = fake.seen("api", "/api/v1/model-versions/by-hash/")
    assert len(autov3_gets) == 2  # only the two misses, by their 12-hex AutoV3
    assert autov3_gets[0].path.endswith(tensor_sha256(lora_bytes(3))[:12].upper()) or autov3_gets[1].path.endswith(
        tensor_sha256(lora_bytes(3))[:12].upper()
    )
    info = json.loads((folder / "sub" / "renamed.civitai.info").read_text())
    assert info["id"] == fake.entries[0].version["id"]
    meta = json.loads((folder / "mine.json").read_text())
    assert meta["activation text"] == "one style" and meta["sha256"] == hashlib.sha256(original).hexdigest().upper()
    assert (folder / "mine.preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (folder / "two.png").read_bytes() == b"user preview" and not (folder / "two.preview.png").exists()
    assert not (folder / "unknown.json").exists() and not (folder / "unknown.civitai.info").exists()


def test_identify_without_writing(fake, client, tmp_path):
    content = lora_bytes(4)
    fake.add_model("Four", content)
    (tmp_path / "four.safetensors").write_bytes(content)
    report = identify(client, [tmp_path / "four.safetensors"], write_sidecars=False)
    assert report.matched[0].sha256 == hashlib.sha256(content).hexdigest()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["four.safetensors"]


def test_identify_reports_unreadable_files(client, tmp_path):
    report = identify(client, [tmp_path / "missing.safetensors"])
    assert report.matched == () and report.failed[0][0].name == "missing.safetensors"
    assert "cannot be read" in report.failed[0][1]


def test_html_to_text():
    assert html_to_text("<p>Use <b>pixel</b> &amp; <i>art</i></p><p>Line<br>two</p>") == "Use pixel & art\nLine\ntwo"
    assert html_to_text(None) == ""


def test_preview_url_asks_for_a_resized_image():
    img = ModelImage.from_json({"url": "https://image.civitai.com/a/b/original=true/1.jpeg", "nsfwLevel": 1})
    assert preview_url(img) == "https://image.civitai.com/a/b/width=768/1.jpeg"
