from __future__ import annotations

import pytest

from loradeck.civitai import CivitaiClient
from tests.civitai.fake_server import FakeCivitai


@pytest.fixture
def fake():
    with FakeCivitai() as server:
        yield server


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(fake, sleeps):
    """A client with the right key whose sleeps are recorded instead of waited."""
    with CivitaiClient(fake.base_url, fake.token, sleep=sleeps.append, timeout=10) as c:
        yield c


@pytest.fixture
def dirs(tmp_path):
    lora, ckpt = tmp_path / "models" / "Lora", tmp_path / "models" / "Stable-diffusion"
    return lora, ckpt
