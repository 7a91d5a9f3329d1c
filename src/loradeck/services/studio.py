"""The studio: the one object that owns state and runs every use case.

It owns the settings, the library, the loaded base model with its LoRA patcher, the parsed-LoRA cache, the current
checkpoint (A1111's ``sd_model_checkpoint``) and the job queues. Every kind of work is a ``Job`` on a queue: on the
device queue generations, model loads and training runs, one at a time, in LoRA-stack affinity order within a
fairness bound; on the download queue Civitai downloads. CLI, server and UI only translate their inputs into
requests, ``submit_*`` them, and map the results back; they share the queue, so a UI job waits its turn behind an
API job and the other way round.

>>> studio = Studio()                     # settings from LORADECK_HOME / config.toml / environment
>>> result = studio.generate(GenerationRequest("a red circle on a blue background <lora:stripy:0.8>", seed=1))
>>> result.images[0].path
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from PIL import Image

from loradeck.arch import native_size
from loradeck.demo.paths import DEMO, demo_lora_dir, demo_native_size
from loradeck.errors import Cancelled, CheckpointNotFound, LoradeckError, ModelLoadError
from loradeck.families import Family
from loradeck.library import Library
from loradeck.library.entries import LoraEntry
from loradeck.services.jobs import Job, JobQueue
from loradeck.services.plan import Checkpoint, GenerationPlan, plan_generation
from loradeck.settings import Settings, load_settings
from loradeck.vocab import GenerationRequest, GenerationResult, Progress

if TYPE_CHECKING:  # the engine side (torch, diffusers) loads when a job first needs it: `loradeck civitai …` never does
    import torch

    from loradeck.civitai import CivitaiClient, DownloadResult
    from loradeck.library.embeddings import EmbeddingEntry, EmbeddingLibrary
    from loradeck.lora import LoraFile
    from loradeck.services.grid import GridRequest, GridResult
    from loradeck.services.models import LoadedModel, ModelSource
    from loradeck.train import TrainConfig, TrainResult

log = logging.getLogger("loradeck")

ProgressFn = Callable[[Progress], None]
T = TypeVar("T")


class Studio:
    """Owns the library, the loaded base model and its LoRA stack, and the job queues."""

    def __init__(self, settings: Settings | None = None, **overrides: Any):
        from loradeck.quiet import quiet_libraries

        quiet_libraries()
        self.settings: Settings = settings.with_(**overrides) if settings else load_settings(**overrides)
        self.queue = JobQueue(affinity=self.settings.affinity, fairness=self.settings.fairness, name="device")
        self.downloads = JobQueue(affinity=False, fairness=0, name="downloads")
        self._checkpoint = DEMO  # the title new jobs run on unless they name one
        self._state_lock = threading.Lock()  # guards the fields below (never held while working)
        self._model: LoadedModel | None = None
        self._library: Library | None = None
        self._embeddings: EmbeddingLibrary | None = None
        self._loras: OrderedDict[tuple[str, float], LoraFile] = OrderedDict()  # (path, mtime) → parsed file
        self._latents: torch.Tensor | None = None  # the running batch's latents (for live previews)
        self._merged_key: tuple | None = None  # the stack key of the last generation (what the patcher holds)

    # ------------------------------------------------------------------------------------------------ state
    @property
    def library(self) -> Library:
        with self._state_lock:  # only creation needs it: the library guards its own scans and tables
            if self._library is None:
                self._library = Library(
                    lora_dir=self.settings.lora_path,
                    checkpoint_dir=self.settings.checkpoint_dir,
                    cache_dir=self.settings.cache_dir,
                    extra_lora_dirs=[demo_lora_dir()],
                )
            return self._library

    @property
    def embedding_library(self) -> EmbeddingLibrary:
        """The textual-inversion embeddings folders (``Settings.embedding_roots``)."""
        with self._state_lock:
            if self._embeddings is None:
                from loradeck.library.embeddings import EmbeddingLibrary

                self._embeddings = EmbeddingLibrary(self.settings.embedding_roots)
            return self._embeddings

    def embeddings(self) -> list[EmbeddingEntry]:
        """Every embedding in the folders, after a cheap rescan (only new or changed files are read)."""
        return self.embedding_library.entries()

    def embedding_listing(self) -> dict[str, dict[str, Any]]:
        """A1111's ``/sdapi/v1/embeddings`` for the current checkpoint (``services/embeddings.a1111_listing``)."""
        from loradeck.services.embeddings import a1111_listing

        try:
            family = self._planned_checkpoint(self.checkpoint).family
        except LoradeckError:  # the current checkpoint's file is gone: nothing is "loaded", the list still answers
            family = Family.UNKNOWN
        return a1111_listing(self.embeddings(), family)

    def embedding_hash_notes(self, hashes: dict[str, str]) -> list[str]:
        """One sentence per embedding of an infotext's ``TI hashes`` that is missing here or differs."""
        from loradeck.services.embeddings import hash_notes

        return hash_notes(self.embeddings(), hashes)

    @property
    def checkpoint(self) -> str:
        """The checkpoint title new jobs run on (A1111's ``sd_model_checkpoint``), wherever it was switched."""
        with self._state_lock:
            return self._checkpoint

    @property
    def model(self) -> LoadedModel:
        """The model in memory, loading the current checkpoint (through the queue) when none is."""
        model = self._model
        if model is None:
            self.wait(self.switch_checkpoint(self.checkpoint))
            model = self._model
            assert model is not None
        return model

    @property
    def loaded(self) -> LoadedModel | None:
        """The model in memory now, if any (never loads one)."""
        return self._model

    def loras(self, on_progress: Callable[..., None] | None = None) -> list[LoraEntry]:
        """Library entries of every LoRA, after scanning new or changed files (does not wait for a generation)."""
        self.library.scan(on_progress=on_progress)
        return self.library.loras()

    def checkpoint_title(self, name: str | None) -> str:
        """The title a checkpoint name resolves to ("demo" for the embedded model); CheckpointNotFound if none."""
        if name in (None, "", DEMO):
            return DEMO
        try:
            entry = self.library.resolve_checkpoint(name)
        except ModelLoadError as exc:
            raise CheckpointNotFound(str(exc)) from None
        inside = Path(entry.path).resolve().is_relative_to(Path(self.settings.checkpoint_dir).resolve())
        return entry.title if inside else str(entry.path)  # a file named by path outside the folder stays a path

    def checkpoint_titles(self) -> list[str]:
        return [DEMO, *(c.title for c in self.library.checkpoints())]

    # ------------------------------------------------------------------------------------------------ jobs
    def job(self, job_id: str) -> Job | None:
        return self.queue.get(job_id) or self.downloads.get(job_id)

    def jobs(self) -> list[Job]:
        return self.queue.jobs() + self.downloads.jobs()

    def cancel(self, job_id: str) -> Job | None:
        """A queued job is dropped (it never runs); a running one is interrupted. None when the id is unknown."""
        job = self.job(job_id)
        if job is not None:
            (self.queue if self.queue.get(job_id) is job else self.downloads).cancel(job_id)
        return job

    def running(self) -> Job | None:
        """The job on the device now (A1111's progress, interrupt and skip act on it)."""
        return self.queue.running

    def close(self) -> None:
        """Stop the queues: waiting jobs are cancelled, a running one is interrupted."""
        self.queue.stop()
        self.downloads.stop()

    def _submit(self, queue: JobQueue, fn: Callable[[Job], Any], **kw: Any) -> Job:
        queue.start()
        return queue.submit(fn, **kw)

    @staticmethod
    def wait(job: Job) -> Any:
        """The job's result; Ctrl-C while waiting interrupts the job (and is raised on)."""
        try:
            return job.result()
        except KeyboardInterrupt:
            job.interrupted.set()
            raise

    # ------------------------------------------------------------------------------------------------ models
    def switch_checkpoint(self, name: str | None) -> Job:
        """Queue a model load (so it happens between generations); the current checkpoint changes once loaded."""
        title = self.checkpoint_title(name)

        def load(job: Job) -> str:
            job.report(Progress(0, 1, phase="load"))
            self._load(title)
            with self._state_lock:
                self._checkpoint = title
            return title

        return self._submit(self.queue, load, kind="load", label=f"load {title}")

    def load_checkpoint(self, name: str | None) -> LoadedModel:
        """Load a base model now and make it the current checkpoint (by library name or title; None/"demo" = the
        embedded demo model). For scripts and tests; interfaces use ``switch_checkpoint``, which queues it."""
        model = self._load(name)
        with self._state_lock:
            self._checkpoint = model.title
        return model

    def _load(self, name: str | None) -> LoadedModel:
        """The model ``name`` in memory (loaded if another one is); the current checkpoint does not change (a job's
        own ``checkpoint`` is A1111's override_settings: it does not stick)."""
        source = self._source(name)
        model = self._model
        if model is not None and model.path == source.path:
            return model
        self._model = None
        del model  # free the previous model before loading the next one
        from loradeck.services.models import load_model

        self._model = load_model(source, self.settings)
        return self._model

    def _source(self, name: str | None) -> ModelSource:
        from loradeck.services.models import ModelSource

        if name in (None, "", DEMO):
            return ModelSource.demo()
        try:
            entry = self.library.resolve_checkpoint(name)
        except ModelLoadError as exc:
            raise CheckpointNotFound(str(exc)) from None
        return ModelSource(entry.title, Path(entry.path), entry.autov2, entry.family)

    def _planned_checkpoint(self, title: str) -> Checkpoint:
        model = self._model
        if model is not None and model.title == title:
            label = self._base_label(title) if title != DEMO else None
            return Checkpoint(title, model.family, model.native_size, label)
        if title == DEMO:
            return Checkpoint(DEMO, Family.DEMO, demo_native_size())
        family = Family(self._source(title).family)
        return Checkpoint(title, family, native_size(family), self._base_label(title))  # corrected once loaded

    def _base_label(self, title: str) -> str | None:
        """Civitai's base-model label of a library checkpoint (Pony, Illustrious, …), None when not known."""
        entry = self.library.find_checkpoint(title)
        return entry.base_model if entry is not None else None

    # ------------------------------------------------------------------------------------------------ generate
    def plan(self, request: GenerationRequest) -> GenerationPlan:
        """Check and resolve ``request`` (InvalidRequest / CheckpointNotFound now, not after waiting)."""
        title = self.checkpoint_title(request.checkpoint or self.checkpoint)
        return plan_generation(
            request, checkpoint=self._planned_checkpoint(title), library=self.library, settings=self.settings
        )

    def submit_generation(
        self, request: GenerationRequest | GenerationPlan, *, on_progress: ProgressFn | None = None
    ) -> Job:
        """Plan the request and queue it under its LoRA-stack key; ``job.result()`` is a GenerationResult."""
        plan = request if isinstance(request, GenerationPlan) else self.plan(request)
        steps = plan.request.steps + (plan.hires.steps if plan.hires else 0)
        return self._submit(
            self.queue,
            lambda job: self._generate(plan, job),
            kind=plan.kind,
            key=plan.stack_key,
            label=plan.request.prompt[:80],
            progress=Progress(0, steps, phase="sample", batches=plan.request.batch_count),
            on_progress=on_progress,
        )

    def generate(self, request: GenerationRequest, *, on_progress: ProgressFn | None = None) -> GenerationResult:
        """Generate pictures (through the queue, waiting for the result)."""
        result: GenerationResult = self.wait(self.submit_generation(request, on_progress=on_progress))
        return result

    def unload_checkpoint(self) -> None:
        """Drop the loaded model (A1111's unload-checkpoint); the next job loads it again. Call from a job."""
        self._model = None

    def submit_unload(self) -> Job:
        return self._submit(self.queue, lambda _job: self.unload_checkpoint(), kind="load", label="unload")

    def submit_extras(self, pictures: list[Image.Image], options: Any) -> Job:
        """A1111's extras upscale of ``pictures`` (``options``: upscaler_1/2, resize mode and sizes) on the device
        queue; ``result()`` is the list of upscaled pictures."""
        from loradeck.services.extras import upscale_one

        root = self.settings.home / "models"
        max_side = self.settings.limits.max_side * 2  # an upscale may go past the generation limit, within reason

        def work(_job: Job) -> list[Image.Image]:
            return [upscale_one(p, options, root, max_side) for p in pictures]

        return self._submit(self.queue, work, kind="extras", label=f"extras {options.upscaler_1}")

    # ------------------------------------------------------------------------------------------------ LoRA tools
    def submit_tool(
        self,
        request: Any,
        *,
        on_progress: ProgressFn | None = None,
        describe: Callable[[Any], dict[str, Any]] | None = None,
    ) -> Job:
        """A LoRA tool run (``loradeck.tools``: merge, resize, extract, convert requests) as a device job, progress per
        module; the file it writes is in the library when the job is done. ``result()`` is a ToolResult."""

        def run(job: Job) -> Any:
            from loradeck.tools import run_tool

            def progress(done: int, total: int, what: str) -> None:
                job.report(Progress(done, total, unit="modules", phase=request.tool, note=what))

            result = run_tool(request, on_progress=progress, cancel=job.interrupted.is_set)
            self.library.refresh()
            return result

        return self._submit(
            self.queue, run, kind="tool", label=request.tool, on_progress=on_progress, describe=describe,
            progress=Progress(0, 0, unit="modules", phase=request.tool),
        )  # fmt: skip

    def run_tool(self, request: Any, *, on_progress: ProgressFn | None = None) -> Any:
        return self.wait(self.submit_tool(request, on_progress=on_progress))

    # ------------------------------------------------------------------------------------------------ grids
    def plan_grid(self, request: GridRequest) -> list[GenerationPlan]:
        """Every cell planned (and so checked) now: a bad value fails the grid before anything runs."""
        return [self.plan(r) for r in request.cell_requests()]

    def submit_grid(
        self,
        request: GridRequest,
        *,
        on_progress: ProgressFn | None = None,
        describe: Callable[[Any], dict[str, Any]] | None = None,
    ) -> Job:
        """Queue an X/Y/Z plot as one device job (cells ordered to merge each stack once); ``result()`` is a
        GridResult."""
        from loradeck.services.grid import run_grid, run_order

        plans = self.plan_grid(request)

        def run(job: Job) -> Any:
            loaded = self._model.title if self._model is not None else None
            order = run_order(plans, loaded, self._merged_key)
            return run_grid(
                request, plans, job, generate=self._generate, order=order, outputs=self.settings.outputs_path
            )

        return self._submit(
            self.queue, run, kind="grid", key=plans[0].stack_key, label=f"grid: {request.base.prompt[:70]}",
            progress=Progress(0, 0, phase="grid", batches=len(plans)), on_progress=on_progress, describe=describe,
        )  # fmt: skip

    def grid(self, request: GridRequest, *, on_progress: ProgressFn | None = None) -> GridResult:
        result: GridResult = self.wait(self.submit_grid(request, on_progress=on_progress))
        return result

    def _generate(self, plan: GenerationPlan, job: Any) -> GenerationResult:
        model = self._load(plan.checkpoint.title)
        if (model.family, model.native_size) != (plan.checkpoint.family, plan.checkpoint.native_size):
            # planned before the model was in memory: plan again with what it really is (seeds are fixed)
            real = Checkpoint(model.title, model.family, model.native_size, plan.checkpoint.base_model)
            plan = plan_generation(plan.request, checkpoint=real, library=self.library, settings=self.settings)
        from loradeck.services.generation import run_plan

        try:
            result = run_plan(
                plan,
                model,
                job,
                load_lora=self.load_lora_file,
                outputs=self.settings.outputs_path,
                keep_latents=self._keep_latents,
                embeddings=self.embeddings(),
            )
        finally:
            self._latents = None  # idle: no preview
        self._merged_key = plan.stack_key
        return result

    def _keep_latents(self, latents: torch.Tensor) -> None:
        self._latents = latents  # a reference only; decoded when somebody asks for a preview

    def current_preview(self) -> Image.Image | None:
        """A quick picture of the image being sampled now (first of its batch), or None when idle."""
        if self._latents is None:
            return None
        from loradeck.services.generation import preview_of

        return preview_of(self._latents, self._model)

    def load_lora_file(self, path: Path) -> LoraFile:
        """A parsed LoRA file, cached by path and mtime (a changed file is re-read)."""
        key = (str(path), path.stat().st_mtime)
        with self._state_lock:
            cached = self._loras.get(key)
        if cached is not None:
            return cached
        from loradeck.lora import load_lora

        lora = load_lora(path)
        with self._state_lock:
            self._loras[key] = lora
            while len(self._loras) > 32:
                self._loras.popitem(last=False)
        return lora

    # ------------------------------------------------------------------------------------------------ train
    def submit_train(
        self,
        config: TrainConfig,
        *,
        on_progress: ProgressFn | None = None,
        describe: Callable[[Any], dict[str, Any]] | None = None,
    ) -> Job:
        """Queue a training run on the device (it waits for a running generation); ``result()`` is a TrainResult.
        A ``base`` that is neither "demo" nor an existing path is looked up in the library, like ``--checkpoint``."""
        base = config.base
        if base not in ("", DEMO) and not Path(base).expanduser().exists():
            base = str(self.library.resolve_checkpoint(base).path)
        config = config.with_(
            base=base,
            lora_dir=config.lora_dir or self.settings.lora_path,
            output_dir=config.output_dir or self.settings.home / "training" / config.name,
        )

        def run(job: Job) -> TrainResult:
            from loradeck.train import train_lora

            def progress(p: Any) -> None:
                values = {"loss": p.loss, "avg_loss": p.avg_loss, "lr": p.lr, "it_per_s": p.it_per_s, "eta_s": p.eta_s}
                job.report(Progress(p.step, p.total, phase=p.phase, values=values))

            result = train_lora(config, on_progress=progress, cancel=job.interrupted)
            self.library.refresh()  # the new LoRA is in the library at once
            return result

        return self._submit(
            self.queue, run, kind="train", key=("train", config.name), label=f"train {config.name}",
            progress=Progress(0, 0, phase="train"), on_progress=on_progress, describe=describe,
        )  # fmt: skip

    def train(self, config: TrainConfig, *, on_progress: ProgressFn | None = None) -> TrainResult:
        result: TrainResult = self.wait(self.submit_train(config, on_progress=on_progress))
        return result

    # ------------------------------------------------------------------------------------------------ civitai
    def civitai(self) -> CivitaiClient:
        """A Civitai client with this studio's URL and token (use it in a ``with`` block)."""
        from loradeck.civitai import CivitaiClient

        return CivitaiClient.from_settings(self.settings)

    def submit_download(
        self,
        ref: str,
        *,
        version_id: int | None = None,
        file_id: int | None = None,
        to: Path | None = None,
        nsfw: bool = False,
        overwrite: bool = False,
        on_progress: ProgressFn | None = None,
        describe: Callable[[Any], dict[str, Any]] | None = None,
    ) -> Job:
        """Queue a verified download into the LoRA or checkpoint folder; ``result()`` is a DownloadResult."""

        def run(job: Job) -> DownloadResult:
            from loradeck.civitai import download

            def progress(done: int, total: int | None) -> None:
                job.report(Progress(done, total or 0, unit="bytes", phase="download"))
                if job.interrupted.is_set():
                    raise Cancelled(f"The download of {ref} was cancelled; the partial file is kept for a resume.")

            with self.civitai() as client:
                result = download(
                    client, ref, lora_dir=self.settings.lora_path, checkpoint_dir=self.settings.checkpoint_dir,
                    to=to, version_id=version_id, file_id=file_id, nsfw=nsfw, overwrite=overwrite,
                    on_progress=progress,
                )  # fmt: skip
            self.library.refresh()  # the new file is in the library at once
            return result

        return self._submit(
            self.downloads, run, kind="civitai-download", label=ref,
            progress=Progress(0, 0, unit="bytes", phase="download"), on_progress=on_progress, describe=describe,
        )  # fmt: skip

    def download(self, ref: str, **kw: Any) -> DownloadResult:
        result: DownloadResult = self.wait(self.submit_download(ref, **kw))
        return result

    def identify(self, paths: Iterable[Path] | None = None, *, nsfw: bool = False, write_sidecars: bool = True) -> Any:
        """Look local files up on Civitai by hash and write their sidecars (default: the LoRA folder)."""
        from loradeck.civitai import identify

        with self.civitai() as client:
            report = identify(
                client, list(paths or [self.settings.lora_path]), nsfw=nsfw, write_sidecars=write_sidecars
            )
        self.library.refresh()
        return report
