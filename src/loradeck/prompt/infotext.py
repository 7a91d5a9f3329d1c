"""A1111 infotext: the text stored in a picture that says how it was made.

    <prompt, may be several lines, tags kept>
    Negative prompt: <negative prompt>
    Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1, Size: 512x768, ...

``format_infotext`` writes it byte for byte as A1111 does (field order, quoting). ``parse_infotext`` reads A1111,
Forge and Civitai infotexts into a dict keyed like A1111's ``parse_generation_parameters`` (values are strings as
there, quoted values JSON-decoded, ``WxH`` split into ``Key-1``/``Key-2``, the same defaults) — and also reads the
unquoted JSON values Civitai and its extension write (``Hashes: {...}``, ``Civitai resources: [...]``), which
A1111's own regex cuts at the first comma.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from loradeck.errors import InvalidRequest
from loradeck.prompt.emphasis import uses_emphasis
from loradeck.prompt.samplers import AUTOMATIC, split_legacy_name

# A1111's create_infotext order; extra fields follow in the order given, then Version and User.
FIELD_ORDER = (
    "Steps",
    "Sampler",
    "Schedule type",
    "CFG scale",
    "Image CFG scale",
    "Seed",
    "Face restoration",
    "Size",
    "Model hash",
    "Model",
    "FP8 weight",
    "Cache FP16 weight for LoRA",
    "VAE hash",
    "VAE",
    "Variation seed",
    "Variation seed strength",
    "Seed resize from",
    "Denoising strength",
    "Conditional mask weight",
    "Clip skip",
    "ENSD",
    "Token merging ratio",
    "Token merging ratio hr",
    "Init image hash",
    "RNG",
    "Tiling",
)
TRAILING_FIELDS = ("Version", "User")
NEGATIVE_PREFIX = "Negative prompt:"

# Filled in by the parser when absent, as A1111 does (docs/reference/a1111-compat.md §4.3); Emphasis only when the prompt uses it.
PARSE_DEFAULTS = {
    "Clip skip": "1",
    "RNG": "GPU",
    "Schedule type": AUTOMATIC,
    "Hires sampler": "Use same sampler",
    "FP8 weight": "Disable",
}

_KEY_RE = re.compile(r"\s*(\w[\w \-/]+):\s*")
_QUOTED_RE = re.compile(r'"(?:\\.|[^\\"])+"')
_PLAIN_RE = re.compile(r"[^,]*")
_END_RE = re.compile(r"\s*(?:,|$)")
_COMMA_OR_END_RE = re.compile(r",|$")
_SIZE_RE = re.compile(r"^(\d+)x(\d+)$")


def loradeck_version() -> str:
    """The ``Version`` value we write: ``loradeck x.y.z``."""
    from loradeck.version import __version__

    return f"loradeck {__version__}"


# ------------------------------------------------------------------------------------------------ writing
def quote(value: Any) -> str:
    """A1111's quoting: ``str(v)``, or JSON when it holds ``,``, ``:`` or a newline (a dict becomes a JSON object)."""
    text = str(value)
    if "," not in text and ":" not in text and "\n" not in text:
        return text
    return json.dumps(value, ensure_ascii=False)


def format_lora_hashes(hashes: Mapping[str, str]) -> str:
    """``name: hash12, name2: hash12`` — names as typed in the prompt, with ``:`` and ``,`` removed (A1111). The
    ``TI hashes`` field (textual-inversion embeddings) has the same form."""
    return ", ".join(f"{name.replace(':', '').replace(',', '')}: {h[:12]}" for name, h in hashes.items())


def parse_lora_hashes(value: str) -> dict[str, str]:
    """The inverse of ``format_lora_hashes``: ``{"name": "hash12", ...}`` (entries without ``:`` are skipped)."""
    out: dict[str, str] = {}
    for item in value.split(","):
        name, sep, h = item.strip().partition(":")
        if sep:
            out[name.strip()] = h.strip()
    return out


def order_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` in A1111's field order: known fields, then the others as given, then Version and User."""
    known = [k for k in FIELD_ORDER if k in params]
    extra = [k for k in params if k not in FIELD_ORDER and k not in TRAILING_FIELDS]
    trailing = [k for k in TRAILING_FIELDS if k in params]
    return {k: params[k] for k in known + extra + trailing}


def format_infotext(prompt: str, negative_prompt: str, params: Mapping[str, Any]) -> str:
    """The infotext of one picture. ``None`` values are left out; a ``Lora hashes`` mapping is formatted,
    a ``Size`` tuple becomes ``WxH``; the rest is written with ``str()`` and A1111's quoting."""
    entries = []
    for key, value in order_params(params).items():
        if value is None:
            continue
        if key == "Lora hashes" and isinstance(value, Mapping):
            if not value:
                continue
            value = format_lora_hashes(value)
        elif key == "Size" and isinstance(value, tuple | list):
            value = f"{value[0]}x{value[1]}"
        entries.append(key if key == value else f"{key}: {quote(value)}")
    negative = f"\n{NEGATIVE_PREFIX} {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative}\n{', '.join(entries)}".strip()


# ------------------------------------------------------------------------------------------------ reading
def parse_params_line(line: str) -> list[tuple[str, Any]]:
    """``Key: value`` pairs of a parameter line, in order: A1111's regex, plus whole unquoted JSON values."""
    pairs: list[tuple[str, Any]] = []
    pos = 0
    while True:
        key = _KEY_RE.search(line, pos)
        if key is None:
            return pairs
        value, pos = _read_value(line, key.end())
        pairs.append((key.group(1), value))


def _read_value(line: str, start: int) -> tuple[Any, int]:
    """(value, position after its comma) for the value that starts at ``start``."""
    m = _QUOTED_RE.match(line, start)
    if m and (end := _COMMA_OR_END_RE.match(line, m.end())):
        return _unquote(m.group(0)), end.end()
    if start < len(line) and line[start] in "{[":
        stop = _json_end(line, start)
        if stop is not None and (end := _END_RE.match(line, stop)):
            try:
                return json.loads(line[start:stop]), end.end()
            except ValueError:
                pass
    m = _PLAIN_RE.match(line, start)
    assert m is not None  # the pattern matches the empty string
    stop = m.end()
    return m.group(0), stop + 1 if stop < len(line) else stop


def _json_end(text: str, start: int) -> int | None:
    """Index just past the bracket that closes the one at ``start`` (strings and escapes respected), or None."""
    depth, in_string, escaped = 0, False, False
    for i in range(start, len(text)):
        c = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def _unquote(text: str) -> Any:
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_infotext(text: str) -> dict[str, Any]:
    """Generation settings of an A1111/Forge/Civitai infotext, keyed like A1111's parser.

    ``Prompt``, ``Negative prompt``, every ``Key: value`` of the last line (strings, quoted values JSON-decoded,
    ``Size`` → ``Size-1``/``Size-2``), A1111's defaults for missing fields, and a legacy combined sampler name
    (``DPM++ 2M Karras``) split into ``Sampler`` and ``Schedule type``.
    """
    *lines, last = text.strip().split("\n")
    pairs = parse_params_line(last)
    if len(pairs) < 3:  # A1111: fewer than three fields means the last line is still prompt
        lines.append(last)
        pairs = []
    prompt, negative, in_negative = "", "", False
    for line in lines:  # A1111's accumulation, quirks included (lines stripped, a leading empty line absorbed)
        line = line.strip()
        if line.startswith(NEGATIVE_PREFIX):
            in_negative = True
            line = line[len(NEGATIVE_PREFIX) :].strip()
        if in_negative:
            negative += ("\n" if negative else "") + line
        else:
            prompt += ("\n" if prompt else "") + line
    res: dict[str, Any] = {}
    for key, value in pairs:
        size = _SIZE_RE.match(value) if isinstance(value, str) else None
        if size:
            res[f"{key}-1"], res[f"{key}-2"] = size.group(1), size.group(2)
        else:
            res[key] = value
    res["Prompt"], res["Negative prompt"] = prompt, negative
    _split_legacy_sampler(res)
    for key, value in PARSE_DEFAULTS.items():
        res.setdefault(key, value)
    if "Emphasis" not in res and (uses_emphasis(prompt) or uses_emphasis(negative)):
        res["Emphasis"] = "Original"
    return res


def _split_legacy_sampler(res: dict[str, Any]) -> None:
    """Pre-1.9 infotexts name the schedule inside the sampler: ``DPM++ 2M Karras`` → ``DPM++ 2M`` + ``Karras``."""
    sampler = res.get("Sampler")
    if not isinstance(sampler, str):
        return
    base, schedule = split_legacy_name(sampler)
    if schedule is None:
        return
    res["Sampler"] = base
    if res.get("Schedule type", AUTOMATIC) == AUTOMATIC:
        res["Schedule type"] = schedule


# ------------------------------------------------------------------------------------------------ typed view
@dataclass
class InfotextSettings:
    """The settings of a parsed infotext that a re-render needs, typed. ``None`` = not recorded."""

    prompt: str
    negative_prompt: str = ""
    steps: int | None = None
    sampler: str | None = None
    schedule_type: str = AUTOMATIC
    cfg_scale: float | None = None
    seed: int | None = None
    width: int | None = None
    height: int | None = None
    clip_skip: int = 1
    model: str | None = None
    model_hash: str | None = None
    denoising_strength: float | None = None
    emphasis: str = "Original"
    rng: str = "GPU"
    lora_hashes: dict[str, str] = field(default_factory=dict)
    ti_hashes: dict[str, str] = field(default_factory=dict)  # A1111's "TI hashes": embedding name → 12 hex
    version: str | None = None
    params: dict[str, Any] = field(default_factory=dict)  # everything parse_infotext returned


def infotext_settings(source: str | Mapping[str, Any]) -> InfotextSettings:
    """Typed settings from an infotext (or from ``parse_infotext``'s dict); a malformed number raises InvalidRequest."""
    params = parse_infotext(source) if isinstance(source, str) else dict(source)
    hashes = params.get("Lora hashes")
    ti_hashes = params.get("TI hashes")
    return InfotextSettings(
        prompt=str(params.get("Prompt", "")),
        negative_prompt=str(params.get("Negative prompt", "")),
        steps=typed_param(params, "Steps", int),
        sampler=params.get("Sampler"),
        schedule_type=str(params.get("Schedule type", AUTOMATIC)),
        cfg_scale=typed_param(params, "CFG scale", float),
        seed=typed_param(params, "Seed", int),
        width=typed_param(params, "Size-1", int),
        height=typed_param(params, "Size-2", int),
        clip_skip=typed_param(params, "Clip skip", int) or 1,
        model=params.get("Model"),
        model_hash=params.get("Model hash"),
        denoising_strength=typed_param(params, "Denoising strength", float),
        emphasis=str(params.get("Emphasis", "Original")),
        rng=str(params.get("RNG", "GPU")),
        lora_hashes=parse_lora_hashes(hashes) if isinstance(hashes, str) else {},
        ti_hashes=parse_lora_hashes(ti_hashes) if isinstance(ti_hashes, str) else {},
        version=params.get("Version"),
        params=params,
    )


def typed_param(params: Mapping[str, Any], key: str, kind: type) -> Any:
    value = params.get(key)
    if value is None or value == "":
        return None
    try:
        number = float(str(value).strip())
        if kind is int:
            if not number.is_integer():
                raise ValueError(value)
            return int(str(value).strip()) if str(value).strip().lstrip("-").isdigit() else int(number)
        return number
    except (TypeError, ValueError):
        what = "a whole number" if kind is int else "a number"
        raise InvalidRequest(f"The infotext field '{key}: {value}' is not {what}.") from None
