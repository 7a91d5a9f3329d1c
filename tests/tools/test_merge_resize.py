"""merge (concat, SVD) and resize against formulas: ΔW sums, Eckart–Young errors, kohya's rank rules."""

from __future__ import annotations

import pytest
import torch

from loradeck.lora.formats import load_lora
from loradeck.lora.inspect import inspect_lora
from loradeck.tools import MergeRequest, ResizeRequest, run_tool

from .conftest import dense


def test_concat_merge_is_the_weighted_sum_across_kinds(files, tmp_path):
    out = tmp_path / "m.safetensors"
    inputs = [(files["lora"], 0.7), (files["loha"], 0.3), (files["locon"], -0.5)]
    result = run_tool(MergeRequest(inputs=inputs, out=out, precision="fp32"))
    a, b, c, m = dense(files["lora"]), dense(files["loha"]), dense(files["locon"]), dense(out)
    assert set(m) == set(a) | set(c)  # LoCon's 3×3 convs come along
    for name, got in m.items():
        want = 0.7 * a.get(name, 0) + 0.3 * b.get(name, 0) - 0.5 * c.get(name, 0)
        assert (got - want).abs().max() <= 1e-5, name
    # ranks add where all three have the module: 4 + 2·2 (LoHa, Khatri–Rao) + 3
    assert load_lora(out).modules[next(iter(a))].rank == 11
    assert result.modules == len(m)


def _kohya_svd_merge_error(total: torch.Tensor, rank: int) -> float:
    """kohya svd_merge_lora's math on one module: full SVD, U·S as up, Vh as down, clamp at the 0.99 quantile."""
    u, s, vh = torch.linalg.svd(total)
    up, down = u[:, :rank] @ torch.diag(s[:rank]), vh[:rank, :]
    hi = torch.quantile(torch.cat([up.flatten(), down.flatten()]), 0.99)
    up, down = up.clamp(-hi, hi), down.clamp(-hi, hi)
    return float((total - up @ down).norm())


def test_svd_merge_reaches_the_optimal_rank_n_error(files, tmp_path):
    out = tmp_path / "s.safetensors"
    inputs = [(files["lora"], 0.7), (files["lokr"], 0.3)]  # a low-rank and a dense (LoKr) ΔW
    result = run_tool(MergeRequest(inputs=inputs, rank=3, out=out, precision="fp32"))
    a, k, m = dense(files["lora"]), dense(files["lokr"]), dense(out)
    rows = {r["name"]: r for r in result.per_module}
    for name, got in m.items():
        total = 0.7 * a.get(name, 0) + 0.3 * k.get(name, 0)
        s = torch.linalg.svdvals(total.double())
        optimal = float(s[3:].square().sum().sqrt())
        err = float((total - got).double().norm())
        assert err == pytest.approx(optimal, rel=1e-4, abs=1e-6), name
        assert rows[name]["error"] == pytest.approx(optimal, rel=1e-4, abs=1e-6)
        assert err <= _kohya_svd_merge_error(total, 3) + 1e-6
    assert inspect_lora(out)["rank"] == 3


def _formula_rank(s: torch.Tensor, method: str, p: float) -> int:
    """The documented rules, written out independently of lora.ops.svd."""
    if method == "sv_ratio":
        return max(1, sum(1 for x in s if x > s[0] / p))
    values = s if method == "sv_cumulative" else s**2
    target = p if method == "sv_cumulative" else p**2
    total = float(values.sum())
    for k in range(1, len(s) + 1):
        if float(values[:k].sum()) / total >= target - 1e-12:
            return k
    return len(s)


@pytest.mark.parametrize(("method", "param"), [("sv_fro", 0.9), ("sv_ratio", 3.0), ("sv_cumulative", 0.8)])
def test_dynamic_resize_follows_the_singular_value_formula(files, tmp_path, method, param):
    out = tmp_path / f"{method}.safetensors"
    src = files["locon"]
    result = run_tool(ResizeRequest(input=src, method=method, param=param, out=out, precision="fp32"))
    before, after = dense(src), dense(out)
    rows = {r["name"]: r for r in result.per_module}
    kept_total = total_total = 0.0
    for name, w in before.items():
        s = torch.linalg.svdvals(w.double())[:3]  # rank 3: the rest are rounding noise
        k = _formula_rank(s, method, param)
        share = float((s[:k].square().sum() / s.square().sum()).sqrt())
        assert rows[name]["rank"] == k, name
        assert rows[name]["retained"] == pytest.approx(share, abs=1e-5)
        kept = float((after[name].double()).norm() ** 2)
        assert kept**0.5 == pytest.approx(share * float(w.double().norm()), rel=1e-4)
        kept_total += float(s[:k].square().sum())
        total_total += float(s.square().sum())
    assert result.retained == pytest.approx((kept_total / total_total) ** 0.5, rel=1e-5)


def test_resize_to_its_own_rank_is_the_same_lora_and_keeps_the_scale(files, tmp_path):
    out = tmp_path / "same.safetensors"
    run_tool(ResizeRequest(input=files["locon"], rank=3, out=out, precision="fp32"))
    before, after = dense(files["locon"]), dense(out)
    assert all((before[n] - after[n]).abs().max() <= 1e-5 for n in before)
    lora = load_lora(out)
    assert lora.rank == 3 and lora.alpha == pytest.approx(1.5)  # α′ = s·r′ with s = 1.5/3
    assert "dimension is resized from 3 to 3" in lora.metadata["ss_training_comment"]


def test_bad_requests_say_what_is_wrong(files, tmp_path):
    from loradeck.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="sv_fro, sv_ratio|sv_ratio, sv_cumulative"):
        run_tool(ResizeRequest(input=files["lora"], method="nope", param=1, out=tmp_path / "x.safetensors"))
    with pytest.raises(InvalidRequest, match="plain file name"):
        run_tool(MergeRequest(inputs=[(files["lora"], 1)], lora_dir=tmp_path, name="../escape"))
    with pytest.raises(InvalidRequest, match=r"\.safetensors"):
        run_tool(MergeRequest(inputs=[(files["lora"], 1)], out=tmp_path / "x.ckpt"))
