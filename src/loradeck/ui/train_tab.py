"""The Train tab: a data folder, a base, a name and a trigger; live loss while it trains; the LoRA lands in the library.

The studio trains (``Studio.submit_train``: a job on the device queue, so it waits for a running generation); this
tab polls the progress the job reports and can cancel it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from loradeck.errors import LoradeckError
from loradeck.services.jobs import QUEUED, Job
from loradeck.services.studio import Studio
from loradeck.services.types import TrainConfig
from loradeck.ui import status
from loradeck.ui.generation import progress_html
from loradeck.vocab import Progress

POLL_S = 0.25


@dataclass(eq=False)
class Training:
    """One training job of the page: the latest progress, the result or the error sentence."""

    studio: Studio
    config: TrainConfig
    job: Job | None = None
    done: threading.Event = field(default_factory=threading.Event)
    losses: list[float] = field(default_factory=list)
    result: Any = None  # a TrainResult
    error: str | None = None

    def start(self) -> Training:
        try:
            self.job = self.studio.submit_train(self.config, on_progress=self._on_progress)
        except LoradeckError as exc:
            self._end(error=str(exc))
            return self
        self.job.future.add_done_callback(lambda _f: self._finish())
        return self

    def _finish(self) -> None:
        assert self.job is not None
        try:
            self._end(result=self.job.future.result())
        except LoradeckError as exc:
            self._end(error=str(exc))
        except Exception as exc:  # the page must show a reason, never a blank error
            self._end(error=f"Training failed: {exc}")

    def _end(self, *, result: Any = None, error: str | None = None) -> None:
        self.result, self.error = result, error
        self.done.set()

    def cancel(self) -> None:
        if self.job is not None:
            self.studio.cancel(self.job.id)

    def _on_progress(self, p: Progress) -> None:
        if p.phase == "train" and "loss" in p.values:
            self.losses.append(float(p.values["loss"]))

    @property
    def progress(self) -> Progress | None:
        return self.job.progress if self.job is not None and self.job.progress.total else None

    def describe(self) -> str:
        if self.job is not None and self.job.state == QUEUED:
            return "Waiting for the device (a generation is running)…"
        p = self.progress
        if p is None:
            return "Checking the data and loading the base model…"
        if p.phase != "train":
            return f"Caching pictures {p.step}/{p.total}"
        v = p.values
        eta = f", {v['eta_s']:.0f} s left" if v.get("eta_s") else ""
        return f"step {p.step}/{p.total} · loss {v['avg_loss']:.4f} · {v['it_per_s']:.2f} it/s{eta}"

    @property
    def fraction(self) -> float:
        p = self.progress
        return 0.0 if p is None or not p.total else p.step / p.total


def build_train_tab(studio: Studio, on_trained: tuple | None = None) -> None:
    """The tab's components and events. ``on_trained`` = (fn, inputs, outputs) run after a LoRA is written."""
    runs: dict[str, Training] = {}
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=280):
            data = gr.Textbox(
                label=f"Data folder in {studio.settings.datasets_path} (pictures + .txt captions)",
                elem_id="ld-train-data",
            )
            with gr.Row():
                name = gr.Textbox(label="Name", value="my_lora", elem_id="ld-train-name")
                trigger = gr.Textbox(label="Trigger words", elem_id="ld-train-trigger")
            base = gr.Textbox(label="Base model (a checkpoint of the library, or demo)", value="demo")
            with gr.Row():
                steps = gr.Number(label="Steps", value=400, precision=0, minimum=1)
                rank = gr.Number(label="Rank", value=16, precision=0, minimum=1)
                alpha = gr.Number(label="Alpha", value=8)
                lr = gr.Number(label="Learning rate", value=1e-4)
            with gr.Row():
                batch = gr.Number(label="Batch size", value=1, precision=0, minimum=1)
                optimizer = gr.Dropdown(["adamw", "adamw8bit", "prodigy", "lion"], value="adamw", label="Optimizer")
                scheduler = gr.Dropdown(["constant", "cosine", "linear"], value="constant", label="LR schedule")
            with gr.Row():
                start = gr.Button("Train", variant="primary", elem_id="ld-train-start")
                stop = gr.Button("Cancel", elem_id="ld-train-cancel")
        with gr.Column(scale=2, min_width=260):
            bar = gr.HTML(progress_html(0, "Idle", state="idle"), elem_id="ld-train-progress")
            curve = gr.LinePlot(x="step", y="loss", label="Loss", height=220, elem_id="ld-train-loss")
            box = gr.HTML(elem_id="ld-train-status")

    def run(
        data_, name_, trigger_, base_, steps_, rank_, alpha_, lr_, batch_, optimizer_, scheduler_, request: gr.Request
    ):
        import pandas as pd

        from loradeck.library.confine import check_output_name, network_checkpoint_file, network_dataset

        try:  # the page is reached over the network: folders and models only from the datasets folder and library
            folder = network_dataset(studio.settings, data_.strip()) if data_ and data_.strip() else None
            base_file = network_checkpoint_file(studio.library, studio.settings, base_.strip() or "demo")
            config = TrainConfig(
                data=folder,
                name=check_output_name(name_.strip()), trigger=trigger_.strip(), base=base_file, steps=int(steps_),
                rank=int(rank_), alpha=float(alpha_), lr=float(lr_), batch_size=int(batch_),
                optimizer=optimizer_, scheduler=scheduler_,
            )  # fmt: skip
            if config.data is None:
                raise LoradeckError("Give the folder of training pictures first.")
        except (LoradeckError, ValueError, TypeError) as exc:
            yield {box: status.error(str(exc)), bar: progress_html(0, "Not started", state="error")}
            return
        session = request.session_hash or "default"
        training = runs[session] = Training(studio, config).start()
        while not training.done.wait(POLL_S):
            points = pd.DataFrame({"step": range(1, len(training.losses) + 1), "loss": training.losses})
            yield {bar: progress_html(training.fraction, training.describe()), curve: points, box: ""}
        runs.pop(session, None)
        if training.error:
            yield {box: status.error(training.error), bar: progress_html(1, "Failed", state="error")}
            return
        result = training.result
        verb = "Cancelled at" if result.cancelled else "Done:"
        message = f"{verb} step {result.steps}/{result.total_steps}" + (
            f"; the LoRA is {result.lora_path.name}, use <lora:{config.name}:1> {config.trigger}".rstrip()
            if result.lora_path
            else ""
        )
        yield {box: status.ok(message), bar: progress_html(1, message, state="done")}

    event = start.click(
        run, [data, name, trigger, base, steps, rank, alpha, lr, batch, optimizer, scheduler], [bar, curve, box],
        concurrency_limit=None, show_progress="hidden",
    )  # fmt: skip
    if on_trained is not None:
        event.then(*on_trained)

    def cancel(request: gr.Request) -> None:
        training = runs.get(request.session_hash or "default")
        if training is not None:
            training.cancel()

    stop.click(cancel, None, None)
