"""The catalogue held in process for one generation: item vectors, their returned
fields and item-to-item neighbour lists, addressed by row.

A long-running process (a service, a worker) loads it once (``Engine.warm_vectors``);
it holds while the catalogue's generation, read with every request's state, is the one
it was built under (any upsert or delete moves the generation on, and the engine then
falls back to its per-item cache until the table is built again). With it, a request
gathers its vectors by row (one numpy index instead of a dict lookup and an array per
item) and reads the neighbour lists of the user's last items without a round trip.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import numpy as np

__all__ = ["ItemTable", "decayed_sums"]


class ItemTable:
    """Item vectors (one row each), their norms and returned fields, and up to
    ``depth`` neighbour rows per item (-1 pads a shorter list); ``generation`` is the
    catalogue generation everything was read under."""

    __slots__ = ("_held", "depth", "fields", "generation", "ids", "neighbours", "norms", "row",
                 "vectors")

    def __init__(self, generation: int, ids: Sequence[str], vectors: np.ndarray,
                 fields: Sequence[dict[str, Any]], depth: int) -> None:
        if len(ids) != len(vectors) or len(ids) != len(fields):
            raise ValueError("ids, vectors and fields must have one entry per item")
        self.generation = generation
        self.ids = list(ids)
        self.row = {item: n for n, item in enumerate(self.ids)}
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        norms = np.sqrt(np.einsum("ij,ij->i", self.vectors, self.vectors))
        norms[norms == 0] = 1.0
        self.norms = norms
        self.fields = list(fields)
        self.depth = depth
        self.neighbours = np.full((len(self.ids), depth), -1, dtype=np.int32)
        self._held = np.zeros(len(self.ids), dtype=bool)  # rows whose list is loaded

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self, ids: Sequence[str]) -> list[int] | None:
        """The rows of ``ids``, or None if any of them is not held."""
        row = self.row
        try:
            return [row[i] for i in ids]
        except KeyError:
            return None

    def set_neighbours(self, item_id: str, neighbours: Sequence[str]) -> None:
        """Hold ``item_id``'s neighbour list (ids nearest first; ids not held are left
        out, the list is cut to ``depth``)."""
        r = self.row.get(item_id)
        if r is None:
            return
        get = self.row.get
        rows = [x for x in (get(i, -1) for i in neighbours) if x >= 0][: self.depth]
        self.neighbours[r] = -1
        self.neighbours[r, : len(rows)] = rows
        self._held[r] = True

    def holds(self, item_id: str) -> bool:
        """Whether ``item_id``'s neighbour list is held."""
        r = self.row.get(item_id)
        return r is not None and bool(self._held[r])

    def neighbours_of(self, item_id: str, excluded: Collection[str], n: int) -> list[str] | None:
        """The first ``n`` of ``item_id``'s neighbours not in ``excluded``, or None when
        its list is not held."""
        r = self.row.get(item_id)
        if r is None or not self._held[r]:
            return None
        ids = self.ids
        out: list[str] = []
        for x in self.neighbours[r].tolist():
            if x < 0:
                break
            i = ids[x]
            if i not in excluded:
                out.append(i)
                if len(out) >= n:
                    break
        return out

    def held_neighbours(self) -> int:
        """How many items have their neighbour list held."""
        return int(self._held.sum())


def decayed_sums(matrix: np.ndarray, norms: np.ndarray, coef: Sequence[float],
                 spans: Sequence[tuple[int, int]]) -> list[np.ndarray | None]:
    """For each ``(start, end)`` span of rows: the unit-length sum of those rows, each
    first scaled to unit length and then by its coefficient (None for an empty span or
    a sum of length ~0). The session vector of a user is one such sum."""
    out: list[np.ndarray | None] = [None] * len(spans)
    if not len(matrix):
        return out
    scaled = np.array(coef, dtype=np.float32) / norms
    for n, (a, b) in enumerate(spans):
        if a == b:
            continue
        acc = scaled[a:b] @ matrix[a:b]
        norm = float(np.sqrt(acc @ acc))
        out[n] = (acc / norm).astype(np.float32, copy=False) if norm > 1e-6 else None
    return out
