"""Encoders by name, loaded once per process (loading a model takes a second or more)."""

from __future__ import annotations

import threading
from typing import Any, Protocol

import numpy as np

from redrec.exceptions import ConfigError

__all__ = ["Encoder", "get_encoder"]


class Encoder(Protocol):
    name: str
    dim: int

    def encode(self, items: Any, *, progress: bool = False) -> np.ndarray: ...


_LOCK = threading.Lock()
_LOADED: dict[tuple[Any, ...], Encoder] = {}


def get_encoder(kind: str, model: str, backend: str = "torch", **options: Any) -> Encoder:
    """The text or image encoder for ``model``, shared by every caller in this process.

    ``options`` go to the encoder (``dim`` and ``vocab_size`` for the static text backend)
    and are part of the sharing key, as they change the vectors.
    """
    key = (kind, model, backend, *sorted(options.items()))
    with _LOCK:
        if key not in _LOADED:
            if kind == "text":
                from redrec.embed.text import TextEncoder

                _LOADED[key] = TextEncoder(model, backend=backend, **options)  # type: ignore[arg-type]
            elif kind == "image":
                from redrec.embed.image import ImageEncoder

                if options:
                    raise ConfigError(f"image encoders take no options, got {sorted(options)}")
                _LOADED[key] = ImageEncoder(backend=backend)  # type: ignore[arg-type]
            else:
                raise ValueError(f"unknown encoder kind {kind!r}")
        return _LOADED[key]
