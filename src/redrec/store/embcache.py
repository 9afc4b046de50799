"""An embedding cache in Redis, shared by every process that ingests.

One HASH per encoder, ``redrec:embcache:<encoder name>``, maps the sha256 of the content
to the vector's FLOAT32 bytes. Re-ingesting an unchanged catalogue therefore computes no
embedding, and a changed item (new content, new hash) is embedded alone.
"""

from __future__ import annotations

import numpy as np
import redis

from redrec.store._errors import translate_errors

__all__ = ["RedisEmbeddingCache"]

_CHUNK = 1000


class RedisEmbeddingCache:
    """Implements ``redrec.embed.cache.EmbeddingCache`` over a Redis HASH per model."""

    def __init__(self, client: redis.Redis, namespace: str = "redrec") -> None:
        self.client = client
        self.namespace = namespace

    def _key(self, model: str) -> str:
        return f"{self.namespace}:embcache:{model}"

    def get_many(self, model: str, keys: list[str]) -> list[np.ndarray | None]:
        out: list[np.ndarray | None] = []
        with translate_errors():
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start:start + _CHUNK]
                blobs = self.client.hmget(self._key(model), chunk)
                out += [None if b is None else np.frombuffer(b, dtype="<f4").copy() for b in blobs]
        return out

    def set_many(self, model: str, items: dict[str, np.ndarray]) -> None:
        if not items:
            return
        mapping = {k: np.asarray(v, dtype="<f4").tobytes() for k, v in items.items()}
        names = list(mapping)
        with translate_errors():
            for start in range(0, len(names), _CHUNK):
                part = {k: mapping[k] for k in names[start:start + _CHUNK]}
                self.client.hset(self._key(model), mapping=part)

    def size(self, model: str) -> int:
        with translate_errors():
            return int(self.client.hlen(self._key(model)))

    def clear(self, model: str) -> None:
        with translate_errors():
            self.client.delete(self._key(model))
