"""A generation running in a thread while the page polls it: progress, live preview, interrupt and skip.

The studio does the work (``Studio.generate`` with a ``Job`` and a progress callback); this module only keeps what the
page shows while it runs, one run per browser session.
"""

from __future__ import annotations

import html
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from loradeck.engine.pipeline import Job
from loradeck.errors import LoradeckError
from loradeck.vocab import GenerationRequest, GenerationResult

log = logging.getLogger("loradeck.ui")


@dataclass(eq=False)
class Run:
    """One generation in a background thread. ``error`` is the sentence to show when it failed."""

    studio: Any
    request: GenerationRequest
    job: Job = field(default_factory=Job)
    image: int = 0  # index of the first image of the batch in progress
    step: int = 0
    steps: int = 0
    started: float = field(default_factory=time.monotonic)
    result: GenerationResult | None = None
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Run:
        threading.Thread(target=self._work, name="loradeck-ui-generate", daemon=True).start()
        return self

    def _work(self) -> None:
        try:
            self.result = self.studio.generate(self.request, job=self.job, on_progress=self._progress)
        except LoradeckError as exc:
            self.error = str(exc)
        except Exception as exc:  # never a blank error in the page: name the exception and log the trace
            log.exception("generation failed")
            self.error = f"Generation failed unexpectedly: {type(exc).__name__}: {exc}"
        finally:
            self.done.set()

    def _progress(self, first_image: int, step: int, steps: int) -> None:
        self.image, self.step, self.steps = first_image, step, steps

    @property
    def total_images(self) -> int:
        return self.request.batch_count * self.request.batch_size

    @property
    def fraction(self) -> float:
        if self.done.is_set():
            return 1.0
        batches = max(1, self.request.batch_count)
        batch_no = self.image // max(1, self.request.batch_size)
        inner = self.step / self.steps if self.steps else 0.0
        return min(1.0, (batch_no + inner) / batches)

    def describe(self) -> str:
        elapsed = time.monotonic() - self.started
        if self.done.is_set():
            return f"Done in {elapsed:.1f} s"
        if self.job.interrupted.is_set():
            return "Interrupting…"
        if not self.steps:
            return f"Waiting for the model… {elapsed:.0f} s"
        last = min(self.image + self.request.batch_size, self.total_images)
        images = f"image {self.image + 1}" if last == self.image + 1 else f"images {self.image + 1}–{last}"
        return f"{images} of {self.total_images} · step {self.step}/{self.steps} · {elapsed:.1f} s"

    def preview(self) -> Image.Image | None:
        return self.studio.current_preview()


def progress_html(fraction: float, text: str, *, state: str = "running") -> str:
    """The progress bar: a filled track and one line of text (``state`` = running | done | error | idle)."""
    pct = max(0.0, min(1.0, fraction)) * 100
    return (
        f'<div class="ld-progress ld-{state}" role="progressbar" aria-valuemin="0" aria-valuemax="100" '
        f'aria-valuenow="{pct:.0f}"><div class="ld-bar" style="width:{pct:.1f}%"></div>'
        f'<span class="ld-progress-text">{html.escape(text)}</span></div>'
    )


class Runs:
    """The run of each browser session, so Interrupt and Skip act on the generation that session started."""

    def __init__(self) -> None:
        self._runs: dict[str, Run] = {}
        self._lock = threading.Lock()

    def start(self, session: str, run: Run) -> Run:
        with self._lock:
            self._runs[session] = run
        return run.start()

    def current(self, session: str) -> Run | None:
        with self._lock:
            run = self._runs.get(session)
        return run if run is not None and not run.done.is_set() else None

    def finish(self, session: str, run: Run) -> None:
        with self._lock:
            if self._runs.get(session) is run:
                del self._runs[session]
