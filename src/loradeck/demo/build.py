"""Build the embedded demo model from scratch: a tiny Stable Diffusion trained on drawn shapes.

    python -m loradeck.demo.build --out src/loradeck/demo/model --steps 4000

It is a real Stable Diffusion pipeline in the diffusers layout (U-Net with cross-attention, CLIP text encoder with
its own tokenizer, an AutoencoderKL, a scheduler config), only small: 32×32 pictures in pixel space. The autoencoder
is set by hand to an identity (see ``identity_vae``), so latents are pixels and ``vae_scale_factor`` is 1.

Training state is saved every ``--save-every`` steps; ``--resume`` goes on from the last one.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from loradeck.demo.shapes import COLOURS, SHAPES, random_scene, render

SIZE = 32
# Words the tokenizer keeps whole; anything else falls back to characters (every byte is in the vocabulary).
WORDS = (
    list(COLOURS)
    + list(SHAPES)
    + "a an on the of with and in at background picture image shape style big small left right top bottom".split()
    + "stripes striped stripy dots dotted dotty polka outline outlined inky lines".split()
)
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


# ---------------------------------------------------------------------------------------------------------- tokenizer
def bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible byte → printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def _learn_merges(words: list[str]) -> list[tuple[str, str]]:
    """Plain BPE: merge the most frequent adjacent pair until every word is one symbol."""
    seqs = [list(w[:-1]) + [w[-1] + "</w>"] for w in words]
    merges: list[tuple[str, str]] = []
    while True:
        counts: dict[tuple[str, str], int] = {}
        for s in seqs:
            for pair in zip(s, s[1:]):
                counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            return merges
        best = max(counts, key=lambda p: (counts[p], p))
        merges.append(best)
        for i, s in enumerate(seqs):
            out, j = [], 0
            while j < len(s):
                if j + 1 < len(s) and (s[j], s[j + 1]) == best:
                    out.append(s[j] + s[j + 1])
                    j += 2
                else:
                    out.append(s[j])
                    j += 1
            seqs[i] = out


def build_tokenizer(out: Path) -> None:
    """Write a CLIP tokenizer (vocab.json, merges.txt) whose vocabulary is our few words plus every byte."""
    out.mkdir(parents=True, exist_ok=True)
    chars = list(bytes_to_unicode().values())
    vocab_list = chars + [c + "</w>" for c in chars]
    merges = _learn_merges(sorted(set(WORDS)))
    vocab_list += ["".join(m) for m in merges]
    vocab_list += [BOS, EOS]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(vocab_list))}
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (out / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "pad_token": EOS,
        "do_lower_case": True,
        "errors": "replace",
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    specials = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    (out / "special_tokens_map.json").write_text(json.dumps(specials, indent=2))


# ---------------------------------------------------------------------------------------------------------- models
def unet_config() -> dict:
    return dict(
        sample_size=SIZE,
        in_channels=3,
        out_channels=3,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        cross_attention_dim=64,
        attention_head_dim=4,
        norm_num_groups=8,
    )


def text_config(vocab_size: int, bos: int, eos: int) -> dict:
    return dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=eos,
        projection_dim=64,
    )


def scheduler_config() -> dict:
    # The DDPM pixel-space schedule: SD's scaled_linear leaves too much signal at t=T for flat 32×32 pictures.
    return dict(
        num_train_timesteps=1000,
        beta_start=0.0001,
        beta_end=0.02,
        beta_schedule="linear",
        prediction_type="epsilon",
        steps_offset=1,
        timestep_spacing="leading",
    )


def identity_vae():
    """An AutoencoderKL that maps pixels to themselves (error ~1e-6), so latents are pixels.

    Each residual branch is zeroed (so every resnet is an identity). What is left is conv_in → GroupNorm → SiLU →
    conv_out. conv_in writes each colour channel twice, as +s·x and −s·x with s = 1e-6, into its own norm group:
    the group mean is then 0 and its variance (≤ 1e-12) vanishes beside the norm's eps (1e-6), so the norm is a
    fixed scale (1/√eps) that its weight undoes. A bias of 20 puts the values where SiLU(v) = v exactly in float32,
    and conv_out takes the +x channels and removes the 20.
    """
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
        block_out_channels=(6,),
        layers_per_block=1,
        latent_channels=3,
        norm_num_groups=3,
        sample_size=SIZE,
        scaling_factor=1.0,
        mid_block_add_attention=False,
        force_upcast=False,
    )
    s, shift = 1e-6, 20.0
    with torch.no_grad():
        for p in vae.parameters():
            p.zero_()
        for part in (vae.encoder, vae.decoder):
            for mod in part.modules():
                if isinstance(mod, torch.nn.GroupNorm):
                    mod.weight.fill_(1.0)
            for c in range(3):
                part.conv_in.weight[2 * c, c, 1, 1] = s
                part.conv_in.weight[2 * c + 1, c, 1, 1] = -s
            eps = part.conv_norm_out.eps
            part.conv_norm_out.weight.fill_(math.sqrt(eps) / s)
            part.conv_norm_out.bias.fill_(shift)
        for c in range(3):
            vae.encoder.conv_out.weight[c, 2 * c, 1, 1] = 1.0  # mean
            vae.decoder.conv_out.weight[c, 2 * c, 1, 1] = 1.0
        vae.encoder.conv_out.bias[:3] = -shift
        vae.encoder.conv_out.bias[3:] = -30.0  # log-variance: std ≈ 3e-7
        vae.decoder.conv_out.bias[:] = -shift
        vae.quant_conv.weight[:, :, 0, 0] = torch.eye(6)
        vae.post_quant_conv.weight[:, :, 0, 0] = torch.eye(3)
    return vae


# ---------------------------------------------------------------------------------------------------------- training
class Batches:
    """Endless batches of (pixels in [-1, 1], token ids); deterministic in (seed, step)."""

    def __init__(self, tokenizer, seed: int, empty_p: float = 0.1):
        self.seed, self.empty_p = seed, empty_p
        self.tokenizer = tokenizer
        self._ids: dict[str, torch.Tensor] = {}

    def ids(self, caption: str) -> torch.Tensor:
        if caption not in self._ids:
            enc = self.tokenizer(caption, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
            self._ids[caption] = enc.input_ids[0]
        return self._ids[caption]

    def __call__(self, step: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = random.Random(self.seed * 1_000_003 + step)
        imgs, ids = [], []
        for _ in range(batch):
            scene = random_scene(rng, SIZE)
            imgs.append(render(scene, SIZE))
            ids.append(self.ids("" if rng.random() < self.empty_p else scene.caption))
        x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        return x, torch.stack(ids)


def train(out: Path, steps: int, batch: int, lr: float, seed: int, save_every: int, resume: bool) -> None:
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.set_num_threads(1)  # one thread beats two on shared cores
    work = out.parent / (out.name + ".work")
    work.mkdir(parents=True, exist_ok=True)
    build_tokenizer(work / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(work / "tokenizer")
    torch.manual_seed(seed)
    bos, eos = tokenizer.convert_tokens_to_ids([BOS, EOS])
    text_encoder = CLIPTextModel(CLIPTextConfig(**text_config(len(tokenizer), bos, eos)))
    unet = UNet2DConditionModel(**unet_config())
    scheduler = DDPMScheduler(**scheduler_config())
    params = list(unet.parameters()) + list(text_encoder.parameters())
    ema = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)
    start = 0
    state_file = work / "train_state.pt"
    if resume and state_file.exists():
        state = torch.load(state_file, weights_only=True)
        unet.load_state_dict(state["unet"])
        text_encoder.load_state_dict(state["text_encoder"])
        opt.load_state_dict(state["opt"])
        ema = state["ema"]
        start = int(state["step"])
        print(f"resumed at step {start}", flush=True)

    warmup = 200
    min_snr_gamma = 5.0
    alphas = scheduler.alphas_cumprod
    snr = alphas / (1 - alphas)
    batches = Batches(tokenizer, seed)
    gen = torch.Generator().manual_seed(seed)
    t0, losses = time.time(), []
    for step in range(start, steps):
        frac = min(1.0, (step + 1) / warmup)
        cos = 0.5 * (1 + math.cos(math.pi * min(1.0, step / steps)))
        for g in opt.param_groups:
            g["lr"] = lr * frac * (0.05 + 0.95 * cos)
        gen.manual_seed(seed * 7919 + step)
        x, ids = batches(step, batch)
        noise = torch.randn(x.shape, generator=gen)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (batch,), generator=gen)
        noisy = scheduler.add_noise(x, noise, t)
        cond = text_encoder(ids).last_hidden_state
        pred = unet(noisy, t, cond).sample
        weight = torch.clamp(snr[t], max=min_snr_gamma) / snr[t]
        loss = (F.mse_loss(pred, noise, reduction="none").mean((1, 2, 3)) * weight).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(0.999, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema, params):
                e.lerp_(p.detach(), 1 - decay)
        losses.append(loss.item())
        done = step + 1
        if done % 50 == 0:
            rate = (time.time() - t0) / (done - start)
            print(
                f"step {done}/{steps} loss {np.mean(losses[-50:]):.4f} "
                f"{rate:.2f}s/step eta {rate * (steps - done) / 60:.1f}min",
                flush=True,
            )
        if done % save_every == 0 or done == steps:
            torch.save(
                {
                    "unet": unet.state_dict(),
                    "text_encoder": text_encoder.state_dict(),
                    "opt": opt.state_dict(),
                    "ema": ema,
                    "step": done,
                },
                state_file.with_suffix(".tmp"),
            )
            state_file.with_suffix(".tmp").replace(state_file)
            export(out, unet, text_encoder, tokenizer, ema, params)
            print(f"saved {out} at step {done} ({(time.time() - t0) / 60:.1f} min)", flush=True)


def shipped_scheduler():
    """The scheduler config that ships: clip_sample keeps x̂₀ in [-1, 1]; loradeck applies it to every sampler
    (engine/x0clamp.py), plain diffusers to DDIM."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(**scheduler_config(), clip_sample=True, set_alpha_to_one=False)


def export(out: Path, unet, text_encoder, tokenizer, ema, params) -> None:
    """Write the EMA weights as a diffusers StableDiffusionPipeline folder."""
    import copy

    from diffusers import StableDiffusionPipeline

    unet_e, te_e = copy.deepcopy(unet), copy.deepcopy(text_encoder)
    ema_params = list(unet_e.parameters()) + list(te_e.parameters())
    assert len(ema_params) == len(params)
    with torch.no_grad():
        for p, e in zip(ema_params, ema):
            p.copy_(e)
    pipe = StableDiffusionPipeline(
        vae=identity_vae(),
        text_encoder=te_e,
        tokenizer=tokenizer,
        unet=unet_e,
        scheduler=shipped_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    tmp = out.parent / (out.name + ".tmp")
    pipe.save_pretrained(tmp, safe_serialization=True)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.replace(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "model")
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save-every", type=int, default=250)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--scheduler-only", action="store_true", help="rewrite the shipped scheduler config and stop")
    a = ap.parse_args()
    if a.scheduler_only:
        shipped_scheduler().save_config(a.out / "scheduler")
        return
    train(a.out, a.steps, a.batch, a.lr, a.seed, a.save_every, a.resume)


if __name__ == "__main__":
    main()
