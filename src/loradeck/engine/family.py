"""Family detection for checkpoints on disk: the pure rules live in ``formats.ldm_family``; this adds the sidecar."""

from __future__ import annotations

from pathlib import Path

from loradeck.formats.ldm_family import detect_checkpoint_family, zero_terminal_snr

__all__ = ["detect_checkpoint_family", "sidecar_yaml", "zero_terminal_snr"]


def sidecar_yaml(path: Path) -> str | None:
    """The A1111 config sidecar ``<stem>.yaml`` beside a checkpoint, as text, if there is one."""
    side = path.with_suffix(".yaml")
    try:
        return side.read_text(errors="replace") if side.is_file() else None
    except OSError:
        return None
