"""Tiling's circular padding (as F.pad circular + conv) and an interrupt that takes effect inside a U-Net call."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from loradeck.engine.tiling import circular_padding
from loradeck.errors import Cancelled


def test_circular_padding_matches_a_wrapped_convolution_and_is_restored():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 2, 1))
    x = torch.randn(1, 3, 8, 8)
    plain = model(x)
    with circular_padding(model, None) as changed:
        tiled = model(x)
    assert changed == 1  # the 1×1 conv has no padding
    conv = model[0]
    expected = model[1](F.conv2d(F.pad(x, (1, 1, 1, 1), mode="circular"), conv.weight, conv.bias))
    torch.testing.assert_close(tiled, expected)
    torch.testing.assert_close(model(x), plain)  # zeros padding again
    assert not torch.allclose(tiled, plain)


def test_interrupt_takes_effect_inside_a_unet_call(tmp_path):
    """The flag set while a step is inside the U-Net (after its mid block) stops it before the up blocks run."""
    from loradeck.services.studio import Studio
    from loradeck.vocab import GenerationRequest

    studio = Studio(home=tmp_path)
    unet = studio.model.base.unet
    jobs = []
    up_calls = []
    mid_calls = []

    def interrupt_in_mid(_module, _args, _out):
        mid_calls.append(1)
        if len(mid_calls) == 2:  # during the second U-Net call (step 2)
            jobs[0].interrupted.set()

    hooks = [
        unet.mid_block.register_forward_hook(interrupt_in_mid),
        unet.up_blocks[0].register_forward_hook(lambda *_: up_calls.append(1)),
    ]
    try:
        with studio.queue._cond:  # hold the worker until the job is known to the hook
            jobs.append(
                studio.submit_generation(
                    GenerationRequest("a red circle", seed=1, steps=10, width=32, height=32, save=False)
                )
            )
        result = jobs[0].result(300)
    finally:
        for h in hooks:
            h.remove()
    assert result.interrupted and result.images == []
    assert len(mid_calls) == 2 and len(up_calls) == 1  # step 2 never reached its up blocks
    # the hooks are gone: the next job runs to its end
    done = studio.generate(GenerationRequest("a red circle", seed=1, steps=2, width=32, height=32, save=False))
    assert len(done.images) == 1 and not done.interrupted


def test_cancelled_is_what_the_hook_raises():
    from loradeck.engine.pipeline import Job, _interrupt_hooks

    block = nn.Linear(2, 2)
    holder = nn.Module()
    holder.down_blocks = nn.ModuleList([block])
    job = Job()
    hooks = _interrupt_hooks(holder, job)
    block(torch.zeros(1, 2))
    job.interrupted.set()
    with pytest.raises(Cancelled):
        block(torch.zeros(1, 2))
    for h in hooks:
        h.remove()
    block(torch.zeros(1, 2))
