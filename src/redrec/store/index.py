"""One search index and its documents: create, describe, drop, upsert, delete, get, and
vector queries (KNN and range) with pre-filters, paging and exclusions."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import redis
import redis.exceptions as rex
from redisvl.index import SearchIndex
from tqdm import tqdm

from redrec.exceptions import InvalidInput, NotFoundError, RedrecError, SchemaError
from redrec.store import lean
from redrec.store._errors import translate, translate_errors
from redrec.store.documents import check_id, to_hash, to_json
from redrec.store.filters import Filter, compile_filter, estimate_selectivity
from redrec.store.keys import doc_id, doc_key
from redrec.store.query import DISTANCE, SearchArgs, knn_args, range_args
from redrec.store.schema import IndexSpec
from redrec.store.vectors import as_vector, from_bytes, to_bytes

__all__ = ["Batch", "Hit", "Prepared", "VectorIndex", "run_all", "start_all"]

MAX_K = 10_000  # RediSearch's default MAXSEARCHRESULTS


class Hit(NamedTuple):
    """One search result: the document id (without prefix), its distance, its fields.
    (A named tuple: a request parses dozens, and a frozen dataclass costs ~4x as much to
    make.)"""

    id: str
    distance: float
    fields: dict[str, Any]


class VectorIndex:
    """An index over HASH or JSON documents under one key prefix."""

    def __init__(self, client: redis.Redis, spec: IndexSpec, *, ef_runtime: int | None = None):
        self.client = client
        self.spec = spec
        self.ef_runtime = ef_runtime
        self._cluster = isinstance(client, redis.RedisCluster)
        # filter string -> (when measured, fraction of documents passing it)
        self._selectivity: dict[str, tuple[float, float]] = {}
        self._names: dict[bytes, tuple[str, Callable[[bytes], Any]]] = {}  # see _parse
        self._compiled: dict[str, str | None] = {}  # see _filter_str

    def __repr__(self) -> str:
        return f"VectorIndex({self.name!r}, storage={self.spec.storage}, prefix={self.prefix!r})"

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def prefix(self) -> str:
        return self.spec.prefix

    def key(self, item_id: str) -> str:
        return doc_key(self.prefix, item_id)

    # -- lifecycle ----------------------------------------------------------------------

    def exists(self) -> bool:
        try:
            self.client.execute_command("FT.INFO", self.name)
        except rex.ResponseError as exc:
            if isinstance(translate(exc, index=self.name), NotFoundError):
                return False
            raise translate(exc, index=self.name) from exc
        except rex.RedisError as exc:
            raise translate(exc, index=self.name) from exc
        return True

    def create(self, *, overwrite: bool = False) -> VectorIndex:
        """Create the index; with ``overwrite`` an existing one is replaced (documents kept)."""
        if self.exists():
            if not overwrite:
                raise SchemaError(f"index {self.name!r} already exists")
            self.drop(delete_documents=False)
        index = SearchIndex(self.spec.schema, redis_client=self.client)
        try:
            index.create(overwrite=False)
        except Exception as exc:  # RedisVL wraps every failure in RedisSearchError
            cause = exc.__cause__
            if isinstance(cause, rex.RedisError):
                raise translate(cause, index=self.name) from exc
            raise SchemaError(f"cannot create index {self.name!r}: {exc}") from exc
        return self

    def drop(self, *, delete_documents: bool = False) -> None:
        args = ["FT.DROPINDEX", self.name] + (["DD"] if delete_documents else [])
        with translate_errors(self.name):
            self.client.execute_command(*args)

    def describe(self) -> dict[str, Any]:
        """FT.INFO as a plain dict (strings and numbers), plus the definition we hold."""
        with translate_errors(self.name):
            raw = self.client.execute_command("FT.INFO", self.name)
        info = _pairs(raw)
        return {
            "name": self.name,
            "storage": self.spec.storage,
            "prefix": self.prefix,
            "num_docs": int(float(info.get("num_docs", 0))),
            "percent_indexed": float(info.get("percent_indexed", 1)),
            "indexing": bool(int(float(info.get("indexing", 0)))),
            "hash_indexing_failures": int(float(info.get("hash_indexing_failures", 0))),
            "vector_index_sz_mb": float(info.get("vector_index_sz_mb", 0)),
            "attributes": info.get("attributes", []),
            "definition": self.spec.to_dict(),
        }

    def count(self) -> int:
        return int(self.describe()["num_docs"])

    def wait_until_indexed(self, timeout: float = 60.0) -> None:
        """Wait for the background scan that follows creating an index over existing data."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.describe()
            if not info["indexing"] and info["percent_indexed"] >= 1.0:
                return
            if time.monotonic() > deadline:
                raise RedrecError(f"index {self.name!r} still indexing after {timeout:.0f}s")
            time.sleep(0.05)

    # -- writes ----------------------------------------------------------------------

    def prepare(self, docs: Iterable[Mapping[str, Any]], id_field: str = "id") -> list[tuple[str, Any]]:
        """Check and convert every document; raises before anything is written."""
        out: list[tuple[str, Any]] = []
        seen: set[str] = set()
        for n, doc in enumerate(docs):
            if not isinstance(doc, Mapping):
                raise InvalidInput(f"document #{n} is not an object")
            if id_field not in doc:
                raise InvalidInput(f"document #{n} has no id field {id_field!r}")
            item_id = check_id(doc[id_field])
            if item_id in seen:
                raise InvalidInput(f"document id {item_id!r} appears twice in one upsert")
            seen.add(item_id)
            body = to_json(self.spec, doc, item_id) if self.spec.storage == "json" else to_hash(
                self.spec, doc, item_id
            )
            out.append((item_id, body))
        return out

    def upsert(
        self,
        docs: Iterable[Mapping[str, Any]],
        *,
        id_field: str = "id",
        batch_size: int = 500,
        progress: bool = False,
    ) -> int:
        """Insert or replace documents. All are checked first; each batch is one
        MULTI/EXEC, so a failure leaves no document half-written."""
        prepared = self.prepare(docs, id_field)
        self.write_prepared(prepared, batch_size=batch_size, progress=progress)
        return len(prepared)

    def write_prepared(
        self, prepared: Sequence[tuple[str, Any]], *, batch_size: int = 500, progress: bool = False
    ) -> None:
        bar = tqdm(total=len(prepared), desc=f"upsert {self.name}", unit="doc",
                   disable=not progress, file=None)
        json_storage = self.spec.storage == "json"
        try:
            for start in range(0, len(prepared), batch_size):
                batch = prepared[start:start + batch_size]
                pipe = self.client.pipeline(transaction=not self._cluster)
                for item_id, body in batch:
                    key = self.key(item_id)
                    # Replace the whole document: stale fields of an old version vanish.
                    pipe.delete(key)
                    if json_storage:
                        pipe.execute_command("JSON.SET", key, "$", body)
                    else:
                        pipe.hset(key, mapping=body)
                pipe.incr(self.generation_key)
                with translate_errors(self.name):
                    results = pipe.execute(raise_on_error=True)
                errors = [r for r in results if isinstance(r, Exception)]
                if errors:
                    raise RedrecError(f"upsert into {self.name!r} failed: {errors[0]}")
                bar.update(len(batch))
        finally:
            bar.close()

    def set_vectors(self, field: str, vectors: Mapping[str, np.ndarray], *,
                    batch_size: int = 1000) -> int:
        """Write one vector field of existing documents (learned item vectors); ids that
        are not stored are skipped. Returns how many documents were written."""
        vf = self.spec.vector_field(field)
        ids = list(vectors)
        exists = self.exists_many(ids) if ids else []
        todo = [(i, as_vector(vectors[i], vf.dims, vf.datatype, what=f"{field} of {i!r}"))
                for i, ok in zip(ids, exists, strict=True) if ok]
        path = (vf.path or f"$.{vf.name}")
        with translate_errors(self.name):
            for start in range(0, len(todo), batch_size):
                pipe = self.client.pipeline(transaction=False)
                for item_id, vec in todo[start:start + batch_size]:
                    if self.spec.storage == "json":
                        pipe.execute_command("JSON.SET", self.key(item_id), path,
                                             json.dumps(vec.tolist()))
                    else:
                        pipe.hset(self.key(item_id), vf.name, to_bytes(vec))
                pipe.execute()
        return len(todo)

    def delete(self, ids: Iterable[str]) -> int:
        keys = [self.key(check_id(i)) for i in ids]
        if not keys:
            return 0
        with translate_errors(self.name):
            pipe = self.client.pipeline(transaction=not self._cluster)
            pipe.delete(*keys)
            pipe.incr(self.generation_key)
            return int(pipe.execute()[0])

    # -- derived data caches ------------------------------------------------------------

    @property
    def generation_key(self) -> str:
        """A counter bumped by every document upsert or delete through this class: caches
        of derived data (item-to-item neighbour lists) key on it, so a catalogue change
        retires them. (Learned vectors written by :meth:`set_vectors` leave it alone.)"""
        return f"redrec:gen:{self.prefix}"

    def prepare_generation(self) -> Command:
        return Command("GET", self.generation_key, finish=lambda r: int(r or 0))

    def _neighbours_key(self, item_id: str, field: str, generation: int) -> str:
        return f"redrec:nn:{generation}:{field}:{self.prefix}{item_id}"

    def prepare_cached_neighbours(self, item_id: str, field: str, generation: int) -> Command:
        """The cached unfiltered nearest neighbours of an item (ids, nearest first), or
        None when not cached for this generation of the catalogue."""
        def parse(raw: Any) -> list[str] | None:
            if raw is None:
                return None
            text = raw.decode() if isinstance(raw, bytes) else str(raw)
            return text.split("\x1f") if text else []
        return Command("GET", self._neighbours_key(item_id, field, generation), finish=parse)

    def cache_neighbours_command(self, item_id: str, field: str, generation: int,
                                 ids: Sequence[str], ttl_s: int) -> Command:
        return Command("SET", self._neighbours_key(item_id, field, generation),
                       "\x1f".join(ids), "EX", max(1, int(ttl_s)))

    # -- reads -----------------------------------------------------------------------

    def get(self, item_id: str) -> dict[str, Any] | None:
        """The stored document (vectors as numpy arrays for HASH, lists for JSON)."""
        return self.get_many([item_id])[0]

    def get_many(self, ids: Sequence[str]) -> list[dict[str, Any] | None]:
        keys = [self.key(check_id(i)) for i in ids]
        if not keys:
            return []
        with translate_errors(self.name):
            if self.spec.storage == "json":
                raw = self.client.execute_command("JSON.MGET", *keys, "$")
                return [_json_reply(r)[0] if r else None for r in raw]
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.hgetall(key)
            rows = pipe.execute()
        return [self._decode_hash(row) if row else None for row in rows]

    def get_vector(self, item_id: str, field: str | None = None) -> np.ndarray | None:
        """One document's vector (the first one for a multi-vector field)."""
        vf = self.spec.vector_field(field)
        key = self.key(check_id(item_id))
        with translate_errors(self.name):
            if self.spec.storage == "json":
                path = (vf.path or f"$.{vf.name}").removesuffix("[*]")
                raw = self.client.execute_command("JSON.GET", key, path)
                if raw is None:
                    return None
                value = _json_reply(raw)
                value = value[0] if value else None
                if value and vf.multi:
                    value = value[0]
                return None if value is None else np.asarray(value, dtype=np.float32)
            blob = self.client.hget(key, vf.name)
        return None if blob is None else from_bytes(blob, vf.datatype)

    def scan_ids(self) -> list[str]:
        """Ids of every document under the prefix (SCAN; indexed or not)."""
        with translate_errors(self.name):
            keys = list(self.client.scan_iter(match=f"{self.prefix}*", count=1000))
        return [doc_id(self.prefix, k.decode() if isinstance(k, bytes) else k) for k in keys]

    def exists_many(self, ids: Sequence[str]) -> list[bool]:
        pipe = self.client.pipeline(transaction=False)
        for i in ids:
            pipe.exists(self.key(check_id(i)))
        with translate_errors(self.name):
            return [bool(x) for x in pipe.execute()]

    def _decode_hash(self, row: Mapping[bytes, bytes]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in row.items():
            name = k.decode()
            vf = self.spec.vectors.get(name)
            out[name] = from_bytes(v, vf.datatype) if vf else _decode_value(self.spec, name, v)
        return out

    # -- vector queries --------------------------------------------------------------

    def _blob(self, vector: Any, field: str | None) -> tuple[str, bytes]:
        vf = self.spec.vector_field(field)
        return vf.name, to_bytes(as_vector(vector, vf.dims, vf.datatype, what="query vector"))

    def _return_fields(self, return_fields: Sequence[str] | None) -> list[str | tuple[str, str]]:
        """Field names to return (all non-vector fields by default). A JSON field indexed
        at ``$.x[*]`` is returned as ``$.x AS name`` so the whole list comes back, not
        its first element."""
        names = ([n for n, f in self.spec.fields.items() if f.type != "vector"]
                 if return_fields is None else list(return_fields))
        out: list[str | tuple[str, str]] = []
        for n in names:
            f = self.spec.fields.get(n)
            multi = f is not None and bool(f.path) and str(f.path).endswith("[*]")
            if self.spec.storage == "json" and multi:
                out.append((str(f.path)[:-3], n))  # type: ignore[union-attr]
            else:
                out.append(n)
        return out

    def knn(
        self,
        vector: Any,
        k: int = 10,
        *,
        field: str | None = None,
        filters: Filter = None,
        return_fields: Sequence[str] | None = None,
        offset: int = 0,
        exclude: Collection[str] = (),
        ef_runtime: int | None = None,
        hybrid_policy: str = "auto",
    ) -> list[Hit]:
        """The ``k`` nearest documents (after skipping ``offset``), nearest first.

        ``exclude`` ids never appear and never make the list short: the query asks for
        ``offset + k + len(exclude)`` neighbours, which is exact since each excluded id
        can take at most one place. ``filters`` run inside Redis as a pre-filter;
        ``hybrid_policy`` (auto, default, BATCHES, ADHOC_BF) says how (see
        :meth:`hybrid_policy_for`).
        """
        return self.prepare_knn(
            vector, k, field=field, filters=filters, return_fields=return_fields,
            offset=offset, exclude=exclude, ef_runtime=ef_runtime, hybrid_policy=hybrid_policy,
        ).run()

    def prepare_knn(
        self,
        vector: Any,
        k: int = 10,
        *,
        field: str | None = None,
        filters: Filter = None,
        return_fields: Sequence[str] | None = None,
        offset: int = 0,
        exclude: Collection[str] = (),
        ef_runtime: int | None = None,
        hybrid_policy: str = "auto",
        sort: bool = True,
    ) -> Prepared:
        """A checked KNN query, to run alone or with others in one round trip
        (:func:`run_all`). ``sort=False`` leaves the ordering by distance to this
        process (cheaper in Redis: ~100 us less for 20 hits returned with fields)."""
        _check_page(k, offset)
        name, blob = self._blob(vector, field)
        fetch = offset + k + len(exclude)
        if fetch > MAX_K:
            raise InvalidInput(f"offset + k + exclusions must be <= {MAX_K}, got {fetch}")
        filter_str = self._filter_str(filters)
        vf = self.spec.vectors[name]
        ef = ef_runtime if ef_runtime is not None else self.ef_runtime
        if ef is not None and vf.algorithm != "hnsw":
            ef = None  # EF_RUNTIME only exists for HNSW
        if ef is not None and (isinstance(ef, bool) or not isinstance(ef, int) or ef < 1):
            raise InvalidInput(f"ef_runtime must be a positive integer, got {ef!r}")
        policy = None
        if filter_str is not None and vf.algorithm == "hnsw":
            policy = self.hybrid_policy_for(filters, hybrid_policy)
        if policy == "ADHOC_BF":
            ef = None  # brute force over the filtered documents: EF_RUNTIME is refused
        args = knn_args(
            name, blob, fetch,
            filter_str=filter_str,
            return_fields=self._return_fields(return_fields),
            offset=0, num=fetch, ef_runtime=max(ef, fetch) if ef else None,
            hybrid_policy=policy,
        )
        if not sort:
            args = dataclasses.replace(args, sort_by=None)
        return Prepared(self, args, exclude, offset, k)

    def hybrid_policy_for(self, filters: Filter, policy: str = "auto") -> str | None:
        """How RediSearch should combine a filter with HNSW search.

        RediSearch 2.10 tends to pick ADHOC_BF (distance to every passing document) even
        for filters most documents pass, which costs milliseconds on 20k items; BATCHES
        (HNSW, then filter) is several times faster there but slow, and loses recall,
        for selective filters. ``auto`` estimates the filter's selectivity from its
        clauses (each counted once a minute, cached) and picks BATCHES when at least 10%
        of documents pass.
        """
        if policy == "auto":
            share = self.selectivity(filters)
            return "BATCHES" if share >= 0.1 else "ADHOC_BF"
        if policy in ("BATCHES", "ADHOC_BF"):
            return policy
        if policy is None or policy == "default":
            return None
        raise InvalidInput(f"hybrid_policy must be auto, default, BATCHES or ADHOC_BF, got {policy!r}")

    def _tag_values(self, field: str) -> int:
        """How many distinct values a tag field holds (FT.TAGVALS, cached a minute)."""
        now = time.monotonic()
        cached = self._selectivity.get(f"\0tagvals:{field}")
        if cached is None or now - cached[0] > 60.0:
            with translate_errors(self.name):
                values = self.client.execute_command("FT.TAGVALS", self.name, field)
            cached = (now, float(len(values)))
            self._selectivity[f"\0tagvals:{field}"] = cached
        return int(cached[1])

    def _clause_share(self, clause: str) -> float:
        now = time.monotonic()
        cached = self._selectivity.get(clause)
        if cached is None or now - cached[0] > 60.0:
            with translate_errors(self.name):
                pipe = self.client.pipeline(transaction=False)
                pipe.execute_command("FT.SEARCH", self.name, clause, "LIMIT", 0, 0, "DIALECT", 2)
                pipe.execute_command("FT.SEARCH", self.name, "*", "LIMIT", 0, 0, "DIALECT", 2)
                passing, total = (r[b"total_results"] if isinstance(r, dict) else r[0]
                                  for r in pipe.execute())
            if len(self._selectivity) > 10_000:
                self._selectivity.clear()
            cached = (now, int(passing) / max(1, int(total)))
            self._selectivity[clause] = cached
        return cached[1]

    def find(
        self,
        filters: Filter = None,
        *,
        return_fields: Sequence[str] | None = None,
        limit: int = 10,
        offset: int = 0,
        sort_by: str | None = None,
        descending: bool = False,
    ) -> Prepared:
        """A plain (non-vector) filtered search, prepared like :meth:`prepare_knn`."""
        _check_page(limit, offset)
        query = self._filter_str(filters) or "*"
        args = SearchArgs(query, {}, self._return_fields(return_fields), offset, limit,
                          sort_by=sort_by, descending=descending)
        return Prepared(self, args, (), 0, limit)

    def among(
        self,
        ids: Sequence[str],
        filters: Filter = None,
        *,
        return_fields: Sequence[str] | None = None,
        vector: Any = None,
        field: str | None = None,
        limit: int | None = None,
    ) -> Prepared:
        """Which of ``ids`` exist and pass ``filters``, with their fields: one FT.SEARCH
        restricted to those documents (``INKEYS``), so the filter keeps RediSearch's own
        semantics (tags, numeric ranges, geo, text) at a cost of microseconds per id.
        Hits come back in no particular order; with ``vector``, nearest first (a
        brute-force KNN over the passing ids only, their distances in the hits), at most
        ``limit`` of them."""
        prefix = self.prefix
        keys = [prefix + i for i in dict.fromkeys(ids)]  # ids from Redis replies
        query = self._filter_str(filters) or "*"
        n = max(1, len(keys))
        if n > MAX_K:
            raise InvalidInput(f"at most {MAX_K} ids can be checked at once, got {n}")
        ret = self._return_fields(return_fields)
        if vector is None:
            args = SearchArgs(query, {}, ret, 0, n, sort_by=None, keys=keys)
        else:
            name, blob = self._blob(vector, field)
            # ADHOC_BF: distances to the few documents that pass, not HNSW batches
            # that mostly miss them (0.86 ms against 0.98 for 250 ids on 20k items).
            k = n if limit is None else max(1, min(n, limit))
            args = dataclasses.replace(
                knn_args(name, blob, k, filter_str=query, return_fields=ret,
                         hybrid_policy="ADHOC_BF"), keys=keys)
        return Prepared(self, args, (), 0, n, empty=not keys)

    def _filter_str(self, filters: Filter) -> str | None:
        """The query string of ``filters`` (None: no filter), compiled once per distinct
        filter (~90 us through redisvl's expressions; a request checks several times)."""
        def compiled() -> str | None:
            expr = compile_filter(self.spec, filters)
            return str(expr) if expr is not None else None

        if filters is None or not isinstance(filters, Mapping):
            return compiled()
        # Looked up by repr first (it tells apart any two JSON-like filters at a fifth of
        # json.dumps' cost), then by the canonical JSON, so that the same filter with
        # its keys in another order compiles to the same string.
        fast = "r" + repr(filters)
        got = self._compiled.get(fast, self)
        if got is not self:
            return got
        try:
            key = "j" + json.dumps(filters, sort_keys=True, default=repr)
        except (TypeError, ValueError):  # keys of mixed types, cycles: not cached
            return compiled()
        got = self._compiled.get(key, self)
        if got is self:
            got = compiled()
        if len(self._compiled) >= 4096:
            self._compiled.clear()
        self._compiled[key] = self._compiled[fast] = got
        return got

    def selectivity(self, filters: Filter) -> float:
        """The estimated share of documents that pass ``filters`` (1.0 for none), from
        cached per-clause counts (see :meth:`hybrid_policy_for`)."""
        return estimate_selectivity(self.spec, filters, self._clause_share, self._tag_values)

    def range(
        self,
        vector: Any,
        radius: float,
        *,
        field: str | None = None,
        filters: Filter = None,
        return_fields: Sequence[str] | None = None,
        offset: int = 0,
        limit: int = 10,
        exclude: Collection[str] = (),
        epsilon: float | None = None,
    ) -> list[Hit]:
        """Documents within ``radius`` (in the index's distance), nearest first, paged."""
        _check_page(limit, offset)
        number = isinstance(radius, int | float) and not isinstance(radius, bool)
        if not number or not np.isfinite(radius) or radius < 0:
            raise InvalidInput(f"radius must be a non-negative number, got {radius!r}")
        name, blob = self._blob(vector, field)
        fetch = offset + limit + len(exclude)
        if fetch > MAX_K:
            raise InvalidInput(f"offset + limit + exclusions must be <= {MAX_K}, got {fetch}")
        args = range_args(
            name, blob, float(radius),
            filter_str=self._filter_str(filters),
            return_fields=self._return_fields(return_fields),
            offset=0, num=fetch, epsilon=epsilon,
        )
        return Prepared(self, args, exclude, offset, limit).run()

    def fetch_fields(
        self, ids: Sequence[str], fields: Sequence[str]
    ) -> list[tuple[None, dict[str, Any]] | None]:
        """For each id: (None, the named fields) or None if it does not exist; one round
        trip, no vectors."""
        keys = [self.key(check_id(i)) for i in ids]
        out: list[tuple[None, dict[str, Any]] | None] = []
        if not keys:
            return out
        with translate_errors(self.name):
            paths = [(self.spec.fields[f].path or f"$.{f}").removesuffix("[*]") for f in fields]
            cmds: list[tuple[Any, ...]] = []
            for key in keys:
                if self.spec.storage == "json":
                    cmds.append(("JSON.GET", key, *paths) if paths else ("EXISTS", key))
                else:
                    if fields:
                        cmds.append(("HMGET", key, *fields))
                    cmds.append(("EXISTS", key))
            rows = lean.execute(self.client, cmds)
        if self.spec.storage == "json":
            paths = [(self.spec.fields[f].path or f"$.{f}").removesuffix("[*]") for f in fields]
            for raw in rows:
                if not raw:
                    out.append(None)
                    continue
                got: dict[str, Any] = {}
                if fields:
                    data = _json_reply(raw)
                    # JSON.GET answers one path with its match list, several with a map
                    by_path = {paths[0]: data} if len(paths) == 1 else data
                    for f, path in zip(fields, paths, strict=True):
                        if by_path.get(path):
                            got[f] = by_path[path][0]
                out.append((None, got))
            return out
        step = 2 if fields else 1
        for n in range(len(keys)):
            exists = rows[n * step + step - 1]
            if not exists:
                out.append(None)
                continue
            values = rows[n * step] if fields else []
            out.append((None, {f: _decode_value(self.spec, f, v)
                               for f, v in zip(fields, values, strict=True) if v is not None}))
        return out

    def fetch(
        self, ids: Sequence[str], field: str | None = None, extra: Sequence[str] = ()
    ) -> list[tuple[np.ndarray | None, dict[str, Any]] | None]:
        """For each id: (its vector or None, the ``extra`` fields), or None if the item
        does not exist. One round trip."""
        vf = self.spec.vector_field(field)
        keys = [self.key(check_id(i)) for i in ids]
        if not keys:
            return []
        out: list[tuple[np.ndarray | None, dict[str, Any]] | None] = []
        with translate_errors(self.name):
            if self.spec.storage == "json":
                pipe = self.client.pipeline(transaction=False)
                vpath = (vf.path or f"$.{vf.name}").removesuffix("[*]")
                pipe.execute_command("JSON.MGET", *keys, vpath)
                paths = [self.spec.fields[e].path or f"$.{e}" for e in extra]
                for p in paths:
                    pipe.execute_command("JSON.MGET", *keys, p.removesuffix("[*]"))
                replies = pipe.execute()
                exists = self.exists_many(ids) if any(r is None for r in replies[0]) else None
                for n in range(len(keys)):
                    raw = replies[0][n]
                    if raw is None and (exists is None or not exists[n]):
                        out.append(None)
                        continue
                    vals = _json_reply(raw) if raw else []
                    vec = np.asarray(vals[0], dtype=np.float32) if vals else None
                    if vec is not None and vf.multi:
                        vec = vec[0]
                    fields = {}
                    for e, r in zip(extra, replies[1:], strict=True):
                        got = _json_reply(r[n]) if r[n] else []
                        if got:
                            fields[e] = got[0]
                    out.append((vec, fields))
                return out
            cmds = []
            for key in keys:
                cmds += [("HMGET", key, vf.name, *extra), ("EXISTS", key)]
            rows = lean.execute(self.client, cmds)
        for n in range(len(keys)):
            values, exists = rows[2 * n], rows[2 * n + 1]
            if not exists:
                out.append(None)
                continue
            vec = from_bytes(values[0], vf.datatype) if values[0] else None
            fields = {e: _decode_value(self.spec, e, v) for e, v in zip(extra, values[1:], strict=True)
                      if v is not None}
            out.append((vec, fields))
        return out

    def _parse(self, reply: Any) -> list[Hit]:
        if isinstance(reply, dict):  # RESP3 (redis-py 8's default protocol)
            rows: Iterable[tuple[bytes, Sequence[Any]]] = [
                (r[b"id"], list(itertools.chain.from_iterable(
                    (r.get(b"extra_attributes") or {}).items())))
                for r in reply.get(b"results", [])]
        else:  # RESP2: [total, key, [field, value, ...], key, ...] (no lists: NOCONTENT)
            rows = resp2_rows(reply)
        hits: list[Hit] = []
        prefix = self.prefix
        cut = len(prefix)
        names = self._names
        nan = float("nan")
        for key, flat in rows:
            fields: dict[str, Any] = {}
            distance = nan
            for j in range(0, len(flat) - 1, 2):
                got = names.get(flat[j])
                if got is None:
                    got = names[flat[j]] = self._decoder(flat[j].decode())
                fname, decode = got
                if decode is float:
                    distance = float(flat[j + 1])
                else:
                    fields[fname] = decode(flat[j + 1])
            text = key.decode()
            hits.append(Hit(text[cut:] if text.startswith(prefix) else text, distance, fields))
        return hits

    def _decoder(self, name: str) -> tuple[str, Callable[[bytes], Any]]:
        """How a returned field's raw value becomes Python (cached per field name):
        ``float`` marks the distance."""
        if name == DISTANCE:
            return name, float
        vf = self.spec.vectors.get(name)
        if self.spec.storage == "hash":
            if vf is not None:
                return name, functools.partial(from_bytes, dtype=vf.datatype)
            f = self.spec.fields.get(name)
            return name, (_hash_number if f is not None and f.type == "numeric" else _hash_text)
        return name, functools.partial(_decode_value, self.spec, name)


class Prepared:
    """A checked search waiting to run; several run in one round trip with :func:`run_all`."""

    __slots__ = ("args", "empty", "exclude", "index", "k", "offset")

    def __init__(self, index: VectorIndex, args: SearchArgs, exclude: Collection[str],
                 offset: int, k: int, *, empty: bool = False) -> None:
        self.index = index
        self.args = args
        self.exclude = exclude
        self.offset = offset
        self.k = k
        self.empty = empty  # known to match nothing: run_all skips the round trip

    def command(self) -> list[Any]:
        return self.args.command(self.index.name)

    def finish(self, reply: Any) -> list[Hit]:
        hits = self.index._parse(reply)
        if self.args.sort_by is None and "vec" in self.args.params:  # a KNN left unsorted
            hits.sort(key=_by_distance)
        return _cut(hits, self.exclude, self.offset, self.k)

    def run(self) -> list[Hit]:
        if self.empty:
            return []
        with translate_errors(self.index.name):
            reply = self.index.client.execute_command(*self.command())
        return self.finish(reply)


class Command:
    """Any other command to send in a :func:`run_all` round trip; ``finish`` turns its
    reply into the result (the reply itself by default)."""

    __slots__ = ("args", "empty", "finish")

    def __init__(self, *args: Any, finish: Callable[[Any], Any] | None = None) -> None:
        self.args = args
        self.empty = False
        self.finish = finish or (lambda reply: reply)

    def command(self) -> tuple[Any, ...]:
        return self.args


def run_all(client: redis.Redis, queries: Sequence[Prepared | Command]) -> list[Any]:
    """Run prepared searches (on any indexes) and other commands in one pipelined round
    trip; each result is what the query's ``finish`` makes of its reply."""
    return start_all(client, queries).results()


def start_all(client: redis.Redis, queries: Sequence[Prepared | Command]) -> Batch:
    """Send the round trip of :func:`run_all` now; read it later from the returned
    :class:`Batch` (in the same thread), so Python can work while Redis does."""
    return Batch(client, queries)


class Batch:
    """Queries sent in one round trip, their replies read on demand."""

    __slots__ = ("_name", "_pending", "_replies", "queries")

    def __init__(self, client: redis.Redis, queries: Sequence[Prepared | Command]) -> None:
        self.queries = list(queries)
        live = [q.command() for q in self.queries if not q.empty]
        self._name = next((q.index.name for q in self.queries if isinstance(q, Prepared)), None)
        self._replies: list[Any] | None = None
        with translate_errors(self._name):
            self._pending = lean.send(client, live) if live else None

    def raw(self) -> list[Any]:
        """The replies, one per query (None for a query known to match nothing)."""
        if self._replies is None:
            got: list[Any] = []
            if self._pending is not None:
                with translate_errors(self._name):
                    got = self._pending.result()
            it = iter(got)
            self._replies = [None if q.empty else next(it) for q in self.queries]
        return self._replies

    def finish(self, i: int) -> Any:
        """The result of query ``i``."""
        q = self.queries[i]
        return [] if q.empty else q.finish(self.raw()[i])

    def results(self) -> list[Any]:
        return [self.finish(i) for i in range(len(self.queries))]


def resp2_rows(reply: list[Any]) -> Iterable[tuple[bytes, Sequence[Any]]]:
    """(key, flat field list) pairs of a RESP2 FT.SEARCH reply."""
    n = len(reply)
    if n % 2 == 1 and n > 2:  # fields returned: key, list, key, list...
        values = reply[2::2]
        if all(type(v) is list for v in values):
            return zip(reply[1::2], values, strict=True)
    rows = []
    i = 1
    while i < n:
        values = reply[i + 1] if i + 1 < n and isinstance(reply[i + 1], list) else None
        rows.append((reply[i], values or ()))
        i += 1 if values is None else 2
    return rows


def _hash_text(value: bytes) -> Any:
    try:
        return value.decode()
    except UnicodeDecodeError:
        return value


def _hash_number(value: bytes) -> Any:
    text = _hash_text(value)
    if isinstance(text, bytes):
        return text
    try:
        return float(text)
    except (TypeError, ValueError):
        return text


def _decode_value(spec: IndexSpec, name: str, value: bytes) -> Any:
    try:
        text = value.decode()
    except UnicodeDecodeError:
        return value
    f = spec.fields.get(name)
    if f is not None and f.type == "numeric":
        try:
            return float(text)
        except ValueError:
            return text
    if spec.storage == "json" and text[:1] in "[{":
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def _json_reply(raw: Any) -> Any:
    """A JSON.GET/JSON.MGET reply as Python data. redis-py decodes these replies itself
    once ``client.json()`` has been called on the client, so accept both shapes."""
    if isinstance(raw, bytes | str):
        return json.loads(raw)
    return raw


def _check_page(k: int, offset: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidInput(f"k/limit must be a positive integer, got {k!r}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidInput(f"offset must be a non-negative integer, got {offset!r}")


def _by_distance(hit: Hit) -> float:
    return hit.distance


def _cut(hits: list[Hit], exclude: Collection[str], offset: int, k: int) -> list[Hit]:
    if exclude:
        excluded = exclude if isinstance(exclude, set | frozenset) else set(exclude)
        hits = [h for h in hits if h.id not in excluded]
    return hits[offset:offset + k]


def _pairs(raw: Any) -> dict[str, Any]:
    """FT.INFO's flat [key, value, ...] reply as a dict, decoding bytes recursively."""
    def dec(v: Any) -> Any:
        if isinstance(v, bytes):
            return v.decode(errors="replace")
        if isinstance(v, list):
            return [dec(x) for x in v]
        if isinstance(v, dict):
            return {dec(k): dec(x) for k, x in v.items()}
        return v
    if isinstance(raw, dict):  # redis-py parses FT.INFO into a dict already
        return {dec(k): dec(v) for k, v in raw.items()}
    items = dec(raw)
    return {items[i]: items[i + 1] for i in range(0, len(items) - 1, 2)}
