"""loradeck: use and make LoRA models for Stable Diffusion.

from loradeck import Studio, GenerationRequest
studio = Studio()
result = studio.generate(GenerationRequest("a red circle on a blue background", seed=1))
print(result.images[0].path)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loradeck.version import __version__

__all__ = ["Studio", "GenerationRequest", "GenerationResult", "Settings", "__version__"]

if TYPE_CHECKING:
    from loradeck.services.studio import Studio
    from loradeck.settings import Settings
    from loradeck.vocab import GenerationRequest, GenerationResult


def __getattr__(name: str) -> Any:  # lazy: `import loradeck` must not import torch
    if name == "Studio":
        from loradeck.services.studio import Studio

        return Studio
    if name in ("GenerationRequest", "GenerationResult"):
        from loradeck import vocab

        return getattr(vocab, name)
    if name == "Settings":
        from loradeck.settings import Settings

        return Settings
    raise AttributeError(name)
