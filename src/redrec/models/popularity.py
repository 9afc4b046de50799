"""Most-popular baseline: every user gets the items most users interacted with.

The floor every learned model must clear, and the natural answer for a user with no
history yet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Self

import numpy as np

from redrec.models.base import Recommender, index_items

__all__ = ["Popularity"]


class Popularity(Recommender):
    """Scores each item by the number of distinct users who interacted with it."""

    kind = "popularity"

    def __init__(self) -> None:
        super().__init__()
        self._counts = np.zeros(0, dtype=np.float32)

    def fit(self, sequences: Mapping[str, Sequence[str]], *, show_progress: bool = False) -> Self:
        item_ids, index = index_items(sequences)
        counts = np.zeros(len(item_ids), dtype=np.float32)
        for items in sequences.values():
            counts[[index[i] for i in set(items)]] += 1.0
        self._set_items(item_ids)
        self._counts = counts
        return self

    def score(self, histories: Sequence[Sequence[str]]) -> np.ndarray:
        self._check_fitted()
        return np.broadcast_to(self._counts, (len(histories), len(self._counts))).copy()

    def _params(self) -> dict[str, Any]:
        return {}

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"counts": self._counts}

    @classmethod
    def _restore(cls, params: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> Self:
        model = cls(**params)
        model._counts = np.asarray(arrays["counts"], dtype=np.float32)
        return model
