import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty LORADECK_HOME for the test."""
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("LORADECK_HOME", str(h))
    return h
