"""A tiny offline CLIP tokenizer for tests: every character is one token, a few whole words are one token too.

Built from scratch (vocab.json + merges.txt) so no hub download is needed. With one-token words and characters, the
number of tokens a text makes is easy to count by hand, which is what the chunking tests need.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import CLIPTokenizer

from loradeck.demo.build import bytes_to_unicode

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
WORDS = ("cat", "dog", "house", "hill", "sky", "sun", "tree")


def _byte_chars() -> list[str]:
    """CLIP's printable stand-ins for the 256 bytes (the same table as GPT-2), in byte order."""
    table = bytes_to_unicode()
    return [table[b] for b in sorted(table)]


def write_clip_tokenizer(folder: Path, *, pad_token: str = EOS) -> Path:
    """Write the tokenizer files; ``pad_token="!"`` gives OpenCLIP's padding (id 0, as in SD2 / SDXL TE2)."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = sorted(_byte_chars(), key=lambda c: (c != "!", c))  # "!" first: id 0, as in the real vocabulary
    vocab = chars + [c + "</w>" for c in chars]
    merges: list[str] = []
    for word in WORDS:  # merge left to right: c a → ca, ca t</w> → cat</w>
        sym = word[0]
        for i, ch in enumerate(word[1:], start=1):
            nxt = ch + "</w>" if i == len(word) - 1 else ch
            merges.append(f"{sym} {nxt}")
            sym += nxt
            vocab.append(sym)
    vocab += [BOS, EOS]
    ids = {tok: i for i, tok in enumerate(dict.fromkeys(vocab))}
    (folder / "vocab.json").write_text(json.dumps(ids, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(m + "\n" for m in dict.fromkeys(merges)))
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "pad_token": pad_token,
        "do_lower_case": True,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def clip_tokenizer(folder: Path, *, pad_token: str = EOS) -> CLIPTokenizer:
    return CLIPTokenizer.from_pretrained(write_clip_tokenizer(folder, pad_token=pad_token))
