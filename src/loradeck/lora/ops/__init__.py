"""The math of the LoRA tools (merge, resize, extract, convert) on per-module ΔW — pure: tensors in, tensors out."""
