"""Face recognition on Redis vector search: enrol faces, identify a face, say "unknown".

Two storage models, chosen per gallery (one at a time; enrolling with the other model
recreates the index and deletes the old documents):

``hash``
    One HASH per face, ``face:<person>:<n>``, with ``person_id`` (TAG), ``person_path``
    (the image it came from, not indexed) and ``embedding`` (FLOAT32 blob), in
    ``face_idx`` over HASH (FLAT, COSINE). KNN over faces; the top-k *people* are the
    first k distinct ``person_id`` among the nearest faces.
``json``
    One JSON document per person, ``face:<person>``, with ``person_id``, all that
    person's vectors in ``$.embeddings`` (a list of lists) and their sources in
    ``$.person_paths``; ``$.embeddings[*]`` is indexed AS ``embeddings`` (multi-vector,
    FLAT, COSINE), so KNN scores a person by their nearest face.

Either way a plain ``FT.SEARCH face_idx "*=>[KNN 1 @embedding $vec AS score]"`` (or
``@embeddings`` for JSON) returns the nearest person's document.

Unknown faces: a match counts only when its cosine distance is below a threshold.
:data:`DEFAULT_THRESHOLD` was chosen on the ORL faces (see ``faces_eval`` and
``benchmarks/README.md``): with images 1-5 enrolled, every query's distance to its own
person was <= 0.0465 and to the nearest other person >= 0.0573; 0.052 is the middle of
that gap. dlib's usual rule (Euclidean 0.6, about 0.09 in cosine distance at these
vector norms) accepts most strangers on ORL's small grey images.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from redrec.apps.faces_gallery import (
    DEFAULT_NAMESPACE,
    DIM,
    IMAGE_SUFFIXES,
    MODELS,
    check_model,
    check_person,
    current_model,
    ensure_gallery,
    index_definition,
    index_name,
    open_gallery,
    scan,
)
from redrec.embed.face import FaceEncoder, FaceImage
from redrec.exceptions import InvalidInput, NotFoundError
from redrec.store import Store, VectorIndex

__all__ = [
    "DEFAULT_NAMESPACE",
    "DEFAULT_THRESHOLD",
    "IMAGE_SUFFIXES",
    "MODELS",
    "EnrollResult",
    "FaceMatch",
    "Identification",
    "add_images",
    "current_model",
    "default_encoder",
    "enroll",
    "enroll_vectors",
    "identify",
    "identify_vector",
    "index_definition",
    "index_name",
    "remove_person",
    "scan",
]

DEFAULT_THRESHOLD = 0.052  # cosine distance; see the module docstring
_MAX_FETCH = 10_000  # RediSearch's MAXSEARCHRESULTS
_ENCODER: FaceEncoder | None = None


def default_encoder() -> FaceEncoder:
    """One shared encoder per process, so the dlib models load once."""
    global _ENCODER
    if _ENCODER is None:
        _ENCODER = FaceEncoder()
    return _ENCODER


# -- results ------------------------------------------------------------------------


@dataclass(frozen=True)
class EnrollResult:
    """What an enrolment wrote, and how long encoding and writing took."""

    model: str
    people: list[str]
    faces: int
    encode_seconds: float
    write_seconds: float

    @property
    def faces_per_second(self) -> float:
        total = self.encode_seconds + self.write_seconds
        return self.faces / total if total > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "faces_per_second": round(self.faces_per_second, 2)}


@dataclass(frozen=True)
class FaceMatch:
    """One enrolled person near the query: their nearest face's cosine distance and,
    for the hash model, the image that face came from."""

    person: str
    distance: float
    path: str | None = None


@dataclass(frozen=True)
class Identification:
    """The answer for one query face. ``person`` is None ("unknown") when nobody is
    within ``threshold``; ``matches`` lists the nearest people all the same."""

    person: str | None
    distance: float | None
    threshold: float | None
    matches: list[FaceMatch] = field(default_factory=list)
    detected: bool | None = None  # None when the query was a vector

    @property
    def known(self) -> bool:
        return self.person is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "person": self.person if self.person is not None else "unknown",
            "known": self.known,
            "distance": self.distance,
            "threshold": self.threshold,
            "face_detected": self.detected,
            "matches": [asdict(m) for m in self.matches],
        }


# -- writes -------------------------------------------------------------------------


def enroll(
    store: Store,
    source: str | Path | Mapping[str, Sequence[str | Path]],
    *,
    model: str | None = None,
    encoder: FaceEncoder | None = None,
    namespace: str = DEFAULT_NAMESPACE,
    reset: bool = False,
    progress: bool = False,
) -> EnrollResult:
    """Encode and store every face under ``source`` (see :func:`scan`).

    New people are added and known people get the new images; re-enrolling an image
    already stored replaces its vector. Every image is read and encoded before anything
    is written, so a corrupt file leaves the gallery untouched. ``model`` None keeps the
    gallery's model ("hash" for a new one); naming the other model, or ``reset=True``,
    starts a new gallery and deletes the old one's faces.
    """
    people = scan(source)
    if model is not None:
        check_model(model)
    model = model or current_model(store, namespace) or "hash"
    encoder = encoder or default_encoder()
    entries = [(person, path) for person, paths in people.items() for path in paths]
    t0 = time.perf_counter()
    vectors = encoder.encode([path for _, path in entries], progress=progress)
    encode_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    enroll_vectors(store, [(person, str(path.resolve()), vec) for (person, path), vec
                           in zip(entries, vectors, strict=True)],
                   model=model, namespace=namespace, reset=reset)
    return EnrollResult(model, list(people), len(entries), encode_seconds,
                        time.perf_counter() - t1)


def add_images(
    store: Store,
    person: str,
    images: Sequence[str | Path],
    *,
    encoder: FaceEncoder | None = None,
    namespace: str = DEFAULT_NAMESPACE,
) -> EnrollResult:
    """Add images of a person who is already enrolled (in the gallery's current model).
    An unknown person is an error, so a typo never creates a new person: use
    :func:`enroll` with ``{person: files}`` for that."""
    check_person(person)
    idx = open_gallery(store, namespace)
    if not _person_exists(idx, person):
        raise NotFoundError(f"no enrolled person {person!r}")
    return enroll(store, {person: list(images)}, model=idx.spec.storage, encoder=encoder,
                  namespace=namespace)


def enroll_vectors(
    store: Store,
    faces: Iterable[tuple[str, str, np.ndarray]],
    *,
    model: str = "hash",
    namespace: str = DEFAULT_NAMESPACE,
    reset: bool = False,
) -> int:
    """Store already-encoded faces, given as ``(person, source path, vector)``."""
    grouped: _Grouped = {}
    for person, path, vector in faces:
        grouped.setdefault(check_person(person), []).append((str(path), vector))
    idx = ensure_gallery(store, model, namespace, reset)
    if not grouped:
        return 0
    if model == "json":
        idx.upsert(_json_docs(idx, grouped), id_field="person_id")
    else:
        # The id names the key (face:<person>:<n>) but is not a field of the face.
        prepared = idx.prepare(_hash_docs(idx, grouped), id_field="key_id")
        for _, body in prepared:
            body.pop("key_id", None)
        idx.write_prepared(prepared)
    return sum(len(v) for v in grouped.values())


_Grouped = dict[str, list[tuple[str, np.ndarray]]]  # person -> [(source path, vector)]


def _hash_docs(idx: VectorIndex, grouped: _Grouped) -> list[dict[str, Any]]:
    """One document per face. ``n`` is the image's number when its file name is one
    (ORL's ``3.bmp`` -> ``face:s1:3``), else the next free number; an image already
    stored for that person keeps its number, so enrolling twice changes nothing."""
    docs = []
    for person, faces in grouped.items():
        by_path = {h.fields.get("person_path"): int(h.id.rsplit(":", 1)[1])
                   for h in _person_hits(idx, person)}
        taken = set(by_path.values())
        for path, vector in faces:
            n = by_path.get(path)
            if n is None:
                stem = Path(path).stem
                n = int(stem) if stem.isdigit() and int(stem) > 0 and int(stem) not in taken \
                    else max(taken, default=0) + 1
                taken.add(n)
                by_path[path] = n
            docs.append({"key_id": f"{person}:{n}", "person_id": person, "person_path": path,
                         "embedding": vector})
    return docs


def _json_docs(idx: VectorIndex, grouped: _Grouped) -> list[dict[str, Any]]:
    """One document per person: stored faces merged with the new ones by source path.
    (Read-modify-write: two processes adding to one person at once may lose one add.)"""
    people = list(grouped)
    stored = idx.get_many(people)
    docs = []
    for person, doc in zip(people, stored, strict=True):
        merged: dict[str, Any] = {}
        if doc:
            merged = dict(zip(doc.get("person_paths") or [], doc.get("embeddings") or [],
                              strict=False))
        for path, vector in grouped[person]:
            merged[path] = vector
        docs.append({"person_id": person, "person_paths": list(merged),
                     "embeddings": np.asarray(list(merged.values()), dtype=np.float32)})
    return docs


def remove_person(store: Store, person: str, *, namespace: str = DEFAULT_NAMESPACE) -> int:
    """Delete every face of ``person``; returns how many faces were removed."""
    check_person(person)
    idx = open_gallery(store, namespace)
    if idx.spec.storage == "json":
        doc = idx.get(person)
        if doc is None:
            raise NotFoundError(f"no enrolled person {person!r}")
        idx.delete([person])
        return len(doc.get("embeddings") or [])
    ids = [h.id for h in _person_hits(idx, person)]
    if not ids:
        raise NotFoundError(f"no enrolled person {person!r}")
    return idx.delete(ids)


def _person_exists(idx: VectorIndex, person: str) -> bool:
    if idx.spec.storage == "json":
        return idx.exists_many([person])[0]
    return bool(_person_hits(idx, person, limit=1))


def _person_hits(idx: VectorIndex, person: str, limit: int = _MAX_FETCH) -> list[Any]:
    """A person's faces in the hash model. The store layer speaks only vector queries,
    so this is a KNN restricted to the person's tag: with the pre-filter it returns all
    of them (up to ``limit``), whatever the query vector."""
    probe = np.full(DIM, 1.0 / np.sqrt(DIM), dtype=np.float32)
    return idx.knn(probe, limit, filters={"person_id": person},
                   return_fields=["person_id", "person_path"])


# -- reads --------------------------------------------------------------------------


def identify(
    store: Store,
    image: FaceImage,
    *,
    k: int = 3,
    threshold: float | None = DEFAULT_THRESHOLD,
    encoder: FaceEncoder | None = None,
    namespace: str = DEFAULT_NAMESPACE,
) -> Identification:
    """Who is in ``image``: the nearest ``k`` enrolled people, and the nearest one as the
    answer if within ``threshold`` (None: always answer the nearest)."""
    idx = open_gallery(store, namespace)  # fail before the encoder loads when nothing is enrolled
    face = (encoder or default_encoder()).encode_one(image)
    result = _identify(idx, face.vector, k, threshold)
    return Identification(result.person, result.distance, threshold, result.matches,
                          face.detected)


def identify_vector(
    store: Store,
    vector: np.ndarray,
    *,
    k: int = 3,
    threshold: float | None = DEFAULT_THRESHOLD,
    namespace: str = DEFAULT_NAMESPACE,
) -> Identification:
    """As :func:`identify`, for a face already encoded."""
    return _identify(open_gallery(store, namespace), vector, k, threshold)


def _identify(
    idx: VectorIndex, vector: np.ndarray, k: int, threshold: float | None
) -> Identification:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 1000:
        raise InvalidInput(f"k must be an integer from 1 to 1000, got {k!r}")
    if threshold is not None and (isinstance(threshold, bool)
                                  or not isinstance(threshold, int | float)
                                  or not 0 < threshold <= 2):
        raise InvalidInput(f"threshold must be a cosine distance in (0, 2], got {threshold!r}")
    matches = _nearest_people(idx, vector, k)
    best = matches[0] if matches else None
    known = best is not None and (threshold is None or best.distance < threshold)
    return Identification(best.person if known and best else None,
                          best.distance if best else None, threshold, matches)


def _nearest_people(idx: VectorIndex, vector: np.ndarray, k: int) -> list[FaceMatch]:
    if idx.spec.storage == "json":
        hits = idx.knn(vector, k, return_fields=["person_id"])
        return [FaceMatch(str(h.fields.get("person_id", h.id)), h.distance) for h in hits]
    # Faces, not people, are documents: widen the KNN until k distinct people show up.
    fetch = min(max(4 * k, 10), _MAX_FETCH)
    while True:
        hits = idx.knn(vector, fetch, return_fields=["person_id", "person_path"])
        people: dict[str, FaceMatch] = {}
        for h in hits:
            person = str(h.fields.get("person_id", ""))
            if person and person not in people:
                people[person] = FaceMatch(person, h.distance, h.fields.get("person_path"))
        if len(people) >= k or len(hits) < fetch or fetch >= _MAX_FETCH:
            return list(people.values())[:k]
        fetch = min(fetch * 4, _MAX_FETCH)
