"""An embedding cache keyed by (encoder name, sha256 of the content).

Embedding is the slow step of ingestion; the same description or image embedded by the
same encoder always gives the same vector, so it is computed once and looked up after.
The encoder's name (``TextEncoder.name``, ``ImageEncoder.name``) is part of the key, and
it names the backend and quantisation, so vectors of different models or variants never
mix.

:class:`EmbeddingCache` is the whole contract a cache implements (``MemoryCache`` here,
``redrec.store.embcache.RedisEmbeddingCache`` over Redis); :func:`encode_cached` is how
callers use one.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["EmbeddingCache", "Encoder", "MemoryCache", "content_key", "encode_cached"]


@runtime_checkable
class EmbeddingCache(Protocol):
    """Vectors stored per model under content keys (see :func:`content_key`).

    ``model`` is an encoder's ``name``. Implementations store float32 vectors and must
    treat the two calls as independent and idempotent: setting a key twice with the same
    vector is harmless, and a key written by another process may appear at any time.
    """

    def get_many(self, model: str, keys: list[str]) -> list[np.ndarray | None]:
        """The vector stored for each key, in order; ``None`` where there is none."""
        ...

    def set_many(self, model: str, items: dict[str, np.ndarray]) -> None:
        """Store one vector per key (overwriting any already there)."""
        ...


class Encoder(Protocol):
    """What :func:`encode_cached` needs of an encoder."""

    name: str
    dim: int

    def encode(self, items: Any, *, progress: bool = False) -> np.ndarray: ...


def content_key(content: str | bytes) -> str:
    """The sha256 (hex) of ``content``; text is hashed as UTF-8."""
    data = content.encode("utf-8") if isinstance(content, str) else bytes(content)
    return hashlib.sha256(data).hexdigest()


class MemoryCache:
    """An in-process :class:`EmbeddingCache`, optionally bounded (least recently used out).

    Stored vectors are private read-only copies, so a caller cannot change a cached entry by
    writing to an array it was given. Safe to share between threads.
    """

    def __init__(self, max_items: int | None = None) -> None:
        if max_items is not None and max_items < 1:
            raise ValueError(f"max_items must be at least 1, not {max_items}")
        self.max_items = max_items
        self._data: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._data)

    def get_many(self, model: str, keys: list[str]) -> list[np.ndarray | None]:
        out: list[np.ndarray | None] = []
        with self._lock:
            for key in keys:
                vec = self._data.get((model, key))
                if vec is not None:
                    self._data.move_to_end((model, key))
                out.append(vec)
        return out

    def set_many(self, model: str, items: dict[str, np.ndarray]) -> None:
        with self._lock:
            for key, vec in items.items():
                stored = np.array(vec, dtype=np.float32, copy=True).reshape(-1)
                stored.flags.writeable = False
                self._data[(model, key)] = stored
                self._data.move_to_end((model, key))
            while self.max_items is not None and len(self._data) > self.max_items:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


def encode_cached(
    encoder: Encoder,
    contents: Sequence[str | bytes],
    cache: EmbeddingCache,
    *,
    progress: bool = False,
) -> tuple[np.ndarray, int]:
    """Embed ``contents`` with ``encoder``, computing only what ``cache`` lacks.

    Returns the ``(n, dim)`` float32 vectors in input order and how many were computed.
    Duplicates within ``contents`` are embedded once; a cached vector of the wrong size
    (a stale or damaged entry) is recomputed and overwritten. The key is the content
    itself, so pass image *bytes*, not paths: a path names a file whose content can change.
    """
    keys = [content_key(c) for c in contents]
    out = np.empty((len(keys), encoder.dim), dtype=np.float32)
    if not keys:
        return out, 0
    unique = list(dict.fromkeys(keys))
    found = dict(zip(unique, cache.get_many(encoder.name, unique), strict=True))
    first = {k: i for i, k in reversed(list(enumerate(keys)))}  # first position of each key
    missing = [k for k in unique if (v := found[k]) is None or v.shape != (encoder.dim,)]
    if missing:
        computed = encoder.encode([contents[first[k]] for k in missing], progress=progress)
        fresh = {k: np.asarray(v, dtype=np.float32) for k, v in zip(missing, computed, strict=True)}
        cache.set_many(encoder.name, fresh)
        found.update(fresh)
    for i, key in enumerate(keys):
        out[i] = found[key]
    return out, len(missing)
