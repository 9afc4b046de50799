"""Context: time of day, day of week, named periods and location turned into boosts and
pre-filters. Pure functions over the request's context and the engine's rules."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from redrec.engine.config import ContextRule, EngineConfig, Period
from redrec.engine.events import parse_timestamp
from redrec.exceptions import InvalidInput

__all__ = ["Applied", "apply_context", "daypart", "in_period"]

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def daypart(hour: int) -> str:
    if 5 <= hour < 12:
        return "morning"
    if 12 <= hour < 17:
        return "afternoon"
    if 17 <= hour < 22:
        return "evening"
    return "night"


def in_period(period: Period, day: date) -> bool:
    def bound(text: str) -> date:
        try:
            if len(text) == 5:  # MM-DD recurs yearly
                return date(day.year, int(text[:2]), int(text[3:]))
            return date.fromisoformat(text)
        except ValueError:
            raise InvalidInput(f"bad period bound {text!r}: use MM-DD or YYYY-MM-DD") from None

    start, end = bound(period.start), bound(period.end)
    if len(period.start) == 5 and start > end:  # wraps the new year (12-20 .. 01-06)
        return day >= start or day <= end
    return start <= day <= end


@dataclass
class Applied:
    """What the context adds to a request."""

    now: float
    filters: list[dict[str, Any]] = field(default_factory=list)
    boosts: list[ContextRule] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)


def apply_context(config: EngineConfig, context: dict[str, Any] | None, now: float) -> Applied:
    ctx = dict(context or {})
    if not isinstance(context or {}, dict):
        raise InvalidInput("context must be an object")
    # a request may ask about any time (what would we show during next week's sale?)
    ts = parse_timestamp(ctx["time"], now=math.inf) if "time" in ctx else now
    offset_h = float(ctx.get("utc_offset_hours", 0))
    local = datetime.fromtimestamp(ts + offset_h * 3600, tz=UTC)
    facts = {
        "daypart": daypart(local.hour),
        "weekday": _WEEKDAYS[local.weekday()],
        "weekend": "weekend" if local.weekday() >= 5 else "weekday",
    }
    active = [name for name, p in config.periods.items() if in_period(p, local.date())]
    if "period" in ctx:
        if ctx["period"] not in config.periods:
            raise InvalidInput(f"unknown period {ctx['period']!r}")
        active.append(str(ctx["period"]))
    out = Applied(now=ts, facts=facts)
    for rule in config.rules:
        if _matches(rule.when, facts, active, ctx):
            if rule.filter:
                out.filters.append(rule.filter)
            if rule.field and rule.values:
                out.boosts.append(rule)
    loc = ctx.get("location")
    if loc is not None:
        if not config.geo_field:
            raise InvalidInput("this catalogue has no location field for 'near me'")
        if not isinstance(loc, dict) or not {"lon", "lat"} <= set(loc):
            raise InvalidInput("context.location needs lon and lat")
        out.filters.append({config.geo_field: {
            "lon": loc["lon"], "lat": loc["lat"],
            "radius": ctx.get("radius_km", config.near_me_km), "unit": "km"}})
    return out


def _matches(when: dict[str, Any], facts: dict[str, str], periods: list[str],
             ctx: dict[str, Any]) -> bool:
    for key, want in when.items():
        wants = want if isinstance(want, list) else [want]
        if key == "period":
            if not set(wants) & set(periods):
                return False
        elif key == "weekday":
            if facts["weekday"] not in wants and facts["weekend"] not in wants:
                return False
        elif key == "daypart":
            if facts["daypart"] not in wants:
                return False
        elif str(ctx.get(key)) not in {str(w) for w in wants}:
            return False
    return True
