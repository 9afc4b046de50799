"""The face gallery's index and inputs: the index definition of each storage model,
switching between models, and finding people and images in folders."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from redrec.embed.face import FaceEncoder
from redrec.exceptions import InvalidInput, NotFoundError, SchemaError
from redrec.store import Store, VectorIndex

__all__ = [
    "DEFAULT_NAMESPACE",
    "DIM",
    "IMAGE_SUFFIXES",
    "MODELS",
    "check_model",
    "check_person",
    "current_model",
    "ensure_gallery",
    "index_definition",
    "index_name",
    "open_gallery",
    "scan",
]

MODELS = ("hash", "json")
DEFAULT_NAMESPACE = "face"  # keys face:..., index face_idx
IMAGE_SUFFIXES = frozenset({".bmp", ".png", ".jpg", ".jpeg", ".pgm", ".ppm", ".gif", ".tif",
                            ".tiff", ".webp"})
DIM = FaceEncoder.dim
_PERSON_RE = re.compile(r"^[^\s]{1,200}$")


# -- the gallery's index ------------------------------------------------------------


def index_name(namespace: str = DEFAULT_NAMESPACE) -> str:
    return f"{namespace}_idx"


def index_definition(
    model: str, *, namespace: str = DEFAULT_NAMESPACE, algorithm: str = "flat"
) -> dict[str, Any]:
    """The index for a storage model. FLAT is exact and fast up to ~100k faces; pass
    ``algorithm="hnsw"`` for larger galleries."""
    check_model(model)
    vector_attrs = {"dims": DIM, "algorithm": algorithm, "distance_metric": "cosine",
                    "datatype": "float32"}
    index = {"name": index_name(namespace), "prefix": namespace, "storage_type": model}
    if model == "hash":
        fields = [
            {"name": "person_id", "type": "tag"},
            {"name": "embedding", "type": "vector", "attrs": vector_attrs},
        ]
    else:
        fields = [
            {"name": "person_id", "type": "tag", "path": "$.person_id"},
            {"name": "embeddings", "type": "vector", "path": "$.embeddings[*]",
             "attrs": vector_attrs},
        ]
    return {"index": index, "fields": fields}


def current_model(store: Store, namespace: str = DEFAULT_NAMESPACE) -> str | None:
    """The storage model of the gallery's index, or None when there is none. Reads the
    definition from Redis afresh: another process may have switched the model."""
    name = index_name(namespace)
    store.forget(name)
    try:
        return store.index(name).spec.storage
    except NotFoundError:
        return None


def open_gallery(store: Store, namespace: str) -> VectorIndex:
    """The gallery's index for reading, with a clear error when nothing is enrolled."""
    name = index_name(namespace)
    try:
        idx = store.index(name)
    except NotFoundError:
        raise NotFoundError(
            f"no faces enrolled (no index {name!r}); enrol some first: redrec faces enroll DIR"
        ) from None
    _check_spec(idx)
    return idx


def _check_spec(idx: VectorIndex) -> None:
    field_name = "embedding" if idx.spec.storage == "hash" else "embeddings"
    vf = idx.spec.vectors.get(field_name)
    if vf is None or vf.dims != DIM or vf.metric != "cosine":
        raise SchemaError(
            f"index {idx.name!r} exists but is not a face gallery (needs a {DIM}-d cosine "
            f"vector field {field_name!r}); drop it or use another namespace"
        )


def ensure_gallery(store: Store, model: str, namespace: str, reset: bool) -> VectorIndex:
    """The gallery's index for ``model``, created if missing. A gallery of the other
    model (or any, with ``reset``) is dropped together with its documents."""
    check_model(model)
    existing = current_model(store, namespace)
    if existing is not None and (existing != model or reset):
        store.drop_index(index_name(namespace), delete_documents=True)
        existing = None
    if existing is None:
        idx = store.create_index(index_definition(model, namespace=namespace))
        idx.wait_until_indexed()
        return idx
    idx = store.index(index_name(namespace))
    _check_spec(idx)
    return idx


# -- inputs -------------------------------------------------------------------------


def scan(source: str | Path | Mapping[str, Sequence[str | Path]]) -> dict[str, list[Path]]:
    """People and their image files, in natural order (2.bmp before 10.bmp).

    ``source`` is a directory of per-person folders (the ORL layout: ``s1/1.bmp``), a
    single person's folder (the folder's name is the person), or a mapping
    ``{person: [files]}``. Files whose suffix is not an image's are ignored in folders.
    """
    if isinstance(source, Mapping):
        out = {}
        for person, files in source.items():
            check_person(person)
            paths = [Path(f) for f in files]
            if not paths:
                raise InvalidInput(f"no images given for {person!r}")
            for p in paths:
                if not p.exists():
                    raise NotFoundError(f"no such file: {p}")
            out[person] = paths
        if not out:
            raise InvalidInput("no people given")
        return out
    root = Path(source)
    if not root.exists():
        raise NotFoundError(f"no such directory: {root}")
    if not root.is_dir():
        raise InvalidInput(f"{root} is not a directory (give a folder of images)")
    own = _images_in(root)
    subdirs = sorted((d for d in root.iterdir() if d.is_dir() and _images_in(d)),
                     key=lambda d: _natural(d.name))
    if own and subdirs:
        raise InvalidInput(
            f"{root} holds both images and per-person folders; give one or the other"
        )
    if own:
        check_person(root.name)
        return {root.name: own}
    if not subdirs:
        kinds = ", ".join(sorted(IMAGE_SUFFIXES))
        raise InvalidInput(f"no images found in {root} (looked for {kinds})")
    out = {}
    for d in subdirs:
        check_person(d.name)
        out[d.name] = _images_in(d)
    return out


def _images_in(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(files, key=lambda p: _natural(p.stem))


def _natural(name: str) -> tuple[Any, ...]:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


def check_person(person: Any) -> str:
    if not isinstance(person, str) or not _PERSON_RE.match(person):
        raise InvalidInput(f"bad person id {person!r}: 1-200 characters, no spaces")
    return person


def check_model(model: str) -> None:
    if model not in MODELS:
        raise InvalidInput(f"unknown face storage model {model!r} (one of {', '.join(MODELS)})")
