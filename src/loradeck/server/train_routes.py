"""`/loradeck/v1/train`: LoRA training as a job on the device queue, with step/loss progress."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import Field

from loradeck.server.models import CheckedBody
from loradeck.server.names import train_inputs
from loradeck.server.service import ServerState
from loradeck.services.limits import SEED_RANGE
from loradeck.services.types import TrainConfig

router = APIRouter(prefix="/loradeck/v1", tags=["train"])


class TrainRequest(CheckedBody):
    """The common settings of `loradeck train` (the rest keep their defaults)."""

    data: str = Field(
        description="Folder of pictures with .txt/.caption captions (kohya N_name folders allowed): its name in the "
        "datasets folder (<home>/datasets), or a path inside it or under allowed_paths"
    )
    name: str = Field(description="Output name: the LoRA file's stem (one plain file name)")
    base: str = Field("demo", description="'demo' or a checkpoint's name in the library")
    trigger: str = ""
    rank: int = Field(16, ge=1, le=1024)
    alpha: float = Field(8.0, ge=0, le=65536)
    lr: float = Field(1e-4, gt=0, le=1)
    steps: int | None = Field(None, ge=1, le=1_000_000)
    epochs: int | None = Field(None, ge=1, le=100_000)
    batch_size: int = Field(1, ge=1, le=64)
    resolution: int | None = Field(None, ge=8, le=4096)
    optimizer: str = "adamw"
    scheduler: str = "constant"
    unet_only: bool = False
    seed: int = Field(42, ge=0, le=SEED_RANGE[1])
    save_every: int = Field(0, ge=0)
    resume: bool = False


@router.post("/train", status_code=202)
def train(body: TrainRequest, request: Request) -> dict[str, Any]:
    """Queue a training run on the generation device; poll ``/loradeck/v1/jobs/{id}`` (step, loss), cancel it there."""
    state: ServerState = request.app.state.loradeck
    data, base = train_inputs(state.studio, body.data, body.base, body.name)  # 422 for paths outside the folders
    config = TrainConfig(**body.model_dump() | {"data": data, "base": base})
    job = state.studio.submit_train(config, describe=_describe)
    return {"job_id": job.id, "status_url": f"/loradeck/v1/jobs/{job.id}"}


def _describe(result: Any) -> dict[str, Any]:
    return {
        "lora": str(result.lora_path) if result.lora_path else None,
        "steps": result.steps,
        "total_steps": result.total_steps,
        "final_loss": result.final_loss,
        "cancelled": result.cancelled,
        "output_dir": str(result.output_dir),
    }
