"""Item-based k-nearest-neighbour collaborative filtering (cosine over co-occurrence).

An item's score for a user is the summed similarity to the items in the user's history,
each item keeping only its ``neighbours`` most similar items. Strong on small catalogues
and a sanity check for the learned models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Self

import numpy as np
import scipy.sparse as sp

from redrec.exceptions import InvalidInput
from redrec.models.base import Recommender, ScoredItem, index_items

__all__ = ["ItemKNN"]


def history_matrix(histories: Sequence[Sequence[int]], n_items: int) -> sp.csr_matrix:
    """Binary ``(len(histories), n_items)`` matrix of row numbers (duplicates count once)."""
    indptr = np.zeros(len(histories) + 1, dtype=np.int64)
    cols = [np.unique(np.asarray(h, dtype=np.int64)) for h in histories]
    indptr[1:] = np.cumsum([len(c) for c in cols])
    indices = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    data = np.ones(len(indices), dtype=np.float32)
    return sp.csr_matrix((data, indices, indptr), shape=(len(histories), n_items))


def _cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)


class ItemKNN(Recommender):
    """Cosine item-item similarity, top ``neighbours`` per item, ``shrink`` damping rare pairs."""

    kind = "itemknn"

    def __init__(self, *, neighbours: int = 100, shrink: float = 10.0, block: int = 512):
        super().__init__()
        if neighbours < 1:
            raise InvalidInput(f"neighbours must be >= 1, got {neighbours}")
        self.neighbours = neighbours
        self.shrink = shrink
        self.block = block
        self._sim = sp.csr_matrix((0, 0), dtype=np.float32)

    def fit(self, sequences: Mapping[str, Sequence[str]], *, show_progress: bool = False) -> Self:
        item_ids, index = index_items(sequences)
        n = len(item_ids)
        users = history_matrix([[index[i] for i in s] for s in sequences.values()], n)
        items = users.T.tocsr()
        norms = np.sqrt(np.asarray(items.sum(axis=1)).ravel()).astype(np.float32)
        k = min(self.neighbours, n - 1) if n > 1 else 0
        rows, cols, vals = [], [], []
        # Blocks of rows keep memory at block x n_items, whatever the catalogue size.
        for start in range(0, n, self.block):
            stop = min(start + self.block, n)
            sim = (items[start:stop] @ users).toarray()  # co-occurrence counts, float32
            sim /= np.outer(norms[start:stop], norms) + np.float32(self.shrink + 1e-9)
            sim[np.arange(stop - start), np.arange(start, stop)] = 0.0
            if k == 0:
                continue
            top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
            top_vals = np.take_along_axis(sim, top, axis=1)
            keep = top_vals > 0
            rows.append(np.repeat(np.arange(start, stop), k)[keep.ravel()])
            cols.append(top[keep])
            vals.append(top_vals[keep])
        self._sim = sp.csr_matrix(
            (_cat(vals, np.float32), (_cat(rows, np.int64), _cat(cols, np.int64))), shape=(n, n)
        )
        self._set_items(item_ids)
        return self

    def score(self, histories: Sequence[Sequence[str]]) -> np.ndarray:
        self._check_fitted()
        hist = history_matrix([self._rows(h) for h in histories], len(self._item_ids))
        return np.asarray((hist @ self._sim).toarray(), dtype=np.float32)

    def similar_items(self, item_id: str, k: int = 10) -> list[ScoredItem]:
        """The ``k`` nearest neighbours of one item (empty for an unknown item)."""
        if item_id not in self._index:
            return []
        row = self._sim.getrow(self._index[item_id])
        order = np.argsort(-row.data, kind="stable")[:k]
        return [ScoredItem(self._item_ids[row.indices[j]], float(row.data[j])) for j in order]

    def _params(self) -> dict[str, Any]:
        return {"neighbours": self.neighbours, "shrink": self.shrink, "block": self.block}

    def _arrays(self) -> dict[str, np.ndarray]:
        sim = self._sim.tocsr()
        return {"data": sim.data, "indices": sim.indices, "indptr": sim.indptr}

    @classmethod
    def _restore(cls, params: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> Self:
        model = cls(**params)
        n = len(arrays["indptr"]) - 1
        model._sim = sp.csr_matrix((arrays["data"], arrays["indices"], arrays["indptr"]), shape=(n, n))
        return model
