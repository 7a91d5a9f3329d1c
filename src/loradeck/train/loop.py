"""``train_lora``: one LoRA training run, from a TrainConfig to a kohya-format file in the LoRA folder.

Safe to call from a worker thread: progress goes to ``on_progress`` (a TrainProgress per step), and setting the
``cancel`` event (argument or ``config.cancel``) stops at the next step boundary after saving a resumable state.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from loradeck.errors import LoradeckError
from loradeck.families import Family
from loradeck.train.config import TrainConfig
from loradeck.train.data_scan import DatasetSpec, scan_dataset
from loradeck.train.dataset import BucketSettings, TrainDataset
from loradeck.train.network import LoraNetwork
from loradeck.train.noise import min_snr_weights, noised
from loradeck.train.optim import make_lr_scheduler, make_optimizer
from loradeck.train.output import SAVE_DTYPES, RunFacts, save_lora, save_preview, training_metadata
from loradeck.train.plots import loss_curve_png
from loradeck.train.sampling import Sampler, parse_sample_prompt, sample_path
from loradeck.train.state import SavedState, load_state, save_state
from loradeck.train.text import encode_captions

DEFAULT_STEPS = 1600  # kohya's --max_train_steps


class TrainingDiverged(LoradeckError):
    """The loss became NaN/Inf; the last good state was kept."""


@dataclass(frozen=True)
class TrainProgress:
    step: int  # steps done
    total: int
    loss: float  # this step's loss
    avg_loss: float  # moving average (kohya's avr_loss over the last 50 steps)
    lr: float
    epoch: int
    it_per_s: float
    eta_s: float
    phase: str = "train"  # "cache" (latents; step/total count pictures) | "train"


@dataclass
class TrainResult:
    lora_path: Path | None  # None when cancelled
    output_dir: Path
    steps: int  # steps done
    total_steps: int
    losses: list[float]
    modules: int  # LoRA modules trained
    cancelled: bool = False
    samples: list[Path] = field(default_factory=list)
    loss_curve: Path | None = None
    seconds: float = 0.0

    @property
    def final_loss(self) -> float | None:
        return self.losses[-1] if self.losses else None


ProgressFn = Callable[[TrainProgress], None]


def train_lora(
    config: TrainConfig, on_progress: ProgressFn | None = None, cancel: threading.Event | None = None
) -> TrainResult:
    """Train a LoRA; raises DatasetError (bad files, before anything loads), InvalidRequest, TrainingDiverged."""
    config.validate()
    run = _Run(config, on_progress, cancel or config.cancel)
    try:
        return run.train()
    finally:
        run.close()


class _Run:
    """The state of one run; methods are the phases of ``train``."""

    def __init__(self, cfg: TrainConfig, on_progress: ProgressFn | None, cancel: threading.Event | None):
        self.cfg, self.on_progress, self.cancel = cfg, on_progress, cancel
        self.network: LoraNetwork | None = None
        self.samples: list[Path] = []
        self.losses: list[float] = []

    # ------------------------------------------------------------------------------------------------ setup
    def _paths(self) -> None:
        from loradeck.settings import load_settings

        settings = None
        if self.cfg.output_dir is None or self.cfg.lora_dir is None:
            settings = load_settings()
        self.out = self.cfg.output_dir or settings.home / "training" / self.cfg.name
        self.lora_dir = self.cfg.lora_dir or settings.lora_path
        self.out.mkdir(parents=True, exist_ok=True)

    def _load_base(self, device: torch.device, dtype: torch.dtype):
        from loradeck.engine.checkpoints import load_base_model

        if self.cfg.base in ("", "demo"):
            from loradeck.demo.paths import demo_model_dir

            path = demo_model_dir()
        else:
            path = Path(self.cfg.base).expanduser()
        base = load_base_model(path, device=device, dtype=dtype)
        family = Family.DEMO if self.cfg.base in ("", "demo") else base.family
        return base, family

    def _dataset(self, spec: DatasetSpec, native: int, num_processes: int, index: int) -> TrainDataset:
        cfg, opts = self.cfg, spec.options
        resolution = cfg.resolution or opts.get("resolution") or native
        buckets = BucketSettings.for_resolution(
            int(resolution),
            enable=opts.get("enable_bucket", cfg.enable_bucket),
            min_size=cfg.min_bucket_reso or opts.get("min_bucket_reso"),
            max_size=cfg.max_bucket_reso or opts.get("max_bucket_reso"),
            step=cfg.bucket_reso_steps or opts.get("bucket_reso_steps"),
            no_upscale=opts.get("bucket_no_upscale", cfg.bucket_no_upscale),
        )
        self.batch_size = int(opts.get("batch_size", cfg.batch_size))
        return TrainDataset(
            spec,
            buckets,
            self.batch_size,
            cfg.seed,
            trigger=cfg.trigger,
            shuffle_caption=cfg.shuffle_caption,
            keep_tokens=cfg.keep_tokens,
            caption_dropout=(
                cfg.caption_dropout_rate,
                cfg.caption_dropout_every_n_epochs,
                cfg.caption_tag_dropout_rate,
            ),
            flip_aug=cfg.flip_aug,
            num_processes=num_processes,
            process_index=index,
        )

    # ------------------------------------------------------------------------------------------------ the run
    def train(self) -> TrainResult:
        from accelerate import Accelerator
        from diffusers import DDPMScheduler

        cfg = self.cfg
        spec = scan_dataset(
            cfg.data, cfg.dataset_config, cfg.caption_extension, cfg.reg_data
        )  # bad files: before any loading
        self._paths()
        device_arg = cfg.device if cfg.device != "auto" else None
        # accelerate keeps one process-wide state; a server trains many times in one process with other settings.
        # Only the accelerator part is reset: the process group of an ``accelerate launch`` run stays as it is.
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state()
        acc = Accelerator(mixed_precision=cfg.mixed_precision, cpu=device_arg == "cpu")
        self.acc = acc
        device = acc.device
        # Frozen weights in half precision on GPUs with mixed precision (kohya's weight_dtype); the VAE stays fp32.
        weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(cfg.mixed_precision, torch.float32)
        if device.type == "cpu":
            weight_dtype = torch.float32
        base, family = self._load_base(device, torch.float32)
        self.base, self.family = base, family
        for m in (base.unet, base.text_encoder, base.text_encoder_2):
            if m is not None and weight_dtype != torch.float32:
                m.to(device, dtype=weight_dtype)
        base.vae.to(device)
        ds = self._dataset(spec, base.sample_size, acc.num_processes, acc.process_index)
        self.ds = ds
        total = cfg.steps or (cfg.epochs * ds.steps_per_epoch if cfg.epochs else DEFAULT_STEPS)
        self.total = total

        from loradeck.lora.keymap import keymap_from_models

        encoders = {"te1": base.text_encoder} | ({"te2": base.text_encoder_2} if base.text_encoder_2 else {})
        keymap = keymap_from_models(family, base.unet, encoders)
        train_te = cfg.te_learning_rate > 0
        torch.manual_seed(cfg.seed)  # the kaiming init of lora_down
        net = LoraNetwork.inject(
            {"unet": base.unet, **encoders},
            keymap,
            rank=cfg.rank,
            alpha=cfg.alpha,
            conv_rank=cfg.conv_rank,
            conv_alpha=cfg.effective_conv_alpha,
            train_te=train_te,
        )
        self.network = net
        if cfg.gradient_checkpointing:
            base.unet.enable_gradient_checkpointing()
            if train_te:
                for te in encoders.values():
                    if hasattr(te, "activation_checkpointing_enable"):  # transformers ≥ 5 name
                        te.activation_checkpointing_enable({"use_reentrant": False})
                    else:
                        te.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        base.unet.train()
        for te in encoders.values():
            te.train(train_te)

        vae_scale = float(getattr(base.vae.config, "scaling_factor", 1.0) or 1.0)

        def encode(px: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                # the mean, not a sample: deterministic, so cached and uncached runs see the same latents
                return base.vae.encode(px.to(device, base.vae.dtype)).latent_dist.mean.float() * vae_scale

        self.encode = encode
        if cfg.cache_latents != "no":
            n = len(spec.items)
            ds.cache_latents(encode, cfg.cache_latents == "disk", on_item=lambda i, _n: self._report_cache(i, n))

        groups = [{"params": net.parameters("unet"), "lr": cfg.unet_learning_rate}]
        if train_te and net.count("te"):
            groups.append({"params": net.parameters("te"), "lr": cfg.te_learning_rate})
        choice = make_optimizer(cfg.optimizer, groups, cfg.weight_decay)
        warmup = cfg.warmup_steps(total)
        scheduler = make_lr_scheduler(cfg.scheduler, choice.optimizer, warmup, total)
        unet = acc.prepare(base.unet)
        tes = {k: (acc.prepare(te) if train_te else te) for k, te in encoders.items()}
        optimizer = acc.prepare(choice.optimizer)
        self.unet, self.optimizer, self.raw_optimizer, self.scheduler = unet, optimizer, choice.optimizer, scheduler

        started = time.time()
        session = random.randint(0, 2**32 - 1)
        start = 0
        if cfg.resume:
            saved = load_state(self.out / "state", cfg.fingerprint())
            if saved is not None:
                net.load_kohya_state_dict(saved.lora)
                choice.optimizer.load_state_dict(saved.optimizer)
                scheduler.load_state_dict(saved.scheduler)
                start, self.losses, session, started = (
                    saved.step,
                    list(saved.losses),
                    saved.session_id,
                    saved.started_at,
                )
        self.facts = RunFacts(
            family=family,
            prediction_type=base.prediction_type,
            base_name=Path(base.path).name,
            base_path=Path(base.path),
            resolution=ds.settings.resolution,
            num_train_images=spec.num_train_images,
            num_reg_images=spec.num_reg_images,
            num_batches_per_epoch=ds.batches_per_epoch,
            num_epochs=math.ceil(total / ds.steps_per_epoch),
            max_train_steps=total,
            warmup_steps=warmup,
            optimizer=choice.description,
            tag_frequency=spec.tag_frequency(cfg.trigger),
            dataset_dirs=spec.dataset_dirs(),
            reg_dataset_dirs=spec.dataset_dirs(reg=True),
            bucket_info=ds.bucket_info(),
            session_id=session,
            started_at=started,
            extra={"num_processes": acc.num_processes},
        )

        noise_sched = DDPMScheduler.from_config(dict(base.scheduler_config))
        prediction = base.prediction_type
        alphas = noise_sched.alphas_cumprod
        snr = alphas / (1 - alphas)
        params = net.parameters()
        self.good = [p.detach().clone() for p in params]  # weights of the last step whose loss was finite
        self.good_step = start
        self.saved_step: int | None = start if cfg.resume and start else None
        t0, done = time.perf_counter(), start
        for step in range(start, total):
            if self._all_agree(self.cancel is not None and self.cancel.is_set()):
                self._save(step)
                return self._result(step, cancelled=True, t0=t0)
            batch = ds.batch(step, encode)
            latents = batch.latents
            noisy, target, t = noised(
                latents, noise_sched, cfg.seed, step, cfg.noise_offset, prediction, batch.rows, batch.total
            )
            noisy, target, t_dev = noisy.to(device), target.to(device), t.to(device)
            with acc.autocast():
                with torch.set_grad_enabled(train_te):
                    cond = encode_captions(
                        _unwrapped_base(base, tes), batch.captions, device, tuple(latents.shape[-2:])
                    )
                kwargs = {"added_cond_kwargs": cond.added} if cond.added else {}
                pred = unet(noisy.to(weight_dtype), t_dev, cond.hidden.to(weight_dtype), **kwargs).sample
            per_sample = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
            if cfg.min_snr_gamma:
                per_sample = per_sample * min_snr_weights(snr[t], cfg.min_snr_gamma, prediction).to(device)
            if acc.num_processes == 1:
                loss = per_sample.mean()
            else:  # DDP averages the processes' gradients: scaled so that they average to the global batch's mean
                weights = torch.tensor(batch.weights, device=per_sample.device)
                loss = (per_sample * weights).sum() * acc.num_processes / batch.total
            if self._all_agree(not bool(torch.isfinite(loss))):
                self._diverged(step, "the loss")
            acc.backward(loss)
            if acc.sync_gradients and cfg.max_grad_norm:
                norm = acc.clip_grad_norm_(params, cfg.max_grad_norm)
                if cfg.mixed_precision != "fp16" and not torch.isfinite(torch.as_tensor(norm)):
                    self._diverged(step, "the gradients")
            with torch.no_grad():  # these weights just gave a finite loss: the last good ones, until the next step
                torch._foreach_copy_(self.good, [p.detach() for p in params])
            self.good_step = step
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            self.losses.append(float(acc.gather(loss.detach()).mean()))
            done = step + 1
            if cfg.sample_every and cfg.sample_prompts and done % cfg.sample_every == 0 and done < total:
                self._sample(done)
            if cfg.save_every and done % cfg.save_every == 0 and done < total:
                self._save(done)
            self._report(done, t0, start, scheduler)
        return self._finish(done, t0)

    # ------------------------------------------------------------------------------------------------ pieces
    def _all_agree(self, flag: bool) -> bool:
        """True when ``flag`` is true on any process: with several (DDP), a stop (cancel, a NaN on one of them) must
        happen at the same step everywhere, or the others wait for it in the next gradient exchange forever."""
        if self.acc.num_processes == 1:
            return flag
        votes = self.acc.reduce(torch.tensor([1.0 if flag else 0.0], device=self.acc.device), reduction="sum")
        return bool(votes.item() > 0)

    def _report(self, done: int, t0: float, start: int, scheduler) -> None:
        if self.on_progress is None:
            return
        elapsed = time.perf_counter() - t0
        rate = (done - start) / elapsed if elapsed > 0 else 0.0
        recent = self.losses[-50:]
        self.on_progress(
            TrainProgress(
                step=done,
                total=self.total,
                loss=self.losses[-1],
                avg_loss=sum(recent) / len(recent),
                lr=float(scheduler.get_last_lr()[0]),
                epoch=done // max(1, self.ds.steps_per_epoch) + 1,
                it_per_s=rate,
                eta_s=(self.total - done) / rate if rate > 0 else float("inf"),
            )
        )

    def _report_cache(self, i: int, n: int) -> None:
        if self.on_progress is not None:
            self.on_progress(TrainProgress(i, n, float("nan"), float("nan"), 0.0, 0, 0.0, 0.0, phase="cache"))

    def _diverged(self, step: int, what: str) -> None:
        """Write the last weights that gave a finite loss, then stop with one sentence saying where things are."""
        path = None
        if self.acc.is_main_process:
            with torch.no_grad():
                torch._foreach_copy_(self.network.parameters(), self.good)
            path = self._write_lora(self.out / f"{self.cfg.name}-last-good.safetensors", self.good_step, sidecar=False)
            self._loss_curve()
        hint = " or --mixed-precision no" if self.cfg.mixed_precision == "fp16" else ""
        resume = (
            f"--resume continues from the state saved at step {self.saved_step}"
            if self.saved_step is not None
            else "no resumable state was saved yet (see --save-every)"
        )
        raise TrainingDiverged(
            f"Training stopped at step {step + 1} because {what} became NaN or infinite: the last good weights "
            f"(after {self.good_step} steps) are in {path}, and {resume}; try a lower --lr{hint}."
        )

    def _save(self, step: int) -> Path | None:
        """Resumable state + a kohya snapshot ``{name}-step{step:08d}.safetensors`` in the output folder."""
        if not self.acc.is_main_process:
            return None
        net = self.network
        state = SavedState(
            step=step,
            epoch=step // max(1, self.ds.steps_per_epoch),
            losses=list(self.losses),
            fingerprint=self.cfg.fingerprint(),
            lora=net.kohya_state_dict(torch.float32),
            optimizer=self.raw_optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            session_id=self.facts.session_id,
            started_at=self.facts.started_at,
        )
        save_state(self.out / "state", state)
        self.saved_step = step
        snapshot = self.out / f"{self.cfg.name}-step{step:08d}.safetensors"
        self._write_lora(snapshot, step, sidecar=False)
        self._loss_curve()
        return snapshot

    def _write_lora(self, path: Path, step: int, sidecar: bool) -> Path:
        tensors = self.network.kohya_state_dict(SAVE_DTYPES[self.cfg.save_precision])
        epoch = math.ceil(step / max(1, self.ds.steps_per_epoch))
        meta = training_metadata(self.cfg, self.facts, steps_done=step, epoch=epoch)
        return save_lora(
            path,
            tensors,
            meta,
            trigger=self.cfg.trigger if sidecar else "",
            family=self.family if sidecar else None,
        )

    def _sample(self, step: int) -> list[Path]:
        if not self.acc.is_main_process:
            return []
        folder = self.out / "sample"
        folder.mkdir(exist_ok=True)
        sampler = Sampler(self.base, self.acc.device)
        was_training = self.base.unet.training
        self.base.unet.eval()
        paths = []
        try:
            for i, line in enumerate(self.cfg.sample_prompts):
                sp = parse_sample_prompt(line, i)
                path = sample_path(folder, self.cfg.name, step, i, sp.seed)
                sampler.render(sp).save(path)
                paths.append(path)
        finally:
            self.base.unet.train(was_training)
        self.samples += paths
        return paths

    def _loss_curve(self) -> Path:
        from loradeck.formats.sidecars import atomic_write_bytes

        path = self.out / "loss.png"
        atomic_write_bytes(path, loss_curve_png(self.losses, f"{self.cfg.name}: loss per step"))
        return path

    def _finish(self, done: int, t0: float) -> TrainResult:
        result = self._result(done, cancelled=False, t0=t0)
        if not self.acc.is_main_process:
            return result
        if self.cfg.save_every:
            self._save(done)  # so a later --resume with more steps goes on from here
        lora_path = self._write_lora(self.lora_dir / f"{self.cfg.name}.safetensors", done, sidecar=True)
        if self.cfg.sample_prompts:
            final = self._sample(done)
            if final:
                save_preview(lora_path, final[0].read_bytes())
        result.lora_path = lora_path
        result.samples = list(self.samples)
        result.loss_curve = self._loss_curve()
        return result

    def _result(self, done: int, cancelled: bool, t0: float) -> TrainResult:
        return TrainResult(
            lora_path=None,
            output_dir=self.out,
            steps=done,
            total_steps=self.total,
            losses=list(self.losses),
            modules=len(self.network) if self.network else 0,
            cancelled=cancelled,
            samples=list(self.samples),
            loss_curve=self.out / "loss.png" if (self.out / "loss.png").exists() else None,
            seconds=time.perf_counter() - t0,
        )

    def close(self) -> None:
        """Put the original layers back so the (discarded) models are plain again."""
        if self.network is not None:
            self.network.remove()


def _unwrapped_base(base, tes):
    """``base`` with the (possibly accelerate-wrapped) text encoders the step should call."""
    if all(tes[k] is m for k, m in (("te1", base.text_encoder), ("te2", base.text_encoder_2)) if k in tes):
        return base
    from dataclasses import replace

    return replace(base, text_encoder=tes["te1"], text_encoder_2=tes.get("te2"))
