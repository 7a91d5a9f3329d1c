"""What each LoRA tool is asked to do, and what it reports (plain dataclasses: the CLI, API and UI fill them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class _Output:
    """Where the result goes: ``out`` (a .safetensors path), else ``lora_dir/name.safetensors``."""

    out: Path | None = None
    name: str | None = None  # file stem in ``lora_dir``; a default is made from the inputs
    lora_dir: Path | None = None
    precision: str = "fp16"  # fp16 | bf16 | fp32 (float)
    device: str | None = None  # None: cuda when available, else cpu
    overwrite: bool = False  # replace an existing file of that name in lora_dir


@dataclass
class MergeRequest(_Output):
    """``inputs`` [(file, weight)]; ``rank`` None = exact concat merge, else SVD merge to that rank."""

    inputs: list[tuple[Path, float]] = field(default_factory=list)
    rank: int | None = None
    conv_rank: int | None = None
    base: Path | None = None  # a checkpoint, needed only for IA3/DoRA inputs
    clamp_quantile: float | None = None
    tool: str = "merge"


@dataclass
class ResizeRequest(_Output):
    input: Path | None = None
    rank: int | None = None
    conv_rank: int | None = None
    method: str | None = None  # None (fixed rank) | sv_ratio | sv_cumulative | sv_fro
    param: float | None = None
    base: Path | None = None
    tool: str = "resize"


@dataclass
class ExtractRequest(_Output):
    base: Path | None = None
    tuned: Path | None = None
    rank: int = 4
    conv_rank: int = 0  # 0: no 3×3 convs (kohya's default)
    clamp_quantile: float | None = None
    min_diff: float = 0.01  # kohya: text-encoder modules whose max |ΔW| is at most this are left out
    tool: str = "extract"


@dataclass
class ConvertRequest(_Output):
    input: Path | None = None
    to: str = "kohya"  # kohya | peft | comfy
    base: Path | None = None
    tool: str = "convert"


@dataclass
class ToolResult:
    """The file written and what was done, per module where it matters."""

    tool: str
    path: Path
    modules: int
    rank: int | None
    seconds: float
    device: str
    retained: float | None = None  # overall retained Frobenius share (SVD tools)
    per_module: list[dict[str, Any]] = field(default_factory=list)  # {name, rank, retained, error}
    notes: list[str] = field(default_factory=list)  # modules left out and why

    def to_dict(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "path": str(self.path),
            "modules": self.modules,
            "rank": self.rank,
            "seconds": round(self.seconds, 3),
            "device": self.device,
            "retained": self.retained,
            "per_module": self.per_module,
            "notes": self.notes,
        }
