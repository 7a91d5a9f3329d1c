"""The job queue: one worker thread per device, LoRA-stack affinity within a fairness bound.

Merging a LoRA stack into the base model costs time (and restoring it costs it again), so jobs that need the stack
already merged go first. To keep that from starving anyone, a queued job may be overtaken by at most ``fairness``
jobs that arrived after it; once it has been overtaken that often, it runs next. ``fairness=0`` (or
``affinity=False``) is plain FIFO.

Pure threading, no HTTP. The studio owns one queue per resource (the device; downloads) and every kind of work —
generations, model loads, training, downloads, tools, grid cells — is a ``Job`` on one of them. A job's
``interrupted`` and ``skipped`` events are what the engine's sampling loop polls; its progress is one ``Progress``.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from loradeck.errors import Cancelled, LoradeckError
from loradeck.vocab import Progress

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)
HISTORY = 200  # finished jobs kept for the jobs route


@dataclass(eq=False)
class Job:
    """One unit of work and everything a client may ask about it while it waits, runs, or after it ended."""

    fn: Callable[[Job], Any]
    kind: str = "job"
    key: Hashable = None  # affinity key (LoRA stack + checkpoint); None = no preference
    label: str = ""  # short human description (the prompt's start, a Civitai reference)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    seq: int = 0
    state: str = QUEUED
    passed: int = 0  # later-arrived jobs that ran before this one
    queued_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    progress: Progress = field(default_factory=Progress)
    detail: dict[str, Any] = field(default_factory=dict)  # what the job reports about itself (its result's summary)
    on_progress: Callable[[Progress], None] | None = field(default=None, repr=False)  # the submitter's listener
    describe: Callable[[Any], dict[str, Any]] | None = field(default=None, repr=False)  # result → detail
    interrupted: threading.Event = field(default_factory=threading.Event)
    skipped: threading.Event = field(default_factory=threading.Event)
    future: Future = field(default_factory=Future, repr=False)

    @property
    def fraction(self) -> float:
        """Share of the job done, 0..1."""
        return 1.0 if self.state == DONE else self.progress.fraction

    def report(self, progress: Progress) -> None:
        """The job's work calls this; listeners (a CLI bar, a UI poller) see the latest event."""
        self.progress = progress
        if self.on_progress is not None:
            self.on_progress(progress)

    def result(self, timeout: float | None = None) -> Any:
        return self.future.result(timeout)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "label": self.label,
            "state": self.state,
            "queued_at": self.queued_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "progress": {
                "fraction": round(self.fraction, 4),
                "batch": self.progress.batch,
                "batches": self.progress.batches,
                "step": self.progress.step,
                "steps": self.progress.total,
                "unit": self.progress.unit,
                "phase": self.progress.phase,
                **self.progress.values,
            },
            "passed_by": self.passed,
            "error": self.error,
            **({"detail": self.detail} if self.detail else {}),
        }


class JobQueue:
    """Runs submitted jobs one at a time on its own worker thread."""

    def __init__(self, *, affinity: bool = True, fairness: int = 4, name: str = "device"):
        if fairness < 0:
            raise ValueError("fairness must be 0 or more")
        self.affinity, self.fairness, self.name = affinity, fairness, name
        self._cond = threading.Condition()
        self._pending: list[Job] = []
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._seq = itertools.count()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.running: Job | None = None
        self.last_key: Hashable = None
        self.switches = 0  # times a job ran with a different key than the one before it
        self.completed = 0
        self.order: list[str] = []  # ids in the order they started (tests and the bench read it)

    # ------------------------------------------------------------------------------------------------ lifecycle
    def start(self) -> JobQueue:
        """Start the worker (again after ``stop``: a studio outlives the servers that use it)."""
        with self._cond:
            if self._thread is None:
                self._stopping = False
                self._thread = threading.Thread(target=self._work, name=f"loradeck-{self.name}", daemon=True)
                self._thread.start()
        return self

    def stop(self, timeout: float | None = 10.0) -> None:
        """Cancel what waits, interrupt what runs, end the worker."""
        with self._cond:
            self._stopping = True
            for job in list(self._pending):
                self._cancel_queued(job, "the server is stopping")
            if self.running is not None:
                self.running.interrupted.set()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    # ------------------------------------------------------------------------------------------------ submit, cancel
    def submit(
        self,
        fn: Callable[[Job], Any],
        *,
        kind: str = "job",
        key: Hashable = None,
        label: str = "",
        progress: Progress | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        describe: Callable[[Any], dict[str, Any]] | None = None,
    ) -> Job:
        """Queue ``fn(job)``; ``progress`` is what the job reports while it waits (its unit and size);
        ``describe(result)`` becomes the job's ``detail`` before it is marked done."""
        job = Job(fn=fn, kind=kind, key=key, label=label, on_progress=on_progress, describe=describe)
        if progress is not None:
            job.progress = progress
        with self._cond:
            if self._stopping:
                raise Cancelled("The server is stopping; the job was not queued.")
            job.seq = next(self._seq)
            self._pending.append(job)
            self._remember(job)
            self._cond.notify_all()
        return job

    def cancel(self, job_id: str) -> Job | None:
        """Cancel a queued job (it never runs) or interrupt a running one; None when the id is unknown."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            if job.state == QUEUED:
                self._cancel_queued(job, "it was cancelled")
            elif job.state == RUNNING:
                job.interrupted.set()
            return job

    def _cancel_queued(self, job: Job, why: str) -> None:
        self._pending.remove(job)
        job.state, job.finished_at = CANCELLED, time.time()
        job.error = f"Job {job.id} did not run: {why}."
        if not job.future.cancelled():
            job.future.set_exception(Cancelled(job.error))

    # ------------------------------------------------------------------------------------------------ queries
    def get(self, job_id: str) -> Job | None:
        with self._cond:
            return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        with self._cond:
            return list(self._jobs.values())

    def pending(self) -> list[Job]:
        with self._cond:
            return list(self._pending)

    def position(self, job: Job) -> int | None:
        """0-based place among waiting jobs in arrival order (the pick may still move it ahead)."""
        with self._cond:
            return self._pending.index(job) if job in self._pending else None

    def wait_idle(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self.running is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def _remember(self, job: Job) -> None:
        self._jobs[job.id] = job
        if len(self._jobs) > HISTORY:  # forget the oldest finished jobs
            for old_id in [i for i, j in self._jobs.items() if j.state in FINISHED][: len(self._jobs) - HISTORY]:
                del self._jobs[old_id]

    # ------------------------------------------------------------------------------------------------ scheduling
    def pick(self) -> Job:
        """The next job (caller holds the lock, ``_pending`` is not empty); overtaken jobs are counted."""
        head = self._pending[0]
        if not self.affinity or self.fairness == 0 or self.last_key is None or head.key == self.last_key:
            return head
        for i, job in enumerate(self._pending):
            if job.key == self.last_key:
                older = self._pending[:i]
                if all(o.passed < self.fairness for o in older):
                    for o in older:
                        o.passed += 1
                    return job
                break
        return head

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if self._stopping and not self._pending:
                    return
                job = self.pick()
                self._pending.remove(job)
                # Its only waiter gave up (an asyncio wrapper of the future was cancelled: a client that went away
                # behind Ray Serve): do not run it. From here on the future cannot be cancelled, only settled.
                if not job.future.set_running_or_notify_cancel():
                    job.state, job.finished_at = CANCELLED, time.time()
                    job.error = f"Job {job.id} did not run: its caller went away."
                    continue
                if job.key is not None:
                    if self.last_key is not None and job.key != self.last_key:
                        self.switches += 1
                    self.last_key = job.key
                job.state, job.started_at = RUNNING, time.time()
                self.running = job
                self.order.append(job.id)
            self._run(job)
            with self._cond:
                self.running = None
                self.completed += 1
                self._cond.notify_all()

    @staticmethod
    def _run(job: Job) -> None:
        try:
            result = job.fn(job)
        except BaseException as exc:  # noqa: BLE001 — the worker must survive any job; the caller gets the error
            job.state = CANCELLED if isinstance(exc, Cancelled) else FAILED
            job.error = str(exc) if isinstance(exc, LoradeckError) else f"{type(exc).__name__}: {exc}"
            job.finished_at = time.time()
            job.future.set_exception(exc)
            return
        if job.describe is not None:
            try:
                job.detail = job.describe(result)
            except Exception:  # noqa: BLE001 — a summary must never fail the job it describes
                job.detail = {}
        job.state = CANCELLED if getattr(result, "interrupted", False) or getattr(result, "cancelled", False) else DONE
        job.finished_at = time.time()
        job.future.set_result(result)
