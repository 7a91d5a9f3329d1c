"""The Generate tab: prompt, settings, Generate / Interrupt / Skip, progress, gallery with infotext, weights panel.

Every action goes through the studio; the form's values become a ``GenerationRequest`` in ``fields.build_request``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gradio as gr

from loradeck.errors import LoradeckError
from loradeck.services.catalog import hires_upscalers, sampler_names, schedule_names
from loradeck.services.studio import Studio

if TYPE_CHECKING:
    from loradeck.services.models import LoadedModel
from loradeck.ui import status
from loradeck.ui.catalog import LoraCatalog
from loradeck.ui.embedding_cards import build_embedding_cards
from loradeck.ui.fields import FORM_FIELDS, build_request, fields_from_infotext, seed_of
from loradeck.ui.generation import Run, Runs, progress_html
from loradeck.ui.img2img import apply_img2img, build_img2img
from loradeck.ui.lora_cards import CardsSection, build_cards, cards_html
from loradeck.ui.weights import MAX_SLOTS, normalise, prompt_loras, set_weight

POLL_S = 0.25
DEMO = "demo"

HIRES_UPSCALERS = hires_upscalers()


@dataclass
class GenerateTab:
    form: list[Any]  # components in FORM_FIELDS order
    prompt: Any
    negative: Any
    checkpoint: Any
    family: Any  # State: the loaded model's family value
    last_good: Any  # State: the checkpoint to fall back to when a load fails
    status: Any
    cards: CardsSection

    def updates_from_infotext(self, text: str, name_for_hash) -> list[Any]:
        """One update per form component (``gr.skip()`` where the infotext says nothing)."""
        values = fields_from_infotext(text, name_for_hash)
        return [values[name] if name in values else gr.skip() for name in FORM_FIELDS]


def name_for_hash(studio: Studio):
    def lookup(short: str) -> str | None:
        entry = studio.library.by_hash(short)
        return getattr(entry, "prompt_name", None)  # a checkpoint hash names no LoRA

    return lookup


def build_generate_tab(studio: Studio, catalog: LoraCatalog, runs: Runs) -> GenerateTab:
    limits = studio.settings.limits
    family = gr.State(None)
    last_good = gr.State(DEMO)  # the checkpoint to fall back to when a load fails
    infotexts = gr.State([])
    selected = gr.State(0)

    with gr.Row(elem_classes="ld-prompt-row"):
        with gr.Column(scale=5, min_width=260):
            prompt = gr.Textbox(
                label="Prompt",
                lines=3,
                max_lines=12,
                placeholder="a red circle on a blue background <lora:name:0.8>   (Ctrl+Enter generates)",
                elem_id="ld-prompt",
            )
            negative = gr.Textbox(label="Negative prompt", lines=2, max_lines=8, elem_id="ld-negative")
        with gr.Column(scale=1, min_width=160, elem_classes="ld-actions"):
            generate = gr.Button("Generate", variant="primary", size="lg", elem_id="ld-generate")
            with gr.Row():
                interrupt = gr.Button("Interrupt", size="sm", elem_id="ld-interrupt", min_width=70)
                skip = gr.Button("Skip", size="sm", elem_id="ld-skip", min_width=70)
            checkpoint = gr.Dropdown([DEMO], value=DEMO, label="Checkpoint", elem_id="ld-checkpoint", min_width=140)
            refresh_models = gr.Button("↻ Rescan models", elem_id="ld-checkpoint-refresh", size="sm")

    with gr.Row(elem_classes="ld-main-row"):
        with gr.Column(scale=1, min_width=280, elem_classes="ld-settings"):
            with gr.Row():
                sampler = gr.Dropdown(
                    sampler_names(), value="Euler a", label="Sampler", elem_id="ld-sampler", min_width=130
                )
                schedule = gr.Dropdown(
                    schedule_names(), value="Automatic", label="Schedule type", elem_id="ld-schedule", min_width=130
                )
            with gr.Row():
                steps = gr.Slider(1, limits.max_steps, 20, step=1, label="Steps", elem_id="ld-steps", min_width=130)
                cfg = gr.Slider(1, 30, 7, step=0.5, label="CFG scale", elem_id="ld-cfg", min_width=130)
            with gr.Row():
                size_info = "0 = the model's size"
                width = gr.Slider(
                    0, limits.max_side, 0, step=8, label="Width", info=size_info, elem_id="ld-width", min_width=130
                )
                height = gr.Slider(
                    0, limits.max_side, 0, step=8, label="Height", info=size_info, elem_id="ld-height", min_width=130
                )
            with gr.Row():
                batch_count = gr.Slider(
                    1, limits.max_batch_count, 1, step=1, label="Batch count", elem_id="ld-batch-count", min_width=130
                )
                batch_size = gr.Slider(
                    1, limits.max_batch, 1, step=1, label="Batch size", elem_id="ld-batch-size", min_width=130
                )
            with gr.Accordion("Hires fix", open=False, elem_id="ld-hires"):
                hires = gr.Checkbox(False, label="Enable", elem_id="ld-hires-enable")
                with gr.Row():
                    hr_upscaler = gr.Dropdown(
                        HIRES_UPSCALERS, value="Latent", label="Upscaler", elem_id="ld-hr-upscaler", min_width=130
                    )
                    hr_scale = gr.Slider(1, 4, 2, step=0.05, label="Upscale by", elem_id="ld-hr-scale", min_width=130)
                with gr.Row():
                    hr_steps = gr.Slider(
                        0,
                        limits.max_steps,
                        0,
                        step=1,
                        label="Hires steps",
                        info="0 = same as Steps",
                        elem_id="ld-hr-steps",
                        min_width=130,
                    )
                    hr_denoise = gr.Slider(
                        0.01, 1, 0.7, step=0.01, label="Denoising strength", elem_id="ld-hr-denoise", min_width=130
                    )
            with gr.Row(elem_classes="ld-seed-row"):
                seed = gr.Number(
                    -1, label="Seed", info="-1 = random", precision=0, elem_id="ld-seed", min_width=120, scale=3
                )
                with gr.Column(scale=1, min_width=110, elem_classes="ld-seed-buttons"):
                    random_seed = gr.Button("Random", elem_id="ld-seed-random", size="sm")
                    reuse_seed = gr.Button("Reuse last", elem_id="ld-seed-reuse", size="sm")
            with gr.Accordion("Variation seed", open=False, elem_id="ld-variation"):
                with gr.Row():
                    variation_seed = gr.Number(
                        -1, label="Variation seed", info="-1 = random", precision=0, elem_id="ld-variation-seed"
                    )
                    variation_strength = gr.Slider(
                        0, 1, 0, step=0.01, label="Variation strength", elem_id="ld-variation-strength"
                    )
            img2img = build_img2img(gr)
            with gr.Group(elem_id="ld-weights", elem_classes="ld-weights"):
                gr.Markdown("**LoRA weights in this prompt**", elem_classes="ld-weights-title")
                sliders = [
                    gr.Slider(-1, 2, 1, step=0.05, visible=False, elem_id=f"ld-weight-{i}", elem_classes="ld-weight")
                    for i in range(MAX_SLOTS)
                ]
                with gr.Row(equal_height=True):
                    weight_sum = gr.Markdown(prompt_loras("").summary(), elem_id="ld-weight-sum")
                    normalise_btn = gr.Button(
                        "Normalise to 1", size="sm", elem_id="ld-normalise", scale=0, min_width=120
                    )
            names = gr.State([])  # the LoRA name each visible slider stands for

        with gr.Column(scale=1, min_width=280, elem_classes="ld-output"):
            progress = gr.HTML(progress_html(0, "Ready", state="idle"), elem_id="ld-progress")
            status_box = gr.HTML("", elem_id="ld-status")
            preview = gr.Image(label="Live preview", visible=False, interactive=False, elem_id="ld-preview", height=160)
            gallery = gr.Gallery(
                label="Results",
                columns=2,
                height="auto",
                object_fit="contain",
                elem_id="ld-gallery",
                format="png",
                interactive=False,
                buttons=["download", "fullscreen"],
            )
            infotext = gr.Textbox(
                label="Parameters (infotext)", lines=4, max_lines=10, elem_id="ld-infotext", buttons=["copy"]
            )
            send = gr.Button("↩ Send to prompt", size="sm", elem_id="ld-send-to-prompt")

    with gr.Tabs(elem_id="ld-networks"):
        with gr.Tab("LoRAs", elem_id="ld-tab-loras"):
            cards = build_cards(catalog, prompt, negative, family, status_box)
        with gr.Tab("Embeddings", elem_id="ld-tab-embeddings"):
            build_embedding_cards(studio, prompt, negative, family, status_box)

    form = [
        prompt,
        negative,
        sampler,
        schedule,
        steps,
        cfg,
        seed,
        width,
        height,
        batch_count,
        batch_size,
        hires,
        hr_scale,
        hr_upscaler,
        hr_steps,
        hr_denoise,
        variation_seed,
        variation_strength,
    ]
    tab = GenerateTab(form, prompt, negative, checkpoint, family, last_good, status_box, cards)

    # ---------------------------------------------------------------------------------------------- generation
    def run_generation(
        text,
        negative_text,
        sampler_,
        schedule_,
        steps_,
        cfg_,
        seed_,
        width_,
        height_,
        count,
        size,
        hires_,
        hr_scale_,
        hr_upscaler_,
        hr_steps_,
        hr_denoise_,
        variation_seed_,
        variation_strength_,
        init_picture,
        mask,
        denoise,
        blur,
        content,
        area,
        padding,
        invert,
        model,
        request: gr.Request,
    ):
        given = (text, negative_text, sampler_, schedule_, steps_, cfg_, seed_, width_, height_, count, size)
        given += (hires_, hr_scale_, hr_upscaler_, hr_steps_, hr_denoise_, variation_seed_, variation_strength_)
        values = dict(zip(FORM_FIELDS, given, strict=True))
        try:
            req = build_request(values, None if model == DEMO else model)
            req = apply_img2img(req, [init_picture, mask, denoise, blur, content, area, padding, invert])
        except LoradeckError as exc:
            yield {status_box: status.error(str(exc)), progress: progress_html(0, "Not started", state="error")}
            return
        session = request.session_hash or "default"
        run = runs.start(session, Run(studio, req))
        yield {status_box: "", progress: progress_html(0, run.describe()), preview: gr.update(visible=False)}
        shown = False
        while not run.done.wait(POLL_S):
            picture = run.preview()
            update = {progress: progress_html(run.fraction, run.describe())}
            if picture is not None:
                update[preview] = gr.update(value=picture, visible=True)
                shown = True
            yield update
        runs.finish(session, run)
        hide = {preview: gr.update(visible=False)} if shown else {}
        if run.error or run.result is None:
            yield hide | {
                status_box: status.error(run.error or "Generation failed."),
                progress: progress_html(1, "Failed", state="error"),
            }
            return
        result = run.result
        items = [(str(img.path) if img.path else img.image, f"seed {img.seed}") for img in result.images]
        texts = [img.infotext for img in result.images]
        notes = list(dict.fromkeys(result.warnings))
        if result.interrupted:
            notes.insert(0, f"Interrupted: {len(items)} of {run.total_images} images were finished.")
        for note in notes:
            gr.Warning(note)
        yield hide | {
            gallery: gr.update(value=items, selected_index=0 if items else None),
            infotexts: texts,
            selected: 0,
            infotext: texts[0] if texts else "",
            status_box: status.generation(notes, result.lora_coverage),
            progress: progress_html(1, run.describe(), state="done"),
        }

    outputs = [status_box, progress, preview, gallery, infotexts, selected, infotext]
    inputs = [*form, *img2img.inputs, checkpoint]
    generate.click(run_generation, inputs, outputs, concurrency_limit=None, show_progress="hidden")

    def stop(which: str, request: gr.Request):
        run = runs.current(request.session_hash or "default")
        if run is None:
            return status.info("Nothing is running.")
        run.stop(which)
        return gr.skip()

    def interrupt_run(request: gr.Request):
        return stop("interrupted", request)

    def skip_run(request: gr.Request):
        return stop("skipped", request)

    interrupt.click(interrupt_run, None, status_box, show_progress="hidden")
    skip.click(skip_run, None, status_box, show_progress="hidden")

    # ---------------------------------------------------------------------------------------------- gallery
    def pick(texts: list[str], evt: gr.SelectData):
        index = evt.index if isinstance(evt.index, int) else 0
        return index, texts[index] if 0 <= index < len(texts) else ""

    gallery.select(pick, infotexts, [selected, infotext], show_progress="hidden")

    def send_to_prompt(text: str):
        try:
            return [*tab.updates_from_infotext(text, name_for_hash(studio)), ""]
        except LoradeckError as exc:
            return [*(gr.skip() for _ in form), status.error(str(exc))]

    send.click(send_to_prompt, infotext, [*form, status_box], show_progress="hidden")
    random_seed.click(lambda: -1, None, seed, show_progress="hidden")

    def reuse(texts: list[str], index: int):
        found = seed_of(texts[index]) if 0 <= index < len(texts) else None
        if found is None:
            return gr.skip(), status.info("Generate a picture first: its seed is what “Reuse last” takes.")
        return found, ""

    reuse_seed.click(reuse, [infotexts, selected], [seed, status_box], show_progress="hidden")

    # ---------------------------------------------------------------------------------------------- weights panel
    def show_weights(text: str):
        found = prompt_loras(text)
        visible = found.loras[:MAX_SLOTS]
        updates = []
        for i in range(MAX_SLOTS):
            if i < len(visible):
                lo = visible[i]
                label = lo.name + (f"  · blocks {lo.lbw}" if lo.lbw else "")
                label += "" if catalog_has(lo.name) else "  ⚠ not in the library"
                updates.append(gr.update(visible=True, value=lo.weight, label=label))
            else:
                updates.append(gr.update(visible=False))
        summary = found.summary()
        if len(found.loras) > MAX_SLOTS:
            summary += f" · {len(found.loras) - MAX_SLOTS} more not shown"
        return [*updates, summary, [lo.name for lo in visible]]

    def catalog_has(name: str) -> bool:
        return any(name in (c.prompt_name, c.name, c.alias, c.key) for c in catalog.cards())

    prompt.change(show_weights, prompt, [*sliders, weight_sum, names], show_progress="hidden", queue=False)
    for i, slider in enumerate(sliders):

        def move(text: str, shown: list[str], value: float, _i: int = i):
            return set_weight(text, shown[_i], value) if _i < len(shown) else text

        slider.release(move, [prompt, names, slider], prompt, show_progress="hidden")

    def normalise_prompt(text: str):
        try:
            return normalise(text), ""
        except LoradeckError as exc:
            return gr.skip(), status.error(str(exc))

    normalise_btn.click(normalise_prompt, prompt, [prompt, status_box], show_progress="hidden")

    # ---------------------------------------------------------------------------------------------- checkpoints
    def refresh_checkpoints(current: str):
        try:
            studio.library.refresh()
            choices = checkpoint_choices(studio)
        except Exception as exc:  # noqa: BLE001 - shown in the page
            return gr.skip(), status.error(f"Rescanning the models folder failed: {exc}")
        return gr.update(choices=choices, value=current if current in choices else DEMO), status.info(
            f"{len(choices) - 1} checkpoint(s) in {studio.settings.checkpoint_dir}."
        )

    refresh_models.click(refresh_checkpoints, checkpoint, [checkpoint, status_box])

    def load(name: str, previous: str):
        try:
            from loradeck.library.confine import network_checkpoint

            title = network_checkpoint(studio.library, studio.settings, name)  # a network page: library names only
            model, note = switch_checkpoint(studio, title)
        except LoradeckError as exc:
            return previous, gr.skip(), previous, status.error(str(exc))
        except Exception as exc:  # noqa: BLE001 - never a blank error
            return previous, gr.skip(), previous, status.error(f"Could not load {name}: {type(exc).__name__}: {exc}")
        return gr.skip(), model.family.value, name, status.ok(note)

    def render_cards(query: str, folder_name: str, order: str, fam: str | None) -> str:
        return cards_html(catalog, query, folder_name, order, fam)  # badges follow the model just loaded

    checkpoint.input(load, [checkpoint, last_good], [checkpoint, family, last_good, status_box]).then(
        render_cards, [*cards.filters, family], cards.grid, show_progress="hidden"
    )
    return tab


def switch_checkpoint(studio: Studio, name: str) -> tuple[LoadedModel, str]:
    """The picker's change: switch the studio's checkpoint through its queue (after the running job), so the API's
    ``sd_model_checkpoint`` and the next API job follow it. Returns the model and the sentence to show."""
    studio.wait(studio.switch_checkpoint(name))
    model = studio.model
    return model, f"Loaded {name} ({model.family.label})."


def checkpoint_choices(studio: Studio) -> list[str]:
    """The picker's choices: the embedded demo model, then every checkpoint of the library by title."""
    return studio.checkpoint_titles()
