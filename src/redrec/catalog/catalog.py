"""Content queries over an ingested catalogue: similar items, semantic (text) search,
visual (image) search, and everything within a distance."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from redrec.catalog.encoders import Encoder, get_encoder
from redrec.catalog.mapping import Mapping
from redrec.exceptions import InvalidInput, NotFoundError
from redrec.fusion import rrf
from redrec.store import Filter, Hit, Store, VectorIndex

__all__ = ["Catalog", "Match"]

By = Literal["text", "image", "both"]


@dataclass(frozen=True)
class Match:
    """One item found: ``score`` is higher-is-better (cosine similarity for a cosine
    index, an RRF score when text and image are fused); ``distance`` is Redis's own
    distance where one query produced the item."""

    id: str
    score: float
    distance: float | None
    fields: dict[str, Any] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()


def _score(distance: float, metric: str) -> float:
    return -distance if metric == "l2" else 1.0 - distance


class Catalog:
    """A catalogue described by a :class:`Mapping`, stored in ``store``."""

    def __init__(
        self,
        store: Store,
        mapping: Mapping | dict[str, Any] | str | Path,
        *,
        encoders: dict[str, Encoder] | None = None,
    ) -> None:
        self.store = store
        self.mapping = Mapping.load(mapping)
        self._encoders = dict(encoders or {})
        self._index: VectorIndex | None = None

    @property
    def index(self) -> VectorIndex:
        if self._index is None:
            self._index = self.store.index(self.mapping.index)
        return self._index

    def encoder(self, kind: str) -> Encoder:
        """The encoder for queries of ``kind`` (its ``query_backend``)."""
        if kind not in self._encoders:
            vm = self.mapping.text if kind == "text" else self.mapping.image
            if vm is None:
                raise InvalidInput(f"catalogue {self.mapping.index!r} has no {kind} vectors")
            model = self.mapping.text_model if kind == "text" else self.mapping.image_model
            self._encoders[kind] = get_encoder(kind, model, vm.query_backend or vm.backend,
                                               **vm.encoder_options())
        return self._encoders[kind]

    def _field(self, kind: str) -> str:
        vm = self.mapping.text if kind == "text" else self.mapping.image
        if vm is None:
            raise InvalidInput(f"catalogue {self.mapping.index!r} has no {kind} vectors")
        return vm.field

    def _kinds(self, by: By) -> list[str]:
        if by not in ("text", "image", "both"):
            raise InvalidInput(f"by must be 'text', 'image' or 'both', got {by!r}")
        return ["text", "image"] if by == "both" else [by]

    # -- queries ---------------------------------------------------------------------

    def get(self, item_id: str) -> dict[str, Any]:
        doc = self.index.get(item_id)
        if doc is None:
            raise NotFoundError(f"no item {item_id!r} in {self.mapping.index!r}")
        return doc

    def similar(
        self,
        item_id: str,
        k: int = 10,
        *,
        by: By = "text",
        filters: Filter = None,
        offset: int = 0,
        exclude: Collection[str] = (),
        return_fields: Sequence[str] | None = None,
    ) -> list[Match]:
        """Items closest to ``item_id`` (which never appears itself)."""
        vectors = {}
        for kind in self._kinds(by):
            vec = self.index.get_vector(item_id, self._field(kind))
            if vec is None:
                if not self.index.exists_many([item_id])[0]:
                    raise NotFoundError(f"no item {item_id!r} in {self.mapping.index!r}")
                raise NotFoundError(f"item {item_id!r} has no {kind} vector")
            vectors[kind] = vec
        return self._query(vectors, k, filters=filters, offset=offset,
                           exclude={item_id, *exclude}, return_fields=return_fields,
                           reason="similar to " + item_id)

    def search(
        self,
        text: str,
        k: int = 10,
        *,
        filters: Filter = None,
        offset: int = 0,
        return_fields: Sequence[str] | None = None,
    ) -> list[Match]:
        """Semantic search: items whose text vector is nearest to the sentence's."""
        if not isinstance(text, str) or not text.strip():
            raise InvalidInput("a search needs a non-empty sentence")
        vec = self.encoder("text").encode([text])[0]
        return self._query({"text": vec}, k, filters=filters, offset=offset,
                           return_fields=return_fields, reason="matches the query")

    def search_image(
        self,
        image: Any,
        k: int = 10,
        *,
        filters: Filter = None,
        offset: int = 0,
        return_fields: Sequence[str] | None = None,
    ) -> list[Match]:
        """Visual search: items whose image vector is nearest to ``image`` (a path, URL,
        bytes or PIL image)."""
        vec = self.encoder("image").encode([image])[0]
        return self._query({"image": vec}, k, filters=filters, offset=offset,
                           return_fields=return_fields, reason="looks like the image")

    def within(
        self,
        radius: float,
        *,
        item_id: str | None = None,
        text: str | None = None,
        by: Literal["text", "image"] = "text",
        filters: Filter = None,
        offset: int = 0,
        limit: int = 10,
        return_fields: Sequence[str] | None = None,
    ) -> list[Match]:
        """Every item within ``radius`` of an item or a sentence, nearest first, paged."""
        if (item_id is None) == (text is None):
            raise ValueError("give exactly one of item_id and text")
        self._kinds(by)
        if item_id is not None:
            vec = self.index.get_vector(item_id, self._field(by))
            if vec is None:
                raise NotFoundError(f"no item {item_id!r} with a {by} vector")
            exclude: set[str] = {item_id}
        else:
            if by != "text":
                raise ValueError("a text query searches the text vectors")
            vec = self.encoder("text").encode([text])[0]
            exclude = set()
        metric = self.index.spec.vectors[self._field(by)].metric
        hits = self.index.range(vec, radius, field=self._field(by), filters=filters,
                                offset=offset, limit=limit, exclude=exclude,
                                return_fields=return_fields)
        return [Match(h.id, _score(h.distance, metric), h.distance, h.fields,
                      (f"within {radius} ({by})",)) for h in hits]

    def _query(
        self,
        vectors: dict[str, np.ndarray],
        k: int,
        *,
        filters: Filter,
        offset: int,
        exclude: Collection[str] = (),
        return_fields: Sequence[str] | None,
        reason: str,
    ) -> list[Match]:
        results: dict[str, list[Hit]] = {}
        fetch = k if len(vectors) == 1 else 3 * (offset + k)
        for kind, vec in vectors.items():
            results[kind] = self.index.knn(
                vec, fetch, field=self._field(kind), filters=filters,
                offset=offset if len(vectors) == 1 else 0, exclude=exclude,
                return_fields=return_fields,
            )
        if len(vectors) == 1:
            kind, hits = next(iter(results.items()))
            metric = self.index.spec.vectors[self._field(kind)].metric
            return [Match(h.id, _score(h.distance, metric), h.distance, h.fields,
                          (f"{reason} ({kind})",)) for h in hits]
        fused = rrf({kind: [h.id for h in hits] for kind, hits in results.items()})
        by_id = {h.id: h for hits in results.values() for h in hits}
        return [Match(i, s, None, by_id[i].fields, tuple(f"{reason} ({src})" for src in srcs))
                for i, s, srcs in fused[offset:offset + k]]

    # -- writes -------------------------------------------------------------------------

    def delete(self, ids: Sequence[str]) -> int:
        return self.index.delete(ids)

    def rebuild(self, *, timeout: float = 600.0) -> VectorIndex:
        """Re-create the index from the mapping (e.g. new HNSW parameters or fields) over
        the stored documents; readers keep getting answers while it builds."""
        dims = {vf.name: vf.dims for vf in self.index.spec.vectors.values()}
        self._index = self.store.rebuild_index(self.mapping.index_spec(dims), timeout=timeout)
        return self._index
