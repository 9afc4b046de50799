"""Every Redis key name redrec writes is built here.

Item documents live under an index's prefix (``book:26415``). Per-user keys share the
hash tag ``{<user>}`` so that all of one user's keys fall in one cluster slot and a
MULTI/EXEC or Lua script over them runs on a Redis Cluster unchanged.
"""

from __future__ import annotations

__all__ = ["doc_id", "doc_key", "meta_key", "normalise_prefix", "user_key"]


def normalise_prefix(prefix: str) -> str:
    """``book`` and ``book:`` both become ``book:`` so keys never run into each other."""
    if not prefix:
        return ""
    return prefix if prefix.endswith(":") else prefix + ":"


def doc_key(prefix: str, item_id: str) -> str:
    return f"{prefix}{item_id}"


def doc_id(prefix: str, key: str) -> str:
    """The id part of a document key (the key itself if it lacks the prefix)."""
    return key[len(prefix):] if prefix and key.startswith(prefix) else key


def user_key(namespace: str, user_id: str, part: str) -> str:
    """``<namespace>:user:{<user_id>}:<part>``: all of a user's keys share one slot."""
    return f"{namespace}:user:{{{user_id}}}:{part}"


def meta_key(kind: str, name: str, namespace: str = "redrec") -> str:
    """Where redrec keeps small JSON records about itself (catalog mappings, models)."""
    return f"{namespace}:meta:{kind}:{name}"
