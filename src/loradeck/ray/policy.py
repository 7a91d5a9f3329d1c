"""Which replica runs a generation: the one holding its checkpoint, then the one its LoRA stack went to, within a load
bound. Pure Python (no Ray), so the rule is tested on its own; the ingress calls it, Ray's router only obeys.

The rule, for a request on checkpoint C with stack key S (``GenerationPlan.stack_key``):

1. S went to replica R before (the sticky map), R is alive, and R has at most ``slack`` more requests in flight than
   the least busy live replica → R (its patcher most likely still holds S merged, or its queue has S jobs to batch).
2. Otherwise the least busy live replica among those holding C (Ray's multiplexed model ids) or holding no model yet
   (a load there evicts nothing) when one is within the same bound, else the least busy live replica; ties go to
   the replica owning the fewest sticky stacks, then to the first in Ray's order. S now sticks to it (a stack moves
   only when its replica is over the bound or gone).

Fairness bound: a request is sent to a replica only if that replica's in-flight count (requests sent, not yet
answered, plus long jobs not yet seen finished) is at most ``slack`` above the least busy live replica's, so stickiness
can never pile more than ``slack + 1`` extra requests onto one replica. Inside a replica its studio's queue keeps its
own bound (a waiting job is overtaken by at most ``fairness`` later ones, ``services/jobs.py``).
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field

from loradeck.errors import ReplicaUnavailable

STICKY_MAX = 4096  # stacks remembered (least recently used dropped first)


class NoReplica(ReplicaUnavailable):
    """No live replica to send a request to."""


@dataclass(frozen=True)
class ReplicaView:
    """A live replica as the ingress sees it: Ray's id and the checkpoints Ray says it holds."""

    id: str
    checkpoints: frozenset[str] = field(default_factory=frozenset)


class StackAffinity:
    """The sticky map stack → replica and the in-flight counts per replica (thread-safe)."""

    def __init__(self, slack: int = 2):
        if slack < 0:
            raise ValueError("slack must be 0 or more")
        self.slack = slack
        self._lock = threading.Lock()
        self._sticky: OrderedDict[Hashable, str] = OrderedDict()
        self._inflight: Counter[str] = Counter()

    # ------------------------------------------------------------------------------------------------ choose
    def choose(
        self, replicas: Sequence[ReplicaView], checkpoint: str, stack: Hashable, avoid: Iterable[str] = ()
    ) -> str:
        """The replica for (checkpoint, stack); ``avoid``: replicas that just failed (a retry goes elsewhere)."""
        avoid = set(avoid)
        live = [r for r in replicas if r.id not in avoid]
        if not live:
            raise NoReplica("No loradeck replica is alive to run the request; try again when Ray has restarted one.")
        with self._lock:
            least = min(self._inflight[r.id] for r in live)
            bound = least + self.slack
            sticky = self._sticky.get(stack)
            if sticky is not None and any(r.id == sticky for r in live) and self._inflight[sticky] <= bound:
                self._sticky.move_to_end(stack)
                return sticky
            # where C is loaded, or a replica with no model yet (loading there evicts nothing); else anyone
            holders = [r for r in live if (checkpoint in r.checkpoints or not r.checkpoints)]
            pool = [r for r in holders if self._inflight[r.id] <= bound] or live
            owned = Counter(self._sticky.values())
            order = {r.id: i for i, r in enumerate(live)}
            chosen = min(pool, key=lambda r: (self._inflight[r.id], owned[r.id], order[r.id])).id
            self._sticky[stack] = chosen
            self._sticky.move_to_end(stack)
            while len(self._sticky) > STICKY_MAX:
                self._sticky.popitem(last=False)
            return chosen

    def least_busy(self, replicas: Sequence[ReplicaView], avoid: Iterable[str] = ()) -> str:
        """For work with no stack (training, downloads, tools, extras): the least busy live replica."""
        avoid = set(avoid)
        live = [r for r in replicas if r.id not in avoid]
        if not live:
            raise NoReplica("No loradeck replica is alive to run the request; try again when Ray has restarted one.")
        with self._lock:
            return min(enumerate(live), key=lambda ir: (self._inflight[ir[1].id], ir[0]))[1].id

    # ------------------------------------------------------------------------------------------------ bookkeeping
    def started(self, replica: str) -> None:
        with self._lock:
            self._inflight[replica] += 1

    def finished(self, replica: str) -> None:
        with self._lock:
            if self._inflight[replica] > 0:
                self._inflight[replica] -= 1

    def forget(self, live: Iterable[str]) -> None:
        """Drop what points at replicas that are gone (Ray restarts them under new ids)."""
        keep = set(live)
        with self._lock:
            for stack in [s for s, r in self._sticky.items() if r not in keep]:
                del self._sticky[stack]
            for replica in [r for r in self._inflight if r not in keep]:
                del self._inflight[replica]

    def inflight(self) -> dict[str, int]:
        with self._lock:
            return {r: n for r, n in self._inflight.items() if n}

    def sticky(self) -> dict[Hashable, str]:
        with self._lock:
            return dict(self._sticky)
