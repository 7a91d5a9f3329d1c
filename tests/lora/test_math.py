"""ΔW per format against the fact-sheet formulas, written out element by element (independent of lora.math)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from loradeck.errors import FormatError
from loradeck.lora.formats import parse_state_dict
from loradeck.lora.math import bias_delta, weight_delta

g = torch.Generator().manual_seed(0)
NAME = "lora_unet_down_blocks_0_attentions_0_proj_in"


def rnd(*shape):
    return torch.randn(*shape, generator=g)


def spec_of(params: dict[str, torch.Tensor]):
    lora = parse_state_dict(Path("t.safetensors"), {f"{NAME}.{k}": v for k, v in params.items()}, {})
    return lora.modules[NAME], lora


def test_lora_linear_scale_and_missing_alpha():
    up, down = rnd(6, 3), rnd(3, 5)
    s, _ = spec_of({"lora_up.weight": up, "lora_down.weight": down, "alpha": torch.tensor(1.5, dtype=torch.float16)})
    w = rnd(6, 5)
    expect = torch.tensor([[sum(up[o, a] * down[a, i] for a in range(3)) for i in range(5)] for o in range(6)]) * 0.5
    torch.testing.assert_close(weight_delta(s, w), expect)
    s, _ = spec_of({"lora_up.weight": up, "lora_down.weight": down})  # no alpha → s = 1
    torch.testing.assert_close(weight_delta(s, w), expect / 0.5)


def test_locon_3x3_and_tucker_mid():
    up, down = rnd(4, 2, 1, 1), rnd(2, 3, 3, 3)
    s, lora = spec_of({"lora_up.weight": up, "lora_down.weight": down, "alpha": torch.tensor(2.0)})
    assert lora.format == "locon"
    w = rnd(4, 3, 3, 3)
    expect = torch.zeros(4, 3, 3, 3)
    for o in range(4):
        for a in range(2):
            expect[o] += up[o, a, 0, 0] * down[a]
    torch.testing.assert_close(weight_delta(s, w), expect)
    mid, down1 = rnd(2, 2, 3, 3), rnd(2, 3, 1, 1)
    s, _ = spec_of(
        {"lora_up.weight": up, "lora_down.weight": down1, "lora_mid.weight": mid, "alpha": torch.tensor(1.0)}
    )
    expect = torch.zeros(4, 3, 3, 3)
    for o in range(4):
        for i in range(3):
            for a in range(2):
                for b in range(2):
                    expect[o, i] += up[o, a, 0, 0] * mid[a, b] * down1[b, i, 0, 0]
    torch.testing.assert_close(weight_delta(s, w), expect * 0.5)


def test_loha_plain_and_cp():
    w1a, w1b, w2a, w2b = rnd(6, 2), rnd(2, 5), rnd(6, 2), rnd(2, 5)
    s, _ = spec_of({"hada_w1_a": w1a, "hada_w1_b": w1b, "hada_w2_a": w2a, "hada_w2_b": w2b, "alpha": torch.tensor(1.0)})
    torch.testing.assert_close(weight_delta(s, rnd(6, 5)), (w1a @ w1b) * (w2a @ w2b) * 0.5)
    a1, b1, a2, b2, t1, t2 = rnd(2, 4), rnd(2, 3), rnd(2, 4), rnd(2, 3), rnd(2, 2, 3, 3), rnd(2, 2, 3, 3)
    s, _ = spec_of({"hada_w1_a": a1, "hada_w1_b": b1, "hada_w2_a": a2, "hada_w2_b": b2, "hada_t1": t1, "hada_t2": t2})

    def part(t, b, a):
        out = torch.zeros(4, 3, 3, 3)
        for o in range(4):
            for c in range(3):
                for i in range(2):
                    for j in range(2):
                        out[o, c] += t[i, j] * b[j, c] * a[i, o]
        return out

    torch.testing.assert_close(weight_delta(s, rnd(4, 3, 3, 3)), part(t1, b1, a1) * part(t2, b2, a2))


def _kron_elem(w1, w2):
    a, c = w1.shape
    b, d = w2.shape[:2]
    out = torch.zeros(a * b, c * d, *w2.shape[2:])
    for i in range(a):
        for j in range(b):
            for k in range(c):
                for l in range(d):  # noqa: E741
                    out[i * b + j, k * d + l] = w1[i, k] * w2[j, l]
    return out


def test_lokr_full_factored_tucker():
    w1, w2 = rnd(2, 3), rnd(3, 2)
    s, _ = spec_of({"lokr_w1": w1, "lokr_w2": w2, "alpha": torch.tensor(7.0)})  # both full: s = 1, α ignored
    torch.testing.assert_close(weight_delta(s, rnd(6, 6)), _kron_elem(w1, w2))
    w2a, w2b = rnd(3, 1), rnd(1, 2)
    s, _ = spec_of({"lokr_w1": w1, "lokr_w2_a": w2a, "lokr_w2_b": w2b, "alpha": torch.tensor(0.5)})  # r = 1
    torch.testing.assert_close(weight_delta(s, rnd(6, 6)), _kron_elem(w1, w2a @ w2b) * 0.5)
    t2, w2a, w2b = rnd(2, 2, 3, 3), rnd(2, 3), rnd(2, 2)
    s, _ = spec_of({"lokr_w1": w1, "lokr_t2": t2, "lokr_w2_a": w2a, "lokr_w2_b": w2b, "alpha": torch.tensor(1.0)})
    core = torch.zeros(3, 2, 3, 3)
    for b in range(3):
        for d in range(2):
            for i in range(2):
                for j in range(2):
                    core[b, d] += t2[i, j] * w2a[i, b] * w2b[j, d]
    torch.testing.assert_close(weight_delta(s, rnd(6, 6, 3, 3)), _kron_elem(w1, core) * 0.5)


def test_dora_input_column_convention():
    up, down, w = rnd(6, 2), rnd(2, 5), rnd(6, 5)
    mag = rnd(1, 5).abs() + 0.5
    s, lora = spec_of({"lora_up.weight": up, "lora_down.weight": down, "alpha": torch.tensor(1.0), "dora_scale": mag})
    assert "dora" in lora.format
    merged = w + 0.5 * up @ down
    expect = torch.empty_like(w)
    for j in range(5):  # A1111: norm of each input column of M
        expect[:, j] = merged[:, j] * mag[0, j] / merged[:, j].norm()
    torch.testing.assert_close(weight_delta(s, w), expect - w)


def test_ia3_rows_and_columns():
    w, vec = rnd(4, 3), rnd(4)
    s, lora = spec_of({"weight": vec, "on_input": torch.tensor(False)})
    assert lora.format == "ia3"
    torch.testing.assert_close(weight_delta(s, w), w * vec[:, None])
    vec = rnd(3)
    s, _ = spec_of({"weight": vec, "on_input": torch.tensor(True)})
    torch.testing.assert_close(weight_delta(s, w), w * vec[None, :])


def test_full_diff_and_norm():
    diff, diff_b = rnd(4, 3), rnd(4)
    s, _ = spec_of({"diff": diff, "diff_b": diff_b})
    torch.testing.assert_close(weight_delta(s, rnd(4, 3)), diff)
    torch.testing.assert_close(bias_delta(s), diff_b)
    s, lora = spec_of({"w_norm": rnd(8), "b_norm": rnd(8)})
    assert lora.format == "norm"
    torch.testing.assert_close(weight_delta(s, rnd(8)), s.tensors["w_norm"])


@pytest.mark.parametrize(
    "params,label",
    [
        ({"a1.weight": rnd(3, 2), "a2.weight": rnd(2, 3), "b1.weight": rnd(4, 2), "b2.weight": rnd(2, 3)}, "GLoRA"),
        ({"oft_blocks": rnd(2, 2, 2), "alpha": torch.tensor(1.0)}, "OFT"),
    ],
)
def test_glora_and_oft_refused_by_name(params, label):
    with pytest.raises(FormatError, match=f"t.safetensors.*{label}"):
        spec_of(params)


def test_nan_and_rank_mismatch_rejected():
    with pytest.raises(FormatError, match="NaN"):
        spec_of({"lora_up.weight": torch.full((2, 1), float("nan")), "lora_down.weight": rnd(1, 2)})
    with pytest.raises(FormatError, match="rank"):
        spec_of({"lora_up.weight": rnd(2, 2), "lora_down.weight": rnd(1, 2)})
