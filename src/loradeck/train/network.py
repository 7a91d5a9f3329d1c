"""The LoRA network being trained: wrapper modules put in place of kohya's target layers, and its kohya state dict.

Targets come from the canonical key map (``loradeck.lora.keymap``), never from ``named_modules()``: the default set
(U-Net transformer blocks: attention, feed-forward, proj_in/out; text-encoder attention and MLP) and, with a conv
rank, the LoCon set (resnet convs, time_emb_proj, shortcuts, down/upsamplers). Each target is replaced by a
``LoraWrapper`` holding the original layer; ``remove`` puts the originals back, untouched.

Forward (kohya): y = W·x + m·(α/r)·U(D·x); D is kaiming-uniform (a = √5), U starts at zero so step 0 is the base.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from loradeck.empty_init import BUILD_LOCK
from loradeck.lora.keymap import KeyMap, ModuleRef


class LoraWrapper(nn.Module):
    """An original Linear/Conv2d plus a trainable low-rank branch (``lora_down`` then ``lora_up``)."""

    def __init__(self, original: nn.Module, rank: int, alpha: float):
        super().__init__()
        self.original = original
        alpha = float(alpha) if alpha else float(rank)  # kohya: alpha 0/None means alpha = rank
        if isinstance(original, nn.Linear):
            self.lora_down = nn.Linear(original.in_features, rank, bias=False)
            self.lora_up = nn.Linear(rank, original.out_features, bias=False)
        elif isinstance(original, nn.Conv2d):
            self.lora_down = nn.Conv2d(
                original.in_channels,
                rank,
                original.kernel_size,
                original.stride,
                original.padding,
                dilation=original.dilation,
                bias=False,
            )
            self.lora_up = nn.Conv2d(rank, original.out_channels, 1, bias=False)
        else:
            raise TypeError(f"cannot put a LoRA on {type(original).__name__}")
        nn.init.kaiming_uniform_(self.lora_down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_up.weight)
        self.register_buffer("alpha", torch.tensor(alpha), persistent=False)
        self.rank = rank
        self.scale = alpha / rank
        self.multiplier = 1.0
        ref = original.weight
        self.lora_down.to(device=ref.device)
        self.lora_up.to(device=ref.device)

    # Code that reads ``layer.weight`` (dtype/device checks in diffusers and transformers) still finds it.
    @property
    def weight(self) -> torch.Tensor:
        return self.original.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.original.bias

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        base = self.original(x, *args, **kwargs)
        if self.multiplier == 0:
            return base
        lora = self.lora_up(self.lora_down(x.to(self.lora_down.weight.dtype)))
        return base + (lora * (self.multiplier * self.scale)).to(base.dtype)


@dataclass
class _Placed:
    name: str  # canonical kohya module name
    ref: ModuleRef
    wrapper: LoraWrapper


class LoraNetwork:
    """The wrappers placed in the models, by canonical name, and the kohya state dict they make."""

    def __init__(self, components: dict[str, nn.Module]):
        self.components = components
        self.placed: dict[str, _Placed] = {}

    @classmethod
    def inject(
        cls,
        components: dict[str, nn.Module],
        keymap: KeyMap,
        *,
        rank: int,
        alpha: float,
        conv_rank: int = 0,
        conv_alpha: float = 1.0,
        train_te: bool = True,
    ) -> LoraNetwork:
        """Wrap every target of ``keymap`` present in ``components``; 3×3 convs get ``conv_rank``/``conv_alpha``."""
        net = cls(components)
        targets = dict(keymap.modules)
        if conv_rank > 0:
            targets.update(keymap.conv_modules)
        for name, ref in targets.items():
            if ref.component not in components or (ref.component != "unet" and not train_te):
                continue
            layer = components[ref.component].get_submodule(ref.path)
            if isinstance(layer, nn.Conv2d) and layer.kernel_size != (1, 1):
                r, a = conv_rank, conv_alpha
                if r <= 0:
                    continue
            else:
                r, a = rank, alpha
            with BUILD_LOCK:  # never on the meta device another thread may have switched on
                wrapper = LoraWrapper(layer, r, a)
            net._place(name, ref, wrapper)
        return net

    def _place(self, name: str, ref: ModuleRef, wrapper: LoraWrapper) -> None:
        parent_path, _, child = ref.path.rpartition(".")
        root = self.components[ref.component]
        parent = root.get_submodule(parent_path) if parent_path else root
        setattr(parent, child, wrapper)
        self.placed[name] = _Placed(name, ref, wrapper)

    def remove(self) -> None:
        """Put the original layers back (their weights were never changed)."""
        for p in self.placed.values():
            parent_path, _, child = p.ref.path.rpartition(".")
            root = self.components[p.ref.component]
            parent = root.get_submodule(parent_path) if parent_path else root
            setattr(parent, child, p.wrapper.original)
        self.placed.clear()

    # ------------------------------------------------------------------------------------------------ parameters
    def parameters(self, component: str | None = None) -> list[nn.Parameter]:
        """LoRA parameters in a fixed order (the canonical-name order), optionally of one component."""
        out: list[nn.Parameter] = []
        for p in self.placed.values():
            if component is None or (p.ref.component == "unet") == (component == "unet"):
                out += [p.wrapper.lora_down.weight, p.wrapper.lora_up.weight]
        return out

    def set_multiplier(self, m: float) -> None:
        for p in self.placed.values():
            p.wrapper.multiplier = m

    def __len__(self) -> int:
        return len(self.placed)

    def count(self, component: str) -> int:
        return sum(1 for p in self.placed.values() if (p.ref.component == "unet") == (component == "unet"))

    # ------------------------------------------------------------------------------------------------ state dicts
    def kohya_state_dict(self, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
        """``{name}.lora_down.weight``, ``{name}.lora_up.weight``, ``{name}.alpha`` (0-dim), cast to ``dtype``."""
        out: dict[str, torch.Tensor] = {}
        for name, p in self.placed.items():
            w = p.wrapper
            for key, t in (
                ("lora_down.weight", w.lora_down.weight),
                ("lora_up.weight", w.lora_up.weight),
                ("alpha", w.alpha),
            ):
                t = t.detach().to("cpu", copy=True)
                out[f"{name}.{key}"] = (t.to(dtype) if dtype is not None else t).contiguous()
        return out

    def load_kohya_state_dict(self, sd: dict[str, torch.Tensor]) -> None:
        """Copy saved factors back in (resume); every module must be present with the same shapes."""
        with torch.no_grad():
            for name, p in self.placed.items():
                for key, param in (("lora_down.weight", p.wrapper.lora_down.weight),
                                   ("lora_up.weight", p.wrapper.lora_up.weight)):  # fmt: skip
                    t = sd[f"{name}.{key}"]
                    if t.shape != param.shape:
                        raise ValueError(f"{name}.{key}: saved shape {tuple(t.shape)} != {tuple(param.shape)}")
                    param.copy_(t.to(param.dtype))
