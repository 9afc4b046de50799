"""Index definitions: RedisVL's ``IndexSchema`` (YAML or dict) plus what redrec needs to
know about it to validate documents and queries before anything reaches Redis.

A definition looks like RedisVL's::

    index: {name: books_idx, prefix: "book:", storage_type: json}
    fields:
      - {name: title, type: tag, path: $.title}
      - {name: year_published, type: numeric, path: $.year_published}
      - name: embedding
        type: vector
        path: $.embedding
        attrs: {dims: 384, algorithm: hnsw, distance_metric: cosine, datatype: float32}

A JSON vector field whose path ends in ``[*]`` (``$.embeddings[*]``) is a multi-vector
field: a document holds a list of vectors there and KNN matches its nearest one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from redisvl.schema import IndexSchema

from redrec.config import read_yaml
from redrec.exceptions import NotFoundError, SchemaError
from redrec.store.keys import normalise_prefix
from redrec.store.vectors import DTYPES

__all__ = [
    "DEFAULT_EF_CONSTRUCTION",
    "DEFAULT_EF_RUNTIME",
    "DEFAULT_EPSILON",
    "FieldInfo",
    "IndexSpec",
    "VectorField",
]

# Chosen from benchmarks/bench_store.py on 100k 384-d vectors (see benchmarks/README.md):
# EF_RUNTIME 64 gives recall@10 >= 0.97 at ~0.6 ms; EF_CONSTRUCTION 64 (RedisVL's default
# is 200) loads about 2.5x faster for no measurable recall loss at that EF_RUNTIME.
DEFAULT_EF_RUNTIME = 64
DEFAULT_EF_CONSTRUCTION = 64
# HNSW range queries (VECTOR_RANGE) explore a boundary of radius * (1 + EPSILON); with
# RediSearch's default 0.01 a range query on the books sample found none of a book's four
# neighbours within 0.53, with 0.1 and above it found all of them (tests/integration/
# test_catalog.py). Set on the index, so plain FT.SEARCH range queries benefit too.
DEFAULT_EPSILON = 0.2

_FIELD_TYPES = {"tag", "text", "numeric", "geo", "vector"}


@dataclass(frozen=True)
class FieldInfo:
    name: str
    type: str  # tag | text | numeric | geo | vector
    path: str | None  # JSON path (JSON storage only)
    separator: str = ","


@dataclass(frozen=True)
class VectorField:
    name: str
    dims: int
    datatype: str
    metric: str  # cosine | l2 | ip
    algorithm: str  # flat | hnsw
    path: str | None
    multi: bool  # JSON `$.path[*]`: a list of vectors per document


class IndexSpec:
    """A validated index definition."""

    def __init__(self, schema: IndexSchema) -> None:
        self.schema = schema
        self.fields: dict[str, FieldInfo] = {}
        self.vectors: dict[str, VectorField] = {}
        for field in schema.fields.values():
            path = getattr(field, "path", None)
            attrs = field.attrs
            ftype = str(getattr(field.type, "value", field.type)).lower()
            self.fields[field.name] = FieldInfo(
                field.name, ftype, path, getattr(attrs, "separator", ",")
            )
            if ftype == "vector":
                datatype = str(attrs.datatype.value).lower()
                if datatype not in DTYPES:
                    raise SchemaError(f"vector field {field.name!r}: unsupported type {datatype}")
                self.vectors[field.name] = VectorField(
                    name=field.name,
                    dims=int(attrs.dims),
                    datatype=datatype,
                    metric=str(attrs.distance_metric.value).lower(),
                    algorithm=str(attrs.algorithm.value).lower(),
                    path=path,
                    multi=bool(path and path.rstrip().endswith("[*]")),
                )
        self._storage = str(schema.index.storage_type.value).lower()
        if self.storage == "hash" and any(v.multi for v in self.vectors.values()):
            raise SchemaError("multi-vector fields ($.path[*]) need storage_type json")

    # -- construction ---------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexSpec:
        if not isinstance(data, dict) or "index" not in data or "fields" not in data:
            raise SchemaError("an index definition needs an 'index' and a 'fields' section")
        data = _with_defaults(data)
        try:
            schema = IndexSchema.from_dict(data)
        except (ValidationError, ValueError, TypeError, KeyError) as exc:
            raise SchemaError(f"invalid index definition: {_first_line(exc)}") from None
        return cls(schema)

    @classmethod
    def from_yaml(cls, path: str | Path) -> IndexSpec:
        return cls.from_dict(read_yaml(path, "index definition", SchemaError))

    @classmethod
    def coerce(cls, value: IndexSpec | IndexSchema | dict[str, Any] | str | Path) -> IndexSpec:
        if isinstance(value, IndexSpec):
            return value
        if isinstance(value, IndexSchema):
            return cls(value)
        if isinstance(value, dict):
            return cls.from_dict(value)
        return cls.from_yaml(value)

    def to_dict(self) -> dict[str, Any]:
        return self.schema.to_dict()

    # -- properties ---------------------------------------------------------------------

    @property
    def name(self) -> str:
        return str(self.schema.index.name)

    @property
    def prefix(self) -> str:
        prefix = self.schema.index.prefix
        if isinstance(prefix, list):
            prefix = prefix[0]
        return str(prefix)

    @property
    def storage(self) -> str:
        return self._storage

    def vector_field(self, name: str | None = None) -> VectorField:
        """The named vector field, or the only one when ``name`` is None."""
        if name is None:
            if len(self.vectors) != 1:
                raise SchemaError(
                    f"index {self.name!r} has vector fields {sorted(self.vectors)}: name one"
                )
            return next(iter(self.vectors.values()))
        if name not in self.vectors:
            raise NotFoundError(
                f"index {self.name!r} has no vector field {name!r} "
                f"(vector fields: {sorted(self.vectors)})"
            )
        return self.vectors[name]

    def field(self, name: str) -> FieldInfo:
        if name not in self.fields:
            raise NotFoundError(
                f"index {self.name!r} has no field {name!r} (fields: {sorted(self.fields)})"
            )
        return self.fields[name]


def _with_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """Copy ``data`` with redrec's defaults: a ``prefix:`` that ends in a colon, and our
    EF_RUNTIME for HNSW fields that do not set one (RedisVL's default of 10 gives poor
    recall)."""
    index = dict(data["index"] or {})
    if "name" not in index:
        raise SchemaError("the index section needs a name")
    index["prefix"] = normalise_prefix(str(index.get("prefix") or index["name"]))
    index.setdefault("key_separator", ":")
    fields = []
    for raw in data["fields"] or []:
        if not isinstance(raw, dict) or "name" not in raw or "type" not in raw:
            raise SchemaError(f"each field needs a name and a type, got {raw!r}")
        field = dict(raw)
        ftype = str(field["type"]).lower()
        if ftype not in _FIELD_TYPES:
            raise SchemaError(
                f"field {field['name']!r}: unknown type {field['type']!r} "
                f"(one of {sorted(_FIELD_TYPES)})"
            )
        field["type"] = ftype
        if ftype == "vector":
            attrs = dict(field.get("attrs") or {})
            for key in ("algorithm", "distance_metric", "datatype"):
                if isinstance(attrs.get(key), str):
                    attrs[key] = attrs[key].lower()
            if attrs.get("algorithm") == "hnsw":
                attrs.setdefault("ef_runtime", DEFAULT_EF_RUNTIME)
                attrs.setdefault("ef_construction", DEFAULT_EF_CONSTRUCTION)
                attrs.setdefault("epsilon", DEFAULT_EPSILON)
            field["attrs"] = attrs
        fields.append(field)
    if not fields:
        raise SchemaError("an index needs at least one field")
    if str(index.get("storage_type", "hash")).lower() == "hash" and any(
        str(f.get("path") or "").endswith("[*]") for f in fields
    ):
        raise SchemaError("multi-vector fields ($.path[*]) need storage_type json")
    return {**data, "index": index, "fields": fields}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return " ".join(line.strip() for line in text[:4]) if text else exc.__class__.__name__
