"""The web UI (Gradio), mounted on the server's FastAPI app at ``/``: Generate, LoRA cards, PNG info, Civitai.

>>> from loradeck.ui import mount_ui
>>> mount_ui(create_app(studio), studio)   # the UI and the APIs on one port
"""

from loradeck.ui.app import build_ui, mount_ui

__all__ = ["build_ui", "mount_ui"]
