"""What the routes share: the studio (which owns every job and all state) and the A1111 options clients set that
loradeck keeps only to echo them back. Routes translate HTTP shapes and call the studio; nothing else lives here."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from loradeck.demo.paths import DEMO
from loradeck.errors import CheckpointNotFound, ModelLoadError
from loradeck.services.jobs import Job, JobQueue
from loradeck.services.studio import Studio

__all__ = ["DEMO", "ServerState"]


@dataclass
class ServerState:
    studio: Studio
    options: dict[str, Any] = field(default_factory=dict)  # other options clients set (kept and echoed)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def switch_checkpoint(self, name: str) -> Job:
        """Queue the load of a checkpoint named over the network (422 for a path, 404 for an unknown name now)."""
        return self.studio.switch_checkpoint(self.checkpoint_title(name))

    def checkpoint_title(self, name: str | None) -> str:
        """A checkpoint name from the network as a library title ("demo" for the embedded model): PathNotAllowed (422)
        for a path outside the folders, CheckpointNotFound (404) for a name that matches nothing."""
        if name in (None, "", DEMO):
            return DEMO
        from loradeck.server.names import checkpoint_title  # names from the network: never a path outside

        try:
            return checkpoint_title(self.studio, name)
        except CheckpointNotFound:
            raise
        except ModelLoadError as exc:
            raise CheckpointNotFound(str(exc)) from None

    @property
    def queue(self) -> JobQueue:
        return self.studio.queue

    @property
    def downloads(self) -> JobQueue:
        return self.studio.downloads

    @property
    def checkpoint(self) -> str:
        return self.studio.checkpoint
