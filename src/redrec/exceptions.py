"""redrec's exceptions: one base class, a few children, mapped from outside errors at
one boundary (``redrec.store._errors``)::

    RedrecError
    ├── ConfigError          bad settings, missing optional dependency, bad mapping file
    ├── StoreUnavailable     Redis unreachable, wrong password, missing search/JSON
    ├── SchemaError          an index definition that cannot be built or does not match
    ├── NotFoundError        an unknown index, item, user, field or file
    └── InvalidInput         a bad vector, filter, event, query argument or input file

The CLI prints ``str(error)`` on one line and exits 1; the HTTP service maps each class
to one status code and one JSON error shape.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "InvalidInput",
    "NotFoundError",
    "RedrecError",
    "SchemaError",
    "StoreUnavailable",
]


class RedrecError(Exception):
    """Base class of every error redrec raises on purpose."""


class ConfigError(RedrecError):
    """Settings, mapping files or optional dependencies are wrong or missing."""


class StoreUnavailable(RedrecError):
    """Redis cannot be reached, refused our credentials, or lacks a needed capability."""


class SchemaError(RedrecError):
    """An index definition is invalid, or data does not fit an existing index."""


class NotFoundError(RedrecError):
    """Something named does not exist: an index, an item, a field, a file."""


class InvalidInput(RedrecError, ValueError):
    """Input that cannot be accepted: a bad vector, filter, event or argument."""
