"""The one place where redis-py's exceptions become redrec's."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis.exceptions as rex

from redrec.exceptions import (
    InvalidInput,
    NotFoundError,
    RedrecError,
    SchemaError,
    StoreUnavailable,
)

__all__ = ["translate", "translate_errors"]


def translate(exc: rex.RedisError, *, index: str | None = None) -> RedrecError:
    """Map a redis-py exception to the redrec exception a user should see."""
    msg = str(exc).strip() or exc.__class__.__name__
    low = msg.lower()
    if isinstance(exc, rex.AuthenticationError) or "wrongpass" in low or "noauth" in low:
        return StoreUnavailable(f"Redis refused the credentials: {msg}")
    if isinstance(exc, rex.ConnectionError | rex.TimeoutError):
        return StoreUnavailable(f"cannot reach Redis: {msg}")
    if "unknown index name" in low or "no such index" in low or "unknown index" in low:
        return NotFoundError(f"no index named {index!r}" if index else msg)
    if "index already exists" in low:
        return SchemaError(f"index {index!r} already exists" if index else msg)
    if "unknown field" in low or "no such field" in low:
        return NotFoundError(f"unknown field in query on {index!r}: {msg}")
    if "syntax error" in low or "parsing" in low or "invalid" in low:
        return InvalidInput(f"Redis rejected the query: {msg}")
    if "unknown command" in low:
        return StoreUnavailable(f"this Redis lacks a needed command: {msg}")
    return RedrecError(f"Redis error: {msg}")


@contextlib.contextmanager
def translate_errors(index: str | None = None) -> Iterator[None]:
    try:
        yield
    except rex.RedisError as exc:
        raise translate(exc, index=index) from exc
