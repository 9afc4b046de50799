"""A mapping says how a catalogue's records become Redis documents and an index.

YAML example (the books sample ships with one)::

    index: books_idx          # the name readers query (an alias; see Store.rebuild_index)
    prefix: "book:"
    storage: json             # json | hash
    id: id                    # the record field holding the item id
    text:                     # optional: text fields embedded into one vector field
      field: embedding
      source: [description]
      model: all-MiniLM-L6-v2
      backend: torch          # torch | onnx (same vectors) | static (distilled, see below)
    image:                    # optional: an image path/URL field embedded into another
      field: img_vector
      source: image
    vector: {algorithm: hnsw, metric: cosine, m: 16, ef_construction: 200}
    fields:                   # metadata that become index fields
      title: tag
      year_published: numeric
      genres: {type: tag, multi: true}        # a list in the record
      rating: {type: numeric, source: metrics.score}

``backend: static`` embeds with token vectors distilled once from ``model`` (Model2Vec
style, :mod:`redrec.embed.static`): ingest runs at ~1,300 descriptions/s on two cores
instead of ~40, but the vectors are another model's (on the books, 21% of top-10
neighbours and 44% of top-10 search results agree with MiniLM's). Queries then use the
static encoder too; ``static: {dim: 256, vocab_size: 20000}`` shapes the distilled model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from redrec.config import read_yaml
from redrec.exceptions import ConfigError
from redrec.store import IndexSpec
from redrec.store.keys import normalise_prefix

__all__ = ["DEFAULT_IMAGE_MODEL", "DEFAULT_TEXT_MODEL", "FieldMap", "Mapping", "StaticParams", "VectorMap"]

DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_IMAGE_MODEL = "efficientnet-lite0"


class FieldMap(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["tag", "numeric", "text", "geo"]
    source: str | None = None  # dotted path in the record; default: the field's name
    multi: bool = False  # the record holds a list (JSON path `$.x[*]`)
    separator: str = ","  # how a CSV cell / HASH value separates several tags
    sortable: bool = False


class StaticParams(BaseModel):
    """The shape of a distilled static text model (``backend: static``): ``dim`` (PCA,
    default the model's width, 384 for MiniLM) and ``vocab_size`` (keep the first N token
    ids: a faster build, unknown tokens skipped). Both change the vectors, hence the
    encoder's name and its embedding-cache entries."""

    model_config = ConfigDict(extra="forbid")

    dim: int | None = Field(default=None, ge=1)
    vocab_size: int | None = Field(default=None, ge=1)


class VectorMap(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: str
    source: list[str]
    model: str | None = None
    # torch: the reference vectors; onnx: the same vectors, faster; static: token vectors
    # distilled from the model (Model2Vec style), ~30x faster to embed but in another
    # vector space (see benchmarks/README.md for how close).
    backend: Literal["torch", "onnx", "static"] = "torch"
    # The backend that embeds search queries (default: ``backend``). ONNX fp32 gives the
    # same vectors as torch (cosine 1.0000 on the books) in a third of the time.
    query_backend: Literal["torch", "onnx", "static"] | None = None
    static: StaticParams | None = None

    @field_validator("source", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _one_vector_space(self) -> VectorMap:
        # Static vectors are not comparable with the transformer's: queries embedded by one
        # against items embedded by the other would return noise, so refuse the mix.
        query = self.query_backend or self.backend
        if (self.backend == "static") != (query == "static"):
            raise ValueError(
                f"backend {self.backend!r} with query_backend {query!r}: static vectors live in "
                "another space than the transformer's, so items and queries must both be static "
                "or neither"
            )
        if self.static is not None and self.backend != "static":
            raise ValueError("'static' options need backend: static")
        return self

    def encoder_options(self) -> dict[str, Any]:
        """Keyword arguments for :func:`redrec.catalog.encoders.get_encoder`."""
        if self.backend != "static" or self.static is None:
            return {}
        return self.static.model_dump(exclude_none=True)


class VectorParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    algorithm: Literal["hnsw", "flat"] = "hnsw"
    metric: Literal["cosine", "l2", "ip"] = "cosine"
    datatype: Literal["float32", "float64"] = "float32"
    m: int | None = Field(default=None, ge=2)
    ef_construction: int | None = Field(default=None, ge=1)
    ef_runtime: int | None = Field(default=None, ge=1)
    initial_cap: int | None = Field(default=None, ge=1)


class Mapping(BaseModel):
    """How records become documents. Build with :meth:`load` (YAML path or dict)."""

    model_config = ConfigDict(extra="forbid")

    index: str
    prefix: str | None = None
    storage: Literal["json", "hash"] = "json"
    id: str = "id"
    text: VectorMap | None = None
    image: VectorMap | None = None
    vector: VectorParams = Field(default_factory=VectorParams)
    fields: dict[str, FieldMap] = Field(default_factory=dict)
    # HASH storage: which record fields to keep besides the indexed ones (all scalars
    # when None). JSON storage always keeps the whole record.
    keep: list[str] | None = None
    # Learned item vectors (field -> dimension), written by `redrec train` and searched by
    # inner product; two slots let a new model version load while the old one serves.
    model_vectors: dict[str, int] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _image_backend(self) -> Mapping:
        if self.image is not None and "static" in (self.image.backend, self.image.query_backend):
            raise ValueError("image vectors have no static backend: use torch or onnx")
        return self

    @field_validator("fields", mode="before")
    @classmethod
    def _short_types(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: ({"type": t} if isinstance(t, str) else t) for k, t in v.items()}
        return v

    @classmethod
    def load(cls, value: Mapping | dict[str, Any] | str | Path) -> Mapping:
        if isinstance(value, Mapping):
            return value
        if isinstance(value, str | Path):
            value = read_yaml(value, "mapping")
        if not isinstance(value, dict):
            raise ConfigError("a mapping must be a YAML/JSON object")
        try:
            mapping = cls.model_validate(value)
        except ValidationError as exc:
            errs = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:3]
            )
            raise ConfigError(f"invalid mapping: {errs}") from None
        return mapping

    # -- derived ---------------------------------------------------------------------

    @property
    def key_prefix(self) -> str:
        return normalise_prefix(self.prefix or self.index)

    @property
    def text_model(self) -> str:
        return (self.text.model if self.text and self.text.model else DEFAULT_TEXT_MODEL)

    @property
    def image_model(self) -> str:
        return (self.image.model if self.image and self.image.model else DEFAULT_IMAGE_MODEL)

    def vector_maps(self) -> list[tuple[str, VectorMap]]:
        out = []
        if self.text is not None:
            out.append(("text", self.text))
        if self.image is not None:
            out.append(("image", self.image))
        return out

    def index_spec(self, dims: dict[str, int]) -> IndexSpec:
        """The index definition, given each vector field's dimension."""
        fields: list[dict[str, Any]] = []
        json_store = self.storage == "json"
        for name, f in self.fields.items():
            source = f.source or name
            entry: dict[str, Any] = {"name": name, "type": f.type}
            if json_store:
                entry["path"] = f"$.{source}" + ("[*]" if f.multi else "")
            attrs: dict[str, Any] = {}
            if f.type == "tag" and not json_store:
                attrs["separator"] = f.separator
            if f.sortable:
                attrs["sortable"] = True
            if attrs:
                entry["attrs"] = attrs
            fields.append(entry)
        params = self.vector.model_dump(exclude_none=True)
        for _, vm in self.vector_maps():
            attrs = {
                "dims": dims[vm.field],
                "algorithm": params["algorithm"],
                "distance_metric": params["metric"],
                "datatype": params["datatype"],
            }
            for key in ("m", "ef_construction", "ef_runtime", "initial_cap"):
                if key in params and (params["algorithm"] == "hnsw" or key == "initial_cap"):
                    attrs[key] = params[key]
            entry = {"name": vm.field, "type": "vector", "attrs": attrs}
            if json_store:
                entry["path"] = f"$.{vm.field}"
            fields.append(entry)
        for name, dim in self.model_vectors.items():
            entry = {"name": name, "type": "vector", "attrs": {
                "dims": dim, "algorithm": "hnsw", "distance_metric": "ip",
                "datatype": "float32"}}
            if json_store:
                entry["path"] = f"$.{name}"
            fields.append(entry)
        return IndexSpec.from_dict({
            "index": {"name": self.index, "prefix": self.key_prefix, "storage_type": self.storage},
            "fields": fields,
        })
