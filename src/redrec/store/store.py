"""The Store: one Redis connection and the indexes on it."""

from __future__ import annotations

import json
import time
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
from redrec.store.keys import meta_key
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
        """Drop an index; for an alias, drop the alias and the index behind it."""
        physical = self.physical_name(name)
        if physical != name:
            with translate_errors(name):
                self.client.execute_command("FT.ALIASDEL", name)
        args = ["FT.DROPINDEX", physical] + (["DD"] if delete_documents else [])
        with translate_errors(name):
            self.client.execute_command(*args)
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
        schema.index.name = name  # query through the alias, not the version behind it
        spec = IndexSpec(schema)
        self._specs[name] = spec
        return spec

    # -- aliased indexes: rebuild while readers keep getting answers --------------------

    def physical_name(self, name: str) -> str:
        """The index an alias points at (``name`` itself for a plain index)."""
        with translate_errors(name):
            info = self.client.execute_command("FT.INFO", name)
        value = info.get(b"index_name", info.get("index_name")) if isinstance(info, dict) else None
        if value is None and isinstance(info, list):
            value = info[info.index(b"index_name") + 1]
        return value.decode() if isinstance(value, bytes) else str(value or name)

    def create_aliased_index(
        self, spec: IndexSpec | dict[str, Any] | str, *, overwrite: bool = False
    ) -> VectorIndex:
        """Create ``<name>__v1`` and the alias ``<name>`` pointing at it.

        Readers query the alias (a plain ``FT.SEARCH <name>`` works), so
        :meth:`rebuild_index` can swap in a new version with no gap.
        """
        spec = IndexSpec.coerce(spec)
        if VectorIndex(self.client, spec).exists():
            if not overwrite:
                raise SchemaError(f"index {spec.name!r} already exists")
            self.drop_index(spec.name)
        physical = self._next_version(spec.name)
        VectorIndex(self.client, _renamed(spec, physical)).create()
        with translate_errors(spec.name):
            self.client.execute_command("FT.ALIASADD", spec.name, physical)
        self._specs[spec.name] = spec
        return VectorIndex(self.client, spec, ef_runtime=self.ef_runtime)

    def rebuild_index(
        self, spec: IndexSpec | dict[str, Any] | str, *, timeout: float = 600.0
    ) -> VectorIndex:
        """Build a new version of an aliased index over the same documents, wait until it
        has indexed them, then move the alias and drop the old version. Queries through
        the alias are answered throughout."""
        spec = IndexSpec.coerce(spec)
        old = self.physical_name(spec.name)
        if old == spec.name:
            raise SchemaError(f"index {spec.name!r} is not aliased; it cannot be rebuilt live")
        physical = self._next_version(spec.name)
        new = VectorIndex(self.client, _renamed(spec, physical))
        new.create()
        try:
            new.wait_until_indexed(timeout)
        except BaseException:
            new.drop()
            raise
        with translate_errors(spec.name):
            self.client.execute_command("FT.ALIASUPDATE", spec.name, physical)
            self.client.execute_command("FT.DROPINDEX", old)
        self._specs[spec.name] = spec
        return VectorIndex(self.client, spec, ef_runtime=self.ef_runtime)

    def _next_version(self, name: str) -> str:
        existing = set(self.list_indexes())
        n = 1
        while f"{name}__v{n}" in existing:
            n += 1
        return f"{name}__v{n}"

    def forget(self, name: str) -> None:
        """Drop the cached definition of ``name`` (after it was changed elsewhere)."""
        self._specs.pop(name, None)

    # -- small JSON records about redrec itself ----------------------------------------

    def put_meta(self, kind: str, name: str, value: dict[str, Any]) -> None:
        with translate_errors():
            pipe = self.client.pipeline(transaction=True)
            pipe.set(meta_key(kind, name), json.dumps(value))
            pipe.zadd(meta_key(kind, "_all"), {name: time.time()})
            pipe.execute()

    def get_meta(self, kind: str, name: str) -> dict[str, Any] | None:
        with translate_errors():
            raw = self.client.get(meta_key(kind, name))
        return None if raw is None else json.loads(raw)

    def list_meta(self, kind: str) -> list[str]:
        """Names of the records of ``kind``, most recently written last."""
        with translate_errors():
            names = self.client.zrange(meta_key(kind, "_all"), 0, -1)
        return [n.decode() if isinstance(n, bytes) else n for n in names]

    def delete_meta(self, kind: str, name: str) -> None:
        with translate_errors():
            self.client.delete(meta_key(kind, name))
            self.client.zrem(meta_key(kind, "_all"), name)

    def put_blob(self, key: str, data: bytes) -> None:
        with translate_errors():
            self.client.set(key, data)

    def get_blob(self, key: str) -> bytes | None:
        with translate_errors():
            value = self.client.get(key)
        return None if value is None else bytes(value)

    def delete_blob(self, key: str) -> None:
        with translate_errors():
            self.client.delete(key)

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




def _renamed(spec: IndexSpec, name: str) -> IndexSpec:
    data = spec.to_dict()
    data["index"] = {**data["index"], "name": name}
    return IndexSpec.from_dict(data)
