"""`/loradeck/v1/train`: LoRA training as a job on the device queue, with step/loss progress."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from loradeck.server.service import ServerState
from loradeck.services.types import TrainConfig

router = APIRouter(prefix="/loradeck/v1", tags=["train"])


class TrainRequest(BaseModel):
    """The common settings of `loradeck train` (the rest keep their defaults)."""

    data: str = Field(description="Folder of pictures with .txt/.caption captions (kohya N_name folders allowed)")
    name: str = Field(pattern=r"^[\w.-]+$", description="Output name: the LoRA file's stem")
    base: str = "demo"
    trigger: str = ""
    rank: int = Field(16, ge=1, le=1024)
    alpha: float = 8.0
    lr: float = Field(1e-4, gt=0)
    steps: int | None = Field(None, ge=1, le=1_000_000)
    epochs: int | None = Field(None, ge=1)
    batch_size: int = Field(1, ge=1, le=64)
    resolution: int | None = Field(None, ge=8, le=4096)
    optimizer: str = "adamw"
    scheduler: str = "constant"
    unet_only: bool = False
    seed: int = 42
    save_every: int = 0
    resume: bool = False


@router.post("/train", status_code=202)
def train(body: TrainRequest, request: Request) -> dict[str, Any]:
    """Queue a training run on the generation device; poll ``/loradeck/v1/jobs/{id}`` (step, loss), cancel it there."""
    state: ServerState = request.app.state.loradeck
    config = TrainConfig(**body.model_dump() | {"data": Path(body.data)})
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
