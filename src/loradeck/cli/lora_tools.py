"""`loradeck lora merge|resize|extract|convert`: the LoRA tools, with a progress bar and a per-module report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from loradeck.cli.common import LoraDir, ModelsDir, console, make_studio
from loradeck.cli.lora import app

Out = Annotated[Path | None, typer.Option("--out", help="Output .safetensors (default: the LoRA folder).")]
Name = Annotated[str | None, typer.Option("--name", help="File name in the LoRA folder when --out is not given.")]
Precision = Annotated[str, typer.Option("--precision", help="Saved dtype: fp16, bf16 or fp32.")]
Device = Annotated[str | None, typer.Option("--device", help="cuda, cpu, … (default: the GPU when there is one).")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace a file of that name in the LoRA folder.")]
Verbose = Annotated[bool, typer.Option("--per-module/--summary", help="Print one line per module.")]


def _studio(models_dir, lora_dir):
    return make_studio(models_dir=models_dir, lora_dir=lora_dir)


def _lora_path(studio, text: str) -> Path:
    """A file path, else a LoRA name from the library."""
    path = Path(text).expanduser()
    return path if path.exists() else Path(studio.library.resolve_lora(text).path)


def _checkpoint(studio, text: str) -> str:
    if text in ("", "demo") or Path(text).expanduser().exists():
        return text
    return str(studio.library.resolve_checkpoint(text).path)


def _run(request, studio, overwrite: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if request.out is None:
        request.lora_dir = studio.settings.lora_path
    request.overwrite = overwrite
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(request.tool, total=None)

        def on_progress(p) -> None:  # a loradeck.vocab.Progress, per module
            bar.update(task, completed=p.step, total=p.total, description=f"{request.tool}: {p.note[:60]}")

        return studio.run_tool(request, on_progress=on_progress)


def _report(result, per_module: bool) -> None:
    from rich.table import Table

    for note in result.notes:
        console.print(note, markup=False, highlight=False)
    if result.per_module and per_module:
        table = Table("module", "rank", "retained", "error ‖·‖F")
        for row in result.per_module:
            table.add_row(row["name"], str(row["rank"]), f"{row['retained']:.4f}", f"{row['error']:.3g}")
        console.print(table)
    line = f"{result.tool}: {result.modules} modules, rank {result.rank}, {result.seconds:.1f} s on {result.device}"
    if result.retained is not None:
        line += f"; retained Frobenius share overall {result.retained:.4f}"
    console.print(line, markup=False, highlight=False)
    print(result.path)


def _pair(item: str) -> tuple[str, float]:
    path, sep, weight = item.rpartition(":")
    if not sep or not path or "/" in weight or "\\" in weight:
        return item, 1.0
    try:
        return path, float(weight)
    except ValueError:
        raise typer.BadParameter(f"{item!r}: the weight after ':' must be a number") from None


@app.command()
def merge(
    loras: Annotated[
        list[str], typer.Argument(help="FILE[:WEIGHT] … (a path or a library name; weight 1 if left out)")
    ],
    out: Out = None,
    rank: Annotated[int | None, typer.Option("--rank", help="SVD merge to this rank (default: exact concat).")] = None,
    conv_rank: Annotated[int | None, typer.Option("--conv-rank", help="Rank of 3×3 convs (default --rank).")] = None,
    base: Annotated[str | None, typer.Option("--base", help="Base checkpoint (only for IA3/DoRA inputs).")] = None,
    clamp_quantile: Annotated[float | None, typer.Option("--clamp-quantile", help="kohya's outlier clamp.")] = None,
    name: Name = None,
    precision: Precision = "fp16",
    overwrite: Overwrite = False,
    device: Device = None,
    per_module: Verbose = False,
    models_dir: ModelsDir = None,
    lora_dir: LoraDir = None,
) -> None:
    """Merge LoRAs into one: exact (ranks add) or, with --rank, the best rank-N approximation of the weighted sum."""
    from loradeck.services.types import MergeRequest

    studio = _studio(models_dir, lora_dir)
    pairs = [(_lora_path(studio, p), w) for p, w in map(_pair, loras)]
    req = MergeRequest(inputs=pairs, rank=rank, conv_rank=conv_rank, clamp_quantile=clamp_quantile, out=out,
                       name=name, precision=precision, device=device,
                       base=Path(_checkpoint(studio, base)) if base else None)  # fmt: skip
    _report(_run(req, studio, overwrite), per_module)


@app.command()
def resize(
    file: Annotated[str, typer.Argument(help="A LoRA file or library name.")],
    out: Out = None,
    rank: Annotated[int | None, typer.Option("--rank", help="New rank (with --dynamic: the cap).")] = None,
    conv_rank: Annotated[int | None, typer.Option("--conv-rank", help="New rank of 3×3 convs.")] = None,
    dynamic: Annotated[str | None, typer.Option("--dynamic", help="sv_fro, sv_ratio or sv_cumulative.")] = None,
    param: Annotated[float | None, typer.Option("--param", help="The dynamic method's parameter.")] = None,
    base: Annotated[str | None, typer.Option("--base", help="Base checkpoint (only for IA3/DoRA).")] = None,
    name: Name = None,
    precision: Precision = "fp16",
    overwrite: Overwrite = False,
    device: Device = None,
    per_module: Annotated[bool, typer.Option("--per-module/--summary", help="One line per module.")] = True,
    models_dir: ModelsDir = None,
    lora_dir: LoraDir = None,
) -> None:
    """Change a LoRA's rank by SVD (fixed, or per module with kohya's dynamic methods); prints what is retained."""
    from loradeck.services.types import ResizeRequest

    studio = _studio(models_dir, lora_dir)
    req = ResizeRequest(input=_lora_path(studio, file), rank=rank, conv_rank=conv_rank, method=dynamic, param=param,
                        out=out, name=name, precision=precision, device=device,
                        base=Path(_checkpoint(studio, base)) if base else None)  # fmt: skip
    _report(_run(req, studio, overwrite), per_module)


@app.command()
def extract(
    base: Annotated[str, typer.Option("--base", help="The original checkpoint (file, folder, name or 'demo').")],
    tuned: Annotated[str, typer.Option("--tuned", help="The fine-tuned checkpoint.")],
    rank: Annotated[int, typer.Option("--rank", help="LoRA rank.")] = 4,
    conv_rank: Annotated[int, typer.Option("--conv-rank", help="Rank of 3×3 convs (0: none).")] = 0,
    clamp_quantile: Annotated[float | None, typer.Option("--clamp-quantile", help="e.g. 0.99 (kohya).")] = None,
    min_diff: Annotated[float, typer.Option("--min-diff", help="Skip text-encoder modules below this.")] = 0.01,
    out: Out = None,
    name: Name = None,
    precision: Precision = "fp16",
    overwrite: Overwrite = False,
    device: Device = None,
    per_module: Verbose = False,
    models_dir: ModelsDir = None,
    lora_dir: LoraDir = None,
) -> None:
    """Extract a LoRA from the difference of two checkpoints (text encoders and U-Net)."""
    from loradeck.services.types import ExtractRequest

    studio = _studio(models_dir, lora_dir)
    req = ExtractRequest(base=Path(_checkpoint(studio, base)), tuned=Path(_checkpoint(studio, tuned)), rank=rank,
                         conv_rank=conv_rank, clamp_quantile=clamp_quantile, min_diff=min_diff, out=out, name=name,
                         precision=precision, device=device)  # fmt: skip
    _report(_run(req, studio, overwrite), per_module)


@app.command()
def convert(
    file: Annotated[str, typer.Argument(help="A LoRA file or library name.")],
    to: Annotated[str, typer.Option("--to", help="kohya, peft (diffusers) or comfy.")] = "kohya",
    out: Out = None,
    base: Annotated[str | None, typer.Option("--base", help="Base checkpoint (IA3/DoRA to peft/comfy).")] = None,
    name: Name = None,
    precision: Precision = "fp16",
    overwrite: Overwrite = False,
    models_dir: ModelsDir = None,
    lora_dir: LoraDir = None,
) -> None:
    """Rewrite a LoRA with kohya names (A1111), in the diffusers/PEFT layout, or as plain LoRA factors (ComfyUI)."""
    from loradeck.services.types import ConvertRequest

    studio = _studio(models_dir, lora_dir)
    req = ConvertRequest(input=_lora_path(studio, file), to=to, out=out, name=name, precision=precision,
                         base=Path(_checkpoint(studio, base)) if base else None)  # fmt: skip
    _report(_run(req, studio, overwrite), False)
