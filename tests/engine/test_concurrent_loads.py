"""Two threads loading models at once (two studios in one process, a trainer beside a loader) both get real weights:
accelerate's empty-weights switch is process-wide, so every build holds loradeck.empty_init.BUILD_LOCK."""

from __future__ import annotations

import threading

import torch

from loradeck.demo.paths import demo_model_dir
from loradeck.empty_init import BUILD_LOCK
from loradeck.engine.checkpoints import load_base_model


def _no_meta(model) -> bool:
    return not any(t.is_meta for t in [*model.parameters(), *model.buffers()])


def test_concurrent_loads_and_builds_get_real_tensors():
    loaded, errors = [], []

    def load():
        try:
            for _ in range(2):
                base = load_base_model(demo_model_dir())
                loaded.append(all(_no_meta(m) for m in (base.unet, base.vae, base.text_encoder)))
        except Exception as exc:  # noqa: BLE001 — the test reports whatever a racing load raised
            errors.append(exc)

    def build():  # plain modules built meanwhile, as a LoRA trainer does
        for _ in range(200):
            with BUILD_LOCK:
                layer = torch.nn.Linear(4, 4)
            loaded.append(not layer.weight.is_meta)

    threads = [threading.Thread(target=load), threading.Thread(target=load), threading.Thread(target=build)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and loaded and all(loaded)
