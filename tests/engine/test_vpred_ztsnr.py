"""A v-prediction, zero-terminal-SNR SDXL single file (NoobAI-XL V-Pred's ``v_pred``/``ztsnr`` marker keys) loads
as v-prediction with rescaled betas, and its samplers get that schedule (checked against the rescaling formula)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from loradeck.engine.checkpoints import load_base_model
from loradeck.engine.schedulers import make_scheduler
from loradeck.formats.ldm_family import zero_terminal_snr
from tests.helpers.checkpoints import write_checkpoint, write_tokenizer


@pytest.fixture(autouse=True)
def empty_hf_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))


def _zero_snr_alphas_cumprod(config: dict) -> torch.Tensor:
    """ᾱ of the scaled-linear schedule with √ᾱ shifted to end at 0 and scaled to keep its first value
    (Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps are Flawed", Algorithm 1)."""
    n = config["num_train_timesteps"]
    betas = torch.linspace(config["beta_start"] ** 0.5, config["beta_end"] ** 0.5, n, dtype=torch.float64) ** 2
    s = torch.cumprod(1 - betas, 0).sqrt()
    s0, s_last = s[0].clone(), s[-1].clone()
    s = (s - s_last) * s0 / (s0 - s_last)
    return s**2


def test_noobai_style_vpred_sdxl_file(tmp_path):
    path = tmp_path / "noobai-vpred.safetensors"
    write_checkpoint(path, "sdxl", seed=2)
    state = load_file(str(path))
    state["v_pred"], state["ztsnr"] = torch.tensor([]), torch.tensor([])
    save_file(state, str(path))
    model = load_base_model(path, tokenizer_dir=write_tokenizer(tmp_path / "tok"))
    assert model.prediction_type == "v_prediction"
    assert model.scheduler_config["rescale_betas_zero_snr"] is True
    for sampler in ("Euler", "Euler a", "DDIM"):
        scheduler = make_scheduler(model.scheduler_config, sampler, "Automatic")
        assert scheduler.config.prediction_type == "v_prediction", sampler
        assert scheduler.config.rescale_betas_zero_snr is True, sampler
        got = scheduler.alphas_cumprod.double()
        want = _zero_snr_alphas_cumprod(model.scheduler_config)
        # the last ᾱ is 0 by the formula; Euler-type samplers put 2^-24 there so that σ stays finite
        assert torch.allclose(got[:-1], want[:-1], rtol=1e-5, atol=1e-7), sampler
        assert float(got[-1]) <= 2.0**-24


def test_plain_sdxl_is_not_zero_snr():
    assert not zero_terminal_snr(["model.diffusion_model.input_blocks.0.0.weight"])
    assert zero_terminal_snr([], {"ss_zero_terminal_snr": "True"})
    assert zero_terminal_snr([], None, "model:\n  params:\n    zero_terminal_snr: true\n")
    assert not zero_terminal_snr([], None, "model:\n  params:\n    parameterization: v\n")
