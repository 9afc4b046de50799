"""Catalogues known to a Redis: their mappings are kept in Redis at ingest time, so any
process (CLI, service) can find a catalogue by its index name or by an item's key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from redrec.catalog.catalog import Catalog
from redrec.catalog.mapping import Mapping
from redrec.exceptions import NotFoundError
from redrec.store import Store

__all__ = ["find_catalog", "register", "resolve_item"]

_KIND = "catalog"


def register(store: Store, mapping: Mapping | dict[str, Any] | str | Path) -> Mapping:
    m = Mapping.load(mapping)
    store.put_meta(_KIND, m.index, m.model_dump(mode="json"))
    return m


def find_catalog(store: Store, name: str | None = None) -> Catalog:
    """The catalogue named ``name`` (its index), or the one ingested last."""
    names = store.list_meta(_KIND)
    if not names:
        raise NotFoundError("no catalogue has been ingested yet (try `redrec ingest books`)")
    if name is None:
        name = names[-1]
    data = store.get_meta(_KIND, name)
    if data is None:
        raise NotFoundError(f"no catalogue {name!r} (known: {', '.join(sorted(names))})")
    return Catalog(store, Mapping.load(data))


def resolve_item(store: Store, ref: str, catalog: str | None = None) -> tuple[Catalog, str]:
    """``book:26415`` -> (the books catalogue, "26415"); a bare id uses ``catalog``."""
    if catalog is None:
        for name in reversed(store.list_meta(_KIND)):
            data = store.get_meta(_KIND, name)
            if data is None:
                continue
            m = Mapping.load(data)
            if ref.startswith(m.key_prefix):
                return Catalog(store, m), ref[len(m.key_prefix):]
    cat = find_catalog(store, catalog)
    prefix = cat.mapping.key_prefix
    return cat, ref[len(prefix):] if ref.startswith(prefix) else ref
