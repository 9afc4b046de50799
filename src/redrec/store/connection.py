"""Connecting to Redis and checking that it can do what redrec needs."""

from __future__ import annotations

import redis
import redis.exceptions as rex

from redrec.exceptions import ConfigError, StoreUnavailable
from redrec.store._errors import translate

__all__ = ["check_capabilities", "connect_url", "ping"]


def ping(host: str, port: int, password: str | None, timeout: float = 0.5) -> bool:
    """True if a Redis server answers PING with these credentials."""
    client = redis.Redis(
        host=host, port=port, password=password, socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )
    try:
        return bool(client.ping())
    except rex.RedisError:
        return False
    finally:
        client.close()


def connect_url(url: str, *, connect_timeout: float = 10.0, socket_timeout: float = 30.0) -> redis.Redis:
    """Open a client for ``url`` (redis:// or rediss://), check it and its capabilities."""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"REDIS_URL must start with redis://, rediss:// or unix://, got {url!r}")
    try:
        client = redis.Redis.from_url(
            url,
            socket_connect_timeout=connect_timeout,
            socket_timeout=socket_timeout,
            health_check_interval=30,
            protocol=3,  # replies are parsed as RESP3 maps (store.index._parse)
        )
    except ValueError as exc:
        raise ConfigError(f"bad REDIS_URL: {exc}") from exc
    try:
        client.ping()
    except rex.RedisError as exc:
        client.close()
        raise translate(exc) from exc
    check_capabilities(client)
    return client


def check_capabilities(client: redis.Redis) -> None:
    """Raise StoreUnavailable naming what is missing: the Query Engine and/or JSON.

    Each capability is probed with a harmless read (``FT._LIST``; ``JSON.TYPE`` of a key
    that does not exist), which works alike for built-in (Redis 8) and module (Redis
    Stack) commands.
    """
    missing = []
    for probe, what in (
        (("FT._LIST",), "search (RediSearch / the Redis Query Engine)"),
        (("JSON.TYPE", "__redrec_probe__"), "JSON (RedisJSON)"),
    ):
        try:
            client.execute_command(*probe)
        except rex.ResponseError as exc:
            if "unknown command" in str(exc).lower():
                missing.append(what)
            else:
                raise translate(exc) from exc
        except rex.RedisError as exc:
            raise translate(exc) from exc
    if missing:
        raise StoreUnavailable(
            "this Redis server lacks " + " and ".join(missing)
            + ": use Redis 8, Redis Stack, or Redis Cloud/Software with both enabled"
        )
