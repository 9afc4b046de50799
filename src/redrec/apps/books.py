"""The books reference application: the ru402 sample, ready to ingest and query."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from redrec.catalog import Catalog, IngestReport, ingest
from redrec.store import Store

__all__ = ["BOOKS_DIR", "books_catalog", "ingest_books"]

BOOKS_DIR = Path(str(resources.files("redrec") / "data" / "books"))


def ingest_books(
    store: Store, *, recreate: bool = False, progress: bool = False
) -> IngestReport:
    """Load the 1,486 sample books into ``books_idx`` (JSON documents ``book:<id>``)."""
    return ingest(store, BOOKS_DIR / "mapping.yaml", BOOKS_DIR / "items",
                  recreate=recreate, progress=progress)


def books_catalog(store: Store) -> Catalog:
    return Catalog(store, BOOKS_DIR / "mapping.yaml")
