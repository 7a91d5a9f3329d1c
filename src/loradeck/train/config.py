"""Training settings: one typed dataclass, filled from defaults, a ``train.toml`` and explicit arguments (CLI flags).

The TOML uses the same keys as the dataclass fields (``rank = 16``, ``unet_lr = 1e-4`` …). The most common
kohya sd-scripts spellings are accepted too (``network_dim``, ``learning_rate``, ``max_train_steps`` …), so a
kohya ``--config_file`` mostly loads as is.
"""

from __future__ import annotations

import math
import threading
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from loradeck.errors import InvalidRequest

OPTIMIZERS = ("adamw", "adamw8bit", "prodigy", "lion")
SCHEDULERS = ("constant", "constant_with_warmup", "cosine", "cosine_with_restarts", "linear", "polynomial")
PRECISIONS = ("no", "fp16", "bf16")
SAVE_PRECISIONS = ("float", "fp16", "bf16")
CACHE_MODES = ("no", "memory", "disk")

# kohya sd-scripts argument names → our field names
KOHYA_ALIASES = {
    "train_data_dir": "data",
    "reg_data_dir": "reg_data",
    "pretrained_model_name_or_path": "base",
    "output_name": "name",
    "network_dim": "rank",
    "network_alpha": "alpha",
    "learning_rate": "lr",
    "text_encoder_lr": "te_lr",
    "network_train_unet_only": "unet_only",
    "max_train_steps": "steps",
    "max_train_epochs": "epochs",
    "train_batch_size": "batch_size",
    "optimizer_type": "optimizer",
    "lr_scheduler": "scheduler",
    "lr_warmup_steps": "warmup",
    "save_every_n_steps": "save_every",
    "sample_every_n_steps": "sample_every",
    "output_dir": "output_dir",
    "max_grad_norm": "max_grad_norm",
}


@dataclass
class TrainConfig:
    """Everything one LoRA training run needs. ``None`` means "pick the sensible value" (see ``resolved``)."""

    # what
    data: Path | None = None  # folder of pictures + captions, or of kohya ``N_name`` sub-folders
    dataset_config: Path | None = None  # kohya ``--dataset_config`` TOML (instead of ``data``)
    reg_data: Path | None = None  # kohya ``--reg_data_dir``: pictures of the class without the style, no trigger
    base: str = "demo"  # checkpoint file, diffusers folder, or "demo"
    name: str = "my_lora"
    trigger: str = ""  # words prepended to captions that lack them; the sidecar's activation text
    # network
    rank: int = 16
    alpha: float = 8.0
    conv_rank: int = 0  # > 0: also train the 3×3 convs (LoCon), kohya ``conv_dim``
    conv_alpha: float | None = None  # default: conv_rank / 2
    unet_only: bool = False
    # optimisation
    lr: float = 1e-4
    unet_lr: float | None = None
    te_lr: float | None = None
    optimizer: str = "adamw"
    weight_decay: float = 0.01
    scheduler: str = "constant"
    warmup: float = 0  # steps, or a fraction of the run when < 1
    steps: int | None = None  # default 1600 (kohya), unless ``epochs`` is given
    epochs: int | None = None
    batch_size: int = 1
    max_grad_norm: float = 1.0
    min_snr_gamma: float | None = None
    noise_offset: float = 0.0
    mixed_precision: str = "no"
    save_precision: str = "fp16"
    gradient_checkpointing: bool = False
    seed: int = 42
    device: str = "auto"
    # data handling
    resolution: int | None = None  # default: the base model's native size
    enable_bucket: bool = True
    min_bucket_reso: int | None = None
    max_bucket_reso: int | None = None
    bucket_reso_steps: int | None = None
    bucket_no_upscale: bool = False
    cache_latents: str = "memory"
    caption_extension: str = ".txt"  # ".caption" is accepted as well whatever this says
    shuffle_caption: bool = False
    keep_tokens: int = 0
    caption_dropout_rate: float = 0.0  # kohya: the whole caption becomes "" with this probability
    caption_dropout_every_n_epochs: int = 0  # kohya: every Nth epoch (1-based) trains with empty captions
    caption_tag_dropout_rate: float = 0.0  # kohya: each tag after the kept ones is dropped with this probability
    flip_aug: bool = False
    # outputs
    output_dir: Path | None = None  # state, samples, loss curve (default <home>/training/<name>)
    lora_dir: Path | None = None  # where the finished LoRA goes (default <home>/models/Lora)
    save_every: int = 0  # save a resumable state every N steps (0: only at the end)
    resume: bool = False
    sample_prompts: list[str] = field(default_factory=list)  # kohya prompt lines (``--n``, ``--d``, ``--s`` …)
    sample_every: int = 0
    comment: str = ""
    # control from another thread (not a setting: never saved, never compared)
    cancel: threading.Event | None = field(default=None, repr=False, compare=False)

    # ------------------------------------------------------------------------------------------------ building
    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        """Settings from a TOML file (top-level keys, or a ``[train]`` table), then ``overrides`` that are not None."""
        path = Path(path)
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise InvalidRequest(f"{path}: the training config cannot be read ({exc.strerror or exc}).") from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise InvalidRequest(f"{path}: the training config is not valid TOML ({exc}).") from None
        if not isinstance(doc.get("train", doc), dict):
            raise InvalidRequest(f"{path}: [train] in the training config is not a table.")
        doc = doc.get("train", doc)
        return cls.from_dict(doc, source=str(path)).with_(**overrides)

    @classmethod
    def from_dict(cls, doc: dict[str, Any], source: str = "config") -> TrainConfig:
        known = {f.name: f for f in fields(cls) if f.name != "cancel"}
        values: dict[str, Any] = {}
        for key, value in doc.items():
            name = key.replace("-", "_")
            name = KOHYA_ALIASES.get(name, name)
            if name not in known:
                raise InvalidRequest(f"{source}: unknown training setting {key!r}.")
            try:
                values[name] = _coerce(name, value)
            except (TypeError, ValueError, OverflowError) as exc:  # "abc" for an int, inf, a table for a path
                raise InvalidRequest(
                    f"{source}: training setting {key!r} cannot be {str(value)[:60]!r} ({exc})."
                ) from None
            if isinstance(values[name], float) and not math.isfinite(values[name]):
                raise InvalidRequest(f"{source}: training setting {key!r} must be a finite number, not {value}.")
        if "sample_prompts" in values and isinstance(values["sample_prompts"], str):
            values["sample_prompts"] = [values["sample_prompts"]]
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The settings that are set, as plain values (paths as text): what ``from_dict`` reads back (the launcher
        of ``--num-processes`` hands them to each process this way)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "cancel" or value is None:
                continue
            out[f.name] = str(value) if isinstance(value, Path) else list(value) if isinstance(value, tuple) else value
        return out

    def with_(self, **changes: Any) -> TrainConfig:
        """A copy with the given fields changed; ``None`` values are ignored (an unset CLI flag)."""
        return replace(self, **{k: _coerce(k, v) for k, v in changes.items() if v is not None})

    # ------------------------------------------------------------------------------------------------ checking
    def validate(self) -> None:
        """Raise InvalidRequest naming the first impossible setting."""
        if self.data is None and self.dataset_config is None:
            raise InvalidRequest("Training needs a data folder (--data) or a dataset config (--dataset-config).")
        checks = [
            (self.rank >= 1, f"rank must be at least 1, not {self.rank}"),
            (self.alpha >= 0, f"alpha must not be negative ({self.alpha})"),
            (self.conv_rank >= 0, f"conv rank must not be negative ({self.conv_rank})"),
            (self.lr > 0, f"learning rate must be positive, not {self.lr}"),
            (self.batch_size >= 1, f"batch size must be at least 1, not {self.batch_size}"),
            (self.steps is None or self.steps >= 1, f"steps must be at least 1, not {self.steps}"),
            (self.epochs is None or self.epochs >= 1, f"epochs must be at least 1, not {self.epochs}"),
            (
                self.optimizer.lower() in OPTIMIZERS,
                f"optimizer {self.optimizer!r} is not one of {', '.join(OPTIMIZERS)}",
            ),
            (self.scheduler in SCHEDULERS, f"scheduler {self.scheduler!r} is not one of {', '.join(SCHEDULERS)}"),
            (self.mixed_precision in PRECISIONS, f"mixed precision must be one of {', '.join(PRECISIONS)}"),
            (self.save_precision in SAVE_PRECISIONS, f"save precision must be one of {', '.join(SAVE_PRECISIONS)}"),
            (self.cache_latents in CACHE_MODES, f"cache latents must be one of {', '.join(CACHE_MODES)}"),
            (self.warmup >= 0, f"warmup must not be negative ({self.warmup})"),
            (self.keep_tokens >= 0, f"keep tokens must not be negative ({self.keep_tokens})"),
            (
                0 <= self.caption_dropout_rate <= 1,
                f"caption dropout rate must be in [0, 1] ({self.caption_dropout_rate})",
            ),
            (
                0 <= self.caption_tag_dropout_rate <= 1,
                f"caption tag dropout rate must be in [0, 1] ({self.caption_tag_dropout_rate})",
            ),
            (self.caption_dropout_every_n_epochs >= 0, "caption dropout every N epochs must not be negative"),
            (self.save_every >= 0 and self.sample_every >= 0, "save and sample intervals must not be negative"),
            (self.noise_offset >= 0, f"noise offset must not be negative ({self.noise_offset})"),
            (self.min_snr_gamma is None or self.min_snr_gamma > 0, "min-SNR gamma must be positive"),
            (bool(self.name) and "/" not in self.name and "\\" not in self.name, f"bad LoRA name {self.name!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise InvalidRequest(f"Cannot train: {message}.")

    # ------------------------------------------------------------------------------------------------ derived
    @property
    def unet_learning_rate(self) -> float:
        return self.unet_lr if self.unet_lr is not None else self.lr

    @property
    def te_learning_rate(self) -> float:
        """0 when the text encoder is not trained."""
        if self.unet_only:
            return 0.0
        return self.te_lr if self.te_lr is not None else self.lr

    @property
    def effective_conv_alpha(self) -> float:
        return self.conv_alpha if self.conv_alpha is not None else max(self.conv_rank / 2, 1.0)

    def warmup_steps(self, total: int) -> int:
        return int(round(self.warmup * total)) if 0 < self.warmup < 1 else int(self.warmup)

    def fingerprint(self) -> dict[str, Any]:
        """Settings that must not change between a saved state and ``--resume``."""
        keys = ("rank", "alpha", "conv_rank", "conv_alpha", "unet_only", "optimizer", "batch_size", "seed", "base")
        return {k: getattr(self, k) for k in keys} | {"te_lr_on": self.te_learning_rate > 0}


_PATHS = {"data", "dataset_config", "reg_data", "output_dir", "lora_dir"}
_INTS = {
    "rank", "conv_rank", "steps", "epochs", "batch_size", "seed", "keep_tokens", "save_every", "sample_every",
    "caption_dropout_every_n_epochs",
}  # fmt: skip


def _coerce(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in _PATHS:
        return Path(value).expanduser()
    if name in _INTS:
        return int(value)
    if name == "optimizer":
        return str(value).lower()
    if name == "cache_latents" and isinstance(value, bool):  # kohya's boolean form
        return "memory" if value else "no"
    if name == "sample_prompts" and isinstance(value, tuple):
        return list(value)
    return value
