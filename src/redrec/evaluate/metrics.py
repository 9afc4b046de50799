"""Ranking metrics for one held-out item per case, and the two evaluation protocols.

Metrics are computed from the 0-based rank of the target (0 = first). Ties count against
the target (a model that scores everything equal does not get a free hit), and a target
that cannot be ranked (unknown to the model, or excluded because it was already seen)
is a miss with rank = catalogue size.

Protocols:

* ``full``: the target is ranked against the whole catalogue. With ``exclude_seen`` the
  user's history is removed from the ranking first, as serving does ("what a user bought
  is never recommended back").
* ``sampled``: the target is ranked against 100 items drawn uniformly from the catalogue
  among those the user never interacted with (seeded, drawn once and shared by models);
  a miss there has rank 101.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Protocol

import numpy as np

from redrec.evaluate.split import EvalCase
from redrec.exceptions import InvalidInput

__all__ = [
    "Scorer",
    "evaluate",
    "hit_rate",
    "mrr",
    "ndcg",
    "rank_of_target",
    "recall",
    "sample_negatives",
]


class Scorer(Protocol):
    """What evaluation needs from a model: its item ids and batch scoring from histories."""

    @property
    def item_ids(self) -> list[str]: ...

    def score(self, histories: Sequence[Sequence[str]]) -> np.ndarray: ...


def rank_of_target(scores: np.ndarray, target: np.ndarray) -> np.ndarray:
    """0-based rank of ``scores[r, target[r]]`` in each row; ties count against the target.

    A negative ``target`` or a target scored ``-inf`` (excluded) gets rank ``n_columns``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    target = np.asarray(target, dtype=np.int64)
    if scores.ndim != 2 or target.shape != (scores.shape[0],):
        raise InvalidInput("scores must be (n, m) and target (n,)")
    rows = np.arange(len(target))
    valid = target >= 0
    t_score = np.where(valid, scores[rows, np.where(valid, target, 0)], -np.inf)
    ahead = (scores >= t_score[:, None]).sum(axis=1) - 1
    miss = ~valid | ~np.isfinite(t_score)
    return np.where(miss, scores.shape[1], ahead)


def hit_rate(ranks: np.ndarray, k: int) -> float:
    """HR@k: share of cases whose target is in the top ``k``."""
    ranks = np.asarray(ranks)
    return float(np.mean(ranks < k)) if len(ranks) else 0.0


def ndcg(ranks: np.ndarray, k: int) -> float:
    """NDCG@k with one relevant item: ``1 / log2(rank + 2)`` inside the top ``k``, else 0."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if not len(ranks):
        return 0.0
    gains = np.where(ranks < k, 1.0 / np.log2(np.minimum(ranks, k) + 2.0), 0.0)
    return float(np.mean(gains))


def mrr(ranks: np.ndarray) -> float:
    """Mean reciprocal rank over the whole ranking (not cut at k)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    return float(np.mean(1.0 / (ranks + 1.0))) if len(ranks) else 0.0


def recall(ranked: Sequence[Sequence[str]], relevant: Sequence[Collection[str]], k: int) -> float:
    """Recall@k from ranked lists: found relevant items over all relevant, averaged per case.

    With one held-out item per case this equals HR@k; it is kept general for logs where a
    user has several held-out items.
    """
    if len(ranked) != len(relevant):
        raise InvalidInput("ranked and relevant must have the same length")
    pairs = zip(ranked, relevant, strict=True)
    values = [len(set(items[:k]) & set(rel)) / len(rel) for items, rel in pairs if rel]
    return float(np.mean(values)) if values else 0.0


def sample_negatives(
    cases: Sequence[EvalCase],
    sequences: Mapping[str, Sequence[str]],
    catalogue: Sequence[str],
    *,
    n: int = 100,
    seed: int = 0,
) -> np.ndarray:
    """Indices into ``catalogue`` of ``n`` items per case that the user never interacted with.

    Uniform without replacement; rows are padded with ``-1`` when a user has seen almost
    the whole catalogue. Drawn from one seeded generator so every model gets the same set.
    """
    rng = np.random.default_rng(seed)
    index = {item: i for i, item in enumerate(catalogue)}
    out = np.full((len(cases), n), -1, dtype=np.int64)
    size = len(catalogue)
    for row, case in enumerate(cases):
        seen = {index[i] for i in sequences.get(case.user, case.history) if i in index}
        seen.update(index[i] for i in (*case.history, case.target) if i in index)
        if size - len(seen) <= 2 * n:
            pool = np.setdiff1d(np.arange(size), np.fromiter(seen, dtype=np.int64))
            picked = rng.permutation(pool)[:n]
        else:
            chosen: dict[int, None] = {}
            while len(chosen) < n:
                for j in rng.integers(0, size, 2 * n).tolist():
                    if j not in seen:
                        chosen.setdefault(j)
            picked = np.fromiter(chosen, dtype=np.int64)[:n]
        out[row, : len(picked)] = picked
    return out


def evaluate(
    model: Scorer,
    cases: Sequence[EvalCase],
    *,
    catalogue: Sequence[str],
    k: int = 10,
    protocol: str = "full",
    negatives: np.ndarray | None = None,
    exclude_seen: bool = True,
    batch_size: int = 512,
) -> dict[str, float]:
    """HR@k, NDCG@k, MRR and Recall@k of ``model`` on ``cases`` under one protocol.

    Uses only the model's public ``score`` over histories, the path serving takes.
    ``protocol="sampled"`` needs ``negatives`` from :func:`sample_negatives` over the same
    ``catalogue``. ``exclude_seen`` removes history items from the ranking (as serving
    does); a target already in the history is then a miss.
    """
    if protocol not in ("full", "sampled"):
        raise InvalidInput(f"protocol must be 'full' or 'sampled', got {protocol!r}")
    if protocol == "sampled" and (negatives is None or len(negatives) != len(cases)):
        raise InvalidInput("the sampled protocol needs one row of negatives per case")
    column = {item: i for i, item in enumerate(model.item_ids)}
    # Catalogue position -> model column (-1 when the model never saw the item).
    to_model = np.array([column.get(item, -1) for item in catalogue], dtype=np.int64)
    cat_index = {item: i for i, item in enumerate(catalogue)}
    ranks: list[np.ndarray] = []
    for start in range(0, len(cases), batch_size):
        batch = cases[start : start + batch_size]
        raw = np.asarray(model.score([c.history for c in batch]), dtype=np.float64)
        # Scores over the catalogue: unknown items can never be recommended.
        scores = np.where(to_model >= 0, raw[:, np.maximum(to_model, 0)], -np.inf)
        target = np.array([cat_index.get(c.target, -1) for c in batch], dtype=np.int64)
        if exclude_seen:
            for r, case in enumerate(batch):
                seen = [cat_index[i] for i in case.history if i in cat_index]
                scores[r, seen] = -np.inf
        if protocol == "full":
            ranks.append(rank_of_target(scores, target))
        else:
            assert negatives is not None
            neg = negatives[start : start + len(batch)]
            cand = np.concatenate([np.maximum(target, 0)[:, None], np.maximum(neg, 0)], axis=1)
            sub = np.take_along_axis(scores, cand, axis=1)
            sub[:, 1:][neg < 0] = -np.inf
            sub[target < 0, 0] = -np.inf
            ranks.append(rank_of_target(sub, np.zeros(len(batch), dtype=np.int64)))
    all_ranks = np.concatenate(ranks) if ranks else np.zeros(0, dtype=np.int64)
    result = {
        f"HR@{k}": hit_rate(all_ranks, k),
        f"NDCG@{k}": ndcg(all_ranks, k),
        "MRR": mrr(all_ranks),
    }
    if protocol == "full":
        # One held-out item per case: the share of held-out items found in the top k is
        # the hit indicator, so Recall@k equals HR@k here (kept for logs with more).
        result[f"Recall@{k}"] = result[f"HR@{k}"]
    return result
