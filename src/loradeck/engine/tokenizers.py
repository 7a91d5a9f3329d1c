"""The CLIP tokenizer(s) a single-file checkpoint needs, found offline.

Single files carry no tokenizer. Every SD text encoder uses the same CLIP BPE vocabulary; they differ only in the
padding token: OpenAI CLIP-L (SD 1.x, SDXL's first encoder) pads with ``<|endoftext|>``, OpenCLIP (SD 2.x, SDXL's
second encoder) pads with ``!`` (id 0). So any CLIP tokenizer folder serves every family, and we set the padding by
the encoder's role.

Where we look, in order: ``--tokenizer DIR`` (a folder with vocab.json + merges.txt, or a diffusers folder with
tokenizer/ [tokenizer_2/]); a diffusers folder beside the checkpoint; the Hugging Face cache (read only, never
downloaded). Nothing found → one sentence saying how to get one.
"""

from __future__ import annotations

from pathlib import Path

from transformers import CLIPTokenizer

from loradeck.errors import ModelLoadError
from loradeck.families import Family

CLIP_L_PAD = "<|endoftext|>"
OPENCLIP_PAD = "!"
MAX_LENGTH = 77

# (repo, subfolder) in the Hugging Face cache that hold a CLIP tokenizer; the family's own repos first.
_CACHE_REPOS: dict[Family, list[tuple[str, str]]] = {
    Family.SD1: [
        ("openai/clip-vit-large-patch14", ""),
        ("stable-diffusion-v1-5/stable-diffusion-v1-5", "tokenizer"),
        ("runwayml/stable-diffusion-v1-5", "tokenizer"),
    ],
    Family.SD2: [
        ("stabilityai/stable-diffusion-2-1", "tokenizer"),
        ("stabilityai/stable-diffusion-2-1-base", "tokenizer"),
        ("laion/CLIP-ViT-H-14-laion2B-s32B-b79K", ""),
    ],
    Family.SDXL: [
        ("stabilityai/stable-diffusion-xl-base-1.0", "tokenizer"),
        ("stabilityai/stable-diffusion-xl-base-1.0", "tokenizer_2"),
        ("laion/CLIP-ViT-bigG-14-laion2B-39B-b160k", ""),
    ],
}

HOW_TO_GET = (
    "pass --tokenizer DIR (a diffusers Stable Diffusion folder, or a folder with vocab.json and merges.txt), "
    "put a diffusers folder beside the checkpoint, or fetch one once with "
    '`huggingface-cli download openai/clip-vit-large-patch14 --include "*.json" "*.txt"`'
)


def _is_bpe_dir(folder: Path) -> bool:
    return (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()


def _from_dir(folder: Path) -> tuple[Path, Path | None] | None:
    """(tokenizer folder, tokenizer_2 folder or None) inside ``folder``, or None if it holds no tokenizer."""
    if _is_bpe_dir(folder):
        return folder, None
    if _is_bpe_dir(folder / "tokenizer"):
        second = folder / "tokenizer_2"
        return folder / "tokenizer", second if _is_bpe_dir(second) else None
    return None


def _beside(checkpoint: Path) -> tuple[Path, Path | None] | None:
    """A diffusers folder (model_index.json + tokenizer/) next to the checkpoint file."""
    try:
        candidates = sorted(p for p in checkpoint.parent.iterdir() if p.is_dir())
    except OSError:
        return None
    for folder in candidates:
        if (folder / "model_index.json").is_file() and _is_bpe_dir(folder / "tokenizer"):
            return _from_dir(folder)
    return None


def _from_hf_cache(family: Family) -> tuple[Path, Path | None] | None:
    """A cached CLIP tokenizer; ``try_to_load_from_cache`` only reads the local cache, it never downloads."""
    from huggingface_hub import try_to_load_from_cache

    repos = _CACHE_REPOS.get(family, []) + [r for f, rs in _CACHE_REPOS.items() if f != family for r in rs]
    for repo, sub in repos:
        prefix = f"{sub}/" if sub else ""
        vocab = try_to_load_from_cache(repo, prefix + "vocab.json")
        merges = try_to_load_from_cache(repo, prefix + "merges.txt")
        if isinstance(vocab, str) and isinstance(merges, str) and Path(vocab).parent == Path(merges).parent:
            return Path(vocab).parent, None
    return None


def _load(folder: Path, pad: str) -> CLIPTokenizer:
    try:
        tok = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True, model_max_length=MAX_LENGTH)
    except Exception as err:  # a broken vocab.json / merges.txt
        raise ModelLoadError(f"{folder}: cannot be read as a CLIP tokenizer ({type(err).__name__}: {err})") from err
    pad_id = tok.convert_tokens_to_ids(pad)
    if pad_id is None or (pad_id == tok.unk_token_id and pad != tok.unk_token):
        raise ModelLoadError(f"{folder}: the CLIP tokenizer has no {pad!r} token to pad with")
    tok.pad_token = pad
    return tok


def find_tokenizers(
    family: Family, checkpoint: Path, tokenizer_dir: Path | None = None
) -> tuple[CLIPTokenizer, CLIPTokenizer | None]:
    """(tokenizer, tokenizer_2) for a single-file checkpoint of ``family``; tokenizer_2 only for SDXL."""
    if tokenizer_dir is not None:
        found = _from_dir(Path(tokenizer_dir))
        if found is None:
            raise ModelLoadError(
                f"--tokenizer {tokenizer_dir} holds no CLIP tokenizer (no vocab.json and merges.txt, "
                "neither directly nor in tokenizer/)"
            )
    else:
        found = _beside(checkpoint) or _from_hf_cache(family)
        if found is None:
            raise ModelLoadError(f"No CLIP tokenizer found for {checkpoint.name}: {HOW_TO_GET}.")
    first, second = found
    first_pad = OPENCLIP_PAD if family == Family.SD2 else CLIP_L_PAD
    tokenizer = _load(first, first_pad)
    tokenizer_2 = _load(second or first, OPENCLIP_PAD) if family == Family.SDXL else None
    return tokenizer, tokenizer_2
