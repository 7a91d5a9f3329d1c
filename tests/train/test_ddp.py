"""`loradeck train --num-processes 2` (DDP through accelerate, gloo on CPU) trains the weights one process trains with
the same global batch, within fp32 tolerance; a global batch smaller than the processes (a stand-in row with weight 0)
included, flips and caption randomness included. The settings travel to each process as a train.toml."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from loradeck.cli.launch import toml_text
from loradeck.train import TrainConfig
from tests.train.conftest import draw_pictures

SRC = Path(__file__).resolve().parents[2] / "src"


def train(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(SRC), "LORADECK_HOME": str(home), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "loradeck", "train", *args], env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_two_processes_train_what_one_trains_with_the_same_global_batch(tmp_path, demo_base):
    data = tmp_path / "data"
    draw_pictures(data / "1_shapes", 3)  # 3 pictures, global batch 2: every other step has 1 picture for 2 processes
    common = [
        "--data", str(data), "--base", str(demo_base), "--rank", "2", "--alpha", "1", "--lr", "5e-3",
        "--steps", "4", "--seed", "5", "--save-precision", "float", "--flip-aug", "--shuffle-caption",
        "--caption-tag-dropout-rate", "0.3", "--device", "cpu",
    ]  # fmt: skip
    one = train(tmp_path / "h1", *common, "--name", "one", "--batch-size", "2", "--lora-dir", str(tmp_path / "l1"))
    assert one.returncode == 0, one.stderr[-2000:]
    two = train(
        tmp_path / "h2", *common, "--name", "two", "--batch-size", "1", "--num-processes", "2",
        "--lora-dir", str(tmp_path / "l2"),
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-2000:]
    assert "saved" in two.stderr and str(tmp_path / "l2" / "two.safetensors") in two.stderr.replace("\n", "")
    a, b = load_file(str(tmp_path / "l1" / "one.safetensors")), load_file(str(tmp_path / "l2" / "two.safetensors"))
    assert a.keys() == b.keys() and any(k.startswith("lora_te") for k in a)  # U-Net and text encoder trained
    # fp32 tolerance for AdamW: it normalises each gradient, so the summation-order noise of DDP's all-reduce (two
    # half-batch gradients vs one full-batch gradient) shows as a small fraction of one step (lr = 5e-3); a different
    # batch composition moves elements by up to 2 × lr per step, three orders of magnitude more.
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=2e-5, msg=key)
    ups = [k for k in a if k.endswith("lora_up.weight")]
    assert all(a[k].abs().max() > 0 for k in ups)  # lora_up starts at 0: the steps really moved the weights
    meta = [
        safe_open(str(p), "pt").metadata()
        for p in (tmp_path / "l1" / "one.safetensors", tmp_path / "l2" / "two.safetensors")
    ]
    assert meta[0]["ss_total_batch_size"] == meta[1]["ss_total_batch_size"] == "2"
    assert meta[0]["ss_num_batches_per_epoch"] == meta[1]["ss_num_batches_per_epoch"] == "2"
    assert not list((tmp_path / "l2").glob("two*.safetensors"))[1:]  # one file, written once (by process 0)


def test_the_settings_survive_the_trip_through_toml(tmp_path):
    cfg = TrainConfig(
        data=tmp_path / "data dir", name='odd "name"', lr=1e-5, alpha=0.5, sample_prompts=["a cat --n dog", "b"],
        flip_aug=True, warmup=0.1, steps=7, min_snr_gamma=5.0,
    )  # fmt: skip
    path = tmp_path / "train.toml"
    path.write_text(toml_text(cfg.to_dict()))
    assert tomllib.loads(path.read_text())["name"] == 'odd "name"'
    assert TrainConfig.from_toml(path) == cfg
