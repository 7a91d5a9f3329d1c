"""Hostile LoRA files for the fuzz suite (tests/lora/test_fuzz_readers.py) and the nightly run (scripts/fuzz_loras.py).

A tiny model (a Linear with bias, a 3×3 and a 1×1 conv, a LayerNorm) and valid seed files of every format loradeck
merges for it; then seeded mutations of those files, each written to disk: byte flips in the header and the body,
truncation, a lying header length, lying or overlapping offsets, other dtypes and shapes, NaN/Inf, deep JSON, huge
tensor counts, text renamed ``.safetensors``, non-scalar or infinite alphas. ``check_case`` runs one file through
the reader behind ``lora inspect`` and through ``LoraPatcher.apply`` and returns what went wrong (None when the file
was either accepted and merged, or refused with one clean sentence naming it, leaving the model untouched).
"""

from __future__ import annotations

import json
import random
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from loradeck.families import Family
from loradeck.lora.keymap import KeyMap, ModuleRef

DTYPES = ["F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "I64", "I32", "I16", "I8", "U8", "BOOL"]
JUNK_DTYPES = ["F4", "C64", "f32", "", "F8_E8M0", None, 7]
SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "I32": 4, "I16": 2}
SIZES |= {"I8": 1, "U8": 1, "BOOL": 1}


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 5)
        self.conv = nn.Conv2d(3, 4, 3)
        self.pw = nn.Conv2d(3, 4, 1)
        self.norm = nn.LayerNorm(5)


def tiny_model(seed: int = 0) -> tuple[dict[str, nn.Module], KeyMap]:
    torch.manual_seed(seed)
    unet = Tiny().eval()
    refs = {f"lora_unet_{n}": ModuleRef("unet", n) for n in ("lin", "conv", "pw", "norm")}
    return {"unet": unet}, KeyMap(Family.SD1, modules=refs)


def seed_files(seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    """Valid state dicts of every mergeable format for ``tiny_model`` (kohya names)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.1

    a = torch.tensor(2.0)
    lora = {
        "lora_unet_lin.lora_down.weight": r(2, 6),
        "lora_unet_lin.lora_up.weight": r(5, 2),
        "lora_unet_lin.alpha": a,
        "lora_unet_conv.lora_down.weight": r(2, 3, 3, 3),
        "lora_unet_conv.lora_up.weight": r(4, 2, 1, 1),
        "lora_unet_conv.alpha": a,
        "lora_unet_pw.lora_down.weight": r(2, 3, 1, 1),
        "lora_unet_pw.lora_up.weight": r(4, 2, 1, 1),
    }
    tucker = {
        "lora_unet_conv.lora_down.weight": r(2, 3, 1, 1),
        "lora_unet_conv.lora_mid.weight": r(2, 2, 3, 3),
        "lora_unet_conv.lora_up.weight": r(4, 2, 1, 1),
        "lora_unet_conv.alpha": a,
    }
    loha = {
        "lora_unet_lin.hada_w1_a": r(5, 2),
        "lora_unet_lin.hada_w1_b": r(2, 6),
        "lora_unet_lin.hada_w2_a": r(5, 2),
        "lora_unet_lin.hada_w2_b": r(2, 6),
        "lora_unet_lin.alpha": a,
        "lora_unet_conv.hada_w1_a": r(2, 4),
        "lora_unet_conv.hada_w1_b": r(2, 3),
        "lora_unet_conv.hada_t1": r(2, 2, 3, 3),
        "lora_unet_conv.hada_w2_a": r(2, 4),
        "lora_unet_conv.hada_w2_b": r(2, 3),
        "lora_unet_conv.hada_t2": r(2, 2, 3, 3),
    }
    lokr = {
        "lora_unet_lin.lokr_w1": r(1, 2),
        "lora_unet_lin.lokr_w2_a": r(5, 2),
        "lora_unet_lin.lokr_w2_b": r(2, 3),
        "lora_unet_lin.alpha": a,
        "lora_unet_conv.lokr_w1": r(2, 1),
        "lora_unet_conv.lokr_w2": r(2, 3, 3, 3),
    }
    other = {
        "lora_unet_lin.weight": r(5),
        "lora_unet_pw.weight": r(3),
        "lora_unet_pw.on_input": torch.tensor([1.0]),
        "lora_unet_conv.diff": r(4, 3, 3, 3),
        "lora_unet_conv.diff_b": r(4),
        "lora_unet_norm.w_norm": r(5),
        "lora_unet_norm.b_norm": r(5),
    }
    dora = {
        "lora_unet_lin.lora_down.weight": r(2, 6),
        "lora_unet_lin.lora_up.weight": r(5, 2),
        "lora_unet_lin.alpha": a,
        "lora_unet_lin.dora_scale": r(1, 6) + 1,
    }
    half = {k: v.half() for k, v in lora.items()}
    bf16 = {k: v.bfloat16() for k, v in loha.items()}
    fp8 = {k: v.to(torch.float8_e4m3fn) for k, v in lora.items()}
    return {"lora": lora, "tucker": tucker, "loha": loha, "lokr": lokr, "other": other, "dora": dora} | {
        "fp16": half,
        "bf16": bf16,
        "fp8": fp8,
    }


def split(data: bytes) -> tuple[dict, bytes]:
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def join(header: object, body: bytes, *, raw: bytes | None = None) -> bytes:
    text = raw if raw is not None else json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(text)) + text + body


def _tensor_names(header: dict) -> list[str]:
    return sorted(k for k in header if k != "__metadata__")


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# Each mutator: (rng, file bytes) → new bytes. Header mutators keep a parseable container and change one thing.
def _flip_header(rng: random.Random, data: bytes) -> bytes:
    n = struct.unpack("<Q", data[:8])[0]
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(0, 8 + n)
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def _flip_body(rng: random.Random, data: bytes) -> bytes:
    n = struct.unpack("<Q", data[:8])[0]
    out = bytearray(data)
    if len(out) > 8 + n:
        for _ in range(rng.randint(1, 16)):
            out[rng.randrange(8 + n, len(out))] = rng.randrange(256)
    return bytes(out)


def _truncate(rng: random.Random, data: bytes) -> bytes:
    return data[: rng.randrange(0, len(data))]


def _lie_length(rng: random.Random, data: bytes) -> bytes:
    n = struct.unpack("<Q", data[:8])[0]
    lie = rng.choice([0, 1, n - 1, n + 1, len(data), 2**63, 2**64 - 1, rng.randrange(2**40)])
    return struct.pack("<Q", lie % 2**64) + data[8:]


def _lie_offsets(rng: random.Random, data: bytes) -> bytes:
    header, body = split(data)
    name = rng.choice(_tensor_names(header))
    start, end = header[name]["data_offsets"]
    header[name]["data_offsets"] = rng.choice(
        [[start, end + 4], [start + 1, end + 1], [end, start], [0, end - start], [-1, end], [start, 2**70], [1.5, end]]
    )
    return join(header, body)


def _overlap(rng: random.Random, data: bytes) -> bytes:
    header, body = split(data)
    names = _tensor_names(header)
    a, b = rng.sample(names, 2) if len(names) > 1 else (names[0], names[0])
    header[b]["data_offsets"] = list(header[a]["data_offsets"])
    header[b]["shape"], header[b]["dtype"] = header[a]["shape"], header[a]["dtype"]
    return join(header, body)


def _retype(rng: random.Random, data: bytes) -> bytes:
    """Another dtype, with the shape changed so the byte count still matches when possible (a plausible file)."""
    header, body = split(data)
    name = rng.choice(_tensor_names(header))
    entry = header[name]
    new = rng.choice(DTYPES + JUNK_DTYPES)
    entry["dtype"] = new
    if isinstance(new, str) and new in SIZES:
        nbytes = entry["data_offsets"][1] - entry["data_offsets"][0]
        if nbytes % SIZES[new] == 0:
            entry["shape"] = [nbytes // SIZES[new]]
    return join(header, body)


def _reshape(rng: random.Random, data: bytes) -> bytes:
    """Same bytes, another shape: 1-D, 3-D, 5-D, transposed, or zero-sized (offsets adjusted to stay consistent)."""
    header, body = split(data)
    name = rng.choice(_tensor_names(header))
    entry = header[name]
    shape = entry["shape"]
    n = 1
    for d in shape:
        n *= d
    choice = rng.randrange(6)
    if choice == 0:
        entry["shape"] = [n]
    elif choice == 1:
        entry["shape"] = [1, 1, 1, 1, n]
    elif choice == 2:
        entry["shape"] = [1, n, 1]
    elif choice == 3:
        entry["shape"] = list(reversed(shape))
    elif choice == 4:
        entry["shape"] = []
        if n != 1:
            entry["data_offsets"] = [entry["data_offsets"][0], entry["data_offsets"][0] + SIZES.get(entry["dtype"], 4)]
    else:
        entry["shape"] = [0, *shape[1:]]
    return join(header, body)


def _nonfinite(rng: random.Random, data: bytes) -> bytes:
    header, body = split(data)
    floats = [k for k in _tensor_names(header) if header[k]["dtype"] in ("F32", "F16", "BF16")]
    if not floats:
        return _flip_body(rng, data)
    name = rng.choice(floats)
    dtype = header[name]["dtype"]
    start, end = header[name]["data_offsets"]
    value = rng.choice([float("nan"), float("inf"), float("-inf")])
    raw = {"F32": struct.pack("<f", value), "F16": struct.pack("<e", value), "BF16": struct.pack("<f", value)[2:]}
    pos = start + rng.randrange(0, (end - start) // len(raw[dtype])) * len(raw[dtype])
    out = bytearray(body)
    out[pos : pos + len(raw[dtype])] = raw[dtype]
    return join(header, bytes(out))


def _deep_json(rng: random.Random, data: bytes) -> bytes:
    header, body = split(data)
    depth = rng.choice([100, 1_000, 50_000])
    where = rng.randrange(3)
    text = json.dumps(header, separators=(",", ":"))
    if where == 0:  # a header nested 1,000 deep
        raw = ('{"x":' + _nested(depth) + "," + text[1:]).encode()
    elif where == 1:  # deep JSON inside a metadata string (decoded by the library and `lora inspect`)
        meta = header.setdefault("__metadata__", {})
        meta["ss_tag_frequency"] = '{"a":' * depth + "1" + "}" * depth
        meta["ss_network_args"] = "{" + '"k":' + _nested(depth) + "}"
        return join(header, body)
    else:  # a deep shape
        name = rng.choice(_tensor_names(header))
        raw = text.replace(f'"{name}":{{', f'"{name}":{{"shape2":{_nested(depth)},', 1).encode()
    return join(None, body, raw=raw)


def _many_tensors(rng: random.Random, data: bytes) -> bytes:
    n = rng.choice([60_000, 200_000, 300_000])
    entries = ",".join(
        f'"lora_unet_m{i}.alpha":{{"dtype":"U8","shape":[],"data_offsets":[{i},{i + 1}]}}' for i in range(n)
    )
    return join(None, bytes(n), raw=("{" + entries + "}").encode())


def _text_file(rng: random.Random, data: bytes) -> bytes:
    return rng.choice(
        [b"", b"hello world\n", b"<html><body>404 Not Found</body></html>", b"PK\x03\x04" + bytes(40), b"\x00" * 8]
    )


def _bad_alpha(rng: random.Random, data: bytes) -> bytes:
    header, body = split(data)
    alphas = [k for k in _tensor_names(header) if k.endswith(".alpha")]
    if not alphas:
        return _nonfinite(rng, data)
    name = rng.choice(alphas)
    entry = header[name]
    values = rng.choice([[1.0, 2.0], [float("inf")], [float("nan")], [-float("inf")]])
    blob = struct.pack(f"<{len(values)}f", *values)
    entry.update(
        dtype="F32", shape=[len(values)] if len(values) > 1 else [], data_offsets=[len(body), len(body) + len(blob)]
    )
    # the old alpha bytes stay as a gap: also covers "hole in the data" when the next check does not fire first
    return join(header, body + blob)


def _metadata_text(rng: random.Random, data: bytes) -> bytes:
    header, body = split(data)
    header["__metadata__"] = {
        "ss_output_name": rng.choice(["[/foo]", "[bold red]x[/]", "a\nb\x1b[31m", "\u202egnp.exe"]),
        "ss_tag_frequency": json.dumps({"d": {"[/foo]": 3, "x": 1e308, "y": 10**30}}),
        "ss_network_alpha": rng.choice(["inf", "nan", "1e999", "[/x]"]),
    }
    return join(header, body)


MUTATORS: dict[str, Callable[[random.Random, bytes], bytes]] = {
    "flip_header": _flip_header,
    "flip_body": _flip_body,
    "truncate": _truncate,
    "lie_length": _lie_length,
    "lie_offsets": _lie_offsets,
    "overlap": _overlap,
    "retype": _retype,
    "reshape": _reshape,
    "nonfinite": _nonfinite,
    "deep_json": _deep_json,
    "many_tensors": _many_tensors,
    "text_file": _text_file,
    "bad_alpha": _bad_alpha,
    "metadata_text": _metadata_text,
}


def seed_bytes(folder: Path) -> dict[str, bytes]:
    out = {}
    for name, sd in seed_files().items():
        path = folder / f"seed_{name}.safetensors"
        save_file({k: v.clone().contiguous() for k, v in sd.items()}, str(path), metadata={"ss_output_name": name})
        out[name] = path.read_bytes()
    return out


def mutated_files(folder: Path, count: int, seed: int = 0, heavy_every: int = 25) -> Iterator[tuple[Path, str]]:
    """``count`` mutated files in ``folder`` (written one at a time), named by case number, mutator and seed file.
    ``many_tensors`` (multi-MB headers) is used on one case in ``heavy_every`` only, to keep the run short."""
    rng = random.Random(seed)
    seeds = seed_bytes(folder)
    light = [m for m in MUTATORS if m != "many_tensors"]
    for i in range(count):
        kind = "many_tensors" if heavy_every and i % heavy_every == heavy_every - 1 else rng.choice(light)
        source = rng.choice(sorted(seeds))
        data = seeds[source]
        for _ in range(1 if rng.random() < 0.8 else 2):  # some cases stack two mutations
            try:
                data = MUTATORS[kind](rng, data)
            except Exception:  # the generator's own parse of an already broken file (not the code under test)
                data = _flip_header(rng, seeds[source])  # the previous mutation broke the container already
        path = folder / f"case{i:05d}_{kind}_{source}.safetensors"
        path.write_bytes(data)
        yield path, kind


def snapshot(components: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    return {f"{c}.{k}": v.detach().clone() for c, m in components.items() for k, v in m.state_dict().items()}


def identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def clean_error(path: Path, err: BaseException) -> str | None:
    """None when ``err`` is a FormatError-type sentence on one line naming ``path``; else what is wrong with it."""
    from loradeck.errors import LoradeckError

    text = str(err)
    if not isinstance(err, LoradeckError):
        return f"unexpected {type(err).__name__}: {text[:200]}"
    if "\n" in text or "\r" in text:
        return f"error spans several lines: {text[:200]!r}"
    if path.name not in text:
        return f"error does not name the file: {text[:200]}"
    return None


def check_case(path: Path, components, keymap, base: dict[str, torch.Tensor]) -> tuple[str, str | None, float]:
    """Run ``path`` through ``inspect_lora`` and, when accepted, ``LoraPatcher.apply`` + ``restore``.
    → (outcome: "refused" | "merged" | "skipped", problem or None, seconds)."""
    from loradeck.lora.formats import load_lora
    from loradeck.lora.inspect import inspect_lora
    from loradeck.lora.patcher import LoraPatcher, StackEntry

    t0 = time.perf_counter()
    try:
        info = inspect_lora(path)
        json.dumps(info, allow_nan=False, default=str)  # what `lora inspect --json` and the API would encode
        lora = load_lora(path)
    except Exception as e:
        return "refused", clean_error(path, e), time.perf_counter() - t0
    patcher = LoraPatcher(components, keymap)
    outcome = "merged"
    try:
        report = patcher.apply([StackEntry(lora, te=1.0, unet=0.7)])
        if not report.files[0].modules_matched:
            outcome = "skipped"
    except Exception as e:
        problem = clean_error(path, e)
        if problem is None and not identical(snapshot(components), base):
            problem = "a refused merge left the model changed"
        return "refused", problem, time.perf_counter() - t0
    patcher.restore()
    if not identical(snapshot(components), base):
        return outcome, "restore() did not give the original weights back", time.perf_counter() - t0
    return outcome, None, time.perf_counter() - t0
