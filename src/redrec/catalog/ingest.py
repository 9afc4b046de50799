"""Ingestion: records -> embeddings (through the cache) -> documents -> Redis.

Everything is read, checked and embedded before the first write; documents are then
written in MULTI/EXEC batches, so bad input never leaves a half-ingested catalogue.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from redrec.catalog.encoders import Encoder, get_encoder
from redrec.catalog.mapping import Mapping, VectorMap
from redrec.catalog.readers import Record, read_records
from redrec.embed.cache import encode_cached
from redrec.exceptions import ConfigError, InvalidInput, NotFoundError, SchemaError
from redrec.store import Store, VectorIndex
from redrec.store.documents import check_id
from redrec.store.embcache import RedisEmbeddingCache

__all__ = ["IngestReport", "ingest", "lookup"]


@dataclass
class IngestReport:
    index: str
    read: int = 0
    written: int = 0
    deleted: int = 0
    computed: dict[str, int] = field(default_factory=dict)  # embeddings computed, per kind
    cached: dict[str, int] = field(default_factory=dict)  # embeddings found in the cache
    without_vector: dict[str, int] = field(default_factory=dict)  # no content to embed
    embed_s: float = 0.0
    write_s: float = 0.0
    total_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def lookup(record: dict[str, Any], dotted: str) -> Any:
    cur: Any = record
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _assign(record: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    cur = record
    for part in parts[:-1]:
        nxt = cur.get(part)
        nxt = dict(nxt) if isinstance(nxt, dict) else {}
        cur[part] = nxt
        cur = nxt
    cur[parts[-1]] = value


def ingest(
    store: Store,
    mapping: Mapping | dict[str, Any] | str | Path,
    source: str | Path | Sequence[dict[str, Any]],
    *,
    recreate: bool = False,
    prune: bool = False,
    progress: bool = False,
    batch_size: int = 500,
    encoders: dict[str, Encoder] | None = None,
) -> IngestReport:
    """Upsert a catalogue into its index, creating the index on first use.

    ``prune`` deletes documents under the prefix whose ids are no longer in the
    source; ``recreate`` drops and re-creates the index first (documents kept unless
    pruned). ``encoders`` overrides the encoders named by the mapping (``text``/``image``).
    """
    started = time.perf_counter()
    m = Mapping.load(mapping)
    base = _base_dir(source)
    records = (
        [Record(f"record #{i}", dict(r)) for i, r in enumerate(source)]
        if not isinstance(source, str | Path) else read_records(source)
    )
    report = IngestReport(index=m.index, read=len(records))
    if not records:
        raise InvalidInput("the catalogue holds no records")
    ids = _check_records(m, records)

    encs = {
        kind: (encoders or {}).get(kind)
        or get_encoder(kind, m.text_model if kind == "text" else m.image_model, vm.backend,
                       **vm.encoder_options())
        for kind, vm in m.vector_maps()
    }
    dims = {vm.field: encs[kind].dim for kind, vm in m.vector_maps()}
    existing = _existing_index(store, m, dims, recreate)
    index = existing or VectorIndex(store.client, m.index_spec(dims))

    t0 = time.perf_counter()
    cache = RedisEmbeddingCache(store.client)
    vectors: dict[str, list[np.ndarray | None]] = {}
    for kind, vm in m.vector_maps():
        contents = [_content(kind, vm, r, base) for r in records]
        vecs, computed, cached = _embed(kind, encs[kind], contents, cache, progress)
        vectors[vm.field] = vecs
        report.computed[kind] = computed
        report.cached[kind] = cached
        report.without_vector[kind] = sum(c is None for c in contents)
    report.embed_s = round(time.perf_counter() - t0, 3)

    # A re-ingest replaces whole documents: keep the learned vectors they already hold.
    for name in m.model_vectors:
        if name in index.spec.vectors:
            vectors[name] = [None if got is None else got[0] for got in index.fetch(ids, name)]
    docs = [_document(m, r, i, {f: v[n] for f, v in vectors.items()})
            for n, (r, i) in enumerate(zip(records, ids, strict=True))]
    t1 = time.perf_counter()
    prepared = index.prepare(docs, id_field=m.id)
    if existing is None:  # created only once every record passed its checks
        index = store.create_aliased_index(index.spec)
    index.write_prepared(prepared, batch_size=batch_size, progress=progress)
    report.written = len(prepared)
    if prune:
        report.deleted = _prune(store, index, set(ids))
    report.write_s = round(time.perf_counter() - t1, 3)
    from redrec.catalog.registry import register

    register(store, m)
    report.total_s = round(time.perf_counter() - started, 3)
    return report


def _base_dir(source: Any) -> Path:
    if isinstance(source, str | Path):
        p = Path(source)
        return p if p.is_dir() else p.parent
    return Path.cwd()


def _check_records(m: Mapping, records: list[Record]) -> list[str]:
    ids: list[str] = []
    seen: dict[str, str] = {}
    for r in records:
        raw = lookup(r.data, m.id)
        if raw is None:
            raise InvalidInput(f"{r.where}: no id field {m.id!r}")
        try:
            item_id = check_id(raw)
        except InvalidInput as exc:
            raise InvalidInput(f"{r.where}: {exc}") from None
        if item_id in seen:
            raise InvalidInput(f"{r.where}: id {item_id!r} already used by {seen[item_id]}")
        seen[item_id] = r.where
        ids.append(item_id)
    # A mapping that names a field no record has is a typo, not sparse data.
    named = {name: (f.source or name) for name, f in m.fields.items()}
    for _, vm in m.vector_maps():
        named.update({f"{vm.field} source": s for s in vm.source})
    for label, src in named.items():
        if not any(lookup(r.data, src) is not None for r in records):
            raise ConfigError(f"mapping field {label!r}: no record has a field {src!r}")
    return ids


def _existing_index(
    store: Store, m: Mapping, dims: dict[str, int], recreate: bool
) -> VectorIndex | None:
    """The catalogue's index if it exists and fits the mapping (None if it must be made)."""
    spec = m.index_spec(dims)
    if recreate and spec.name in store.list_indexes() + _aliases(store, spec.name):
        store.drop_index(spec.name)
    try:
        existing = store.index(spec.name)
    except NotFoundError:
        return None
    for name, dim in dims.items():
        have = existing.spec.vectors.get(name)
        if have is None:
            raise SchemaError(
                f"index {spec.name!r} has no vector field {name!r}; re-create it (--recreate)"
            )
        if have.dims != dim:
            raise SchemaError(
                f"index {spec.name!r} holds {have.dims}-d vectors in {name!r} but the encoder "
                f"makes {dim}-d ones; re-create the index (--recreate) or use the same model"
            )
    for name, dim in m.model_vectors.items():  # learned vectors must keep their shape
        have = existing.spec.vectors.get(name)
        if have is not None and have.dims != dim:
            raise SchemaError(f"index {spec.name!r} holds {have.dims}-d vectors in {name!r}")
    if existing.spec.storage != m.storage:
        raise SchemaError(
            f"index {spec.name!r} stores {existing.spec.storage}, the mapping says {m.storage}"
        )
    return existing


def _aliases(store: Store, name: str) -> list[str]:
    try:
        return [name] if store.physical_name(name) != name else []
    except NotFoundError:
        return []


def _content(kind: str, vm: VectorMap, r: Record, base: Path) -> str | None:
    """What to embed for one record: its text, or its image's path/URL (checked)."""
    if kind == "text":
        parts = [lookup(r.data, s) for s in vm.source]
        texts = [" ".join(map(str, p)) if isinstance(p, list) else str(p)
                 for p in parts if p not in (None, "")]
        return "\n".join(texts) if texts else None
    value = lookup(r.data, vm.source[0])
    if value in (None, ""):
        return None
    s = str(value)
    if s.startswith(("http://", "https://")):
        return s
    path = Path(s) if Path(s).is_absolute() else base / s
    if not path.exists():
        raise NotFoundError(f"{r.where}: image {s!r} not found (looked at {path})")
    from redrec.embed.image import load_image

    try:
        load_image(path)  # a corrupt file is named here, not deep inside a batch
    except InvalidInput as exc:
        raise InvalidInput(f"{r.where}: image {s!r}: {exc}") from None
    return str(path)


def _embed(
    kind: str,
    encoder: Encoder,
    contents: list[str | None],
    cache: RedisEmbeddingCache,
    progress: bool,
) -> tuple[list[np.ndarray | None], int, int]:
    """Vectors for ``contents`` (None where there is nothing to embed), computing only
    what the cache lacks; returns (vectors, computed, taken from the cache). Images are
    keyed by their bytes, not their path, so an edited file is re-embedded."""
    present = [i for i, c in enumerate(contents) if c is not None]
    payload: list[str | bytes] = [
        Path(c).read_bytes() if kind == "image" and not c.startswith(("http://", "https://"))
        else c
        for c in (contents[i] for i in present)  # type: ignore[union-attr]
    ]
    vecs, computed = encode_cached(encoder, payload, cache, progress=progress)
    out: list[np.ndarray | None] = [None] * len(contents)
    for j, i in enumerate(present):
        out[i] = vecs[j]
    return out, computed, len(present) - computed


def _typed(m: Mapping, name: str, value: Any, where: str) -> Any:
    f = m.fields[name]
    if f.type == "numeric" and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise InvalidInput(f"{where}: field {name!r} = {value!r} is not a number") from None
    if f.type == "tag" and f.multi and isinstance(value, str):
        return [v.strip() for v in value.split(f.separator) if v.strip()]
    return value


def _document(
    m: Mapping, r: Record, item_id: str, vectors: dict[str, np.ndarray | None]
) -> dict[str, Any]:
    if m.storage == "json":
        doc = dict(r.data)
        for name, f in m.fields.items():
            src = f.source or name
            value = lookup(doc, src)
            if value is not None:
                _assign(doc, src, _typed(m, name, value, r.where))
    else:
        keep = m.keep if m.keep is not None else [
            k for k, v in r.data.items() if not isinstance(v, dict | list)
        ]
        doc = {k: r.data[k] for k in keep if k in r.data}
        for name, f in m.fields.items():
            value = lookup(r.data, f.source or name)
            if value is not None:
                doc[name] = _typed(m, name, value, r.where)
    doc[m.id] = item_id
    for fname, vec in vectors.items():
        if vec is not None:
            doc[fname] = vec
        else:
            doc.pop(fname, None)
    return doc


def _prune(store: Store, index: VectorIndex, keep: set[str]) -> int:
    stale = [i for i in index.scan_ids() if i not in keep]
    return index.delete(stale) if stale else 0
