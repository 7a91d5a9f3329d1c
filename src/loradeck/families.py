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
        """Parse `SD1`, `sd 1.5`, `SDXL 1.0`, `SD 2.1 768`, `Pony`, `Illustrious`, `NoobAI`, `Flux.1 D`, ... (A1111
        sidecars, Civitai baseModel): the architecture a label stands for. Pony V7 (AuraFlow) and Flux.2 are other
        architectures: Unknown."""
        t = (text or "").lower().replace(" ", "")
        if t.startswith(("ponyv7", "flux.2", "flux2")):
            return cls.UNKNOWN
        if t.startswith(("sdxl", "pony", "illustrious", "noobai")):
            return cls.SDXL
        if t.startswith(("flux.1", "flux1")) or t == "flux":
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
