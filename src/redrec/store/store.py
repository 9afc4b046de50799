"""The Store: one Redis connection and the indexes on it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
import redis.exceptions as rex
from redisvl.index import SearchIndex
from redisvl.schema import IndexSchema

from redrec.exceptions import SchemaError
from redrec.store._errors import translate, translate_errors
from redrec.store.connection import check_capabilities, connect_url
from redrec.store.index import VectorIndex
from redrec.store.schema import IndexSpec

__all__ = ["Store"]


class Store:
    """Everything redrec keeps in Redis goes through a Store."""

    def __init__(self, client: redis.Redis, *, ef_runtime: int | None = None) -> None:
        self.client = client
        self.ef_runtime = ef_runtime
        self._specs: dict[str, IndexSpec] = {}
        self._on_close: list[Callable[[], None]] = []

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        ef_runtime: int | None = None,
        connect_timeout: float = 10.0,
        socket_timeout: float = 30.0,
    ) -> Store:
        """Connect to ``url`` and check that search and JSON are available."""
        client = connect_url(url, connect_timeout=connect_timeout, socket_timeout=socket_timeout)
        return cls(client, ef_runtime=ef_runtime)

    def check(self) -> None:
        check_capabilities(self.client)

    def on_close(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` after the connection closes (stops an embedded server)."""
        self._on_close.append(callback)

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            callbacks, self._on_close = self._on_close, []
            for callback in reversed(callbacks):
                callback()

    # -- indexes -------------------------------------------------------------------------

    def index(self, spec: IndexSpec | dict[str, Any] | str) -> VectorIndex:
        """An index handle: from a definition, or by the name of an existing index."""
        if isinstance(spec, str) and not spec.endswith((".yaml", ".yml")):
            return VectorIndex(self.client, self._spec_by_name(spec), ef_runtime=self.ef_runtime)
        return VectorIndex(self.client, IndexSpec.coerce(spec), ef_runtime=self.ef_runtime)

    def create_index(self, spec: IndexSpec | dict[str, Any] | str, *, overwrite: bool = False) -> VectorIndex:
        index = VectorIndex(self.client, IndexSpec.coerce(spec), ef_runtime=self.ef_runtime)
        index.create(overwrite=overwrite)
        self._specs[index.name] = index.spec
        return index

    def drop_index(self, name: str, *, delete_documents: bool = False) -> None:
        self.index(name).drop(delete_documents=delete_documents)
        self._specs.pop(name, None)

    def list_indexes(self) -> list[str]:
        with translate_errors():
            names = self.client.execute_command("FT._LIST")
        return sorted(n.decode() if isinstance(n, bytes) else str(n) for n in names)

    def _spec_by_name(self, name: str) -> IndexSpec:
        if name in self._specs:
            return self._specs[name]
        try:
            self.client.execute_command("FT.INFO", name)
        except rex.RedisError as exc:
            raise translate(exc, index=name) from exc
        try:
            schema: IndexSchema = SearchIndex.from_existing(name, redis_client=self.client).schema
        except Exception as exc:  # RedisVL raises its own classes for odd definitions
            raise SchemaError(f"cannot read the definition of index {name!r}: {exc}") from exc
        spec = IndexSpec(schema)
        self._specs[name] = spec
        return spec

    def forget(self, name: str) -> None:
        """Drop the cached definition of ``name`` (after it was changed elsewhere)."""
        self._specs.pop(name, None)

    # -- server ----------------------------------------------------------------------

    def server_info(self) -> dict[str, Any]:
        with translate_errors():
            server = self.client.info("server")
            memory = self.client.info("memory")
        return {
            "redis_version": server.get("redis_version"),
            "used_memory": memory.get("used_memory"),
            "used_memory_human": memory.get("used_memory_human"),
        }

    def used_memory(self) -> int:
        with translate_errors():
            return int(self.client.info("memory")["used_memory"])

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


