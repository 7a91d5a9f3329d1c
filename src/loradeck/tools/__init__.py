"""LoRA tools — merge, resize, extract, convert — as one service-facing call: ``run_tool(request, on_progress, cancel)``.

The math is in ``loradeck.lora.ops`` (pure); this layer reads the files, loads checkpoints with the engine's loaders,
picks the device, writes the result atomically (into the LoRA folder when no path is given) and records what was done.
"""

from loradeck.tools.requests import ConvertRequest, ExtractRequest, MergeRequest, ResizeRequest, ToolResult
from loradeck.tools.run import run_tool

__all__ = ["ConvertRequest", "ExtractRequest", "MergeRequest", "ResizeRequest", "ToolResult", "run_tool"]
