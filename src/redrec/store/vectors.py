"""Vector validation and the conversion between numpy arrays and what Redis stores."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from redrec.exceptions import InvalidInput

__all__ = ["DTYPES", "as_vector", "distances", "from_bytes", "to_bytes"]

DTYPES: dict[str, np.dtype[Any]] = {
    "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"),
    "float16": np.dtype("<f2"),
}


def as_vector(
    value: Any, dims: int, dtype: str = "float32", *, what: str = "vector"
) -> np.ndarray:
    """Check one vector (shape, finiteness) and return it as a 1-d array of ``dtype``."""
    if isinstance(value, bytes | bytearray | memoryview):
        raise InvalidInput(f"{what} must be an array of numbers, not raw bytes")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{what} must be an array of numbers: {exc}") from None
    if arr.ndim != 1:
        raise InvalidInput(f"{what} must be one-dimensional, got shape {arr.shape}")
    if arr.shape[0] != dims:
        raise InvalidInput(f"{what} has dimension {arr.shape[0]}, the index expects {dims}")
    if not np.isfinite(arr).all():
        raise InvalidInput(f"{what} contains NaN or infinite values")
    return arr.astype(DTYPES[dtype], copy=False)


def as_vectors(
    value: Sequence[Any] | np.ndarray, dims: int, dtype: str = "float32", *, what: str = "vector"
) -> list[np.ndarray]:
    """Check a list of vectors (a JSON multi-vector field)."""
    if isinstance(value, np.ndarray) and value.ndim == 2:
        rows: Sequence[Any] = list(value)
    elif isinstance(value, list | tuple):
        rows = value
    else:
        raise InvalidInput(f"{what} must be a list of vectors")
    if not rows:
        raise InvalidInput(f"{what} must hold at least one vector")
    return [as_vector(v, dims, dtype, what=f"{what}[{i}]") for i, v in enumerate(rows)]


def to_bytes(vec: np.ndarray) -> bytes:
    return vec.tobytes()


def from_bytes(blob: bytes, dtype: str = "float32") -> np.ndarray:
    return np.frombuffer(blob, dtype=DTYPES[dtype]).copy()


def distances(matrix: np.ndarray, query: np.ndarray, metric: str) -> np.ndarray:
    """The distances RediSearch gives between each row of ``matrix`` and ``query``:
    cosine ``1 - cos``, ip ``1 - dot``, l2 the squared Euclidean distance."""
    m = np.asarray(matrix, dtype=np.float32)
    q = np.asarray(query, dtype=np.float32)
    if metric == "l2":
        diff = m - q
        return np.einsum("ij,ij->i", diff, diff)
    dots = m @ q
    if metric == "ip":
        return 1.0 - dots
    if metric != "cosine":
        raise ValueError(f"unknown metric {metric!r}")
    norms = np.sqrt(np.einsum("ij,ij->i", m, m)) * float(np.sqrt(q @ q))
    norms[norms == 0] = 1.0
    return 1.0 - dots / norms
