"""The store layer: the only code that talks to Redis (keys, schemas, documents, search)."""

from redrec.store.filters import Filter, compile_filter
from redrec.store.index import Hit, VectorIndex
from redrec.store.schema import IndexSpec
from redrec.store.store import Store

__all__ = ["Filter", "Hit", "IndexSpec", "Store", "VectorIndex", "compile_filter"]
