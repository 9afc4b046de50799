"""``redrec worker``: applies events from the Redis Stream through a consumer group.

Entries are acknowledged only after their events were applied, so a worker killed
mid-batch loses nothing: its pending entries are delivered again (to itself on restart,
or claimed by another worker once idle), and since applying an event twice has no extra
effect (events carry ids), nothing is counted twice. Entries that can never be applied
(bad JSON, unknown item, unknown type) go to the dead-letter stream with the reason.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from redrec.engine.engine import Engine
from redrec.engine.events import Event
from redrec.exceptions import InvalidInput
from redrec.store.streams import EventStream

__all__ = ["Worker", "WorkerStats", "publish"]


@dataclass
class WorkerStats:
    applied: int = 0
    duplicates: int = 0
    dead: int = 0
    batches: int = 0


def publish(stream: EventStream, events: list[Event]) -> list[str]:
    """Put events on the stream for the workers (producers need no engine)."""
    return stream.publish([e.to_json() for e in events])


class Worker:
    def __init__(
        self,
        engine: Engine,
        stream: EventStream,
        *,
        consumer: str | None = None,
        batch: int = 200,
        block_ms: int = 1000,
        min_idle_ms: int = 30_000,
        on_batch: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.engine = engine
        self.stream = stream
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.batch = batch
        self.block_ms = block_ms
        self.min_idle_ms = min_idle_ms
        self.on_batch = on_batch  # test hook: runs after applying, before acknowledging
        self.stats = WorkerStats()
        stream.ensure_group()

    def warm(self) -> int:
        """Load the catalogue's item vectors into the process now (the session vectors
        saved every few events are made of them; otherwise each is read from Redis the
        first time it is needed). Returns how many were loaded."""
        return self.engine.warm_vectors(neighbours=False)

    def run_once(self) -> int:
        """Read, apply and acknowledge one batch; returns the number of entries handled."""
        entries = self.stream.read(self.consumer, count=self.batch, block_ms=self.block_ms,
                                   min_idle_ms=self.min_idle_ms)
        if not entries:
            return 0
        events: list[Event] = []
        ids: list[str] = []
        now = self.engine.clock()
        for entry_id, payload in entries:
            try:
                events.append(Event.from_dict(json.loads(payload), now=now))
                ids.append(entry_id)
            except (ValueError, InvalidInput) as exc:
                self.stream.dead_letter(entry_id, payload, str(exc))
                self.stats.dead += 1
        results = self.engine.track_many(events)
        ack = []
        for entry_id, ev, result in zip(ids, events, results, strict=True):
            if isinstance(result, InvalidInput):
                self.stream.dead_letter(entry_id, ev.to_json(), str(result))
                self.stats.dead += 1
                continue
            if result:
                self.stats.applied += 1
            else:
                self.stats.duplicates += 1
            ack.append(entry_id)
        if self.on_batch is not None:
            self.on_batch(ack)
        self.stream.ack(ack)
        self.stats.batches += 1
        return len(entries)

    def run(self, *, max_events: int | None = None, idle_exit_s: float | None = None) -> WorkerStats:
        """Process until stopped (Ctrl-C), ``max_events`` handled, or idle for
        ``idle_exit_s`` seconds."""
        handled = 0
        idle_since = time.monotonic()
        while max_events is None or handled < max_events:
            n = self.run_once()
            handled += n
            if n:
                idle_since = time.monotonic()
            elif idle_exit_s is not None and time.monotonic() - idle_since >= idle_exit_s:
                break
        return self.stats
