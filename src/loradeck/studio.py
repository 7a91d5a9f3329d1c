"""The studio: the one object that owns state — the library, the loaded model, the merged LoRAs.

CLI, server and UI are thin layers over it. Every public method is safe to call from several threads: one generation
runs at a time (the model and its merged LoRAs are shared state), other calls wait.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from loradeck import __version__
from loradeck.engine.hires import LATENT_UPSCALERS
from loradeck.engine.tiling import circular_padding
from loradeck.errors import Cancelled, InvalidRequest, LoradeckError, ModelLoadError
from loradeck.families import Family
from loradeck.requests import GeneratedImage, GenerationRequest, GenerationResult
from loradeck.settings import Settings, load_settings
from loradeck.studio_hires import HiresPlan, hires_pass, plan_hires

log = logging.getLogger("loradeck")

DEMO = "demo"
MAX_SEED = 4294967294  # A1111: random.randrange(4294967294)

# (image index in the job, step done, steps in this image's batch)
ProgressFn = Callable[[int, int, int], None]


@dataclass
class LoadedModel:
    """A base model in memory, with what the studio needs to generate and to describe it."""

    name: str  # file stem (A1111's "Model")
    title: str
    path: Path
    family: Family
    short_hash: str | None  # AutoV2, 10 hex (A1111's "Model hash")
    base: Any  # loradeck.engine.checkpoints.BaseModel
    runner: Any  # loradeck.engine.pipeline.Runner
    patcher: Any  # loradeck.lora.patcher.LoraPatcher


class Studio:
    """Owns the library, the loaded base model and its LoRA stack.

    >>> studio = Studio()                     # settings from LORADECK_HOME / config.toml / environment
    >>> result = studio.generate(GenerationRequest("a red circle on a blue background <lora:stripes:0.8>", seed=1))
    >>> result.images[0].path
    """

    def __init__(self, settings: Settings | None = None, **overrides: Any):
        from loradeck.quiet import quiet_libraries

        quiet_libraries()
        self.settings = settings.with_(**overrides) if settings else load_settings(**overrides)
        self._lock = threading.RLock()  # held for whole generations and model loads
        self._library_lock = threading.Lock()
        self._model: LoadedModel | None = None
        self._library = None
        self._loras: dict[tuple[str, float], Any] = {}  # (path, mtime) -> parsed LoRA file
        self.current_job = None
        self._latents = None  # the running batch's latents after the last step (for live previews)

    # ------------------------------------------------------------------------------------------------ library
    @property
    def library(self):
        with self._library_lock:  # only creation needs it: the library guards its own scans and tables
            if self._library is None:
                from loradeck.library import Library

                self._library = Library(
                    lora_dir=self.settings.lora_path,
                    checkpoint_dir=self.settings.checkpoint_dir,
                    cache_dir=self.settings.cache_dir,
                    extra_lora_dirs=[demo_lora_dir()],
                )
            return self._library

    def loras(self, on_progress=None) -> list:
        """Library entries of every LoRA, after scanning new or changed files (does not wait for a generation)."""
        self.library.scan(on_progress=on_progress)
        return self.library.loras()

    def train(self, config, on_progress=None, cancel=None):
        """Train a LoRA (``loradeck.train.TrainConfig``) into the LoRA folder; the library sees it at once.

        A ``base`` that is neither "demo" nor an existing path is looked up in the library, like ``--checkpoint``.
        """
        from loradeck.train import train_lora

        base = config.base
        if base not in ("", DEMO) and not Path(base).expanduser().exists():
            base = str(self.library.resolve_checkpoint(base).path)
        config = config.with_(
            base=base,
            lora_dir=config.lora_dir or self.settings.lora_path,
            output_dir=config.output_dir or self.settings.home / "training" / config.name,
        )
        result = train_lora(config, on_progress=on_progress, cancel=cancel)
        self.library.refresh()
        return result

    # ------------------------------------------------------------------------------------------------ models
    @property
    def model(self) -> LoadedModel:
        with self._lock:
            if self._model is None:
                self.load_checkpoint(None)
            assert self._model is not None
            return self._model

    def load_checkpoint(self, name: str | None) -> LoadedModel:
        """Load a base model by library name, path, or None/"demo" for the embedded demo model."""
        from loradeck.engine.checkpoints import load_base_model
        from loradeck.engine.devices import pick_device, pick_dtype
        from loradeck.engine.pipeline import Components, Runner
        from loradeck.lora import LoraPatcher, keymap_from_models

        with self._lock:
            if name in (None, "", DEMO):
                path, title, short_hash, declared = demo_model_dir(), DEMO, demo_model_hash(), Family.DEMO
            else:
                entry = self.library.resolve_checkpoint(name)
                path, title, short_hash, declared = Path(entry.path), entry.title, entry.autov2, entry.family
            if self._model is not None and self._model.path == path:
                return self._model
            device = pick_device(self.settings.device)
            dtype = torch.float32 if title == DEMO else pick_dtype(self.settings.dtype, device)
            old, self._model = self._model, None
            del old  # free the previous model before loading the next one
            try:
                base = load_base_model(path, device=device, dtype=dtype, tokenizer_dir=self.settings.tokenizer_dir)
            except LoradeckError:
                raise
            except Exception as exc:  # a broken file must not take the studio down
                raise ModelLoadError(f"Could not load the model {path}: {exc}") from exc
            family = Family.DEMO if title == DEMO else base.family
            if family is Family.UNKNOWN:  # e.g. a diffusers folder whose model_index.json declares loradeck_family
                family = base.family = declared
            components = Components(
                unet=base.unet,
                vae=base.vae,
                text_encoder=base.text_encoder,
                tokenizer=base.tokenizer,
                text_encoder_2=base.text_encoder_2,
                tokenizer_2=base.tokenizer_2,
                scheduler_config=dict(base.scheduler_config),
            )
            runner = Runner(components, device, dtype)
            encoders = {"te1": base.text_encoder} | ({"te2": base.text_encoder_2} if base.text_encoder_2 else {})
            patcher = LoraPatcher(
                {"unet": base.unet, **encoders},
                keymap_from_models(family, base.unet, encoders),
                copy_share=self.settings.lora_copy_share,
            )
            self._model = LoadedModel(
                name=DEMO if title == DEMO else path.stem,
                title=title,
                path=path,
                family=family,
                short_hash=short_hash,
                base=base,
                runner=runner,
                patcher=patcher,
            )
            if self.settings.attention_slicing:
                runner.txt2img.enable_attention_slicing()
            if self.settings.cpu_offload and device.type == "cuda":
                runner.txt2img.enable_model_cpu_offload()
            return self._model

    def unload_checkpoint(self) -> None:
        """Drop the loaded model (A1111's unload-checkpoint); the next generation loads it again."""
        with self._lock:
            self._model = None

    # ------------------------------------------------------------------------------------------------ generate
    def generate(
        self,
        request: GenerationRequest,
        *,
        job: Any = None,
        on_progress: ProgressFn | None = None,
    ) -> GenerationResult:
        """Generate pictures; LoRAs from ``<lora:…>`` tags in the prompt are merged for the duration of the job."""
        from loradeck.engine.pipeline import Job

        self._validate(request)
        job = job or Job()
        with self._lock:
            self.current_job = job
            try:
                prep = self._prepare(request)
                images: list[GeneratedImage] = []
                interrupted = False
                for b in range(request.batch_count):
                    try:
                        drawn = self._draw_batch(prep, b, job, on_progress)
                    except Cancelled:
                        interrupted = True
                        break
                    images += drawn or []  # None: the batch was skipped
                return GenerationResult(
                    images=images,
                    prompt=prep.plan.recorded_prompt,
                    negative_prompt=prep.request.negative_prompt,
                    seeds=prep.seeds,
                    warnings=prep.warnings,
                    interrupted=interrupted,
                )
            finally:
                self.current_job = None
                self._latents = None

    def _prepare(self, request: GenerationRequest) -> _Prepared:
        """Everything a job's batches share: model and LoRAs applied, sampler, conditioning, seeds, hires plan."""
        from loradeck.engine.conditioning import PromptSchedules, encode_prompts
        from loradeck.engine.outputs import output_folder
        from loradeck.engine.schedulers import resolve
        from loradeck.prompt.editing import prompt_schedule
        from loradeck.prompt.tags import parse_prompt

        warnings: list[str] = []
        if request.styles:  # before anything reads the prompt: a style may bring LoRA tags (A1111's order)
            from loradeck.prompt.styles import apply_styles, read_styles

            prompt, negative_text, warnings = apply_styles(
                request.prompt, request.negative_prompt, request.styles, read_styles(self.settings.styles_path)
            )
            request = replace(request, prompt=prompt, negative_prompt=negative_text, styles=[])
        if request.checkpoint:
            self.load_checkpoint(request.checkpoint)
        model = self.model
        sampler, schedule = resolve(request.sampler, request.scheduler)
        plan = self._plan_loras(request, model)
        report = model.patcher.apply(plan.stack)
        warnings += plan.warnings + list(report.warnings)
        width = request.width or model.runner.c.native_size
        height = request.height or model.runner.c.native_size
        negative = parse_prompt(request.negative_prompt, negative=True)  # never activates a LoRA
        warnings += negative.warnings
        schedules = PromptSchedules(
            lambda pos, neg: encode_prompts(model.base, pos, neg, clip_skip=request.clip_skip),
            prompt_schedule(plan.clean_prompt, request.steps),
            prompt_schedule(negative.text, request.steps),
        )
        first = request.seed if request.seed >= 0 else random.randrange(MAX_SEED)
        total = request.batch_size * request.batch_count
        sub = request.variation_seed if request.variation_seed >= 0 else random.randrange(MAX_SEED)
        hires = plan_hires(
            request, width, height, self.settings.limits.max_side, warnings, self.settings.home / "models"
        )
        demo = None
        if model.family is Family.DEMO:  # a pixel-space model: draw near its native size, upscale (demo/draw_size.py)
            from loradeck.demo.draw_size import shrink_for_demo

            hires, demo = shrink_for_demo(width, height, hires, model.runner.c.native_size, warnings)
        return _Prepared(
            request=request,
            model=model,
            plan=plan,
            sampler=sampler,
            schedule=schedule,
            width=demo.drawn[0] if demo else width,
            height=demo.drawn[1] if demo else height,
            schedules=schedules,
            seeds=[first + i for i in range(total)],
            subseeds=[sub + i for i in range(total)] if request.variation_strength > 0 else None,
            hires=hires,
            demo=demo,
            folder=output_folder(
                self.settings.outputs_path, "img2img" if request.init_image is not None else "txt2img"
            ),
            warnings=warnings,
        )

    def _draw_batch(self, prep: _Prepared, b: int, job, on_progress) -> list[GeneratedImage] | None:
        """Batch ``b`` of a job: pictures saved with their infotexts; None when skipped; raises Cancelled."""
        from loradeck.engine.outputs import save_png

        request, model = prep.request, prep.model
        batch = slice(b * request.batch_size, (b + 1) * request.batch_size)
        seeds = prep.seeds[batch]
        variation = (prep.subseeds[batch], request.variation_strength) if prep.subseeds else None

        def progress(step: int, steps: int) -> None:
            if on_progress:
                on_progress(b * request.batch_size, step, steps)

        common = dict(
            cfg_scale=request.cfg_scale,
            sampler=prep.sampler,
            schedule=prep.schedule,
            job=job,
            on_latents=self._keep_latents,
            cond_at=prep.schedules.at if prep.schedules.changes else None,
        )
        cond = prep.schedules.at(0)
        with circular_padding(model.base.unet, model.base.vae, enabled=request.tiling):
            pictures = self._run_passes(prep, seeds, variation, cond, progress, common)
        if pictures is None:
            return None
        images = []
        for i, (seed, picture) in enumerate(zip(seeds, pictures, strict=True)):
            subseed = variation[0][i] if variation else None
            infotext = self._infotext(prep, seed, subseed)
            path = save_png(picture, prep.folder, seed, infotext) if request.save else None
            images.append(GeneratedImage(picture, seed, infotext, path))
        return images

    def _run_passes(self, prep: _Prepared, seeds, variation, cond, progress, common) -> Any:
        """The first pass and the hires pass of one batch: pictures, or None when skipped."""
        request, model, hires = prep.request, prep.model, prep.hires
        if request.inpaint is not None and request.init_image is not None:
            from loradeck.studio_inpaint import inpaint_pass

            return inpaint_pass(model.runner, request, prep.width, prep.height, cond, seeds, progress, common)
        pictures = model.runner.run(
            cond,
            seeds,
            steps=request.steps,
            width=prep.width,
            height=prep.height,
            init_image=request.init_image,
            denoising_strength=request.denoising_strength,
            progress=progress,
            noise_multiplier=request.noise_multiplier,
            output="latent" if hires and hires.upscaler in LATENT_UPSCALERS else "pil",
            variation=variation,
            **common,
        )
        if hires is not None and pictures is not None:
            pictures = hires_pass(model.runner, request, hires, cond, seeds, pictures, progress, common)
        if prep.demo is not None and pictures is not None:
            pictures = [p.resize(prep.demo.final, Image.Resampling.LANCZOS) for p in pictures]
        return pictures

    def _keep_latents(self, latents) -> None:
        self._latents = latents  # a reference only; decoded when somebody asks for a preview

    def current_preview(self):
        """A quick picture of the image being sampled now (first of its batch), or None when idle."""
        from loradeck.engine.preview import preview_image

        latents, model = self._latents, self._model
        if latents is None or model is None:
            return None
        return preview_image(latents[0], sdxl=model.runner.c.is_sdxl)

    def _validate(self, r: GenerationRequest) -> None:
        lim = self.settings.limits
        if len(r.prompt) > lim.max_prompt_chars or len(r.negative_prompt) > lim.max_prompt_chars:
            raise InvalidRequest(f"The prompt is longer than {lim.max_prompt_chars} characters.")
        for side in (r.width, r.height):
            if side is not None and not (8 <= side <= lim.max_side and side % 8 == 0):
                raise InvalidRequest(
                    f"Size {r.width}x{r.height} is not possible: each side must be a multiple of 8 "
                    f"between 8 and {lim.max_side}."
                )
        if not 1 <= r.steps <= lim.max_steps:
            raise InvalidRequest(f"Steps must be between 1 and {lim.max_steps}, not {r.steps}.")
        if not 0.0 <= r.variation_strength <= 1.0:
            raise InvalidRequest(f"Variation strength must be between 0 and 1, not {r.variation_strength}.")
        if not 1 <= r.batch_size <= lim.max_batch or r.batch_count < 1:
            raise InvalidRequest(f"Batch size must be between 1 and {lim.max_batch} and batch count at least 1.")
        if r.init_image is not None and not 0.0 < r.denoising_strength <= 1.0:
            raise InvalidRequest(f"Denoising strength must be in (0, 1], not {r.denoising_strength}.")
        if r.hires is not None and r.init_image is None:
            hr = r.hires
            if not 0.0 <= hr.denoising_strength <= 1.0:  # 0: upscale only, as A1111
                raise InvalidRequest(f"Hires denoising strength must be in [0, 1], not {hr.denoising_strength}.")
            if not 0 <= hr.steps <= lim.max_steps:
                raise InvalidRequest(f"Hires steps must be between 0 and {lim.max_steps}, not {hr.steps}.")

    # ------------------------------------------------------------------------------------------------ LoRAs
    def _plan_loras(self, request: GenerationRequest, model: LoadedModel):
        from loradeck.studio_loras import plan_loras

        return plan_loras(self, request, model)

    def load_lora_file(self, path: Path):
        """A parsed LoRA file, cached by path and mtime (a changed file is re-read)."""
        from loradeck.lora import load_lora

        key = (str(path), path.stat().st_mtime)
        if key not in self._loras:
            if len(self._loras) > 32:
                self._loras.pop(next(iter(self._loras)))
            self._loras[key] = load_lora(path)
        return self._loras[key]

    def _infotext(self, prep: _Prepared, seed: int, subseed: int | None) -> str:
        from loradeck.prompt.infotext import format_infotext

        request, model, plan, hires = prep.request, prep.model, prep.plan, prep.hires
        params: dict[str, Any] = {
            "Steps": request.steps,
            "Sampler": prep.sampler,
            "Schedule type": prep.schedule,
            "CFG scale": request.cfg_scale,
            "Seed": seed,
            "Size": "{}x{}".format(*(prep.demo.asked if prep.demo else (prep.width, prep.height))),
            "Model hash": model.short_hash,
            "Model": model.name,
            "Variation seed": subseed,
            "Variation seed strength": request.variation_strength if subseed is not None else None,
            "Denoising strength": request.denoising_strength if request.init_image is not None else None,
            "Clip skip": request.clip_skip if request.clip_skip > 1 else None,
            "Tiling": True if request.tiling else None,
            "Noise multiplier": request.noise_multiplier
            if request.init_image is not None and request.noise_multiplier != 1
            else None,
            "Demo drawn at": "{}x{}".format(*prep.demo.drawn) if prep.demo else None,
            "RNG": "CPU",
        }
        if request.inpaint is not None and request.init_image is not None:
            from loradeck.studio_inpaint import inpaint_infotext

            params |= inpaint_infotext(request.inpaint)
        if hires is not None:
            resized = hires.request.resize_x or hires.request.resize_y
            params |= {
                "Denoising strength": hires.denoising_strength,
                "Hires upscale": None if resized else hires.request.scale,
                "Hires resize": f"{hires.request.resize_x}x{hires.request.resize_y}" if resized else None,
                "Hires steps": hires.request.steps or None,
                "Hires upscaler": hires.upscaler,
                "Hires sampler": hires.sampler[0] if hires.sampler else None,
                "Hires schedule type": hires.sampler[1] if hires.sampler else None,
            }
        params |= {
            "Lora hashes": plan.lora_hashes or None,
            "Version": f"loradeck {__version__}",
        }
        return format_infotext(plan.recorded_prompt, request.negative_prompt, params)


@dataclass
class _Prepared:
    """What the batches of one job share (``Studio._prepare``)."""

    request: GenerationRequest
    model: LoadedModel
    plan: Any  # studio_loras.LoraPlan
    sampler: str
    schedule: str
    width: int
    height: int
    schedules: Any  # engine.conditioning.PromptSchedules
    seeds: list[int]
    subseeds: list[int] | None
    hires: HiresPlan | None
    demo: Any  # demo.draw_size.DemoDraw: the demo model drew smaller than asked; None otherwise
    folder: Path
    warnings: list[str]


def demo_model_dir() -> Path:
    path = Path(__file__).parent / "demo" / "model"
    if not (path / "model_index.json").is_file():
        raise ModelLoadError(f"The embedded demo model is missing from {path}; reinstall loradeck.")
    return path


def demo_lora_dir() -> Path:
    return Path(__file__).parent / "demo" / "loras"


def demo_model_hash() -> str:
    """AutoV2-style short hash of the demo U-Net weights, so infotexts name the exact model."""
    from loradeck.formats.hashes import sha256_file

    return sha256_file(demo_model_dir() / "unet" / "diffusion_pytorch_model.safetensors")[:10]
