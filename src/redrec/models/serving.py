"""Serving learned models from Redis: publishing a trained model's item vectors into the
catalogue, and a live handle that follows the published version without a restart.

Redis holds everything served: the item vectors (in the catalogue's documents, under
one of two slots ``model_a``/``model_b`` so a new version is written while the old one
answers), the model artifact itself (bytes, so any process on any machine can load it),
and the pointer to the live version (``redrec:meta:model:<catalogue>``). Serving
processes re-read the pointer every few seconds and load a new version when it changes.
"""

from __future__ import annotations

import io
import tarfile
import tempfile
import threading
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np

from redrec.catalog import Catalog
from redrec.catalog.registry import register
from redrec.exceptions import NotFoundError
from redrec.models.base import VectorRecommender, load_model
from redrec.store import Store
from redrec.store.index import Prepared

__all__ = ["LiveModel", "publish", "read_artifact"]

SLOTS = ("model_a", "model_b")
_KIND = "model"


def _pack(model: VectorRecommender) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = model.save(Path(tmp) / "model")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            tar.add(path, arcname="model")
        return buf.getvalue()


def _unpack(blob: bytes) -> VectorRecommender:
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
            tar.extractall(tmp, filter="data")
        model = load_model(Path(tmp) / "model")
    if not isinstance(model, VectorRecommender):
        raise NotFoundError("the published model is not a vector model")
    return model


def publish(store: Store, catalog: Catalog, model: VectorRecommender, *,
            batch_size: int = 1000, info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Make ``model`` the live model of ``catalog``: write its item vectors into the
    inactive slot, store the artifact, then flip the pointer. Returns the pointer."""
    name = catalog.mapping.index
    current = store.get_meta(_KIND, name) or {}
    slot = SLOTS[1] if current.get("slot") == SLOTS[0] else SLOTS[0]
    vectors = model.item_vectors()
    dim = int(vectors.shape[1])
    mapping = catalog.mapping
    if {s: mapping.model_vectors.get(s) for s in SLOTS} != {s: dim for s in SLOTS}:
        # First model, or a new dimension: add both slots to the index (live rebuild).
        mapping = mapping.model_copy(update={"model_vectors": {s: dim for s in SLOTS}})
        catalog = Catalog(store, mapping)
        dims = {vf.name: vf.dims for vf in catalog.index.spec.vectors.values()
                if vf.name not in SLOTS}
        store.rebuild_index(mapping.index_spec(dims))
        store.forget(name)
        register(store, mapping)
        catalog = Catalog(store, mapping)
    index = catalog.index
    written = index.set_vectors(slot, dict(zip(model.item_ids, vectors, strict=True)),
                                batch_size=batch_size)
    version = int(store.client.incr(f"redrec:model:{name}:version"))
    store.put_blob(f"redrec:model:{name}:{version}", _pack(model))
    pointer = {"version": version, "slot": slot, "dim": dim, "kind": type(model).kind,
               "items": written, "published_at": time.time(), **(info or {})}
    store.put_meta(_KIND, name, pointer)
    old = current.get("version")
    if old is not None:  # keep the previous artifact one round for a quick rollback
        store.delete_blob(f"redrec:model:{name}:{int(old) - 1}")
    return pointer


def read_artifact(store: Store, catalog_name: str, version: int) -> VectorRecommender:
    blob = store.get_blob(f"redrec:model:{catalog_name}:{version}")
    if blob is None:
        raise NotFoundError(f"no artifact for model version {version} of {catalog_name!r}")
    return _unpack(blob)


class LiveModel:
    """The live model of a catalogue, reloaded when a new version is published."""

    def __init__(self, store: Store, catalog: Catalog, *, check_every_s: float = 5.0) -> None:
        self.store = store
        self.catalog = catalog
        self.check_every_s = check_every_s
        self._lock = threading.Lock()
        self._checked = 0.0
        self.pointer: dict[str, Any] | None = None
        self.model: VectorRecommender | None = None

    def refresh(self, *, force: bool = False) -> bool:
        """Load the published version if it changed; True when a model is live."""
        now = time.monotonic()
        if not force and now - self._checked < self.check_every_s:
            return self.model is not None
        with self._lock:
            if not force and now - self._checked < self.check_every_s:
                return self.model is not None  # another thread just checked
            pointer = self.store.get_meta(_KIND, self.catalog.mapping.index)
            if pointer is None:
                self.model, self.pointer = None, None
            elif self.pointer is None or pointer["version"] != self.pointer["version"]:
                model = read_artifact(self.store, self.catalog.mapping.index,
                                      int(pointer["version"]))
                self.store.forget(self.catalog.mapping.index)
                self.catalog._index = None  # the index may have gained the model slots
                self.model, self.pointer = model, pointer
            # Only now: a concurrent request must not see "checked" before the model is in.
            self._checked = now
            return self.model is not None

    @property
    def version(self) -> int | None:
        return None if self.pointer is None else int(self.pointer["version"])

    def user_vector(self, history_oldest_first: list[str]) -> np.ndarray | None:
        if not self.refresh() or self.model is None:
            return None
        known = [i for i in history_oldest_first if i in self.model._index]
        if not known:
            return None
        return self.model.user_vector(known)

    def prepare(self, recent_newest_first: list[str], k: int, *, filters: Any = None,
                exclude: Collection[str] = (), hybrid_policy: str = "auto",
                return_fields: list[str] | None = None) -> Prepared | None:
        """The KNN query for the user's current sequence (None without a live model)."""
        vec = self.user_vector(list(reversed(recent_newest_first)))
        if vec is None or self.pointer is None:
            return None
        return self.catalog.index.prepare_knn(
            vec, k, field=self.pointer["slot"], filters=filters, exclude=exclude,
            hybrid_policy=hybrid_policy, return_fields=return_fields or [])
