"""The online engine: events, user state, real-time recommendations."""

from redrec.engine.config import ContextRule, EngineConfig, Period
from redrec.engine.engine import Engine, Recommendation
from redrec.engine.events import EVENT_TYPES, Event

__all__ = ["EVENT_TYPES", "ContextRule", "Engine", "EngineConfig", "Event", "Period",
           "Recommendation"]
