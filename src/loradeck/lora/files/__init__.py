"""The LoRA file layer the tools share: any supported kind read into per-module ΔW factors, kohya files written."""
