"""Textual-inversion embeddings through the A1111 API, with the ``webuiapi`` client: the listing in A1111's shape,
refresh-embeddings, an embedding in the negative prompt (``TI hashes``), an other-family one (a warning)."""

from __future__ import annotations

import hashlib
from urllib.parse import urlsplit

import numpy as np
import pytest
import requests
import torch
import webuiapi
from safetensors.torch import save_file

SMALL = dict(width=32, height=32, steps=2, seed=5)


@pytest.fixture
def embeddings(served):
    """Embeddings in the served home's folder (removed afterwards: the other server tests expect none)."""
    folder = served["home"] / "models" / "embeddings"
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    save_file({"emb_params": torch.randn(2, 64, generator=g) * 0.5}, str(folder / "blotq.safetensors"))  # demo
    torch.save(
        {"string_to_param": {"*": torch.randn(1, 768, generator=g)}, "step": 900, "sd_checkpoint": "abcd1234",
         "sd_checkpoint_name": "v1-5"},
        folder / "easyneg.pt",
    )  # fmt: skip
    save_file({"clip_l": torch.randn(3, 768), "clip_g": torch.randn(3, 1280)}, str(folder / "xlneg.safetensors"))
    yield folder
    for path in folder.iterdir():
        path.unlink()


def _api(served) -> webuiapi.WebUIApi:
    url = urlsplit(served["url"])
    return webuiapi.WebUIApi(host=url.hostname, port=url.port, sampler="Euler a", steps=4)


def test_get_embeddings_has_a1111s_shape(served, embeddings):
    api = _api(served)
    assert api.get_embeddings() == {
        "loaded": {"blotq": {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None, "shape": 64, "vectors": 2}},
        "skipped": {
            "easyneg": {"step": 900, "sd_checkpoint": "abcd1234", "sd_checkpoint_name": "v1-5", "shape": 768, "vectors": 1},
            "xlneg": {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None, "shape": 2048, "vectors": 3},
        },
    }  # the served checkpoint is the demo model: only its width-64 embedding is "loaded"
    save_file({"emb_params": torch.ones(1, 64)}, str(embeddings / "later.safetensors"))
    assert requests.post(f"{served['url']}/sdapi/v1/refresh-embeddings").status_code == 200
    assert "later" in api.get_embeddings()["loaded"]
    ours = requests.get(f"{served['url']}/loradeck/v1/embeddings").json()
    assert [e["name"] for e in ours] == ["blotq", "easyneg", "later", "xlneg"]


def test_an_embedding_in_the_negative_prompt_and_one_of_another_family(served, embeddings):
    api = _api(served)
    plain = api.txt2img(prompt="a red circle", **SMALL)
    with_neg = api.txt2img(prompt="a red circle", negative_prompt="blotq", **SMALL)
    assert not np.array_equal(np.asarray(plain.image), np.asarray(with_neg.image))
    sha = hashlib.sha256((embeddings / "blotq.safetensors").read_bytes()).hexdigest()[:12]
    assert f'TI hashes: "blotq: {sha}"' in with_neg.info["infotexts"][0]
    other = api.txt2img(prompt="a red circle easyneg", **SMALL)
    assert "Embedding easyneg is for SD1 but the model is Demo; it was skipped" in " ".join(other.info["warnings"])
