"""Write a trained LoRA the way kohya sd-scripts does: canonical names, ``alpha`` tensors, ``ss_*``/``modelspec.*``
metadata (every value a string), ``sshs_model_hash``/``sshs_legacy_hash``, and a ``name.json`` sidecar whose
activation text is the trigger — each file written atomically, so a library scan never sees half a LoRA.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as st_save

from loradeck.families import Family
from loradeck.formats.sidecars import UserMetadata, atomic_write_bytes, write_preview, write_user_metadata

SAVE_DTYPES = {"float": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


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


def base_model_version(family: Family, prediction_type: str) -> str:
    """kohya ``ss_base_model_version``; the demo model has SD1's architecture and names."""
    v = "_v" if prediction_type == "v_prediction" else ""
    if family is Family.SDXL:
        return "sdxl_base_v1-0"
    if family is Family.SD2:
        return "sd_v2" + v
    return "sd_v1" + v


def architecture(family: Family, prediction_type: str) -> str:
    if family is Family.SDXL:
        return "stable-diffusion-xl-v1-base/lora"
    if family is Family.SD2:
        return "stable-diffusion-v2-768-v/lora" if prediction_type == "v_prediction" else "stable-diffusion-v2-512/lora"
    return "stable-diffusion-v1/lora"


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
    meta |= {
        "modelspec.sai_model_spec": "1.0.1",
        "modelspec.architecture": architecture(facts.family, facts.prediction_type),
        "modelspec.implementation": "diffusers",
        "modelspec.title": cfg.name,
        "modelspec.resolution": f"{res}x{res}",
        "modelspec.date": datetime.now().replace(microsecond=0).isoformat(),
        "modelspec.prediction_type": "v" if facts.prediction_type == "v_prediction" else "epsilon",
        "modelspec.implementation_version": f"loradeck/{_version()}",
    }
    if cfg.trigger:
        meta["modelspec.trigger_phrase"] = cfg.trigger
    return {k: _as_text(v) for k, v in meta.items()}


def _version() -> str:
    from loradeck.version import __version__

    return __version__


def _as_text(v: Any) -> str:
    """kohya's ``str(v)``: None → "None", True → "True", (512, 512) → "(512, 512)"."""
    return v if isinstance(v, str) else str(v)


# ------------------------------------------------------------------------------------------------ bytes and hashes
def data_section_sha256(blob: bytes) -> str:
    """sha256 of a safetensors serialisation's bytes after the header (addnet hash / AutoV3 source)."""
    n = struct.unpack("<Q", blob[:8])[0]
    return hashlib.sha256(blob[8 + n :]).hexdigest()


def legacy_hash(blob: bytes) -> str:
    """kohya ``addnet_hash_legacy``: first 8 hex of sha256 of bytes [1 MiB, 1 MiB + 64 KiB)."""
    return hashlib.sha256(blob[0x100000:0x110000]).hexdigest()[:8]


def serialize(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """Safetensors bytes with ``sshs_model_hash`` and ``sshs_legacy_hash`` computed as kohya does (on a
    re-serialisation with only the ``ss_`` metadata; the data section does not depend on the metadata)."""
    ss_only = {k: v for k, v in metadata.items() if k.startswith("ss_")}
    probe = st_save(tensors, ss_only)
    meta = dict(metadata) | {"sshs_model_hash": data_section_sha256(probe), "sshs_legacy_hash": legacy_hash(probe)}
    return st_save(tensors, meta)


def save_lora(
    path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str], *, trigger: str = "", family=None
) -> Path:
    """Write the LoRA (atomically) and, when a trigger or family is known, its ``name.json`` sidecar."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, serialize(tensors, metadata))
    _readable(path)
    if trigger or family is not None:
        meta = UserMetadata(
            description=f"Trained with loradeck: {metadata.get('ss_steps', '?')} steps, rank "
            f"{metadata.get('ss_network_dim', '?')}, alpha {metadata.get('ss_network_alpha', '?')}.",
            sd_version=family.label if family is not None else "",
            activation_text=trigger,
            preferred_weight=1.0,
        )
        _readable(write_user_metadata(path, meta))
    return path


def _readable(path: Path) -> None:
    """atomic_write_bytes leaves mkstemp's 0600; a LoRA folder is often shared (A1111 under another user).
    (Reading the umask would mean setting it, which is process-wide and racy in a server.)"""
    os.chmod(path, 0o644)


def save_preview(lora_path: Path, png: bytes) -> Path:
    path = write_preview(lora_path, png, "png")
    _readable(path)
    return path
