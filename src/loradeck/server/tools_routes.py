"""`/loradeck/v1/tools/{merge,resize,extract,convert}`: the LoRA tools as jobs on the device queue.

Inputs are library names (LoRAs; checkpoints or ``demo``), resolved when the request arrives so an unknown name is
a 404 at once; the output always goes into the LoRA folder under a plain file name, and the library sees it when the
job is done. Progress is per module (``/loradeck/v1/jobs/{id}``), and a cancel stops before the file is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from loradeck.server.service import ServerState

router = APIRouter(prefix="/loradeck/v1/tools", tags=["tools"])
NAME = r"^[\w][\w.-]*$"


class _Output(BaseModel):
    name: str | None = Field(None, pattern=NAME, max_length=120, description="Output file stem in the LoRA folder")
    precision: Literal["fp16", "bf16", "fp32"] = "fp16"
    overwrite: bool = False


class WeightedLora(BaseModel):
    name: str = Field(description="LoRA name, alias or subfolder/name in the library")
    weight: float = Field(1.0, ge=-100, le=100)


class MergeBody(_Output):
    loras: list[WeightedLora] = Field(min_length=1, max_length=32)
    rank: int | None = Field(None, ge=1, le=4096, description="SVD merge to this rank; none = exact concat merge")
    conv_rank: int | None = Field(None, ge=1, le=4096)
    base: str | None = Field(None, description="Checkpoint (library name or 'demo'), only for IA3/DoRA inputs")
    clamp_quantile: float | None = Field(None, gt=0, le=1)


class ResizeBody(_Output):
    lora: str
    rank: int | None = Field(None, ge=1, le=4096)
    conv_rank: int | None = Field(None, ge=1, le=4096)
    dynamic: Literal["sv_fro", "sv_ratio", "sv_cumulative"] | None = None
    param: float | None = Field(None, gt=0)
    base: str | None = None


class ExtractBody(_Output):
    base: str = Field(description="Original checkpoint: library name or 'demo'")
    tuned: str = Field(description="Fine-tuned checkpoint: library name or 'demo'")
    rank: int = Field(4, ge=1, le=4096)
    conv_rank: int = Field(0, ge=0, le=4096)
    clamp_quantile: float | None = Field(None, gt=0, le=1)
    min_diff: float = Field(0.01, ge=0)


class ConvertBody(_Output):
    lora: str
    to: Literal["kohya", "peft", "comfy"] = "kohya"
    base: str | None = None


def _state(request: Request) -> ServerState:
    return request.app.state.loradeck


def _lora(state: ServerState, name: str) -> Path:
    return Path(state.studio.library.resolve_lora(name).path)


def _checkpoint(state: ServerState, name: str | None) -> Path | None:
    if name is None:
        return None
    if name in ("", "demo"):
        return Path("demo")
    return Path(state.studio.library.resolve_checkpoint(name).path)


def _output(state: ServerState, body: _Output) -> dict[str, Any]:
    return {"lora_dir": state.studio.settings.lora_path, "name": body.name, "precision": body.precision,
            "overwrite": body.overwrite}  # fmt: skip


def _submit(state: ServerState, tool_request, label: str) -> dict[str, Any]:
    job = state.studio.submit_tool(tool_request, describe=lambda result: result.to_dict())
    job.label = label
    return {"job_id": job.id, "status_url": f"/loradeck/v1/jobs/{job.id}"}


@router.post("/merge", status_code=202)
def merge(body: MergeBody, request: Request) -> dict[str, Any]:
    """Merge library LoRAs: exact concat (ranks add) or, with ``rank``, the best rank-N approximation of the sum."""
    from loradeck.services.types import MergeRequest

    state = _state(request)
    inputs = [(_lora(state, item.name), item.weight) for item in body.loras]
    req = MergeRequest(inputs=inputs, rank=body.rank, conv_rank=body.conv_rank, clamp_quantile=body.clamp_quantile,
                       base=_checkpoint(state, body.base), **_output(state, body))  # fmt: skip
    return _submit(state, req, "merge " + " + ".join(i.name for i in body.loras))


@router.post("/resize", status_code=202)
def resize(body: ResizeBody, request: Request) -> dict[str, Any]:
    """Resize a library LoRA to ``rank`` or by a dynamic method; the job's detail lists the retained shares."""
    from loradeck.services.types import ResizeRequest

    state = _state(request)
    req = ResizeRequest(input=_lora(state, body.lora), rank=body.rank, conv_rank=body.conv_rank, method=body.dynamic,
                        param=body.param, base=_checkpoint(state, body.base), **_output(state, body))  # fmt: skip
    return _submit(state, req, f"resize {body.lora}")


@router.post("/extract", status_code=202)
def extract(body: ExtractBody, request: Request) -> dict[str, Any]:
    """Extract a LoRA from two library checkpoints (``demo`` is the embedded model)."""
    from loradeck.services.types import ExtractRequest

    state = _state(request)
    req = ExtractRequest(base=_checkpoint(state, body.base), tuned=_checkpoint(state, body.tuned), rank=body.rank,
                         conv_rank=body.conv_rank, clamp_quantile=body.clamp_quantile, min_diff=body.min_diff,
                         **_output(state, body))  # fmt: skip
    return _submit(state, req, f"extract {body.tuned} − {body.base}")


@router.post("/convert", status_code=202)
def convert(body: ConvertBody, request: Request) -> dict[str, Any]:
    """Rewrite a library LoRA with kohya names, in the diffusers/PEFT layout, or as plain factors (ComfyUI)."""
    from loradeck.services.types import ConvertRequest

    state = _state(request)
    req = ConvertRequest(input=_lora(state, body.lora), to=body.to, base=_checkpoint(state, body.base),
                         **_output(state, body))  # fmt: skip
    return _submit(state, req, f"convert {body.lora} to {body.to}")
