"""Per-step LoRA weights: the schedule syntax, the forward-time sidecar against the merged weights, and sampling."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from loradeck.errors import InvalidRequest
from loradeck.lora import LoraPatcher, StackEntry, parse_state_dict
from loradeck.lora.block_weights import BUILTIN_PRESETS, resolve
from loradeck.lora.sidecar import LoraSidecar, ScheduledLora
from loradeck.prompt.tags import normalize_weights, parse_prompt, rewrite_tag_weights
from loradeck.services.studio import Studio
from loradeck.vocab import GenerationRequest
from tests.lora.conftest import build_small_sd1, kohya_lora


def _weights(tag: str, total: int) -> list[float]:
    (t,) = parse_prompt(tag).loras
    return [round(t.schedule.weight_at(i, total), 4) for i in range(total)]


def test_schedule_syntax():
    assert _weights("<lora:x:0@0,1@0.5>", 10) == [0, 0.2, 0.4, 0.6, 0.8, 1, 1, 1, 1, 1]  # fraction of the steps
    assert _weights("<lora:x:1@0,0@4>", 6) == [1, 0.75, 0.5, 0.25, 0, 0]  # step numbers, from 0
    assert _weights("<lora:x:0.5@2,1@1.0>", 4) == [0.5, 0.5, 0.5, 0.75]  # a step and a fraction (1.0 = step 4)
    assert _weights("<lora:x:0.8:stop=3>", 5) == [0.8, 0.8, 0, 0, 0]  # lbw extension: steps 1–2 (from 1)
    assert _weights("<lora:x:1:start=3>", 5) == [0, 0, 1, 1, 1]
    assert _weights("<lora:x:1:step=2-4>", 5) == [0, 1, 1, 0, 0]
    assert _weights("<lora:x:1:stop=0.5>", 10) == [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]  # a fraction, as the extension
    (t,) = parse_prompt("<lora:x:0.9:-1@0,0.5@1>").loras
    assert (t.te, t.unet) == (0.9, -1.0)  # te its own number; unet's constant stand-in is the peak
    (t,) = parse_prompt("<lora:x:0@0,0.6@5>").loras
    assert t.te == 0.6  # in the weight position the text encoder gets the schedule's peak
    assert parse_prompt("<lora:x:0.7>").loras[0].schedule is None
    for bad in ("<lora:x:0@a>", "<lora:x:1@0,zz>", "<lora:x:1:stop=soon>", "<lora:x:1:step=3>"):
        with pytest.raises(InvalidRequest, match="<lora:x:"):
            parse_prompt(bad)


def test_rewrites_keep_schedules_as_written():
    prompt = "a <lora:x:0@0,1@0.5> <lora:y:0.5> <lora:z:1:stop=3>"
    tags = normalize_weights(parse_prompt(prompt).loras)
    assert rewrite_tag_weights(prompt, tags) == "a <lora:x:0@0,1@0.5> <lora:y:1> <lora:z:1:stop=3>"


@pytest.mark.parametrize("lbw", [None, "MIDD"])
def test_sidecar_equals_the_merged_weights(lbw):
    """At a constant weight, hooks on the unmerged U-Net give what the merged U-Net gives (LoRA and LoCon)."""
    components, keymap = build_small_sd1()
    unet_keys = {k: v for k, v in keymap.modules.items() if v.component == "unet"}
    conv_keys = dict(keymap.conv_modules)
    km = type(keymap)(keymap.family, unet_keys, conv_keys, {}, keymap.aliases)
    lora = parse_state_dict(Path("l.safetensors"), kohya_lora(components, km, rank=8, conv=True, seed=2), {})
    bw = resolve(lbw, BUILTIN_PRESETS, "t") if lbw else None
    unet = components["unet"]
    g = torch.Generator().manual_seed(0)
    x, t, ctx = torch.randn(1, 4, 16, 16, generator=g), torch.tensor([500]), torch.randn(1, 77, 32, generator=g)
    with torch.no_grad():
        plain = unet(x, t, ctx).sample
        sidecar = LoraSidecar(unet, keymap, [ScheduledLora(lora, lambda i, n: 0.7 * (i < 2), bw)])
        assert sidecar.modules > 100
        sidecar.set_step(0, 4)
        hooked = unet(x, t, ctx).sample
        sidecar.set_step(3, 4)  # weight 0: exactly the plain model
        off = unet(x, t, ctx).sample
        sidecar.remove()
        patcher = LoraPatcher(components, keymap)
        patcher.apply([StackEntry(lora, te=0.7, unet=0.7, block_weights=bw)])
        merged = unet(x, t, ctx).sample
        patcher.restore()
        after = unet(x, t, ctx).sample
    assert (hooked - plain).abs().max() > 1e-3
    torch.testing.assert_close(hooked, merged, rtol=0, atol=1e-4)
    assert torch.equal(off, plain) and torch.equal(after, plain)


def test_latents_follow_the_unscheduled_run_until_the_ramp_starts(tmp_path):
    studio = Studio(home=tmp_path / "home")

    def latents(prompt: str) -> list[torch.Tensor]:
        seen: list[torch.Tensor] = []
        studio._keep_latents = lambda lat: lat is not None and seen.append(lat.clone())  # each step's latents, in order
        studio.generate(GenerationRequest(prompt, seed=7, steps=8, sampler="Euler", save=False))
        return seen

    base = "a red circle on a blue background, stripy"
    off = latents(base + " <lora:stripy:0>")  # merged at weight 0
    ramp = latents(base + " <lora:stripy:0:0@0,0@3,1@6>")  # te 0 as above; U-Net 0 for steps 0–3, then up to 1
    full = latents(base + " <lora:stripy:0:1>")
    assert len(off) == len(ramp) == 8
    for i in range(4):  # after steps 0..3 the ramp is still 0: the same latents, bit for bit
        assert torch.equal(ramp[i], off[i]), i
    assert (ramp[4] - off[4]).abs().max() > 1e-4  # step 4 runs at 1/3
    assert (ramp[-1] - off[-1]).abs().max() > 1e-3 and (ramp[-1] - full[-1]).abs().max() > 1e-4
    # nothing of the job's hooks is left on the model: a plain run afterwards is the plain run
    again = latents(base + " <lora:stripy:0>")
    assert all(torch.equal(a, b) for a, b in zip(again, off, strict=True))
