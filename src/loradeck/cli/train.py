"""`loradeck train`: a kohya-compatible LoRA from a folder of captioned pictures, with a live progress bar."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from loradeck.cli.common import console, plain

_ADV = "Advanced"


def train(
    data: Annotated[
        Path | None, typer.Option(help="Pictures + .txt/.caption captions, or kohya N_name folders.")
    ] = None,
    base: Annotated[str | None, typer.Option(help='Base checkpoint file, diffusers folder, or "demo".')] = None,
    name: Annotated[str | None, typer.Option(help="LoRA name: the file is <lora-dir>/<name>.safetensors.")] = None,
    trigger: Annotated[str | None, typer.Option(help="Trigger words, prepended to captions that lack them.")] = None,
    rank: Annotated[int | None, typer.Option(help="LoRA rank (network dim). [16]")] = None,
    alpha: Annotated[float | None, typer.Option(help="LoRA alpha; scale = alpha / rank. [8]")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate. [1e-4]")] = None,
    unet_lr: Annotated[float | None, typer.Option(help="U-Net learning rate (default --lr).")] = None,
    te_lr: Annotated[float | None, typer.Option(help="Text-encoder learning rate (default --lr; 0 = off).")] = None,
    unet_only: Annotated[bool | None, typer.Option("--unet-only", help="Train the U-Net only.")] = None,
    steps: Annotated[int | None, typer.Option(help="Training steps. [1600 unless --epochs]")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs (instead of --steps).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size. [1]")] = None,
    resolution: Annotated[int | None, typer.Option(help="Training resolution. [the model's native size]")] = None,
    optimizer: Annotated[str | None, typer.Option(help="adamw, adamw8bit, prodigy or lion. [adamw]")] = None,
    scheduler: Annotated[str | None, typer.Option(help="constant, cosine, linear, … [constant]")] = None,
    warmup: Annotated[float | None, typer.Option(help="Warm-up steps (or a fraction of the run if < 1).")] = None,
    mixed_precision: Annotated[str | None, typer.Option(help="no, fp16 or bf16. [no]")] = None,
    save_precision: Annotated[
        str | None, typer.Option(help="float, fp16 or bf16. [fp16]", rich_help_panel=_ADV)
    ] = None,
    gradient_checkpointing: Annotated[
        bool | None, typer.Option("--gradient-checkpointing", help="Less memory, slower steps.")
    ] = None,
    cache_latents: Annotated[str | None, typer.Option(help="no, memory or disk. [memory]")] = None,
    min_snr_gamma: Annotated[float | None, typer.Option(help="Min-SNR loss weighting gamma (e.g. 5).")] = None,
    noise_offset: Annotated[float | None, typer.Option(help="Noise offset (e.g. 0.0357).")] = None,
    conv_rank: Annotated[int | None, typer.Option(help="Also train 3×3 convs (LoCon) with this rank.")] = None,
    conv_alpha: Annotated[float | None, typer.Option(help="Alpha of the conv LoRAs.", rich_help_panel=_ADV)] = None,
    sample_prompt: Annotated[
        list[str] | None, typer.Option(help='Sample prompt (kohya syntax: "… --n neg --d 1 --s 20"); repeatable.')
    ] = None,
    sample_every: Annotated[int | None, typer.Option(help="Sample pictures every N steps.")] = None,
    save_every: Annotated[int | None, typer.Option(help="Save a resumable state every N steps.")] = None,
    resume: Annotated[bool | None, typer.Option("--resume", help="Continue from the last saved state.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed. [42]")] = None,
    shuffle_caption: Annotated[
        bool | None, typer.Option("--shuffle-caption", help="Shuffle comma tags.", rich_help_panel=_ADV)
    ] = None,
    keep_tokens: Annotated[
        int | None, typer.Option(help="Tags kept in front when shuffling.", rich_help_panel=_ADV)
    ] = None,
    caption_dropout_rate: Annotated[
        float | None, typer.Option(help="Train this share of steps with an empty caption.", rich_help_panel=_ADV)
    ] = None,
    caption_dropout_every_n_epochs: Annotated[
        int | None, typer.Option(help="Every Nth epoch trains with empty captions.", rich_help_panel=_ADV)
    ] = None,
    caption_tag_dropout_rate: Annotated[
        float | None, typer.Option(help="Drop each tag after the kept ones with this chance.", rich_help_panel=_ADV)
    ] = None,
    flip_aug: Annotated[
        bool | None, typer.Option("--flip-aug", help="Random horizontal flips.", rich_help_panel=_ADV)
    ] = None,
    reg_data: Annotated[
        Path | None,
        typer.Option(help="Regularisation pictures (kohya reg_data_dir): no trigger.", rich_help_panel=_ADV),
    ] = None,
    dataset_config: Annotated[
        Path | None, typer.Option(help="kohya dataset TOML (instead of --data).", rich_help_panel=_ADV)
    ] = None,
    output_dir: Annotated[
        Path | None, typer.Option(help="State, samples, loss curve. [<home>/training/<name>]", rich_help_panel=_ADV)
    ] = None,
    lora_dir: Annotated[Path | None, typer.Option(help="Where the LoRA goes. [<home>/models/Lora]")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cuda or cpu.", rich_help_panel=_ADV)] = None,
    config: Annotated[Path | None, typer.Option(help="train.toml with the same keys (flags win).")] = None,
    num_processes: Annotated[
        int,
        typer.Option(
            min=1,
            help="Train in N processes (DDP through accelerate: one per GPU, or gloo on CPU); --batch-size is per "
            "process, so the global batch is N × batch size.",
        ),
    ] = 1,
) -> None:
    """Train a LoRA (kohya format, with ss_* metadata and a .json sidecar) into the LoRA folder."""
    from loradeck.cli.common import make_studio
    from loradeck.services.types import TrainConfig

    flags = dict(
        data=data, base=base, name=name, trigger=trigger, rank=rank, alpha=alpha, lr=lr, unet_lr=unet_lr,
        te_lr=te_lr, unet_only=unet_only, steps=steps, epochs=epochs, batch_size=batch_size, resolution=resolution,
        optimizer=optimizer, scheduler=scheduler, warmup=warmup, mixed_precision=mixed_precision,
        save_precision=save_precision, gradient_checkpointing=gradient_checkpointing, cache_latents=cache_latents,
        min_snr_gamma=min_snr_gamma, noise_offset=noise_offset, conv_rank=conv_rank, conv_alpha=conv_alpha,
        sample_prompts=sample_prompt or None, sample_every=sample_every, save_every=save_every, resume=resume,
        seed=seed, shuffle_caption=shuffle_caption, keep_tokens=keep_tokens, flip_aug=flip_aug,
        caption_dropout_rate=caption_dropout_rate, caption_dropout_every_n_epochs=caption_dropout_every_n_epochs,
        caption_tag_dropout_rate=caption_tag_dropout_rate,
        dataset_config=dataset_config, reg_data=reg_data, output_dir=output_dir, lora_dir=lora_dir, device=device,
    )  # fmt: skip
    cfg = TrainConfig.from_toml(config, **flags) if config else TrainConfig().with_(**flags)
    if num_processes > 1 and "WORLD_SIZE" not in os.environ:  # the launcher; each process runs this command again
        from loradeck.cli.launch import launch_training

        launch_training(cfg.to_dict(), num_processes)
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
    ) as bar:
        tasks: dict[str, int] = {}

        def progress(p) -> None:
            if p.phase not in tasks:
                label = "caching latents" if p.phase == "cache" else f"training {cfg.name}"
                tasks[p.phase] = bar.add_task(label, total=p.total, info="")
            v = p.values
            info = "" if p.phase == "cache" else f"loss {v['avg_loss']:.4f}  {v['it_per_s']:.2f} it/s  lr {v['lr']:.2e}"
            bar.update(tasks[p.phase], completed=p.step, info=info)

        studio = make_studio(lora_dir=lora_dir, device=device)
        result = studio.train(cfg, on_progress=progress)
    if result.cancelled:
        console.print(
            plain(f"stopped at step {result.steps}", "yellow") + plain(f"; --resume continues from {result.output_dir}")
        )
        return
    if result.lora_path is None:  # a process other than the first of --num-processes: the first one reports
        return
    console.print(
        plain("saved ", "green")
        + plain(f"{result.lora_path}  ({result.steps} steps, final loss {result.final_loss:.4f})")
    )
    console.print(plain(f"loss curve and samples: {result.output_dir}"))
