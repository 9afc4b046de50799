"""redrec: an online recommendation engine on Redis vector similarity search."""

from redrec.config import Settings
from redrec.exceptions import (
    ConfigError,
    InvalidInput,
    NotFoundError,
    RedrecError,
    SchemaError,
    StoreUnavailable,
)
from redrec.runtime import connect
from redrec.store import Hit, IndexSpec, Store, VectorIndex

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Hit",
    "IndexSpec",
    "InvalidInput",
    "NotFoundError",
    "RedrecError",
    "SchemaError",
    "Settings",
    "Store",
    "StoreUnavailable",
    "VectorIndex",
    "__version__",
    "connect",
]
