"""Search with cursor pages, records, references, batched hash lookups, retries, redaction."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from loradeck.civitai import CivitaiClient, parse_reference
from loradeck.civitai.errors import InvalidReference, NoSuchFile, NotFound, NotJson, redact_url
from loradeck.civitai.http import parse_retry_after
from loradeck.civitai.records import ModelImage, ModelVersion
from loradeck.civitai.refs import Reference
from loradeck.settings import Settings
from tests.civitai.fake_server import lora_bytes


def test_search_follows_cursors_to_the_end(fake, client):
    names = [f"Style {i}" for i in range(5)]
    for i, name in enumerate(names):
        fake.add_model(name, lora_bytes(i, width=8))
    fake.add_model("Style nsfw", lora_bytes(9, width=8), nsfw=True)
    fake.add_model("Style ckpt", lora_bytes(10, width=8), type="Checkpoint")
    pages = list(client.search_pages("style", types=["LORA", "LoCon"], limit=2))
    assert [len(p.items) for p in pages] == [2, 2, 1]
    assert [m.name for p in pages for m in p.items] == names  # nsfw off and the type filter drop the others
    assert [p.next_cursor for p in pages] == ["2", "4", None]
    first = fake.seen("api", "/api/v1/models?")[0].path
    assert "types=LORA&types=LoCon" in first and "nsfw=false" in first and "cursor" not in first
    assert fake.seen("api", "/api/v1/models?")[1].path.endswith("cursor=2")
    assert len(list(client.search_pages("style", types=["LORA"], limit=2, max_pages=2))) == 2


def test_search_parses_nested_versions(fake, client):
    entry = fake.add_model("Pixel", lora_bytes(1, width=8), trained_words=["px"], base_model="SDXL 1.0")
    (model,) = client.search("pixel", nsfw=True, base_models=["SDXL 1.0"]).items
    version = model.latest
    assert (model.id, model.type, version.model_id, version.model_type) == (entry.model["id"], "LORA", model.id, "LORA")
    assert version.trained_words == ("px",) and version.base_model == "SDXL 1.0"
    assert version.primary_file.sha256 == hashlib.sha256(entry.content).hexdigest().upper()
    assert version.primary_file.size_bytes == len(entry.content)
    assert "baseModels=SDXL+1.0" in fake.seen("api", "/api/v1/models?")[0].path


def test_search_503_retries_with_retry_after(fake, client, sleeps):
    fake.add_model("Anything", lora_bytes(1, width=8))
    body = {"error": "Model search is temporarily overloaded — please retry."}
    fake.script("/api/v1/models", 503, body, {"Retry-After": "2"})
    assert len(client.search("any").items) == 1
    assert sleeps == [2.0]


def test_html_instead_of_json_is_one_sentence(fake, client):
    fake.script("/api/v1/models", 200, b"<!DOCTYPE html><title>Just a moment...</title>", {"Content-Type": "text/html"})
    with pytest.raises(NotJson, match="web page instead of JSON"):
        client.search("x")


def test_model_and_version_records(fake, client):
    entry = fake.add_model("Rec", lora_bytes(2, width=8), early_access="2030-01-02T03:04:05.000Z")
    model = client.model(entry.model["id"])
    version = client.version(entry.version["id"])
    assert model.versions[0].id == version.id and version.raw == entry.version
    assert version.early_access_ends == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert version.images[0].meta["seed"] == entry.version["images"][0]["id"]  # /model-versions images carry meta
    assert model.versions[0].images[0].meta is None  # /models images do not
    with pytest.raises(NotFound, match=r"^Civitai has no model 424242 \(404\)"):
        client.model(424242)


def test_lookups_by_hash(fake, client):
    a = fake.add_model("A", lora_bytes(3, width=8))
    b = fake.add_model("B", lora_bytes(4, width=8))
    sha_a = hashlib.sha256(a.content).hexdigest()
    assert client.version_by_hash(sha_a).id == a.version["id"]
    assert client.version_by_hash(b.file["hashes"]["AutoV3"].lower()).id == b.version["id"]
    assert client.version_by_hash("0" * 64) is None
    assert client.version_by_hash("e3b0c44298fc") is None and not fake.seen(
        "api", "/api/v1/model-versions/by-hash/E3B0"
    )
    unknown = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(149)]
    found = client.versions_by_sha256([sha_a.lower(), *unknown])
    assert {k: v.id for k, v in found.items()} == {sha_a.upper(): a.version["id"]}
    posts = [r for r in fake.requests if r.method == "POST"]
    assert len(posts) == 2  # 150 hashes → batches of 100 and 50


def test_resolve_every_reference_form(fake, client):
    entry = fake.add_model("Resolve", lora_bytes(5, width=8))
    mid, vid, fid = entry.model["id"], entry.version["id"], entry.file["id"]
    base = fake.base_url
    for ref in (
        str(mid),
        str(vid),  # no model has this id, so it is tried as a version
        f"{base}/models/{mid}/resolve-slug",
        f"{base}/models/{mid}?modelVersionId={vid}",
        f"{base}/api/download/models/{vid}?type=Model&format=SafeTensor",
        f"urn:air:sd1:lora:civitai:{mid}@{vid}",
        f"version:{vid}",
    ):
        resolved = client.resolve(ref)
        assert (resolved.version.id, resolved.file.id) == (vid, fid), ref
    assert client.resolve(str(mid), file_id=fid).file.id == fid
    with pytest.raises(NoSuchFile, match="has no file with id 5$|has no file with id 5\\."):
        client.resolve(str(vid), file_id=5)
    with pytest.raises(NotFound, match="model or model version with id 777777"):
        client.resolve("777777")


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("12345", Reference(bare_id=12345)),
        ("https://civitai.com/models/12345", Reference(model_id=12345)),
        (
            "https://civitai.com/models/12345/pixel-style?modelVersionId=67890",
            Reference(model_id=12345, version_id=67890),
        ),
        ("civitai.com/models/12345?version=67890", Reference(model_id=12345, version_id=67890)),
        ("https://civitai.red/api/download/models/67890?type=Model&fileId=7", Reference(version_id=67890, file_id=7)),
        ("https://civitai.com/api/v1/model-versions/67890", Reference(version_id=67890)),
        ("https://civitai.com/model-versions/67890", Reference(version_id=67890)),
        ("https://civitai.com/api/v1/models/12345", Reference(model_id=12345)),
        ("urn:air:sdxl:lora:civitai:12345@67890", Reference(model_id=12345, version_id=67890)),
        ("urn:air:sdxl:lora:civitai:12345@67890+7.safetensors", Reference(model_id=12345, version_id=67890, file_id=7)),
        ("12345@67890", Reference(model_id=12345, version_id=67890)),
        ("model:12", Reference(model_id=12)),
        ("version=34", Reference(version_id=34)),
    ],
)
def test_parse_reference(ref, expected):
    assert parse_reference(ref) == expected


@pytest.mark.parametrize("ref", ["", "pixel style", "https://civitai.com/user/someone", "ftp:/x"])
def test_parse_reference_rejects(ref):
    with pytest.raises(InvalidReference, match="is not a Civitai model URL"):
        parse_reference(ref)


def test_invalid_reference_hides_a_token():
    with pytest.raises(InvalidReference) as err:
        parse_reference("https://civitai.com/user/x?token=abc123")
    assert "abc123" not in str(err.value)


def test_redact_url():
    url = "https://u:pw@civitai.com/api/download/models/1?type=Model&token=s3cret&fp=fp16"
    assert redact_url(url) == "https://civitai.com/api/download/models/1?type=Model&token=***&fp=fp16"


def test_retry_after_forms():
    now = datetime(2025, 1, 1, tzinfo=UTC)
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=42), usegmt=True), now) == 42.0
    assert parse_retry_after("soon", now) is None and parse_retry_after(None) is None


def test_auth_only_to_civitai_origins():
    c = CivitaiClient("http://127.0.0.1:8000", "k")
    assert c.authorized("http://127.0.0.1:8000/api/download/models/1")
    assert c.authorized("https://civitai.com/api/download/models/1") and c.authorized("https://civitai.red/x")
    assert not c.authorized("http://127.0.0.1:9000/file/1")  # another port is another origin
    assert not c.authorized("https://bucket.r2.cloudflarestorage.com/x") and not c.authorized("http://civitai.com/x")
    assert not c.authorized("https://evilcivitai.com/x")
    c.close()


def test_from_settings_and_user_agent():
    c = CivitaiClient.from_settings(Settings(civitai_url="http://mirror.test/", civitai_token="zq-secret-9"))
    assert c.base_url == "http://mirror.test" and c.has_token and "zq-secret-9" not in repr(c)
    assert c._http.headers["User-Agent"].startswith("loradeck/")
    c.close()


def test_image_nsfw_rule():
    def img(level):
        return ModelImage.from_json({"url": "u", "nsfwLevel": level, "type": "image"})

    assert [img(lv).allowed(False) for lv in (0, 1, 2, 4, 8, 32)] == [False, True, True, False, False, False]
    assert [img(lv).allowed(True) for lv in (0, 1, 4, 16, 32)] == [True, True, True, True, False]


def test_primary_file_rules():
    v = ModelVersion.from_json(
        {"id": 1, "files": [{"id": 1, "type": "VAE"}, {"id": 2, "type": "Model"}, {"id": 3, "type": "Model"}]}
    )
    assert v.primary_file.id == 2  # no primary flag (as in /models) → first Model file
    v = ModelVersion.from_json({"id": 1, "files": [{"id": 2, "type": "Model"}, {"id": 3, "primary": True}]})
    assert v.primary_file.id == 3 and v.file(2).id == 2 and v.file(9) is None
