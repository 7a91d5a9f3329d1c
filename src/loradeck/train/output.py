"""The metadata of a trained LoRA (kohya's ``ss_*`` keys for a run). The file itself is written by the writer the
LoRA tools share (``loradeck.lora.files.write``: names, ``alpha``, hashes, sidecar, atomic write), re-exported here.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loradeck.families import Family
from loradeck.lora.files.write import (  # noqa: F401  (re-exported for the trainer)
    SAVE_DTYPES,
    architecture,
    as_text,
    base_model_version,
    data_section_sha256,
    legacy_hash,
    modelspec,
    save_lora,
    save_preview,
    serialize,
)


@dataclass
class RunFacts:
    """What the metadata records about a run, gathered by the trainer."""

    family: Family
    prediction_type: str  # "epsilon" | "v_prediction"
    base_name: str
    base_path: Path | None
    resolution: int
    num_train_images: int
    num_reg_images: int
    num_batches_per_epoch: int
    num_epochs: int
    max_train_steps: int
    warmup_steps: int
    optimizer: str
    tag_frequency: dict[str, dict[str, int]]
    dataset_dirs: dict[str, dict[str, int]]
    reg_dataset_dirs: dict[str, dict[str, int]]
    bucket_info: dict[str, Any]
    session_id: int
    started_at: float
    extra: dict[str, Any] = field(default_factory=dict)


def training_metadata(cfg, facts: RunFacts, *, steps_done: int, epoch: int) -> dict[str, str]:
    """The ``ss_*`` and ``modelspec.*`` keys (hashes are added by ``serialize``). ``cfg`` is a TrainConfig."""
    res = facts.resolution
    meta: dict[str, Any] = {
        "ss_session_id": facts.session_id,
        "ss_training_started_at": facts.started_at,
        "ss_training_finished_at": time.time(),
        "ss_output_name": cfg.name,
        "ss_learning_rate": cfg.lr,
        "ss_text_encoder_lr": cfg.te_learning_rate if cfg.te_learning_rate > 0 else None,
        "ss_unet_lr": cfg.unet_learning_rate,
        "ss_num_train_images": facts.num_train_images,
        "ss_num_validation_images": 0,
        "ss_num_reg_images": facts.num_reg_images,
        "ss_num_batches_per_epoch": facts.num_batches_per_epoch,
        "ss_num_epochs": facts.num_epochs,
        "ss_epoch": epoch,
        "ss_steps": steps_done,
        "ss_max_train_steps": facts.max_train_steps,
        "ss_gradient_checkpointing": cfg.gradient_checkpointing,
        "ss_gradient_accumulation_steps": 1,
        "ss_lr_warmup_steps": facts.warmup_steps,
        "ss_lr_scheduler": cfg.scheduler,
        "ss_network_module": "networks.lora",
        "ss_network_dim": cfg.rank,
        "ss_network_alpha": float(cfg.alpha),
        "ss_network_dropout": None,
        "ss_mixed_precision": cfg.mixed_precision,
        "ss_full_fp16": False,
        "ss_v2": facts.family is Family.SD2,
        "ss_base_model_version": base_model_version(facts.family, facts.prediction_type),
        "ss_clip_skip": None,
        "ss_max_token_length": None,
        "ss_cache_latents": cfg.cache_latents != "no",
        "ss_seed": cfg.seed,
        "ss_lowram": False,
        "ss_noise_offset": cfg.noise_offset or None,
        "ss_min_snr_gamma": cfg.min_snr_gamma,
        "ss_optimizer": facts.optimizer,
        "ss_max_grad_norm": cfg.max_grad_norm,
        "ss_training_comment": cfg.comment or None,
        "ss_sd_model_name": facts.base_name,
        "ss_batch_size_per_device": cfg.batch_size,
        "ss_total_batch_size": cfg.batch_size * facts.extra.get("num_processes", 1),
        "ss_resolution": (res, res),
        "ss_enable_bucket": cfg.enable_bucket,
        "ss_bucket_no_upscale": cfg.bucket_no_upscale,
        "ss_flip_aug": cfg.flip_aug,
        "ss_color_aug": False,
        "ss_random_crop": False,
        "ss_shuffle_caption": cfg.shuffle_caption,
        "ss_keep_tokens": cfg.keep_tokens,
        "ss_caption_dropout_rate": cfg.caption_dropout_rate,
        "ss_caption_dropout_every_n_epochs": cfg.caption_dropout_every_n_epochs,
        "ss_caption_tag_dropout_rate": cfg.caption_tag_dropout_rate,
        "ss_prior_loss_weight": 1.0,
        "ss_loss_type": "l2",
        "ss_dataset_dirs": json.dumps(facts.dataset_dirs),
        "ss_reg_dataset_dirs": json.dumps(facts.reg_dataset_dirs),
        "ss_tag_frequency": json.dumps(facts.tag_frequency),
        "ss_bucket_info": json.dumps(facts.bucket_info),
        "ss_network_train_unet_only": cfg.unet_only,
    }
    if cfg.conv_rank > 0:
        meta["ss_network_args"] = json.dumps(
            {"conv_dim": str(cfg.conv_rank), "conv_alpha": str(cfg.effective_conv_alpha)}
        )
    if facts.base_path is not None and facts.base_path.is_file():
        from loradeck.formats.hashes import hash_file

        h = hash_file(facts.base_path)
        meta["ss_sd_model_hash"] = h.autov1 or ""
        meta["ss_new_sd_model_hash"] = h.sha256
    meta |= modelspec(facts.family, cfg.name, prediction_type=facts.prediction_type, resolution=res)
    if cfg.trigger:
        meta["modelspec.trigger_phrase"] = cfg.trigger
    return {k: as_text(v) for k, v in meta.items()}
