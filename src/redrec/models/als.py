"""Implicit-feedback matrix factorisation (ALS, Hu, Koren & Volinsky 2008) via ``implicit``.

Item factors are the item vectors served from Redis. Users are not stored: a user's
vector is recomputed from the item factors and the user's current items with the ALS
closed form (what ``implicit``'s ``recalculate_user`` does), so one new action changes
it at once and serving needs only numpy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Self

import numpy as np

from redrec.exceptions import ConfigError, InvalidInput
from redrec.models.base import VectorRecommender, index_items
from redrec.models.itemknn import history_matrix

__all__ = ["ALS"]


class ALS(VectorRecommender):
    """Weighted ALS on binary interactions with confidence ``alpha`` per observed item.

    Defaults were chosen on ML-100k's validation items (see ``benchmarks/learning``):
    64 factors tie 128 there at half the vector size, and strong regularisation with
    ``alpha=1`` (every cell weighted alike) beat confidence weighting.
    """

    kind = "als"

    def __init__(
        self,
        *,
        factors: int = 64,
        regularization: float = 10.0,
        alpha: float = 1.0,
        iterations: int = 15,
        seed: int = 0,
        num_threads: int = 0,
    ):
        super().__init__()
        if factors < 1 or iterations < 1 or alpha <= 0 or regularization < 0:
            raise InvalidInput("factors and iterations must be >= 1, alpha > 0, regularization >= 0")
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.seed = seed
        self.num_threads = num_threads
        self._items = np.zeros((0, factors), dtype=np.float32)
        self._gram = np.zeros((factors, factors), dtype=np.float64)

    def fit(self, sequences: Mapping[str, Sequence[str]], *, show_progress: bool = False) -> Self:
        try:
            from implicit.cpu.als import AlternatingLeastSquares
            from threadpoolctl import threadpool_limits
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ConfigError("ALS needs the 'train' extra: pip install 'redrec[train]'") from exc
        item_ids, index = index_items(sequences)
        users = history_matrix([[index[i] for i in s] for s in sequences.values()], len(item_ids))
        # implicit runs its own threads; BLAS threads on top of them only contend.
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha,
                iterations=self.iterations,
                random_state=self.seed,
                num_threads=self.num_threads,
                dtype=np.float32,
            )
            model.fit(users, show_progress=show_progress)
        self._set_items(item_ids)
        self._set_factors(np.asarray(model.item_factors, dtype=np.float32))
        return self

    def item_vectors(self) -> np.ndarray:
        return self._items

    def user_vector(self, history: Sequence[str]) -> np.ndarray:
        """The ALS least-squares user factor for ``history`` against fixed item factors.

        Solves ``(YᵀY + λI + Σ (c-1) y yᵀ) x = Σ c y`` over the history's distinct items
        with confidence ``c = alpha``; an empty or all-unknown history gives zeros.
        """
        self._check_fitted()
        rows = np.unique(np.asarray(self._rows(history), dtype=np.int64))
        if not len(rows):
            return np.zeros(self.factors, dtype=np.float32)
        y = self._items[rows].astype(np.float64)
        a = self._gram + (self.alpha - 1.0) * (y.T @ y)
        b = self.alpha * y.sum(axis=0)
        return np.linalg.solve(a, b).astype(np.float32)

    def _set_factors(self, items: np.ndarray) -> None:
        self._items = np.ascontiguousarray(items, dtype=np.float32)
        y = self._items.astype(np.float64)
        self._gram = y.T @ y + self.regularization * np.eye(y.shape[1])

    def _params(self) -> dict[str, Any]:
        return {
            "factors": self.factors,
            "regularization": self.regularization,
            "alpha": self.alpha,
            "iterations": self.iterations,
            "seed": self.seed,
            "num_threads": self.num_threads,
        }

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"item_factors": self._items}

    @classmethod
    def _restore(cls, params: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> Self:
        model = cls(**params)
        model._set_factors(arrays["item_factors"])
        return model
