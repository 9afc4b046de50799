"""Building an Engine for a stored catalogue, with its configuration kept in Redis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from redrec.catalog.registry import find_catalog
from redrec.config import read_yaml
from redrec.engine.config import EngineConfig
from redrec.engine.engine import Engine
from redrec.exceptions import ConfigError
from redrec.store import Store

__all__ = ["load_config", "open_engine"]


def load_config(value: EngineConfig | dict[str, Any] | str | Path | None) -> EngineConfig:
    if value is None:
        return EngineConfig()
    if isinstance(value, EngineConfig):
        return value
    if isinstance(value, str | Path):
        value = read_yaml(value, "engine config") or {}
    try:
        return EngineConfig.model_validate(value)
    except ValidationError as exc:
        errs = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
        raise ConfigError(f"invalid engine config: {errs}") from None


def open_engine(store: Store, catalog: str | None = None,
                config: EngineConfig | dict[str, Any] | str | Path | None = None) -> Engine:
    """The engine over a stored catalogue. A config given here is saved for that
    catalogue; without one, the saved config (or the defaults) is used."""
    cat = find_catalog(store, catalog)
    if config is not None:
        cfg = load_config(config)
        store.put_meta("engine", cat.mapping.index, cfg.model_dump(mode="json"))
    else:
        saved = store.get_meta("engine", cat.mapping.index)
        cfg = load_config(saved) if saved else _guess(cat.mapping.fields)
    return Engine(store, cat, cfg)


def _guess(fields: dict[str, Any]) -> EngineConfig:
    """Defaults for a catalogue without a saved config: its category-like tag field."""
    category = next((n for n in ("category", "categories", "genres", "genre")
                     if n in fields and fields[n].type == "tag"), None)
    geo = next((n for n, f in fields.items() if f.type == "geo"), None)
    return EngineConfig(category_field=category, geo_field=geo)
