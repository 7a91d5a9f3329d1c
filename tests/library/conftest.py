"""Fixtures for library tests: a LoRA dir, a checkpoint dir and a cache dir under tmp_path."""

from __future__ import annotations

import pytest

from loradeck.library import Library


@pytest.fixture
def dirs(tmp_path):
    lora, ckpt, cache = tmp_path / "Lora", tmp_path / "Stable-diffusion", tmp_path / "cache"
    lora.mkdir()
    ckpt.mkdir()
    return lora, ckpt, cache


@pytest.fixture
def make_library(dirs):
    def make(hasher=None) -> Library:
        lora, ckpt, cache = dirs
        return Library(lora, ckpt, cache, hash_fn=hasher)

    return make
