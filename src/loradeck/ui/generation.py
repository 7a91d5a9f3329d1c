"""A generation the page submitted to the studio's queue, polled while it waits and runs: progress, live preview,
interrupt and skip. The studio does the work; this module only keeps what the page shows, one run per browser
session.
"""

from __future__ import annotations

import html
import logging
import threading
import time
from dataclasses import dataclass, field

from PIL import Image

from loradeck.errors import LoradeckError
from loradeck.services.jobs import QUEUED, Job
from loradeck.services.studio import Studio
from loradeck.vocab import GenerationRequest, GenerationResult

log = logging.getLogger("loradeck.ui")


@dataclass(eq=False)
class Run:
    """One generation job of the page. ``error`` is the sentence to show when it failed."""

    studio: Studio
    request: GenerationRequest
    job: Job | None = None
    started: float = field(default_factory=time.monotonic)
    result: GenerationResult | None = None
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Run:
        try:
            self.job = self.studio.submit_generation(self.request)
        except LoradeckError as exc:  # refused at planning: nothing was queued
            self._end(error=str(exc))
            return self
        self.job.future.add_done_callback(lambda _f: self._finish())
        return self

    def _finish(self) -> None:
        assert self.job is not None
        try:
            self._end(result=self.job.future.result())
        except LoradeckError as exc:
            if self.job.state == "cancelled":  # cancelled while waiting: an interrupted run with no pictures
                self._end(
                    result=GenerationResult([], self.request.prompt, self.request.negative_prompt, [], interrupted=True)
                )
            else:
                self._end(error=str(exc))
        except Exception as exc:  # never a blank error in the page: name the exception and log the trace
            log.exception("generation failed")
            self._end(error=f"Generation failed unexpectedly: {type(exc).__name__}: {exc}")

    def _end(self, *, result: GenerationResult | None = None, error: str | None = None) -> None:
        self.result, self.error = result, error
        self.done.set()

    def stop(self, which: str) -> None:
        """``interrupted``: stop the job (a waiting one never runs); ``skipped``: skip the batch in progress."""
        job = self.job
        if job is None:
            return
        if which == "interrupted" and job.state == QUEUED:
            self.studio.cancel(job.id)
        getattr(job, which).set()

    @property
    def total_images(self) -> int:
        return self.request.batch_count * self.request.batch_size

    @property
    def fraction(self) -> float:
        if self.done.is_set():
            return 1.0
        return self.job.fraction if self.job else 0.0

    def describe(self) -> str:
        elapsed = time.monotonic() - self.started
        job = self.job
        if self.done.is_set():
            return f"Done in {elapsed:.1f} s"
        if job is None:
            return "Starting…"
        if job.interrupted.is_set():
            return "Interrupting…"
        if job.state == QUEUED:
            ahead = self.studio.queue.position(job)
            return f"Waiting in the queue ({ahead} ahead)… {elapsed:.0f} s" if ahead else f"Waiting… {elapsed:.0f} s"
        p = job.progress
        if p.phase != "sample" or not p.step:
            return f"Loading the model… {elapsed:.0f} s"
        first = p.first_image
        last = min(first + self.request.batch_size, self.total_images)
        images = f"image {first + 1}" if last == first + 1 else f"images {first + 1}–{last}"
        return f"{images} of {self.total_images} · step {p.step}/{p.total} · {elapsed:.1f} s"

    def preview(self) -> Image.Image | None:
        if self.job is None or self.studio.running() is not self.job:
            return None
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
