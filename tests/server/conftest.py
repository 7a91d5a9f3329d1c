from __future__ import annotations

import pytest

from tests.server.helpers import running_server, write_demo_lora, write_variant_checkpoint

STACKS = ("red", "blue", "green", "gold")  # LoRA stems; "gold" is reached through its alias "shiny"


@pytest.fixture(scope="session")
def served(tmp_path_factory):
    """One real server for the generation tests: a LoRA folder with four demo LoRAs and a second checkpoint."""
    from loradeck.server import create_app
    from loradeck.services.studio import Studio

    home = tmp_path_factory.mktemp("serverhome")
    lora_dir, models_dir = home / "models" / "Lora", home / "models" / "Stable-diffusion"
    for i, name in enumerate(STACKS):
        sub = lora_dir / ("styles" if name == "gold" else "")
        write_demo_lora(sub / f"{name}.safetensors", seed=10 + i, alias="shiny" if name == "gold" else None)
    models_dir.mkdir(parents=True)
    write_variant_checkpoint(models_dir)
    studio = Studio(home=home)
    app = create_app(studio, fairness=4, preload=True)
    with running_server(app) as url:
        yield {"url": url, "app": app, "studio": studio, "home": home, "lora_dir": lora_dir, "models_dir": models_dir}
