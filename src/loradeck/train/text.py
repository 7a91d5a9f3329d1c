"""Text conditioning for training steps: 75 tokens per caption as kohya does by default (no chunking).

SD1/SD2: the text encoder's last hidden state. SDXL: both encoders' penultimate hidden states side by side, the
pooled projection of the second, and the size/crop time ids (original = target = bucket, no crop).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class TextCondition:
    hidden: torch.Tensor
    added: dict[str, torch.Tensor] | None = None  # SDXL added_cond_kwargs


def token_ids(tokenizer, captions: list[str]) -> torch.Tensor:
    return tokenizer(
        captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids


def encode_captions(base, captions: list[str], device: torch.device, size: tuple[int, int]) -> TextCondition:
    """Conditioning for one batch; gradients flow into whichever encoder has trainable LoRA parameters."""
    ids = token_ids(base.tokenizer, captions).to(device)
    if base.text_encoder_2 is None:
        return TextCondition(base.text_encoder(ids)[0])
    ids2 = token_ids(base.tokenizer_2, captions).to(device)
    out1 = base.text_encoder(ids, output_hidden_states=True)
    out2 = base.text_encoder_2(ids2, output_hidden_states=True)
    hidden = torch.cat([out1.hidden_states[-2], out2.hidden_states[-2]], dim=-1)
    h, w = size
    time_ids = torch.tensor([[h, w, 0, 0, h, w]], dtype=hidden.dtype, device=device).repeat(len(captions), 1)
    return TextCondition(hidden, {"text_embeds": out2.text_embeds, "time_ids": time_ids})
