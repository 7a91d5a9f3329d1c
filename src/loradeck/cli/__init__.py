"""The `loradeck` command. Heavy imports (torch, diffusers) happen inside commands so `--help` stays instant."""

from __future__ import annotations

import typer

from loradeck.cli import civitai, embeddings, generate, grid, lora, pnginfo, serve, train

app = typer.Typer(
    name="loradeck",
    help="Use and make LoRA models for Stable Diffusion. Runs on the embedded demo model with no download.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("generate")(generate.generate)
app.command("grid")(grid.grid)
app.command("png-info")(pnginfo.png_info)
app.command("serve")(serve.serve)
app.add_typer(lora.app, name="lora")
app.command("embeddings")(embeddings.embeddings)
app.add_typer(civitai.app, name="civitai")
app.command("train")(train.train)


def main() -> None:
    from loradeck.cli.common import run_app

    run_app(app)
