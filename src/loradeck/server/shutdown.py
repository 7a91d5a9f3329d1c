"""Run the server until SIGTERM/Ctrl-C, and stop quickly: the running job is interrupted at once.

uvicorn's own shutdown waits for open requests to finish, and a txt2img request waits for its job, which on a CPU may
take minutes. So on the first signal we interrupt the running job (the U-Net checks the flag before each block,
``engine.pipeline``) and cancel the queued ones; their requests are answered (interrupted / 409) and uvicorn's
graceful shutdown finds nothing left to wait for. ``GRACE_S`` bounds the wait anyway; a second Ctrl-C forces the exit.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("loradeck.server")
GRACE_S = 3  # seconds uvicorn may wait for open connections after the jobs were stopped


def stop_jobs(app: Any) -> None:
    """Interrupt what runs and cancel what waits, on every queue of the app, and any job the studio runs directly
    (the web UI's)."""
    state = getattr(app.state, "loradeck", None)
    if state is not None:
        for queue in (state.queue, state.downloads):
            queue.stop(timeout=0)
    studio = getattr(app.state, "studio", None)
    job = getattr(studio, "current_job", None)
    if job is not None and hasattr(job, "interrupted"):
        job.interrupted.set()


def serve(app: Any, *, host: str, port: int) -> None:
    """uvicorn.run with a shutdown that stops the jobs first (see the module docstring)."""
    import uvicorn

    api = app  # the FastAPI app that holds the state (the web UI is mounted on the same one)

    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            if not self.should_exit:
                log.warning("stopping: interrupting the running job")
                try:
                    stop_jobs(api)
                except Exception:  # noqa: BLE001 — shutting down must never fail on our part
                    log.exception("could not stop the jobs")
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=GRACE_S)
    _Server(config).run()
