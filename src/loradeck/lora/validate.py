"""Is a LoRA file's content consistent before we compute with it? One ``FormatError`` sentence if not.

The safetensors reader already guarantees a well-formed container (offsets, sizes, dtypes it knows). This module
checks what the LoRA math assumes of each module, so that nothing later fails with an ``IndexError`` on a 1-D
``lora_down``, merges a five-dimensional tensor "as the same numbers", or silently casts integers:

* factors are floating point (fp16/bf16/fp32/fp64, and fp8, which is cast to fp32 for the checks and the merge);
* ``alpha``/``scale`` are finite scalars (one element, int or float), ``on_input`` has at least one element;
* ranks and dims agree inside a module: LoRA ``lora_up`` [out, r(,1,1)] with ``lora_down`` [r, in(,k,k)] (2-D or
  4-D only), a Tucker ``lora_mid`` [r, r, k, k], A1111's ``bias`` weight delta as many values as ΔW; LoHa/LoKr
  factor products line up; nothing is empty;
* every floating value is finite (one min/max reduction per tensor).

Whether a module fits the loaded model's weight is checked later, against that weight (``report.shape_problem``).
``check_header`` runs on a header alone (library scans: only the few-byte scalars are read); ``check_tensors`` on
loaded tensors (``load_lora``, which also covers pickled files).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from loradeck.errors import FormatError

_FLOAT_NAMES = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"}
_INT_NAMES = {"I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8"}
_TORCH_OF_NAME = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}
_NATIVE_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)  # aminmax works on these

SCALARS = ("alpha", "scale")  # one element, int or float, finite
FLAGS = ("on_input",)  # read as bool(flatten()[0])
MAX_FACTOR_DIMS = 4


@dataclass(frozen=True)
class Param:
    """What the checks need of one tensor: its shape and whether it is float, int, bool or something else."""

    shape: tuple[int, ...]
    kind: str  # "float" | "int" | "bool" | "other"
    dtype: str


def param_of_tensor(t: torch.Tensor) -> Param:
    if t.dtype == torch.bool:
        kind = "bool"
    elif t.is_floating_point():
        kind = "float"
    elif t.is_complex() or t.is_quantized:
        kind = "other"
    else:
        kind = "int"
    return Param(tuple(t.shape), kind, str(t.dtype).removeprefix("torch."))


def param_of_header(dtype: str, shape: tuple[int, ...]) -> Param:
    kind = (
        "float" if dtype in _FLOAT_NAMES else "int" if dtype in _INT_NAMES else "bool" if dtype == "BOOL" else "other"
    )
    return Param(tuple(shape), kind, dtype)


def check_module(path: Path | str, name: str, kind: str, params: dict[str, Param]) -> None:
    """Dtypes and internal shape consistency of one module (see the module docstring)."""
    for pname, p in params.items():
        where = f"tensor {name}.{pname}"
        if pname in SCALARS:
            if p.kind not in ("float", "int") or math.prod(p.shape) != 1:
                raise FormatError(
                    path, f"{where} must be a single number, but it is {p.dtype} of shape {list(p.shape)}"
                )
        elif pname in FLAGS:
            if p.kind == "other" or math.prod(p.shape) < 1:
                raise FormatError(path, f"{where} must hold a flag, but it is {p.dtype} of shape {list(p.shape)}")
        else:
            if p.kind != "float":
                raise FormatError(path, f"{where} is {p.dtype}; LoRA weights must be floating point")
            if not 1 <= len(p.shape) <= MAX_FACTOR_DIMS:
                raise FormatError(path, f"{where} has {len(p.shape)} dimensions; 1 to {MAX_FACTOR_DIMS} are allowed")
            if math.prod(p.shape) == 0:
                raise FormatError(path, f"{where} is empty (shape {list(p.shape)})")
    shapes = {k: p.shape for k, p in params.items()}
    problem = {"lora": _lora_problem, "loha": _loha_problem, "lokr": _lokr_problem}.get(kind)
    why = problem(shapes) if problem else None
    if why:
        raise FormatError(path, f"module {name}: {why}")


def _dims(shapes: dict[str, tuple[int, ...]], allowed: tuple[int, ...], *keys: str) -> str | None:
    for k in keys:
        if k in shapes and len(shapes[k]) not in allowed:
            return f"{k} has {len(shapes[k])} dimensions, expected {' or '.join(map(str, allowed))}"
    return None


def _lora_problem(s: dict[str, tuple[int, ...]]) -> str | None:
    bad = _dims(s, (2, 4), "lora_up.weight", "lora_down.weight") or _dims(s, (4,), "lora_mid.weight")
    if bad:
        return bad
    up, down = s["lora_up.weight"], s["lora_down.weight"]
    if len(up) == 4 and up[2] * up[3] != 1:
        return f"lora_up has a {up[2]}×{up[3]} kernel; only lora_down may have one"
    if "lora_mid.weight" in s:
        mid = s["lora_mid.weight"]
        if (mid[0], mid[1]) != (up[1], down[0]):
            return f"lora_mid {list(mid)} does not join lora_up rank {up[1]} and lora_down rank {down[0]}"
    elif up[1] != down[0]:
        return f"lora_up rank {up[1]} but lora_down rank {down[0]}"
    if "bias" in s:  # A1111's extra weight delta: one value per element of ΔW
        kernel = s.get("lora_mid.weight", (1, 1))[2:]
        n = up[0] * math.prod(down[1:]) * math.prod(kernel)
        if math.prod(s["bias"]) != n:
            return f"bias {list(s['bias'])} has {math.prod(s['bias'])} values, but the weight delta has {n}"
    return None


def _loha_problem(s: dict[str, tuple[int, ...]]) -> str | None:
    bad = _dims(s, (2,), "hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b") or _dims(s, (4,), "hada_t1", "hada_t2")
    if bad:
        return bad
    if ("hada_t1" in s) != ("hada_t2" in s):
        return "has only one of hada_t1 and hada_t2"
    products = []
    for i in ("1", "2"):
        a, b, t = s[f"hada_w{i}_a"], s[f"hada_w{i}_b"], s.get(f"hada_t{i}")
        if t is None:
            if a[1] != b[0]:
                return f"hada_w{i}_a rank {a[1]} but hada_w{i}_b rank {b[0]}"
            products.append((a[0], b[1], 1, 1))
        else:
            if (t[0], t[1]) != (a[0], b[0]):
                return f"hada_t{i} {list(t)} does not join hada_w{i}_a {list(a)} and hada_w{i}_b {list(b)}"
            products.append((a[1], b[1], t[2], t[3]))
    if products[0] != products[1]:
        return f"the two Hadamard factors have different shapes {list(products[0])} and {list(products[1])}"
    return None


def _lokr_problem(s: dict[str, tuple[int, ...]]) -> str | None:
    bad = _dims(s, (2,), "lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2_a", "lokr_w2_b")
    bad = bad or _dims(s, (2, 4), "lokr_w2") or _dims(s, (4,), "lokr_t2")
    if bad:
        return bad
    if "lokr_w1" not in s:
        if not {"lokr_w1_a", "lokr_w1_b"} <= s.keys():
            return "has lokr_w1_a or lokr_w1_b without the other"
        if s["lokr_w1_a"][1] != s["lokr_w1_b"][0]:
            return f"lokr_w1_a rank {s['lokr_w1_a'][1]} but lokr_w1_b rank {s['lokr_w1_b'][0]}"
    if "lokr_w2" not in s:
        if not {"lokr_w2_a", "lokr_w2_b"} <= s.keys():
            return "has lokr_w2_a or lokr_w2_b without the other"
        a, b = s["lokr_w2_a"], s["lokr_w2_b"]
        if "lokr_t2" in s:
            t = s["lokr_t2"]
            if (t[0], t[1]) != (a[0], b[0]):
                return f"lokr_t2 {list(t)} does not join lokr_w2_a {list(a)} and lokr_w2_b {list(b)}"
        elif a[1] != b[0]:
            return f"lokr_w2_a rank {a[1]} but lokr_w2_b rank {b[0]}"
    return None


def dora_problem(scale: tuple[int, ...], weight: tuple[int, ...]) -> str | None:
    """``dora_scale`` must have one value per output row or per input column of ``weight``, as ``math.dora_delta``
    reads it (1-D or [out, 1…] → rows; otherwise columns)."""
    n = math.prod(scale)
    per_row = len(scale) == 1 or (scale[0] == weight[0] and scale[0] != 1)
    want = weight[0] if per_row or len(weight) < 2 else weight[1]
    if n != want:
        return f"dora_scale {list(scale)} has {n} values, the weight {list(weight)} needs {want}"
    return None


def check_tensors(path: Path | str, name: str, kind: str, tensors: dict[str, torch.Tensor]) -> None:
    """``check_module`` on loaded tensors, then every floating value finite (fp8 is cast to fp32 to check)."""
    for pname, t in tensors.items():
        if t.layout != torch.strided:
            raise FormatError(path, f"tensor {name}.{pname} is a {t.layout} tensor; only dense tensors are allowed")
    check_module(path, name, kind, {p: param_of_tensor(t) for p, t in tensors.items()})
    for pname, t in tensors.items():
        if t.is_floating_point() and t.numel() and not _finite(t):
            raise FormatError(path, f"tensor {name}.{pname} contains NaN or infinite values")


def _finite(t: torch.Tensor) -> bool:
    if t.dtype not in _NATIVE_FLOATS:
        t = t.float()  # fp8 has no aminmax; LoRA tensors are small, the copy is cheap
    # min and max propagate NaN and are ±inf when any element is: one cheap reduction per tensor
    return bool(torch.isfinite(torch.stack(t.aminmax())).all())


def check_header(path: str | os.PathLike, header) -> None:
    """Every recognised module of a validated safetensors header (``SafetensorsHeader``), plus its scalars read from
    the file (a few bytes each) and checked finite. Raises FormatError."""
    from loradeck.lora.formats import group_keys, module_kind  # formats imports this module

    groups, _, _ = group_keys(list(header.tensors))
    scalars: list[tuple[str, str]] = []
    for module, keys in groups.items():
        kind = module_kind(set(keys))
        if kind is None or kind in ("glora", "oft"):
            continue  # not merged: parse_state_dict reports or refuses them
        infos = {p: header.tensors[k] for p, k in keys.items()}
        check_module(Path(path), module, kind, {p: param_of_header(i.dtype, i.shape) for p, i in infos.items()})
        scalars += [(f"{module}.{p}", keys[p]) for p in SCALARS if p in keys]
    if scalars:
        with open(path, "rb") as f:
            for label, key in scalars:
                info = header.tensors[key]
                f.seek(info.start)
                value = _scalar(f.read(info.end - info.start), info.dtype)
                if value is not None and not math.isfinite(value):
                    raise FormatError(path, f"tensor {label} is {value}, not a finite number")


def _scalar(raw: bytes, dtype: str) -> float | None:
    torch_dtype = _TORCH_OF_NAME.get(dtype)
    if torch_dtype is None or not raw:
        return None  # integers are always finite
    return float(torch.frombuffer(bytearray(raw), dtype=torch_dtype).float()[0])
