"""What the routes share: the studio, the device queue, the download queue, the options clients set.

Routes stay thin: they translate HTTP shapes and call these methods; all state lives in the studio (models, LoRAs,
library) and in the two queues here (what waits, what runs).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from loradeck.errors import LoradeckError, ModelLoadError
from loradeck.requests import GenerationRequest, GenerationResult
from loradeck.server.affinity import stack_key
from loradeck.server.limits import check_generation
from loradeck.server.queue import JobQueue, QueuedJob
from loradeck.settings import Limits

DEMO = "demo"


class CheckpointNotFound(LoradeckError):
    """A checkpoint name that matches nothing in the models folder (HTTP 404)."""


@dataclass
class ModelInfo:
    name: str | None
    hash: str | None


@dataclass
class Generated:
    result: GenerationResult
    model: ModelInfo


@dataclass
class ServerState:
    studio: Any  # loradeck.studio.Studio
    limits: Limits
    queue: JobQueue
    downloads: JobQueue
    checkpoint: str = DEMO  # A1111's option ``sd_model_checkpoint``: the title new jobs run on
    options: dict[str, Any] = field(default_factory=dict)  # other options clients set (kept and echoed)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # ------------------------------------------------------------------------------------------------ checkpoints
    def checkpoint_title(self, name: str | None) -> str:
        """The title a checkpoint name resolves to ("demo" for the embedded model); CheckpointNotFound if none."""
        if name in (None, "", DEMO):
            return DEMO
        from loradeck.server.names import checkpoint_title  # names from the network: never a path outside

        try:
            return checkpoint_title(self.studio, name)
        except ModelLoadError as exc:
            raise CheckpointNotFound(str(exc)) from None

    def switch_checkpoint(self, name: str) -> QueuedJob:
        """Queue a model load (so it happens between generations); the option changes once it has loaded."""
        title = self.checkpoint_title(name)

        def load(job: QueuedJob) -> str:
            self.studio.load_checkpoint(None if title == DEMO else title)
            with self.lock:
                self.checkpoint = title
            return title

        return self.queue.submit(load, kind="load", label=f"load {title}")

    # ------------------------------------------------------------------------------------------------ generation
    def submit_generation(self, request: GenerationRequest, *, kind: str = "txt2img") -> QueuedJob:
        """Check the request (422/404 now, not after waiting), then queue it with its LoRA-stack key."""
        from loradeck.engine.schedulers import resolve

        check_generation(request, self.limits)
        resolve(request.sampler, request.scheduler)  # unknown sampler → InvalidRequest listing the valid ones
        with self.lock:
            current = self.checkpoint
        request.checkpoint = self.checkpoint_title(request.checkpoint or current)
        studio = self.studio

        def run(job: QueuedJob) -> Generated:
            batch = request.batch_size

            def on_progress(first_image: int, step: int, steps: int) -> None:
                job.set_progress(step, steps, first_image // batch)

            checkpoint = None if request.checkpoint == DEMO else request.checkpoint
            result = studio.generate(_with_checkpoint(request, checkpoint), job=job, on_progress=on_progress)
            return Generated(result, _model_info(result))

        return self.queue.submit(
            run,
            kind=kind,
            key=stack_key(request),
            label=request.prompt[:80],
            batches=request.batch_count,
            steps=request.steps,
        )


def _with_checkpoint(request: GenerationRequest, checkpoint: str | None) -> GenerationRequest:
    from dataclasses import replace

    return replace(request, checkpoint=checkpoint)


def _model_info(result: GenerationResult) -> ModelInfo:
    """Model name and hash as the infotext of the first picture records them."""
    from loradeck.prompt.infotext import parse_infotext

    if not result.images:
        return ModelInfo(None, None)
    params = parse_infotext(result.images[0].infotext)
    return ModelInfo(params.get("Model"), params.get("Model hash"))
