"""The event stream: producers XADD events, ``redrec worker`` processes read them through a
consumer group, so several workers share the load and an entry is acknowledged only
after its event was applied. A worker that dies leaves its entries pending; they are
claimed again (by itself on restart, or by another worker once idle long enough)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
import redis.exceptions as rex

from redrec.store._errors import translate_errors

__all__ = ["EventStream"]

NS = "redrec"


class EventStream:
    def __init__(self, client: redis.Redis, *, name: str = f"{NS}:events:in",
                 group: str = "redrec-workers", maxlen: int | None = 1_000_000) -> None:
        self.client = client
        self.name = name
        self.group = group
        self.dead = f"{name}:dead"
        self.maxlen = maxlen

    def ensure_group(self) -> None:
        try:
            self.client.xgroup_create(self.name, self.group, id="0", mkstream=True)
        except rex.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        except rex.RedisError as exc:
            with translate_errors():
                raise exc

    def publish(self, payloads: Sequence[str]) -> list[str]:
        """Append events (JSON strings); returns the stream entry ids."""
        with translate_errors():
            pipe = self.client.pipeline(transaction=False)
            for p in payloads:
                pipe.xadd(self.name, {"e": p}, maxlen=self.maxlen, approximate=True)
            return [_s(x) for x in pipe.execute()]

    def read(self, consumer: str, *, count: int = 200, block_ms: int = 1000,
             min_idle_ms: int = 30_000) -> list[tuple[str, str]]:
        """The next entries for ``consumer``: its own pending ones first (a restart picks
        up where it died), then entries other workers left idle for ``min_idle_ms``, then
        new ones."""
        with translate_errors():
            own = self.client.xreadgroup(self.group, consumer, {self.name: "0"}, count=count)
            entries = _entries(own)
            if entries:
                return entries
            trimmed = _trimmed(own)
            if trimmed:  # pending entries the stream no longer holds: nothing to apply
                self.client.xack(self.name, self.group, *trimmed)
            claimed = self.client.xautoclaim(self.name, self.group, consumer, min_idle_ms,
                                             start_id="0-0", count=count)
            entries = [(_s(i), _s(_fields(f)[b"e"])) for i, f in (claimed[1] if claimed else [])
                       if f and b"e" in _fields(f)]
            if entries:
                return entries
            new = self.client.xreadgroup(self.group, consumer, {self.name: ">"}, count=count,
                                         block=block_ms)
            return _entries(new)

    def ack(self, entry_ids: Sequence[str]) -> None:
        if entry_ids:
            with translate_errors():
                self.client.xack(self.name, self.group, *entry_ids)

    def dead_letter(self, entry_id: str, payload: str, error: str) -> None:
        """Park an entry that can never be applied (bad event), with the reason."""
        with translate_errors():
            pipe = self.client.pipeline(transaction=False)
            pipe.xadd(self.dead, {"e": payload, "error": error, "entry": entry_id},
                      maxlen=100_000, approximate=True)
            pipe.xack(self.name, self.group, entry_id)
            pipe.execute()

    def pending(self) -> int:
        with translate_errors():
            info = self.client.xpending(self.name, self.group)
        return int(info["pending"] if isinstance(info, dict) else info[0])

    def lag(self) -> int:
        """Entries not yet delivered to any worker."""
        with translate_errors():
            groups = self.client.xinfo_groups(self.name)
        for g in groups:
            if _s(g.get("name", g.get(b"name", b""))) == self.group:
                lag = g.get("lag", g.get(b"lag"))
                return int(lag) if lag is not None else 0
        return 0

    def dead_entries(self) -> list[dict[str, Any]]:
        with translate_errors():
            rows = self.client.xrange(self.dead)
        return [{_s(k): _s(v) for k, v in f.items()} for _, f in rows]


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _fields(raw: Any) -> dict[bytes, Any]:
    if isinstance(raw, dict):
        return raw
    return dict(zip(raw[::2], raw[1::2], strict=True)) if raw else {}


def _trimmed(reply: Any) -> list[str]:
    """Ids of pending entries whose content was trimmed from the stream (fields nil)."""
    out: list[str] = []
    streams = reply.items() if isinstance(reply, dict) else (reply or [])
    for _, rows in streams:
        if len(rows) == 1 and isinstance(rows[0], list) and (
            not rows[0] or isinstance(rows[0][0], list | tuple)
        ):
            rows = rows[0]
        out += [_s(row[0]) for row in rows if row and not row[1]]
    return out


def _entries(reply: Any) -> list[tuple[str, str]]:
    """XREADGROUP's reply as (entry id, payload) pairs, for RESP2 and RESP3 shapes."""
    out: list[tuple[str, str]] = []
    if not reply:
        return out
    # RESP2: [[stream, [(id, fields), ...]]]; RESP3: {stream: [[(id, fields), ...]]}
    streams = reply.items() if isinstance(reply, dict) else reply
    for _, rows in streams:
        if len(rows) == 1 and isinstance(rows[0], list) and (
            not rows[0] or isinstance(rows[0][0], list | tuple)
        ):
            rows = rows[0]
        for row in rows:
            if not row:
                continue
            entry_id, raw = row
            fields = _fields(raw)
            if b"e" in fields:
                out.append((_s(entry_id), _s(fields[b"e"])))
    return out
