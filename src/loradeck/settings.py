"""One typed settings object: paths, device, dtype, limits.

Built from (lowest to highest priority) defaults, ``<home>/config.toml``, ``LORADECK_*`` environment variables and
explicit arguments (CLI flags). Nothing mutates it after it is built; derive a changed copy with ``replace``.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any


def default_home() -> Path:
    return Path(os.environ.get("LORADECK_HOME") or Path.home() / "loradeck").expanduser()


@dataclass(frozen=True)
class Limits:
    max_side: int = 2048
    max_steps: int = 150
    max_batch: int = 16  # pictures per batch
    max_batch_count: int = 100  # batches per job (A1111's UI maximum for "Batch count", n_iter)
    max_prompt_chars: int = 10_000
    max_body_mb: int = 50


@dataclass(frozen=True)
class Settings:
    home: Path = field(default_factory=default_home)
    models_dir: Path | None = None  # default <home>/models/Stable-diffusion
    lora_dir: Path | None = None  # default <home>/models/Lora
    embeddings_dir: Path | None = None  # an A1111 embeddings/ folder, scanned before <home>/models/embeddings
    outputs_dir: Path | None = None  # default <home>/outputs
    device: str = "auto"  # auto | cuda | mps | cpu
    dtype: str = "auto"  # auto | fp32 | fp16 | bf16
    tokenizer_dir: Path | None = None
    attention_slicing: bool = False
    cpu_offload: bool = False
    lora_copy_share: float | None = None  # share of LoRA-touched weights kept as exact copies; None: 0.9 CPU, 0 GPU
    civitai_url: str = "https://civitai.com"
    civitai_token: str | None = None
    limits: Limits = field(default_factory=Limits)
    affinity: bool = True  # the device queue runs jobs that need the merged LoRA stack first …
    fairness: int = 4  # … but a waiting job is overtaken by at most this many later ones (0: first come, first served)
    datasets_dir: Path | None = None  # default <home>/datasets: the API and web UI train only from folders here
    # Folders outside the home that the API and web UI may also name by path (checkpoints, training data); empty =
    # none. The CLI, run by the machine's own user, takes any path regardless.
    allowed_paths: tuple[Path, ...] = ()

    @property
    def checkpoint_dir(self) -> Path:
        return self.models_dir or self.home / "models" / "Stable-diffusion"

    @property
    def lora_path(self) -> Path:
        return self.lora_dir or self.home / "models" / "Lora"

    @property
    def embedding_roots(self) -> tuple[Path, ...]:
        """Textual-inversion folders: ``embeddings_dir`` (when set), then ``<home>/models/embeddings``."""
        home = self.home / "models" / "embeddings"
        return (self.embeddings_dir, home) if self.embeddings_dir and self.embeddings_dir != home else (home,)

    @property
    def outputs_path(self) -> Path:
        return self.outputs_dir or self.home / "outputs"

    @property
    def styles_path(self) -> Path:
        return self.home / "styles.csv"

    @property
    def datasets_path(self) -> Path:
        return self.datasets_dir or self.home / "datasets"

    @property
    def lbw_presets_path(self) -> Path:
        """User block-weight presets (``NAME:w,w,…`` lines), as the sd-webui-lora-block-weight extension's file."""
        return self.home / "lbwpresets.txt"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    def with_(self, **changes: Any) -> Settings:
        """A copy with the given fields changed; ``None`` values are ignored (an unset CLI flag)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


_ENV = {
    "LORADECK_MODELS_DIR": "models_dir",
    "LORADECK_LORA_DIR": "lora_dir",
    "LORADECK_EMBEDDINGS_DIR": "embeddings_dir",
    "LORADECK_OUTPUTS_DIR": "outputs_dir",
    "LORADECK_DEVICE": "device",
    "LORADECK_DTYPE": "dtype",
    "LORADECK_TOKENIZER": "tokenizer_dir",
    "LORADECK_CIVITAI_URL": "civitai_url",
    "CIVITAI_API_TOKEN": "civitai_token",
    "LORADECK_DATASETS_DIR": "datasets_dir",
    "LORADECK_ALLOWED_PATHS": "allowed_paths",  # several folders separated by os.pathsep (":" on Linux)
}
_PATHS = {"home", "models_dir", "lora_dir", "embeddings_dir", "outputs_dir", "tokenizer_dir", "datasets_dir"}


def _coerce(name: str, value: Any) -> Any:
    if name == "allowed_paths" and value is not None:
        items = value.split(os.pathsep) if isinstance(value, str) else list(value)
        return tuple(Path(v).expanduser() for v in items if str(v).strip())
    return Path(value).expanduser() if name in _PATHS and value is not None else value


def load_settings(**overrides: Any) -> Settings:
    """Defaults < <home>/config.toml < environment < ``overrides`` (``None`` = not given)."""
    home = _coerce("home", overrides.get("home")) or default_home()
    values: dict[str, Any] = {"home": home}
    known = {f.name for f in fields(Settings)}
    config = home / "config.toml"
    if config.is_file():
        data = tomllib.loads(config.read_text())
        for key, value in data.items():
            if key == "limits" and isinstance(value, dict):
                values["limits"] = Limits(**value)
            elif key in known:
                values[key] = _coerce(key, value)
    for env, name in _ENV.items():
        if os.environ.get(env):
            values[name] = _coerce(name, os.environ[env])
    for name, value in overrides.items():
        if value is not None and name in known:
            values[name] = _coerce(name, value)
    return Settings(**values)
