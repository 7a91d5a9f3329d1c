"""Downloads against the fake Civitai: redirect, resume, verification, and every failure leaving the folder clean."""

from __future__ import annotations

import hashlib
import io
import json

import pytest
from PIL import Image

from loradeck.civitai import CivitaiClient, download
from loradeck.civitai.errors import (
    ConnectionDropped,
    EarlyAccess,
    Gone,
    HashMismatch,
    LoginRequired,
    NotAModelFile,
    NotFound,
    RateLimited,
    SizeMismatch,
    TargetExists,
    Unavailable,
    UnsupportedType,
)
from loradeck.errors import Cancelled
from loradeck.families import Family
from tests.civitai.fake_server import FakeCivitai, lora_bytes

MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt")


def folder_state(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def assert_nothing_installed(folder, *, part_allowed: bool = False):
    """No model file, no sidecar; a .part only where resuming makes sense."""
    names = folder_state(folder)
    assert not [n for n in names if n.endswith(MODEL_SUFFIXES)], names
    assert not [n for n in names if n.endswith((".json", ".civitai.info", ".png"))], names
    if not part_allowed:
        assert not [n for n in names if n.endswith(".part")], names


def fails_twice_the_same(call, error_type):
    """Run a failing download twice: same error type and the same sentence both times."""
    with pytest.raises(error_type) as first:
        call()
    with pytest.raises(error_type) as second:
        call()
    assert str(first.value) == str(second.value)
    return str(first.value)


def test_download_follows_redirect_verifies_and_writes_sidecars(fake, client, dirs):
    lora_dir, ckpt_dir = dirs
    content = lora_bytes(1)
    entry = fake.add_model("Pixel Style", content, trained_words=["pixel art", "pixelated"], base_model="SDXL 1.0")
    progress = []
    result = download(
        client,
        str(entry.model["id"]),
        lora_dir=lora_dir,
        checkpoint_dir=ckpt_dir,
        on_progress=lambda d, t: progress.append((d, t)),
    )
    target = lora_dir / "pixel_style.safetensors"
    assert result.path == target and target.read_bytes() == content
    assert result.sha256 == hashlib.sha256(content).hexdigest() and result.verified and not result.already_present
    assert progress[-1] == (len(content), len(content)) and all(
        a[0] <= b[0] for a, b in zip(progress, progress[1:], strict=False)
    )
    # The redirect went to the storage host, which never saw the key; the API download endpoint did.
    api_dl = fake.seen("api", "/api/download/models/")
    storage = fake.seen("storage", "/file/")
    assert api_dl[0].headers["authorization"] == f"Bearer {fake.token}"
    assert len(storage) == 1 and "authorization" not in storage[0].headers
    assert all(r.headers["user-agent"].startswith("loradeck/") for r in fake.requests)
    # Sidecars: the raw version JSON, A1111 metadata, a PNG preview.
    info = json.loads((lora_dir / "pixel_style.civitai.info").read_text())
    assert info == entry.version
    meta = json.loads((lora_dir / "pixel_style.json").read_text())
    assert meta["activation text"] == "pixel art, pixelated"
    assert meta["sd version"] == Family.from_label("SDXL 1.0").label == "SDXL"
    assert meta["description"] == "A fake model & more."  # the model's HTML description as text
    assert meta["sha256"] == result.sha256.upper() and meta["modelVersionId"] == entry.version["id"]
    with Image.open(lora_dir / "pixel_style.preview.png") as img:
        assert img.format == "PNG" and img.size == (48, 64)
        expected = Image.open(io.BytesIO(fake.images[entry.version["images"][0]["id"]])).convert("RGB")
        assert img.convert("RGB").getpixel((10, 10)) == expected.getpixel((10, 10))
    assert folder_state(lora_dir) == [
        "pixel_style.civitai.info",
        "pixel_style.json",
        "pixel_style.preview.png",
        "pixel_style.safetensors",
    ]


def test_existing_json_keeps_user_values_and_unknown_keys(fake, client, dirs):
    lora_dir, ckpt_dir = dirs
    entry = fake.add_model("Keep", lora_bytes(2), trained_words=["kw"])
    lora_dir.mkdir(parents=True)
    (lora_dir / "keep.json").write_text(json.dumps({"notes": "mine", "preferred weight": 0.6, "vae": "x.vae"}))
    download(client, str(entry.version["id"]), lora_dir=lora_dir, checkpoint_dir=ckpt_dir)
    meta = json.loads((lora_dir / "keep.json").read_text())
    assert meta["notes"] == "mine" and meta["preferred weight"] == 0.6 and meta["vae"] == "x.vae"
    assert meta["activation text"] == "kw"


def test_preview_respects_nsfw_setting(fake, client, dirs):
    lora_dir, ckpt_dir = dirs
    entry = fake.add_model("Spicy", lora_bytes(3), image_levels=(8, 4, 2))
    result = download(client, str(entry.model["id"]), lora_dir=lora_dir, checkpoint_dir=ckpt_dir, nsfw=False)
    wanted = entry.version["images"][2]["id"]  # the first image with nsfwLevel < 4
    assert fake.seen("api", "/images/")[0].path == f"/images/{wanted}.jpeg"
    assert result.warnings == ()


def test_checkpoint_goes_to_checkpoint_folder_and_other_types_are_refused(fake, client, dirs):
    lora_dir, ckpt_dir = dirs
    ckpt = fake.add_model("Base", lora_bytes(4), type="Checkpoint")
    emb = fake.add_model("Embed", lora_bytes(5), type="TextualInversion")
    assert download(client, str(ckpt.model["id"]), lora_dir=lora_dir, checkpoint_dir=ckpt_dir).path.parent == ckpt_dir
    fails_twice_the_same(
        lambda: download(client, str(emb.model["id"]), lora_dir=lora_dir, checkpoint_dir=ckpt_dir), UnsupportedType
    )
    assert_nothing_installed(lora_dir)
    out = download(client, str(emb.model["id"]), lora_dir=lora_dir, checkpoint_dir=ckpt_dir, to=dirs[0].parent / "emb")
    assert out.path.read_bytes() == emb.content


def test_resume_with_range_after_connection_drop(fake, client, dirs, sleeps):
    lora_dir, ckpt_dir = dirs
    content = lora_bytes(6)
    entry = fake.add_model("Resume", content)
    fake.drops[entry.file["id"]] = [100_000]
    result = download(client, str(entry.version["id"]), lora_dir=lora_dir, checkpoint_dir=ckpt_dir)
    assert result.path.read_bytes() == content and result.sha256 == hashlib.sha256(content).hexdigest()
    ranges = [r.headers.get("range") for r in fake.seen("storage", "/file/")]
    assert ranges[0] is None
    start = int(ranges[1].removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= 100_000  # resumed from what had arrived, not from zero
    assert len(sleeps) == 1  # one backoff before resuming, through the injected sleep
    assert not (lora_dir / "resume.safetensors.part").exists()


def test_drops_beyond_the_bound_keep_part_and_next_call_resumes(fake, sleeps, dirs):
    lora_dir, ckpt_dir = dirs
    content = lora_bytes(7)
    entry = fake.add_model("Flaky", content)
    fake.drops[entry.file["id"]] = [40_000, 40_000, 40_000]
    with CivitaiClient(fake.base_url, fake.token, sleep=sleeps.append) as c:
        with pytest.raises(ConnectionDropped) as err:
            download(c, str(entry.version["id"]), lora_dir=lora_dir, checkpoint_dir=ckpt_dir, retries=2)
        part = lora_dir / "flaky.safetensors.part"
        assert "run the download again to resume" in str(err.value) and str(part) in str(err.value)
        assert_nothing_installed(lora_dir, part_allowed=True)
        kept = part.read_bytes()
        assert 0 < len(kept) <= 120_000 and content.startswith(kept)  # a true prefix, kept for resume
        result = download(c, str(entry.version["id"]), lora_dir=lora_dir, checkpoint_dir=ckpt_dir)
    assert result.resumed_from == len(kept) and result.path.read_bytes() == content
    assert fake.seen("storage")[-1].headers["range"] == f"bytes={len(kept)}-"
    assert not part.exists()


def test_server_ignoring_range_restarts_from_zero(fake, client, dirs):
    lora_dir, ckpt_dir = dirs
    content = lora_bytes(8)
    entry = fake.add_model("NoRange", content)
    lora_dir.mkdir(parents=True)
    (lora_dir / "norange.safetensors.part").write_bytes(content[:5000])
    fake.ignore_range = True
    result = download(client, str(entry.version["id"]), lora_dir=lora_dir, checkpoint_dir=ckpt_dir)
    assert result.path.read_bytes() == content  # not the 5000 old bytes + the whole file again


def test_complete_part_answered_416_is_installed(fake, client, dirs):
    lora_dir, ckpt_dir = dirs
    content = lora_bytes(9)
    entry = fake.add_model("Done", content)
    lora_dir.mkdir(parents=True)
    (lora_dir / "done.safetensors.part").write_bytes(content)
    result = download(client, str(entry.version["id"]), lora_dir=lora_dir, checkpoint_dir=ckpt_dir)
    assert result.path.read_bytes() == content and result.resumed_from == len(content)


def test_wrong_hash_deletes_everything_and_fails_the_same_way_again(fake, client, dirs):
    lora_dir, ckpt_dir = dirs
    entry = fake.add_model("Liar", lora_bytes(10), listed_sha256=hashlib.sha256(b"other").hexdigest())
    sentence = fails_twice_the_same(
        lambda: download(client, str(entry.version["id"]), lora_dir=lora_dir, checkpoint_dir=ckpt_dir), HashMismatch
    )
    assert "SHA256" in sentence and hashlib.sha256(b"other").hexdigest()[:12].upper() in sentence
    assert_nothing_installed(lora_dir)


def test_size_mismatch_is_refused_before_writing(fake, client, dirs):
    lora_dir, ckpt_dir = dirs
    content = lora_bytes(11)
    entry = fake.add_model("Short", content, listed_size=len(content) + 50_000)
    sentence = fails_twice_the_same(
        lambda: download(client, str(entry.version["id"]), lora_dir=lora_dir, checkpoint_dir=ckpt_dir), SizeMismatch
    )
    assert f"is {len(content)} bytes but Civitai lists {len(content) + 50_000}" in sentence
    assert_nothing_installed(lora_dir)


def test_401_without_key_says_how_to_set_one_and_succeeds_with_it(fake, dirs):
    lora_dir, ckpt_dir = dirs
    entry = fake.add_model("Locked", lora_bytes(12))
    with CivitaiClient(fake.base_url, None) as anonymous:
        sentence = fails_twice_the_same(
            lambda: download(anonymous, str(entry.version["id"]), lora_dir=lora_dir, checkpoint_dir=ckpt_dir),
            LoginRequired,
        )
    assert "requires an API key" in sentence and "CIVITAI_API_TOKEN" in sentence and "--token" in sentence
    assert_nothing_installed(lora_dir)
    with CivitaiClient(fake.base_url, "wrong-key") as bad:
        with pytest.raises(LoginRequired) as err:
            download(bad, str(entry.version["id"]), lora_dir=lora_dir, checkpoint_dir=ckpt_dir)
    assert "refused the API key" in str(err.value) and "wrong-key" not in str(err.value)
    assert_nothing_installed(lora_dir)
    with CivitaiClient(fake.base_url, fake.token) as good:
        assert download(good, str(entry.version["id"]), lora_dir=lora_dir, checkpoint_dir=ckpt_dir).verified


def test_login_redirect_is_not_followed(fake, dirs):
    lora_dir, ckpt_dir = dirs
    entry = fake.add_model("Redirects", lora_bytes(13), login_redirect=True)
    with CivitaiClient(fake.base_url, None) as anonymous:
        fails_twice_the_same(
            lambda: download(anonymous, str(entry.version["id"]), lora_dir=lora_dir, checkpoint_dir=ckpt_dir),
            LoginRequired,
        )
    assert not fake.seen("api", "/login")  # the HTML login page was never fetched
    assert_nothing_installed(lora_dir)


def test_html_login_page_with_200_is_never_saved(fake, client, dirs):
    lora_dir, ckpt_dir = dirs
    entry = fake.add_model("Html", lora_bytes(14), login_page=True)
    sentence = fails_twice_the_same(
        lambda: download(client, str(entry.version["id"]), lora_dir=lora_dir, checkpoint_dir=ckpt_dir), NotAModelFile
    )
    assert "an HTML page instead of the file" in sentence
    assert_nothing_installed(lora_dir)


def test_html_body_without_html_content_type_is_caught_by_its_first_bytes(fake, client, dirs):
    lora_dir, ckpt_dir = dirs
    entry = fake.add_model("Sniff", lora_bytes(15))
    fake.script(
        f"/file/{entry.file['id']}",
        200,
        b"\n  <!DOCTYPE html><html>login</html>",
        {"Content-Type": "application/octet-stream"},
    )
    with pytest.raises(NotAModelFile):
        download(client, str(entry.version["id"]), lora_dir=lora_dir, checkpoint_dir=ckpt_dir)
    assert_nothing_installed(lora_dir)
    assert download(client, str(entry.version["id"]), lora_dir=lora_dir, checkpoint_dir=ckpt_dir).verified


def test_403_early_access_names_the_deadline(fake, client, dirs):
    lora_dir, ckpt_dir = dirs
    entry = fake.add_model("Early", lora_bytes(16), early_access="2031-06-01T12:30:00.000Z")
    sentence = fails_twice_the_same(
        lambda: download(client, str(entry.version["id"]), lora_dir=lora_dir, checkpoint_dir=ckpt_dir), EarlyAccess
    )
    assert "Early Access" in sentence and "until 2031-06-01 12:30 UTC" in sentence
    assert_nothing_installed(lora_dir)


def test_404_and_410(fake, client, dirs):
    lora_dir, ckpt_dir = dirs
    gone = fake.add_model("Archived", lora_bytes(17), gone=True)
    sentence = fails_twice_the_same(
        lambda: download(client, str(gone.version["id"]), lora_dir=lora_dir, checkpoint_dir=ckpt_dir), Gone
    )
    assert "archived" in sentence and "(410)" in sentence
    sentence = fails_twice_the_same(
        lambda: download(client, "version:999999", lora_dir=lora_dir, checkpoint_dir=ckpt_dir), NotFound
    )
    assert sentence == "Civitai has no model version 999999 (404); check the id or URL."
    assert_nothing_installed(lora_dir)


def test_429_honours_retry_after_then_succeeds(fake, client, dirs, sleeps):
    lora_dir, ckpt_dir = dirs
    entry = fake.add_model("Busy", lora_bytes(18))
    path = f"/api/download/models/{entry.version['id']}"
    fake.script(path, 429, {"error": "Too many requests"}, {"Retry-After": "3"}, times=2)
    result = download(client, str(entry.version["id"]), lora_dir=lora_dir, checkpoint_dir=ckpt_dir)
    assert result.verified and sleeps == [3.0, 3.0]


def test_429_beyond_the_bound_fails_with_one_sentence(fake, dirs):
    lora_dir, ckpt_dir = dirs
    entry = fake.add_model("Throttled", lora_bytes(19))
    path = f"/api/download/models/{entry.version['id']}"
    slept: list[float] = []
    with CivitaiClient(fake.base_url, fake.token, sleep=slept.append, retries=2, backoff=0.5) as c:
        fake.script(path, 429, b"slow down", times=6)
        sentence = fails_twice_the_same(
            lambda: download(c, str(entry.version["id"]), lora_dir=lora_dir, checkpoint_dir=ckpt_dir), RateLimited
        )
    assert sentence.startswith(f"Civitai kept rate-limiting requests for model version {entry.version['id']}")
    assert "after 3 attempts" in sentence
    assert slept == [0.5, 1.0, 0.5, 1.0]  # exponential backoff without Retry-After, bounded to 2 retries per call
    assert_nothing_installed(lora_dir)


def test_503_retry_after_then_unavailable(fake, dirs):
    lora_dir, ckpt_dir = dirs
    entry = fake.add_model("Down", lora_bytes(20))
    slept: list[float] = []
    with CivitaiClient(fake.base_url, fake.token, sleep=slept.append, retries=1, max_wait=5) as c:
        fake.script(f"/api/download/models/{entry.version['id']}", 503, b"", {"Retry-After": "60"}, times=4)
        fails_twice_the_same(
            lambda: download(c, str(entry.version["id"]), lora_dir=lora_dir, checkpoint_dir=ckpt_dir), Unavailable
        )
    assert slept == [5.0, 5.0]  # Retry-After capped at max_wait
    assert_nothing_installed(lora_dir)


def test_existing_target_same_file_is_kept_different_file_is_refused(fake, client, dirs):
    lora_dir, ckpt_dir = dirs
    content = lora_bytes(21)
    entry = fake.add_model("Twice", content)
    download(client, str(entry.version["id"]), lora_dir=lora_dir, checkpoint_dir=ckpt_dir)
    again = download(client, str(entry.version["id"]), lora_dir=lora_dir, checkpoint_dir=ckpt_dir)
    assert again.already_present and len(fake.seen("storage")) == 1
    (lora_dir / "twice.safetensors").write_bytes(b"something else")
    fails_twice_the_same(
        lambda: download(client, str(entry.version["id"]), lora_dir=lora_dir, checkpoint_dir=ckpt_dir), TargetExists
    )
    assert (lora_dir / "twice.safetensors").read_bytes() == b"something else"
    fixed = download(client, str(entry.version["id"]), lora_dir=lora_dir, checkpoint_dir=ckpt_dir, overwrite=True)
    assert fixed.path.read_bytes() == content


def test_hostile_file_name_stays_inside_the_folder(fake, client, dirs):
    lora_dir, ckpt_dir = dirs
    entry = fake.add_model("Evil", lora_bytes(22), file_name="../../evil.safetensors")
    result = download(client, str(entry.version["id"]), lora_dir=lora_dir, checkpoint_dir=ckpt_dir)
    assert result.path == lora_dir / "evil.safetensors"


def test_token_never_appears_in_errors_or_logs(fake, dirs, caplog):
    lora_dir, ckpt_dir = dirs
    secret = "sk-very-secret-value"
    fake.token = "other"
    entry = fake.add_model("Secret", lora_bytes(23))
    caplog.set_level("DEBUG")
    with CivitaiClient(fake.base_url, secret, sleep=lambda s: None) as c:
        assert secret not in repr(c)
        with pytest.raises(LoginRequired) as err:
            download(
                c,
                f"{fake.base_url}/api/download/models/{entry.version['id']}?token={secret}",
                lora_dir=lora_dir,
                checkpoint_dir=ckpt_dir,
            )
    assert secret not in str(err.value) and secret not in caplog.text
    assert (
        fake.seen("api", "/api/download/")[0].headers["authorization"] == f"Bearer {secret}"
    )  # it was sent, as a header


def test_fake_server_is_honest_about_shapes():
    """The fake lists the hashes Civitai would compute (checked against hashlib) and upper-case hex."""
    content = lora_bytes(24)
    with FakeCivitai() as f:
        entry = f.add_model("Shape", content)
    hashes = entry.file["hashes"]
    assert hashes["SHA256"] == hashlib.sha256(content).hexdigest().upper()
    assert hashes["AutoV2"] == hashes["SHA256"][:10]


def test_cancel_from_progress_keeps_the_part_for_resume(fake, client, dirs):
    lora_dir, ckpt_dir = dirs
    content = lora_bytes(25)
    entry = fake.add_model("Cancel", content)

    def stop_after_first_bytes(done, total):
        if done > 0:
            raise Cancelled("stopped by the user")

    with pytest.raises(Cancelled):
        download(
            client,
            str(entry.version["id"]),
            lora_dir=lora_dir,
            checkpoint_dir=ckpt_dir,
            on_progress=stop_after_first_bytes,
        )
    assert_nothing_installed(lora_dir, part_allowed=True)
    kept = (lora_dir / "cancel.safetensors.part").read_bytes()
    assert 0 < len(kept) < len(content) and content.startswith(kept)
    result = download(client, str(entry.version["id"]), lora_dir=lora_dir, checkpoint_dir=ckpt_dir)
    assert result.resumed_from == len(kept) and result.path.read_bytes() == content


def test_early_access_deadline_from_the_version_when_the_403_has_none(fake, client, dirs):
    lora_dir, ckpt_dir = dirs
    entry = fake.add_model("Early2", lora_bytes(26), early_access="2032-02-03T04:05:00.000Z")
    fake.script(f"/api/download/models/{entry.version['id']}", 403, {"error": "Early Access", "message": "Buy it"})
    with pytest.raises(EarlyAccess, match="until 2032-02-03 04:05 UTC"):
        download(client, str(entry.version["id"]), lora_dir=lora_dir, checkpoint_dir=ckpt_dir)


def test_description_comes_from_the_model_when_resolving_a_version(fake, client, dirs):
    lora_dir, ckpt_dir = dirs
    entry = fake.add_model("Desc", lora_bytes(27), description="<p>Made with <i>care</i></p>")
    download(client, f"version:{entry.version['id']}", lora_dir=lora_dir, checkpoint_dir=ckpt_dir)
    assert json.loads((lora_dir / "desc.json").read_text())["description"] == "Made with care"


def test_json_message_with_200_is_never_saved(fake, client, dirs):
    lora_dir, ckpt_dir = dirs
    entry = fake.add_model("JsonBody", lora_bytes(28))
    fake.script(f"/file/{entry.file['id']}", 200, b'{"error":"Unauthorized"}', {"Content-Type": "binary/octet-stream"})
    with pytest.raises(NotAModelFile, match="a JSON message instead of the file"):
        download(client, str(entry.version["id"]), lora_dir=lora_dir, checkpoint_dir=ckpt_dir)
    assert_nothing_installed(lora_dir)


def test_safetensors_whose_first_byte_is_a_brace_is_accepted(fake, client, dirs):
    """A header length of 0x..7B makes byte 0 a '{'; only a body that parses as JSON is refused."""
    lora_dir, ckpt_dir = dirs
    content = lora_bytes(29)
    header_len = int.from_bytes(content[:8], "little")
    pad = (0x7B - header_len) % 256  # safetensors allows trailing spaces in the header
    header = content[8 : 8 + header_len] + b" " * pad
    braced = (len(header)).to_bytes(8, "little") + header + content[8 + header_len :]
    assert braced[:1] == b"{"
    entry = fake.add_model("Brace", braced)
    assert (
        download(client, str(entry.version["id"]), lora_dir=lora_dir, checkpoint_dir=ckpt_dir).path.read_bytes()
        == braced
    )
