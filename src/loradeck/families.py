"""Base-model families. A LoRA, a checkpoint and a library entry each carry one."""

from __future__ import annotations

from enum import StrEnum


class Family(StrEnum):
    SD1 = "sd1"
    SD2 = "sd2"
    SDXL = "sdxl"
    DEMO = "demo"  # the embedded tiny model (SD architecture, its own sizes)
    FLUX = "flux"  # Flux.1 (dev/schnell and derivatives): MMDiT transformer, CLIP-L + T5
    UNKNOWN = "unknown"

    @property
    def label(self) -> str:
        """The name A1111 shows and writes in `sd version` sidecars."""
        labels = {"sd1": "SD1", "sd2": "SD2", "sdxl": "SDXL", "demo": "Demo", "flux": "Flux", "unknown": "Unknown"}
        return labels[self.value]

    @classmethod
    def from_label(cls, text: str | None) -> Family:
        """Parse `SD1`, `sd 1.5`, `SDXL 1.0`, `SD 2.1 768`, ... (A1111 sidecars, Civitai baseModel)."""
        t = (text or "").lower().replace(" ", "")
        if t.startswith("sdxl") or t.startswith("pony") or t.startswith("illustrious"):
            return cls.SDXL
        if t.startswith("flux"):
            return cls.FLUX
        if t.startswith("sd2"):
            return cls.SD2
        if t.startswith("sd1"):
            return cls.SD1
        if t == "demo":
            return cls.DEMO
        return cls.UNKNOWN

    @property
    def config_dir(self) -> str | None:
        """Folder under loradeck/configs with this family's shipped diffusers configs (sd2 = 512 epsilon)."""
        return {"sd1": "sd15", "sd2": "sd2", "sdxl": "sdxl"}.get(self.value)
