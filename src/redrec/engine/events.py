"""User events: the one shape every entry point (API, stream, CLI, HTTP) accepts.

Validation is pure and happens before anything is written.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from redrec.exceptions import InvalidInput
from redrec.store.documents import HAS_SPACE, check_id

__all__ = ["EVENT_TYPES", "Event", "parse_timestamp"]

EVENT_TYPES = ("view", "click", "add_to_cart", "purchase", "rating", "dislike")
MAX_CONTEXT_BYTES = 4096
_EARLIEST = 946684800.0  # 2000-01-01: anything earlier is a unit mistake (ms vs s)
_MAX_FUTURE_S = 86400.0


def parse_timestamp(value: Any, *, now: float | None = None) -> float:
    """Seconds since the epoch from a number (seconds) or an ISO 8601 string."""
    now = time.time() if now is None else now
    if value is None:
        return now
    if isinstance(value, bool):
        raise InvalidInput(f"bad timestamp {value!r}")
    if isinstance(value, int | float):
        ts = float(value)
    elif isinstance(value, str):
        try:
            ts = float(value)
        except ValueError:
            try:
                dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise InvalidInput(f"bad timestamp {value!r}: use epoch seconds or ISO 8601") from None
            if dt.tzinfo is None:
                raise InvalidInput(f"bad timestamp {value!r}: give a time zone (e.g. Z)") from None
            ts = dt.timestamp()
    else:
        raise InvalidInput(f"bad timestamp {value!r}")
    if not math.isfinite(ts) or ts < _EARLIEST or ts > now + _MAX_FUTURE_S:
        raise InvalidInput(f"timestamp {value!r} is out of range (epoch seconds after 2000)")
    return ts


@dataclass(frozen=True)
class Event:
    """One user action. ``id`` makes applying it idempotent: replaying an event with
    the same id changes nothing."""

    user_id: str
    item_id: str
    type: str
    timestamp: float
    value: float | None = None  # the rating for type "rating"
    context: dict[str, Any] = field(default_factory=dict)
    id: str = ""

    @classmethod
    def create(
        cls,
        user_id: Any,
        item_id: Any,
        type: str,
        *,
        timestamp: Any = None,
        value: Any = None,
        context: dict[str, Any] | None = None,
        id: str | None = None,
        now: float | None = None,
    ) -> Event:
        """Check every field and build the event (``id`` generated when not given)."""
        try:
            uid = check_id(user_id)
        except InvalidInput as exc:
            raise InvalidInput(f"bad user id: {exc}") from None
        try:
            iid = check_id(item_id)
        except InvalidInput as exc:
            raise InvalidInput(f"bad item id: {exc}") from None
        if type not in EVENT_TYPES:
            raise InvalidInput(f"unknown event type {type!r} (one of {', '.join(EVENT_TYPES)})")
        ts = parse_timestamp(timestamp, now=now)
        rating: float | None = None
        if type == "rating":
            try:
                rating = float(value)
            except (TypeError, ValueError):
                raise InvalidInput(f"a rating needs a numeric value, got {value!r}") from None
            if not math.isfinite(rating):
                raise InvalidInput(f"a rating must be finite, got {value!r}")
        elif value is not None:
            raise InvalidInput(f"only a rating event carries a value (got {type} with {value!r})")
        ctx = dict(context or {})
        if not isinstance(context or {}, dict):
            raise InvalidInput("context must be an object")
        if ctx:
            try:
                size = len(json.dumps(ctx, allow_nan=False))
            except (TypeError, ValueError) as exc:
                raise InvalidInput(f"context is not plain JSON: {exc}") from None
            if size > MAX_CONTEXT_BYTES:
                raise InvalidInput(f"context is {size} bytes; the limit is {MAX_CONTEXT_BYTES}")
        eid = id if id is not None else uuid.uuid4().hex
        if not isinstance(eid, str) or not eid or len(eid) > 128 or HAS_SPACE.search(eid):
            raise InvalidInput(f"bad event id {eid!r}")
        return cls(uid, iid, type, ts, rating, ctx, eid)

    @classmethod
    def from_dict(cls, data: Any, *, now: float | None = None) -> Event:
        if not isinstance(data, dict):
            raise InvalidInput("an event must be an object")
        unknown = set(data) - {"user_id", "item_id", "type", "timestamp", "value", "context", "id"}
        if unknown:
            raise InvalidInput(f"unknown event field(s): {', '.join(sorted(unknown))}")
        for required in ("user_id", "item_id", "type"):
            if required not in data:
                raise InvalidInput(f"an event needs {required!r}")
        return cls.create(
            data["user_id"], data["item_id"], data["type"], timestamp=data.get("timestamp"),
            value=data.get("value"), context=data.get("context"), id=data.get("id"), now=now,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "user_id": self.user_id, "item_id": self.item_id,
                               "type": self.type, "timestamp": self.timestamp}
        if self.value is not None:
            out["value"] = self.value
        if self.context:
            out["context"] = self.context
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))
