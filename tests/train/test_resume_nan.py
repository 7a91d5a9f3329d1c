"""A killed run resumes from its last saved state and ends where an uninterrupted run ends; NaN stops cleanly."""

from __future__ import annotations

import threading

import pytest
import torch
from safetensors.torch import load_file

from loradeck.train import TrainingDiverged, train_lora
from loradeck.train.dataset import TrainDataset

from .conftest import small_config


class Killed(Exception):
    pass


def _kill_after(n: int):
    def progress(p):
        if p.phase == "train" and p.step == n:
            raise Killed  # like a kill -9 right after the save at step n

    return progress


def _same_tensors(a, b) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_after_kill_matches_uninterrupted_run(shapes_data, demo_base, tmp_path):
    steps = 6
    ref = train_lora(small_config(shapes_data, demo_base, tmp_path / "ref", steps=steps, save_every=3))

    cfg = small_config(shapes_data, demo_base, tmp_path / "cut", steps=steps, save_every=3, save_precision="float")
    with pytest.raises(Killed):
        train_lora(cfg, on_progress=_kill_after(4))  # state saved at 3, step 4 done but lost
    assert not (cfg.lora_dir / "testlora.safetensors").exists()
    resumed = train_lora(cfg.with_(resume=True, save_precision="fp16"))

    assert resumed.steps == steps == resumed.total_steps
    assert len(resumed.losses) == steps
    assert resumed.losses == ref.losses  # the loss continues exactly where it was
    _same_tensors(load_file(resumed.lora_path), load_file(ref.lora_path))


def test_cancel_saves_state_and_resume_finishes(shapes_data, demo_base, tmp_path):
    ref = train_lora(small_config(shapes_data, demo_base, tmp_path / "ref", steps=4))
    event = threading.Event()

    def progress(p):
        if p.phase == "train" and p.step == 2:
            event.set()

    cfg = small_config(shapes_data, demo_base, tmp_path / "cut", steps=4)
    first = train_lora(cfg, on_progress=progress, cancel=event)
    assert first.cancelled and first.steps == 2 and first.lora_path is None
    second = train_lora(cfg.with_(resume=True))
    assert second.steps == 4 and second.losses == ref.losses
    _same_tensors(load_file(second.lora_path), load_file(ref.lora_path))


def test_nan_loss_stops_with_the_last_good_weights(shapes_data, demo_base, tmp_path, monkeypatch):
    original = TrainDataset.batch

    def poisoned(self, step, encode):
        batch = original(self, step, encode)
        if step == 3:  # the 4th step sees a NaN latent (as from an fp16 VAE overflow)
            batch.latents[0, 0, 0, 0] = float("nan")
        return batch

    monkeypatch.setattr(TrainDataset, "batch", poisoned)
    cfg = small_config(shapes_data, demo_base, tmp_path / "nan", steps=6, save_precision="float")
    with pytest.raises(TrainingDiverged) as err:
        train_lora(cfg)
    message = str(err.value)
    # the weights that gave the NaN (after 3 steps) are not trusted; the last ones with a finite loss are kept
    assert "step 4" in message and "after 2 steps" in message and "-last-good.safetensors" in message
    good = load_file(cfg.output_dir / "testlora-last-good.safetensors")
    assert all(torch.isfinite(t).all() for t in good.values())
    assert not (cfg.lora_dir / "testlora.safetensors").exists()

    monkeypatch.setattr(TrainDataset, "batch", original)
    two = train_lora(small_config(shapes_data, demo_base, tmp_path / "two", steps=2, save_precision="float"))
    _same_tensors(good, load_file(two.lora_path))  # exactly the weights after 2 steps


def test_exploding_learning_rate_is_caught(shapes_data, demo_base, tmp_path):
    cfg = small_config(
        shapes_data, demo_base, tmp_path / "boom", steps=8, lr=1e30, max_grad_norm=0, save_precision="float"
    )
    with pytest.raises(TrainingDiverged, match="NaN or infinite"):
        train_lora(cfg)
    good = load_file(cfg.output_dir / "testlora-last-good.safetensors")
    assert all(torch.isfinite(t).all() for t in good.values())
