"""Hostile LoRA files through the reader behind `lora inspect` and through LoraPatcher.apply (issue 18).

Every file is either accepted and merged (and restored bit-exactly), or refused with one FormatError sentence on one
line naming the file, leaving the model untouched. Seeded and bounded: ~1,200 cases in well under a minute on 2 cores;
``scripts/fuzz_loras.py`` runs the same generator longer for nightly use.
"""

from __future__ import annotations

import json
import math
import struct
import time
from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file
from tests.helpers.fuzz_cases import (
    check_case,
    identical,
    join,
    mutated_files,
    seed_files,
    snapshot,
    split,
    tiny_model,
)

from loradeck.errors import FormatError
from loradeck.formats.safetensors_io import MAX_TENSORS, read_header
from loradeck.lora.formats import load_lora
from loradeck.lora.inspect import inspect_lora
from loradeck.lora.patcher import LoraPatcher, StackEntry

CASE_SECONDS = 2.0  # a hang guard from the issue ("each case ≤ 2 s"), not a benchmark


@pytest.fixture(scope="module")
def tiny():
    comps, keymap = tiny_model()
    return comps, keymap, snapshot(comps)


def test_1000_mutated_files_no_crash_no_hang(tmp_path, tiny):
    comps, keymap, base = tiny
    outcomes, problems, slow = Counter(), [], []
    for path, kind in mutated_files(tmp_path, 1000, seed=0):
        outcome, problem, seconds = check_case(path, comps, keymap, base)
        outcomes[outcome] += 1
        outcomes[kind] += 1
        if problem:
            problems.append(f"{path.name}: {problem}")
        if seconds > CASE_SECONDS:  # a real hang repeats; a stall of a shared CI machine does not
            seconds = min(seconds, check_case(path, comps, keymap, base)[2])
            if seconds > CASE_SECONDS:
                slow.append(f"{path.name}: {seconds:.1f} s")
        path.unlink()
    assert not problems, "\n".join(problems[:20])
    assert not slow, slow
    # the generator really exercised both sides and every mutation
    assert outcomes["refused"] > 300 and outcomes["merged"] > 50, outcomes
    assert all(outcomes[k] > 0 for k in ("flip_header", "lie_offsets", "overlap", "deep_json", "many_tensors"))


# ---------------------------------------------------------------- structure-aware: hypothesis-built headers + data

MODULES = ["lora_unet_lin", "lora_unet_conv", "lora_unet_pw", "lora_unet_norm", "lora_unet_nowhere"]
PARAMS = ["lora_down.weight", "lora_up.weight", "lora_mid.weight", "alpha", "scale", "dora_scale", "weight"]
PARAMS += ["on_input", "diff", "diff_b", "w_norm", "b_norm", "hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"]
PARAMS += ["hada_t1", "lokr_w1", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2", "oft_blocks"]
VALUES = st.one_of(
    st.floats(-4, 4, width=32), st.sampled_from([float("nan"), float("inf"), -float("inf"), 0.0, 1e30, -1e-30])
)


@st.composite
def lora_files(draw):
    """A safetensors file as a list of tensors (name, dtype, shape, values), optionally with a lying offset."""
    count = draw(st.integers(1, 8))
    tensors = []
    for _ in range(count):
        name = f"{draw(st.sampled_from(MODULES))}.{draw(st.sampled_from(PARAMS))}"
        dtype = draw(st.sampled_from(["F32", "F16", "BF16", "F64", "F8_E4M3", "I32", "U8", "BOOL"]))
        shape = draw(st.lists(st.integers(0, 6), min_size=0, max_size=5))
        n = math.prod(shape)
        values = draw(st.lists(VALUES, min_size=n, max_size=n)) if n <= 64 else [0.5] * n
        tensors.append((name, dtype, shape, values))
    lie = draw(st.sampled_from([None, "offset", "count", "metadata"]))
    return tensors, lie


def _encode(dtype: str, values: list[float]) -> bytes:
    t = torch.tensor(values, dtype=torch.float64)
    torch_dtype = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}
    torch_dtype |= {"F8_E4M3": torch.float8_e4m3fn, "I32": torch.int32, "U8": torch.uint8, "BOOL": torch.bool}
    if dtype in ("I32", "U8", "BOOL"):
        t = torch.nan_to_num(t).clamp(0, 255)
    return t.to(torch_dtype[dtype]).contiguous().view(torch.uint8).numpy().tobytes() if values else b""


def _write(path, tensors, lie) -> None:
    header, body = {}, b""
    for name, dtype, shape, values in tensors:
        blob = _encode(dtype, values)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(body), len(body) + len(blob)]}
        body += blob
    if lie == "offset":
        first = next(iter(header))
        header[first]["data_offsets"][1] += 1
    elif lie == "metadata":
        header["__metadata__"] = {"ss_tag_frequency": '{"a": {"[/foo]": NaN}}', "ss_output_name": "[/foo]"}
    raw = json.dumps(header).encode()
    if lie == "count":
        raw = raw.replace(b'"dtype"', b'"data_offsets":[0,0],"dtype"', 1)  # a duplicated key: JSON keeps the last
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + body)


@settings(max_examples=250, deadline=int(CASE_SECONDS * 1000), derandomize=True)
@given(case=lora_files())
def test_generated_headers_and_tensors(case, tmp_path_factory):
    comps, keymap = tiny_model()
    base = snapshot(comps)
    path = tmp_path_factory.mktemp("hyp") / "generated.safetensors"
    _write(path, *case)
    _outcome, problem, _seconds = check_case(path, comps, keymap, base)
    assert problem is None, problem


# ---------------------------------------------------------------- the crashes the issue reported, one by one


def _save(tmp_path, name, sd, metadata=None):
    path = tmp_path / f"{name}.safetensors"
    save_file({k: v.clone().contiguous() for k, v in sd.items()}, str(path), metadata=metadata)
    return path


def _refused(path, *words):
    with pytest.raises(FormatError) as err:
        inspect_lora(path)
    text = str(err.value)
    assert path.name in text and "\n" not in text
    for w in words:
        assert w in text, text
    return text


def test_one_dimensional_lora_down_is_refused(tmp_path):
    sd = seed_files()["lora"]
    sd["lora_unet_lin.lora_down.weight"] = torch.randn(12)
    _refused(_save(tmp_path, "flat", sd), "lora_unet_lin", "lora_down.weight has 1 dimensions")


def test_five_dimensional_and_integer_factors_are_refused(tmp_path):
    sd = seed_files()["lora"]
    sd["lora_unet_lin.lora_down.weight"] = torch.randn(2, 6, 1, 1, 1)
    _refused(_save(tmp_path, "five", sd), "5 dimensions")
    sd = seed_files()["lora"]
    sd["lora_unet_lin.lora_up.weight"] = torch.ones(5, 2, dtype=torch.int32)
    _refused(_save(tmp_path, "ints", sd), "lora_up.weight is I32", "floating point")


def test_rank_mismatch_and_non_scalar_or_infinite_alpha_are_refused(tmp_path):
    sd = seed_files()["lora"]
    sd["lora_unet_lin.lora_up.weight"] = torch.randn(5, 3)
    _refused(_save(tmp_path, "rank", sd), "lora_up rank 3 but lora_down rank 2")
    sd = seed_files()["lora"]
    sd["lora_unet_lin.alpha"] = torch.tensor([1.0, 2.0])
    _refused(_save(tmp_path, "alpha2", sd), "alpha must be a single number")
    sd = seed_files()["lora"]
    sd["lora_unet_lin.alpha"] = torch.tensor(float("inf"))
    _refused(_save(tmp_path, "alphainf", sd), "alpha is inf")


def test_nan_in_an_fp8_factor_is_refused_not_a_crash(tmp_path):
    sd = seed_files()["fp8"]
    down = sd["lora_unet_lin.lora_down.weight"].float()
    down[0, 0] = float("nan")
    sd["lora_unet_lin.lora_down.weight"] = down.to(torch.float8_e4m3fn)
    _refused(_save(tmp_path, "fp8nan", sd), "NaN or infinite")


def test_fp8_lora_merges_as_its_fp32_cast(tmp_path):
    comps, keymap = tiny_model()
    base = snapshot(comps)
    fp8 = seed_files()["fp8"]
    as32 = {k: v.float() for k, v in fp8.items()}
    lora8, lora32 = load_lora(_save(tmp_path, "f8", fp8)), load_lora(_save(tmp_path, "f32", as32))
    patcher = LoraPatcher(comps, keymap)
    patcher.apply([StackEntry(lora8)])
    merged8 = snapshot(comps)
    patcher.apply([StackEntry(lora32)])
    assert identical(merged8, snapshot(comps))
    assert not identical(merged8, base)
    patcher.restore()
    assert identical(snapshot(comps), base)


def test_header_nested_1000_deep_is_refused(tmp_path):
    path = tmp_path / "deep.safetensors"
    header, body = split(_save(tmp_path, "ok", seed_files()["lora"]).read_bytes())
    raw = ('{"x":' + "[" * 1000 + "]" * 1000 + "," + json.dumps(header)[1:]).encode()
    path.write_bytes(join(None, body, raw=raw))
    _refused(path, "nested too deeply")


@pytest.mark.parametrize("count", [MAX_TENSORS + 1, 300_000])
def test_huge_tensor_counts_are_refused_by_the_cap(tmp_path, count):
    entries = ",".join(f'"t{i}":{{"dtype":"U8","shape":[],"data_offsets":[{i},{i + 1}]}}' for i in range(count))
    path = tmp_path / "many.safetensors"
    path.write_bytes(join(None, bytes(count), raw=("{" + entries + "}").encode()))
    t0 = time.perf_counter()
    with pytest.raises(FormatError, match=f"lists {count} tensors, more than the {MAX_TENSORS} allowed"):
        read_header(path)
    assert time.perf_counter() - t0 < CASE_SECONDS  # refused by the count, before any JSON is built


def test_text_renamed_safetensors_is_one_sentence(tmp_path):
    path = tmp_path / "notes.safetensors"
    path.write_text("these are my notes, not a model\n")
    _refused(path, "safetensors header claims")


def test_markup_and_nan_in_metadata_stay_plain_data(tmp_path):
    meta = {"ss_output_name": "[/foo]", "ss_tag_frequency": '{"d": {"[/foo]": 3, "x": 1e308, "y": NaN}}'}
    info = inspect_lora(_save(tmp_path, "meta", seed_files()["lora"], metadata=meta))
    json.dumps(info, allow_nan=False)  # what the API and `--json` encode
    assert info["metadata"]["ss_output_name"] == "[/foo]"
    assert info["metadata"]["top_tags"] == []  # the NaN makes the frequency table unreadable: no tags, no crash
