"""Run a generation on loaded model components with diffusers' pipelines.

We own what makes results reproducible and A1111-like (per-image CPU generators, sampler mapping, prompt
conditioning, cancellation); diffusers owns the sampling loop, which it does well.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from loradeck.engine.conditioning import Conditioning
from loradeck.engine.schedulers import make_scheduler
from loradeck.errors import Cancelled, InvalidRequest

ProgressFn = Callable[[int, int], None]  # (step done, total steps) for the current batch


@dataclass
class Components:
    """The parts of a loaded base model that a pipeline needs (diffusers/transformers modules)."""

    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    scheduler_config: dict[str, Any]
    text_encoder_2: Any = None
    tokenizer_2: Any = None

    @property
    def is_sdxl(self) -> bool:
        return self.text_encoder_2 is not None

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def native_size(self) -> int:
        return int(self.unet.config.sample_size) * self.vae_scale_factor


@dataclass
class Job:
    """Control of a running generation from another thread: interrupt (stop all) and skip (stop this batch)."""

    interrupted: threading.Event = field(default_factory=threading.Event)
    skipped: threading.Event = field(default_factory=threading.Event)


class _Skip(Exception):
    pass


class Runner:
    """Holds the diffusers pipelines built once over shared components."""

    def __init__(self, components: Components, device: torch.device, dtype: torch.dtype):
        from diffusers import (
            StableDiffusionImg2ImgPipeline,
            StableDiffusionPipeline,
            StableDiffusionXLImg2ImgPipeline,
            StableDiffusionXLPipeline,
        )

        self.c, self.device, self.dtype = components, device, dtype
        scheduler = make_scheduler(components.scheduler_config, "Euler", "Automatic")
        unet = components.unet
        if components.scheduler_config.get("clip_sample"):  # pixel-space model (the demo): clamp x̂₀ for every sampler
            from diffusers import DDPMScheduler

            from loradeck.engine.x0clamp import X0ClampedUNet

            alphas = DDPMScheduler.from_config(components.scheduler_config).alphas_cumprod
            clip = float(components.scheduler_config.get("clip_sample_range", 1.0))
            unet = X0ClampedUNet(unet, alphas, clip).to(device)
        self.nine = None
        if int(components.unet.config.in_channels) == 9:  # an inpainting checkpoint (engine/inpaint_unet.py)
            from loradeck.engine.inpaint_unet import NineChannelUNet

            unet = self.nine = NineChannelUNet(unet)
        parts = dict(
            vae=components.vae,
            text_encoder=components.text_encoder,
            tokenizer=components.tokenizer,
            unet=unet,
            scheduler=scheduler,
        )
        if components.is_sdxl:
            parts |= dict(text_encoder_2=components.text_encoder_2, tokenizer_2=components.tokenizer_2)
            self.txt2img = StableDiffusionXLPipeline(**parts)
            self.img2img = StableDiffusionXLImg2ImgPipeline(**parts)
        else:
            parts |= dict(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
            self.txt2img = StableDiffusionPipeline(**parts)
            self.img2img = StableDiffusionImg2ImgPipeline(**parts)
        for pipe in (self.txt2img, self.img2img):
            pipe.set_progress_bar_config(disable=True)

    def _inpainting(self, pipe: Any, inpaint: tuple[Image.Image, int] | None, images: Any, generators: list):
        """The hooks of an inpainting pass (a no-op context without a mask)."""
        if inpaint is None or images is None:
            return _no_hooks()
        from diffusers import DDPMScheduler

        from loradeck.engine.inpaint import inpaint_hooks, latent_mask

        mask, fill_mode = inpaint
        vae = self.c.vae
        scale = float(getattr(vae.config, "scaling_factor", 1.0) or 1.0)
        with torch.inference_mode():
            pixels = pipe.image_processor.preprocess(images[0]).to(self.device, vae.dtype)
            init = vae.encode(pixels).latent_dist.mode().to(self.dtype) * scale
        redraw = latent_mask(mask, tuple(init.shape[-2:])).to(self.device, self.dtype)
        noise = torch.stack([torch.randn(init.shape[1:], generator=g) for g in generators])
        return inpaint_hooks(
            pipe.unet,
            vae,
            init_latents=init,
            redraw=redraw,
            alphas_cumprod=DDPMScheduler.from_config(self.c.scheduler_config).alphas_cumprod,
            prediction=self.c.scheduler_config.get("prediction_type", "epsilon"),
            fill_mode=fill_mode,
            noise=noise.to(self.device, self.dtype),
            scaling_factor=scale,
        )

    def _nine_conditioning(self, pipe: Any, width: int, height: int, n: int, inpaint, images) -> torch.Tensor:
        """A 9-channel model's mask and masked-picture latents for this batch (A1111's, engine/inpaint_unet.py)."""
        from loradeck.engine.inpaint import latent_mask
        from loradeck.engine.inpaint_unet import conditioning

        f = self.c.vae_scale_factor
        hw = (height // f, width // f)
        if inpaint is None or not isinstance(images, list):  # txt2img, img2img without a mask: redraw everything
            return conditioning(self.c.vae, None, None, n, hw)
        with torch.inference_mode():
            picture = pipe.image_processor.preprocess(images[0])
        return conditioning(self.c.vae, picture, latent_mask(inpaint[0], hw), n, hw)

    def run(
        self,
        cond: Conditioning,
        seeds: list[int],
        *,
        steps: int,
        cfg_scale: float,
        sampler: str,
        schedule: str,
        width: int,
        height: int,
        init_image: Image.Image | list[Image.Image] | torch.Tensor | None = None,
        denoising_strength: float = 0.75,
        job: Job | None = None,
        progress: ProgressFn | None = None,
        on_latents: Callable[[torch.Tensor], None] | None = None,
        cond_at: Callable[[int], Conditioning] | None = None,
        output: str = "pil",
        variation: tuple[list[int], float] | None = None,
        step_hook: Callable[[int, int], None] | None = None,
        inpaint: tuple[Image.Image, int] | None = None,
        noise_multiplier: float = 1.0,
    ) -> list[Image.Image] | torch.Tensor | None:
        """One batch: ``len(seeds)`` images, image i drawn from its own CPU generator seeded ``seeds[i]``.

        ``cond_at(step)`` gives the conditioning of each sampling step (0-based) when it changes during sampling
        (prompt editing); ``cond`` is step 0's. ``init_image`` (img2img) is a picture, one per seed, or latents [n, c, h, w] (the
        hires fix's latent upscale); ``output="latent"`` returns the final latents instead of pictures. Returns None
        when the batch was skipped; raises Cancelled when interrupted. ``variation`` = (subseeds, strength): A1111's
        variation seeds for the starting noise (txt2img). ``step_hook(step, total)`` is called before each sampling
        step (0-based; scheduled LoRA weights, ``lora/sidecar.py``). ``inpaint`` = (blurred mask at ``width``×``height``,
        fill mode): the init picture's latents are kept outside the mask at every step (``engine.inpaint``).
        ``noise_multiplier`` scales the noise added to an init picture (A1111's initial_noise_multiplier, img2img).
        """
        if width % 8 or height % 8 or width < 8 or height < 8:
            raise InvalidRequest(f"Size {width}x{height} is not possible: width and height must be multiples of 8.")
        if width % self.c.vae_scale_factor or height % self.c.vae_scale_factor:
            raise InvalidRequest(
                f"Size {width}x{height} must be a multiple of {self.c.vae_scale_factor} for this model."
            )
        job = job or Job()
        n = len(seeds)
        # CPU generators: the same seed gives the same picture on every machine (A1111's RNG "CPU").
        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        scheduler = make_scheduler(self.c.scheduler_config, sampler, schedule, seeds=seeds, sdxl=self.c.is_sdxl)
        if noise_multiplier != 1.0 and init_image is not None:  # img2img noises the init latents once: scale it
            add_noise = scheduler.add_noise
            scheduler.add_noise = lambda x, noise, t: add_noise(x, noise * noise_multiplier, t)
        pipe = self.img2img if init_image is not None else self.txt2img
        pipe.scheduler = scheduler
        total = steps if init_image is None else max(1, int(steps * min(denoising_strength, 1.0)))
        if init_image is not None and int(steps * min(denoising_strength, 1.0)) < 1:
            # diffusers would run int(steps·strength) = 0 steps and fail; A1111 runs one, from the noise level of
            # the last of ``steps`` steps (the whole schedule when steps = 1). The margin survives 1/49·49 < 1.
            denoising_strength = min(1.0, (1 + 1e-6) / steps)

        current = [cond]

        def on_step(pipe_, i, _t, kwargs):
            if job.interrupted.is_set():
                raise Cancelled("Generation was interrupted.")
            if job.skipped.is_set():
                raise _Skip
            if on_latents is not None:
                on_latents(kwargs["latents"])
            if cond_at is not None and i + 1 < total and (nxt := cond_at(i + 1)) is not current[0]:
                current[0] = nxt
                kwargs.update(_step_embeds(nxt, n, pipe_.do_classifier_free_guidance, kwargs))
            if step_hook is not None and i + 1 < total:
                step_hook(i + 1, total)
            if progress:
                progress(i + 1, total)
            return kwargs

        kwargs: dict[str, Any] = dict(
            num_inference_steps=steps,
            guidance_scale=cfg_scale,
            generator=generators,
            output_type="latent" if output == "latent" else "np",
            callback_on_step_end=on_step,
            callback_on_step_end_tensor_inputs=["latents", "prompt_embeds"]
            + (["add_text_embeds"] if self.c.is_sdxl else []),
        )
        kwargs |= cond.repeat(n)
        if variation is not None and init_image is None:
            from loradeck.engine.noise import variation_noise

            f = self.c.vae_scale_factor
            shape = (self.c.vae.config.latent_channels, height // f, width // f)
            kwargs["latents"] = variation_noise(generators, variation[0], variation[1], shape, self.dtype)
        if isinstance(init_image, torch.Tensor):
            kwargs |= dict(image=init_image.to(self.device, self.dtype), strength=denoising_strength)
        elif init_image is not None:
            pictures = init_image if isinstance(init_image, list) else [init_image] * n
            images = [p.convert("RGB").resize((width, height), Image.Resampling.LANCZOS) for p in pictures]
            kwargs |= dict(image=images, strength=denoising_strength)
        else:
            kwargs |= dict(width=width, height=height)
        if self.c.is_sdxl:
            kwargs |= dict(original_size=(height, width), target_size=(height, width))
        if step_hook is not None:
            step_hook(0, total)
        hooks = _interrupt_hooks(self.c.unet, job)
        if self.nine is not None:
            self.nine.conditioning = self._nine_conditioning(pipe, width, height, n, inpaint, kwargs.get("image"))
        try:
            with torch.inference_mode(), self._inpainting(pipe, inpaint, kwargs.get("image"), generators):
                arrays = pipe(**kwargs).images
        except _Skip:
            job.skipped.clear()
            return None
        finally:
            for hook in hooks:
                hook.remove()
            if self.nine is not None:
                self.nine.conditioning = None
        if output == "latent":
            return arrays
        return [Image.fromarray(np.round(a * 255).clip(0, 255).astype(np.uint8)) for a in arrays]


def _no_hooks():
    from contextlib import nullcontext

    return nullcontext()


def _interrupt_hooks(unet: Any, job: Job) -> list:
    """Check the interrupt flag before each block of the U-Net, so an interrupt takes effect inside a step (a step of
    a large picture can take minutes on a CPU), not only between steps."""

    def check(_module, _args) -> None:
        if job.interrupted.is_set():
            raise Cancelled("Generation was interrupted.")

    blocks = [*getattr(unet, "down_blocks", []), getattr(unet, "mid_block", None), *getattr(unet, "up_blocks", [])]
    return [b.register_forward_pre_hook(check) for b in (unet, *blocks) if b is not None]


def _step_embeds(cond: Conditioning, n: int, cfg: bool, current: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The pipeline's per-step tensors for ``cond``: [negative; positive] under CFG, as the pipelines lay them out."""
    kw = cond.repeat(n)

    def layout(pos: str, neg: str, like: torch.Tensor) -> torch.Tensor:
        return (torch.cat([kw[neg], kw[pos]]) if cfg else kw[pos]).to(like)

    out = {"prompt_embeds": layout("prompt_embeds", "negative_prompt_embeds", current["prompt_embeds"])}
    if "add_text_embeds" in current:
        out["add_text_embeds"] = layout(
            "pooled_prompt_embeds", "negative_pooled_prompt_embeds", current["add_text_embeds"]
        )
    return out
