"""Any supported LoRA file → one ``ModuleDelta`` per module: the scaled ΔW as exact low-rank factors or dense.

The LoRA tools work on these: a plain LoRA/LoCon keeps its factors (scale folded into ``up``), a LoHa becomes exact
Khatri–Rao factors, LoKr/full/Tucker-LoHa stay dense; IA3 and DoRA, whose ΔW depends on the base weight, need a
``base`` (name → W₀). Names are the family's canonical kohya names, so files of every layout line up.
Norm-layer deltas and ``diff_b`` biases cannot be written as LoRA factors: they are left out and listed in ``notes``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from loradeck.errors import InvalidRequest
from loradeck.families import Family
from loradeck.lora.files.shapes import module_shapes
from loradeck.lora.keymap import keymap_for_family
from loradeck.lora.kinds import SCALED, kind_module
from loradeck.lora.math import base_delta, lora_scale, needs_base, weight_delta
from loradeck.lora.spec import LoraFile, ModuleSpec

BaseWeights = Callable[[str], torch.Tensor | None]  # canonical name → the base model's weight (or None)


@dataclass
class ModuleDelta:
    """The scaled ΔW of one module, ``up @ down`` ([out, r] @ [r, in·kh·kw]) or ``dense`` [out, in·kh·kw]."""

    name: str  # canonical kohya module name
    shape: tuple[int, ...]  # the target weight's shape
    kind: str  # the source kind ("lora", "loha", …, "+dora")
    scale: float = 1.0  # the source's s = α/r (already folded into up/dense)
    up: torch.Tensor | None = None
    down: torch.Tensor | None = None
    dense: torch.Tensor | None = None

    @property
    def is_conv3(self) -> bool:
        """A conv with a kernel larger than 1×1 (kohya's ``conv_dim`` set)."""
        return len(self.shape) == 4 and self.shape[2] * self.shape[3] > 1

    @property
    def rank(self) -> int | None:
        return None if self.down is None else self.down.shape[0]

    def matrix(self) -> torch.Tensor:
        """ΔW flattened to [out, in·kh·kw], float32."""
        if self.dense is not None:
            return self.dense
        assert self.up is not None and self.down is not None
        return self.up @ self.down

    def matrix_factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The stored (up, down) of a factored ΔW (``dense`` is None)."""
        assert self.up is not None and self.down is not None
        return self.up, self.down

    def lowrank(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact (up, down): the stored factors, or a thin SVD of the dense ΔW cut at its numerical rank."""
        if self.up is not None:
            assert self.down is not None
            return self.up, self.down
        u, s, vh = torch.linalg.svd(self.dense, full_matrices=False)
        keep = max(1, int((s > s[0] * 1e-7).sum())) if s.numel() and s[0] > 0 else 1
        root = s[:keep].sqrt()
        return u[:, :keep] * root, root[:, None] * vh[:keep]

    def to(self, device) -> ModuleDelta:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return ModuleDelta(self.name, self.shape, self.kind, self.scale, move(self.up), move(self.down),
                           move(self.dense))  # fmt: skip


@dataclass
class DeltaSet:
    """Every module of one file as ModuleDelta, with its family, metadata and what had to be left out."""

    family: Family
    modules: dict[str, ModuleDelta]
    metadata: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # one sentence per module left out, and why
    source: str = ""


def _shape_from_tensors(spec: ModuleSpec) -> tuple[int, ...] | None:
    t = spec.tensors
    if spec.kind == "lora":
        up, down = t["lora_up.weight"], t["lora_down.weight"]
        if "lora_mid.weight" in t:
            return (up.shape[0], down.shape[1], *t["lora_mid.weight"].shape[2:])
        return (up.shape[0], *down.shape[1:])
    if spec.kind == "full":
        return tuple(t["diff"].shape)
    if spec.kind == "loha" and "hada_t1" in t:
        return (t["hada_w1_a"].shape[1], t["hada_w1_b"].shape[1], *t["hada_t1"].shape[2:])
    return None


def _flat_dims(spec: ModuleSpec) -> tuple[int, int] | None:
    """(out, in·kh·kw) of a LoHa/LoKr module, read from its factors' shapes."""
    t = spec.tensors
    if spec.kind == "loha":
        return t["hada_w1_a"].shape[0], t["hada_w1_b"].shape[1]
    if spec.kind == "lokr":
        w1 = t["lokr_w1"].shape if "lokr_w1" in t else (t["lokr_w1_a"].shape[0], t["lokr_w1_b"].shape[1])
        if "lokr_w2" in t:
            w2 = tuple(t["lokr_w2"].shape)
        elif "lokr_t2" in t:
            w2 = (t["lokr_w2_a"].shape[1], t["lokr_w2_b"].shape[1], *t["lokr_t2"].shape[2:])
        else:
            w2 = (t["lokr_w2_a"].shape[0], t["lokr_w2_b"].shape[1])
        n = w1[1]
        for d in w2[1:]:
            n *= d
        return w1[0] * w2[0], n
    return None


def _shape(spec: ModuleSpec, table: tuple[int, ...] | None) -> tuple[int, ...] | None:
    """The target weight's shape: from the tensors when they carry it, else the family's (if it fits the tensors),
    else the flattened 2-D shape (right for linear layers)."""
    shape = _shape_from_tensors(spec)
    if shape is not None:
        return shape
    flat = _flat_dims(spec)
    if table is not None and (flat is None or (table[0] == flat[0] and _numel(table[1:]) == flat[1])):
        return table
    return flat


def _numel(dims) -> int:
    n = 1
    for d in dims:
        n *= d
    return n


def read_deltas(lora: LoraFile, *, base: BaseWeights | None = None, device: str | torch.device = "cpu") -> DeltaSet:
    """Per-module scaled ΔW of ``lora`` on ``device`` in float32.

    Raises InvalidRequest for an IA3/DoRA module when no ``base`` is given (its ΔW depends on the base weights),
    or for a module whose shape cannot be known (a LoHa/LoKr conv of a file whose base model is not recognised).
    """
    family = lora.family
    keymap = keymap_for_family(family) if family is not Family.UNKNOWN else None
    shapes = module_shapes(family)
    out: dict[str, ModuleDelta] = {}
    notes: list[str] = []
    for spec in lora.modules.values():
        name = keymap.canonical(spec.name) if keymap else spec.name
        if spec.kind == "norm":
            notes.append(f"{name}: a norm-layer delta, which LoRA factors cannot hold; left out")
            continue
        if "diff_b" in spec.tensors:
            notes.append(f"{name}: its bias delta (diff_b) cannot be held by LoRA factors; left out")
        shape = _shape(spec, shapes.get(name))
        if shape is None:
            raise InvalidRequest(
                f"{lora.path.name}: the shape of module {name} ({spec.kind}) cannot be read from the file and its "
                "base model is not recognised."
            )
        label = spec.kind + ("+dora" if "dora_scale" in spec.tensors else "")
        if needs_base(spec):
            w0 = base(name) if base is not None else None
            if w0 is None:
                raise InvalidRequest(
                    f"{lora.path.name}: module {name} is {label.upper()}, whose ΔW depends on the base model's "
                    "weights; give the base checkpoint (--base)."
                )
            dense = weight_delta(spec, w0.to(device=device, dtype=torch.float32))
            out[name] = ModuleDelta(name, shape, label, dense=dense.reshape(shape[0], -1))
            continue
        s = lora_scale(spec) if spec.kind in SCALED else 1.0
        # A1111's `bias` weight delta is dense: the module's ΔW is then dense too (base_delta adds it)
        factors = None if "bias" in spec.tensors else kind_module(spec.kind).factors(spec.tensors, shape, device)
        if factors is not None:
            up, down = factors
            out[name] = ModuleDelta(name, shape, label, s, up=up * s, down=down)
        else:
            dense = base_delta(spec, torch.Size(shape), device)
            out[name] = ModuleDelta(name, shape, label, s, dense=dense.reshape(shape[0], -1))
    return DeltaSet(family, out, dict(lora.metadata), notes, source=lora.path.name)
