"""Block weights through a generation: presets from <home>/lbwpresets.txt, the tag kept in the infotext, errors."""

from __future__ import annotations

import numpy as np
import pytest

from loradeck.errors import InvalidRequest
from loradeck.prompt.infotext import parse_infotext
from loradeck.services.studio import Studio
from loradeck.vocab import GenerationRequest

ZEROS, ONES = ",".join(["0"] * 26), ",".join(["1"] * 26)


def test_block_weights_in_a_generation(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "lbwpresets.txt").write_text(f"OFF:{ZEROS}\nON26:{ONES}\n")
    studio = Studio(home=home)

    def draw(prompt: str):
        result = studio.generate(GenerationRequest(prompt, seed=5, steps=4, save=False))
        return np.asarray(result.images[0].image).astype(int), result

    base = "a red circle on a blue background"
    plain, _ = draw(base)
    full, _ = draw(f"{base} <lora:stripy:1>")
    ones, res = draw(f"{base} <lora:stripy:1:lbw=ON26>")
    off, _ = draw(f"{base} <lora:stripy:1:lbw=OFF>")
    assert np.abs(full - plain).max() > 8  # the LoRA does something …
    assert (ones == full).all()  # … all blocks at 1 is the plain LoRA …
    assert (off == plain).all()  # … and all blocks at 0 is no LoRA
    info = parse_infotext(res.images[0].infotext)
    assert "<lora:stripy:1:lbw=ON26>" in info["Prompt"]  # recorded as written, as the extension leaves it
    with pytest.raises(InvalidRequest, match="lbw=NOPE"):
        studio.generate(GenerationRequest(f"{base} <lora:stripy:1:lbw=NOPE>", steps=2, save=False))
