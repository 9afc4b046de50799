"""The engine's knobs, with the defaults it ships with."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ContextRule", "EngineConfig", "Period"]


class Period(BaseModel):
    """A named period (a sale, a season): ``MM-DD`` bounds recur every year; full ISO
    dates (``2026-11-27``) happen once. Inclusive on both ends."""

    model_config = ConfigDict(extra="forbid")
    start: str
    end: str


class ContextRule(BaseModel):
    """When the request's context matches ``when``, boost or restrict items.

    ``when`` keys: ``daypart`` (morning/afternoon/evening/night), ``weekday``
    (mon..sun or weekend/weekday), ``period`` (a name from ``periods``), or any
    context key (``device: mobile``). ``boost`` multiplies the score of items whose
    ``field`` holds one of ``values``; ``filter`` adds a pre-filter.
    """

    model_config = ConfigDict(extra="forbid")
    name: str
    when: dict[str, Any]
    field: str | None = None
    values: list[str] = Field(default_factory=list)
    boost: float = 1.5
    filter: dict[str, Any] | None = None


class EngineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # How much each event moves the session vector (and affinities, popularity).
    weights: dict[str, float] = Field(default_factory=lambda: {
        "view": 1.0, "click": 2.0, "add_to_cart": 3.0, "purchase": 5.0, "rating": 0.0,
        "dislike": -2.0,
    })
    # Ratings move the vector by (rating - rating_centre) * rating_scale.
    rating_centre: float = 3.0
    rating_scale: float = 1.5
    # Which event types exclude the item from recommendations, and for how long
    # (seconds; null = forever).
    exclude: dict[str, float | None] = Field(default_factory=lambda: {
        "purchase": None, "dislike": 30 * 86400.0,
    })
    recent_cap: int = Field(default=50, ge=1, le=1000)
    dedupe_window: int = Field(default=5000, ge=10)
    session_half_life_s: float = Field(default=3600.0, gt=0)
    popularity_half_life_s: float = Field(default=7 * 86400.0, gt=0)
    # Candidate lists and how they are fused.
    fusion: Literal["rrf", "weighted"] = "rrf"
    # The tower dominates when a model is live. Chosen on ML-100k's validation items
    # (benchmarks/learning/tune_hybrid.py; only the ratio to the content lists matters
    # under RRF): tower:session 8 -> valid NDCG@10 0.1157, 16 -> 0.1193, 32 -> 0.1214,
    # 64 -> 0.1205 (tower alone 0.1206). Without a live model the content lists keep
    # their relative weights.
    list_weights: dict[str, float] = Field(default_factory=lambda: {
        "tower": 32.0, "session": 1.0, "recent": 0.8, "people": 0.6, "popular": 0.3,
    })
    # Item-to-item lists: each item's unfiltered nearest neighbours, this many, cached in
    # Redis per catalogue generation (any write to the catalogue retires them) for this
    # long; a request checks them against its filters in one INKEYS search.
    item_list_depth: int = Field(default=100, ge=1, le=1000)
    item_list_ttl_s: int = Field(default=3600, ge=1)
    # With filters, up to this many excluded items go into the vector queries' filter
    # (more are left out by over-fetching); see Engine._prefilter.
    exclude_in_filter_max: int = Field(default=64, ge=0, le=1000)
    # With filters, the candidate lists are drawn without them (cached item-to-item
    # lists and "people like you" this deep, popular items), pooled, and checked in one
    # INKEYS search that also yields the session list (the pool ranked by the session
    # vector); the pre-filtered KNN (~1.5-2 ms on 20k items in RediSearch 2.10, mostly
    # spent evaluating the filter, plus the selectivity estimate) runs only when fewer
    # than k candidates pass. Popular items come from each category the filter asks for
    # (the head of each, after exclusions), else from the overall list. On the engine
    # benchmark (random 5-of-20 category + stock + price filters) 5 per category left
    # 6.4% of requests short of k, needing the pre-filtered KNN (their p99 then ~11 ms);
    # 8 left 0.29%, 10 none.
    filtered_pool_depth: int = Field(default=20, ge=1, le=500)
    filtered_popular_depth: int = Field(default=150, ge=0, le=1000)
    filtered_category_popular_depth: int = Field(default=10, ge=0, le=1000)
    recent_items: int = Field(default=2, ge=0, le=20)  # last items used for item-based lists
    neighbours: int = Field(default=20, ge=0, le=200)  # users for "people like you"
    cold_start_events: int = 3  # below this many events, popularity weighs more
    affinity_boost: float = 0.3  # max multiplicative boost from category affinity
    category_field: str | None = None  # the catalogue's category TAG field
    geo_field: str | None = None  # the catalogue's GEO field, for "near me"
    near_me_km: float = 10.0
    periods: dict[str, Period] = Field(default_factory=dict)
    rules: list[ContextRule] = Field(default_factory=list)
