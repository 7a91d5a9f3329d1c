"""Building models on the meta device, safely when several threads build models.

accelerate's ``init_empty_weights`` swaps ``torch.nn.Module.register_parameter`` for the whole process, not the
calling thread: a module built in another thread meanwhile (a second studio's checkpoint, a LoRA trainer's layers,
an upscaler) silently gets meta tensors and fails later with "Cannot copy out of meta tensor". Every model build in
loradeck holds ``BUILD_LOCK``: the empty-weights builds take it here, the others (checkpoint loads, training layers,
upscalers) around their own construction. It is re-entrant, so a load may build its parts with ``empty_weights``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

BUILD_LOCK = threading.RLock()


@contextmanager
def empty_weights(include_buffers: bool = False) -> Iterator[None]:
    """``accelerate.init_empty_weights`` while no other thread builds a model."""
    from accelerate import init_empty_weights

    with BUILD_LOCK, init_empty_weights(include_buffers=include_buffers):
        yield
