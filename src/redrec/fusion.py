"""Fusing several ranked lists into one: pure functions.

Reciprocal rank fusion (RRF, Cormack et al. 2009) needs no score calibration, which is
why it is the default when lists come from different vector spaces; weighted score
fusion is there for lists whose scores are comparable similarities.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["rrf", "weighted"]


def rrf(
    lists: Mapping[str, Sequence[str]],
    *,
    weights: Mapping[str, float] | None = None,
    k: int = 60,
) -> list[tuple[str, float, list[str]]]:
    """Fuse ranked id lists; returns ``(id, score, sources)`` best first.

    ``score = sum_w w / (k + rank)`` with ranks from 1; ``sources`` names the lists
    each id came from (the reasons). Ties break by first appearance.
    """
    scores: dict[str, float] = {}
    sources: dict[str, list[str]] = {}
    for name, ids in lists.items():
        w = 1.0 if weights is None else float(weights.get(name, 1.0))
        for rank, item in enumerate(ids, 1):
            scores[item] = scores.get(item, 0.0) + w / (k + rank)
            sources.setdefault(item, []).append(name)
    order = sorted(scores, key=lambda i: -scores[i])
    return [(i, scores[i], sources[i]) for i in order]


def weighted(
    lists: Mapping[str, Mapping[str, float]],
    *,
    weights: Mapping[str, float] | None = None,
) -> list[tuple[str, float, list[str]]]:
    """Fuse ``{list: {id: similarity}}`` by a weighted sum (missing counts as 0)."""
    scores: dict[str, float] = {}
    sources: dict[str, list[str]] = {}
    for name, items in lists.items():
        w = 1.0 if weights is None else float(weights.get(name, 1.0))
        for item, sim in items.items():
            scores[item] = scores.get(item, 0.0) + w * float(sim)
            sources.setdefault(item, []).append(name)
    order = sorted(scores, key=lambda i: -scores[i])
    return [(i, scores[i], sources[i]) for i in order]
