"""Resumable training state: LoRA factors (fp32), optimizer and scheduler states, step, losses, settings.

One ``state/`` folder in the run's output folder, replaced as a whole (written to ``state.tmp`` then renamed), so a
kill during a save leaves the previous state intact. Data order and noise are functions of (seed, step), so no RNG
state needs saving: the step number is enough to continue the same stream.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from loradeck.errors import InvalidRequest


@dataclass
class SavedState:
    step: int
    epoch: int
    losses: list[float]
    fingerprint: dict[str, Any]
    lora: dict[str, torch.Tensor]
    optimizer: dict
    scheduler: dict
    session_id: int
    started_at: float


def save_state(folder: Path, state: SavedState) -> Path:
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_file(state.lora, str(tmp / "lora.safetensors"))
    torch.save(state.optimizer, tmp / "optimizer.pt")
    torch.save(state.scheduler, tmp / "scheduler.pt")
    info = {
        "current_step": state.step,
        "current_epoch": state.epoch,
        "losses": state.losses,
        "fingerprint": state.fingerprint,
        "session_id": state.session_id,
        "started_at": state.started_at,
    }
    (tmp / "train_state.json").write_text(json.dumps(info, indent=1))
    old = folder.with_name(folder.name + ".old")
    if folder.exists():
        if old.exists():
            shutil.rmtree(old)
        folder.rename(old)
    tmp.rename(folder)
    if old.exists():
        shutil.rmtree(old)
    return folder


def load_state(folder: Path, fingerprint: dict[str, Any]) -> SavedState | None:
    """The saved state, None when there is none; InvalidRequest when it was made with other settings."""
    if not (folder / "train_state.json").is_file():
        old = folder.with_name(folder.name + ".old")  # killed between the two renames of a save
        if not (old / "train_state.json").is_file():
            return None
        folder = old
    info = json.loads((folder / "train_state.json").read_text())
    saved = info.get("fingerprint", {})
    diff = [k for k in fingerprint if saved.get(k) != fingerprint[k]]
    if diff:
        k = diff[0]
        raise InvalidRequest(
            f"Cannot resume from {folder}: it was trained with {k} = {saved.get(k)!r}, not {fingerprint[k]!r}."
        )
    return SavedState(
        step=int(info["current_step"]),
        epoch=int(info["current_epoch"]),
        losses=[float(x) for x in info.get("losses", [])],
        fingerprint=saved,
        lora=load_file(str(folder / "lora.safetensors")),
        optimizer=torch.load(folder / "optimizer.pt", weights_only=True),
        scheduler=torch.load(folder / "scheduler.pt", weights_only=True),
        session_id=int(info.get("session_id", 0)),
        started_at=float(info.get("started_at", 0.0)),
    )
