"""RediSearch query strings for vector search: pure functions, unit-tested by output.

RedisVL's query classes would render the same strings; building them here keeps the
whole FT.SEARCH call in our hands (raw replies with binary vectors, one round trip, exact
over-fetch for exclusions) and keeps the hot path free of per-query pydantic work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["DISTANCE", "SearchArgs", "knn_args", "range_args"]

# Name under which the distance is yielded; chosen not to clash with user fields.
DISTANCE = "__distance"


@dataclass(frozen=True)
class SearchArgs:
    """Everything after ``FT.SEARCH <index>``."""

    query: str
    params: dict[str, bytes | int | float]
    return_fields: Sequence[str | tuple[str, str]] | None
    offset: int
    num: int
    # Vector queries sort by distance; a plain search may sort by a field or not at all.
    sort_by: str | None = DISTANCE
    descending: bool = False
    # Restrict the search to these document keys (``INKEYS``): checking a few hundred
    # candidates against a filter this way costs ~2 us each, far less than a filtered KNN.
    keys: Sequence[str] = ()

    def command(self, index: str) -> list[bytes | str | int | float]:
        args: list[bytes | str | int | float] = ["FT.SEARCH", index, self.query]
        if self.keys:
            args += ["INKEYS", len(self.keys), *self.keys]
        if self.return_fields is not None:
            tokens: list[str] = []
            for f in self.return_fields:  # a name, or (JSON path, name) for "path AS name"
                tokens += [f[0], "AS", f[1]] if isinstance(f, tuple) else [f]
            tokens += [DISTANCE] if self.params else []
            args += ["RETURN", len(tokens), *tokens] if tokens else ["NOCONTENT"]
        if self.sort_by:
            args += ["SORTBY", self.sort_by, "DESC" if self.descending else "ASC"]
        args += ["LIMIT", self.offset, self.num]
        if self.params:
            args += ["PARAMS", 2 * len(self.params)]
            for key, value in self.params.items():
                args += [key, value]
        args += ["DIALECT", 2]
        return args


def _prefilter(filter_str: str | None) -> str:
    if not filter_str or filter_str.strip() in ("", "*"):
        return "*"
    return f"({filter_str})"


def knn_args(
    field: str,
    blob: bytes,
    k: int,
    *,
    filter_str: str | None = None,
    return_fields: Sequence[str | tuple[str, str]] | None = None,
    offset: int = 0,
    num: int | None = None,
    ef_runtime: int | None = None,
    hybrid_policy: str | None = None,
) -> SearchArgs:
    """``<filter>=>[KNN $K @field $vec EF_RUNTIME $EF AS __distance]``.

    The filter is a pre-filter: RediSearch picks batches or brute force by its
    selectivity, so k results come back whenever k documents pass it.
    """
    params: dict[str, bytes | int | float] = {"vec": blob, "K": k}
    ef = ""
    if ef_runtime is not None:
        params["EF"] = ef_runtime
        ef = " EF_RUNTIME $EF"
    if hybrid_policy is not None and filter_str and filter_str.strip() not in ("", "*"):
        ef += f" HYBRID_POLICY {hybrid_policy}"
    query = f"{_prefilter(filter_str)}=>[KNN $K @{field} $vec{ef} AS {DISTANCE}]"
    return SearchArgs(query, params, return_fields, offset, k if num is None else num)


def range_args(
    field: str,
    blob: bytes,
    radius: float,
    *,
    filter_str: str | None = None,
    return_fields: Sequence[str | tuple[str, str]] | None = None,
    offset: int = 0,
    num: int = 10,
    epsilon: float | None = None,
) -> SearchArgs:
    """``@field:[VECTOR_RANGE $radius $vec]=>{$YIELD_DISTANCE_AS: __distance}`` (+ filter)."""
    params: dict[str, bytes | int | float] = {"vec": blob, "radius": radius}
    attrs = f"$YIELD_DISTANCE_AS: {DISTANCE}"
    if epsilon is not None:
        params["eps"] = epsilon
        attrs = f"$EPSILON: $eps; {attrs}"
    clause = f"@{field}:[VECTOR_RANGE $radius $vec]=>{{{attrs}}}"
    if filter_str and filter_str.strip() not in ("", "*"):
        clause = f"{clause} ({filter_str})"
    return SearchArgs(clause, params, return_fields, offset, num)
