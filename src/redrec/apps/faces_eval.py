"""Evaluating face recognition the way the ORL protocol does, through the public API.

Split: the first ``enrolled`` images of every person (natural order: 1..5 of 1..10) are
enrolled and the rest are identified by KNN 1 over the enrolled faces. Recognition
rate = correct identifications / queries, the threshold playing no part (as the
reference reports it). With ``holdout`` people left out of enrolment, all of their
images are queried too and should come back "unknown" at the threshold.

The threshold is chosen from data with :func:`calibrate_threshold` over the distances
:func:`distance_profile` measures: for each query, its distance to its own person's
nearest enrolled face (genuine) and to the nearest other person's (impostor, i.e. what
it would score were its person not enrolled).
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from redrec.apps.faces import (
    DEFAULT_NAMESPACE,
    DEFAULT_THRESHOLD,
    default_encoder,
    enroll_vectors,
    identify_vector,
    scan,
)
from redrec.embed.face import FaceEncoder
from redrec.exceptions import InvalidInput
from redrec.store import Store

__all__ = [
    "ORL_DIR",
    "Evaluation",
    "FaceSet",
    "Miss",
    "calibrate_threshold",
    "distance_profile",
    "encode_faceset",
    "evaluate",
]

# The ORL faces (AT&T Laboratories Cambridge; 40 people x 10 images, 92x112 grey BMP),
# shipped as sample data under the MIT licence of the ru402 course that packaged them.
ORL_DIR = Path(str(resources.files("redrec") / "data" / "orl"))


@dataclass
class FaceSet:
    """Every image of a directory, encoded once: reused across models and splits."""

    people: dict[str, list[Path]]
    vectors: dict[Path, np.ndarray]
    detected: dict[Path, bool]
    encode_seconds: float

    @property
    def size(self) -> int:
        return len(self.vectors)


def encode_faceset(
    source: str | Path, encoder: FaceEncoder | None = None, *, progress: bool = False
) -> FaceSet:
    """Encode every image under ``source`` (a folder of per-person folders)."""
    people = scan(source)
    paths = [p for files in people.values() for p in files]
    t0 = time.perf_counter()
    faces = (encoder or default_encoder()).encode_faces(paths, progress=progress)
    seconds = time.perf_counter() - t0
    return FaceSet(people, {p: f.vector for p, f in zip(paths, faces, strict=True)},
                   {p: f.detected for p, f in zip(paths, faces, strict=True)}, seconds)


@dataclass(frozen=True)
class Miss:
    """A query answered wrongly: ``got`` is the nearest person (or "unknown")."""

    path: str
    expected: str
    got: str
    distance: float | None


@dataclass
class Evaluation:
    model: str
    enrolled_per_person: int
    people: int
    holdout_people: list[str]
    queries: int
    correct: int
    misses: list[Miss]
    threshold: float | None
    correct_at_threshold: int
    false_rejects: list[Miss]
    unknown_queries: int
    unknown_correct: int
    false_accepts: list[Miss]
    timings: dict[str, float | None] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Correct KNN-1 identifications / queries of enrolled people."""
        return self.correct / self.queries if self.queries else 0.0

    @property
    def rate_at_threshold(self) -> float:
        """Correct *and* within the threshold / queries of enrolled people."""
        return self.correct_at_threshold / self.queries if self.queries else 0.0

    @property
    def unknown_rate(self) -> float | None:
        """Queries of held-out people answered "unknown" / those queries."""
        return self.unknown_correct / self.unknown_queries if self.unknown_queries else None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(rate=self.rate, rate_at_threshold=self.rate_at_threshold,
                   unknown_rate=self.unknown_rate)
        return out


def evaluate(
    store: Store,
    source: str | Path | FaceSet,
    *,
    model: str = "hash",
    enrolled: int = 5,
    holdout: int | Sequence[str] = 0,
    seed: int = 0,
    threshold: float | None = DEFAULT_THRESHOLD,
    encoder: FaceEncoder | None = None,
    namespace: str = DEFAULT_NAMESPACE,
    progress: bool = False,
) -> Evaluation:
    """Enrol a split into a *new* gallery in ``namespace`` (replacing what was there)
    and identify the rest. ``holdout``: how many people (drawn with ``seed``) or which
    ones to leave out of enrolment.

    From a directory, each query is encoded and searched in turn, so ``identify_ms``
    is the real per-query latency; from a :class:`FaceSet` only the search is timed.
    """
    faceset = source if isinstance(source, FaceSet) else None
    people = faceset.people if faceset else scan(source)  # type: ignore[arg-type]
    if isinstance(enrolled, bool) or not isinstance(enrolled, int) or enrolled < 1:
        raise InvalidInput(f"enrolled must be a positive number of images, got {enrolled!r}")
    short = [p for p, files in people.items() if len(files) <= enrolled]
    if short:
        raise InvalidInput(
            f"{len(short)} people have no image left to query after enrolling {enrolled} "
            f"(e.g. {short[0]!r})"
        )
    held = _holdout(list(people), holdout, seed)
    enc = encoder or (None if faceset else default_encoder())

    # Enrol the first `enrolled` images of everyone not held out.
    to_enrol = [(p, path) for p, files in people.items() if p not in held
                for path in files[:enrolled]]
    t0 = time.perf_counter()
    if faceset:
        vectors = [faceset.vectors[path] for _, path in to_enrol]
    else:
        assert enc is not None
        vectors = list(enc.encode([path for _, path in to_enrol], progress=progress))
    t1 = time.perf_counter()
    faces = [(p, str(path), v) for (p, path), v in zip(to_enrol, vectors, strict=True)]
    enroll_vectors(store, faces, model=model, namespace=namespace, reset=True)
    t2 = time.perf_counter()

    queries = [(p, path) for p, files in people.items()
               for path in (files if p in held else files[enrolled:])]
    result = Evaluation(model, enrolled, len(people) - len(held), sorted(held), 0, 0, [],
                        threshold, 0, [], 0, 0, [])
    identify_ms: list[float] = []
    search_ms: list[float] = []
    for person, path in _progress(queries, progress):
        q0 = time.perf_counter()
        vec = faceset.vectors[path] if faceset else enc.encode([path])[0]  # type: ignore[union-attr]
        q1 = time.perf_counter()
        answer = identify_vector(store, vec, k=1, threshold=threshold, namespace=namespace)
        q2 = time.perf_counter()
        identify_ms.append((q2 - q0) * 1000)
        search_ms.append((q2 - q1) * 1000)
        nearest = answer.matches[0].person if answer.matches else "unknown"
        if person in held:
            result.unknown_queries += 1
            if answer.person is None:
                result.unknown_correct += 1
            else:
                result.false_accepts.append(Miss(str(path), "unknown", nearest, answer.distance))
            continue
        result.queries += 1
        if nearest == person:
            result.correct += 1
            if answer.person == person:
                result.correct_at_threshold += 1
            else:
                result.false_rejects.append(Miss(str(path), person, "unknown", answer.distance))
        else:
            result.misses.append(Miss(str(path), person, nearest, answer.distance))

    encode_s = (faceset.encode_seconds / faceset.size if faceset
                else (t1 - t0) / max(len(to_enrol), 1))
    result.timings = {
        "enrolled_faces": float(len(to_enrol)),
        "enroll_seconds": (t2 - t1) + (0.0 if faceset else t1 - t0),
        "enroll_faces_per_s": len(to_enrol) / ((t2 - t1) + (0.0 if faceset else t1 - t0)),
        "encode_ms_per_face": encode_s * 1000,
        "identify_ms_p50": _pct(identify_ms, 50) if not faceset else None,
        "identify_ms_p99": _pct(identify_ms, 99) if not faceset else None,
        "search_ms_p50": _pct(search_ms, 50),
        "search_ms_p99": _pct(search_ms, 99),
    }
    return result


def distance_profile(faceset: FaceSet, enrolled: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Genuine and impostor cosine distances for every query of the split, computed
    exactly in numpy (the same numbers a FLAT COSINE index gives)."""
    names = list(faceset.people)
    gallery = [(i, faceset.vectors[p]) for i, n in enumerate(names)
               for p in faceset.people[n][:enrolled]]
    owner = np.array([i for i, _ in gallery])
    g = _unit(np.stack([v for _, v in gallery]))
    genuine, impostor = [], []
    for i, n in enumerate(names):
        for p in faceset.people[n][enrolled:]:
            d = 1.0 - g @ _unit(faceset.vectors[p][None])[0]
            genuine.append(d[owner == i].min())
            impostor.append(d[owner != i].min())
    return np.array(genuine), np.array(impostor)


def calibrate_threshold(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """A distance under which a match counts: the middle of the gap between the largest
    genuine and the smallest impostor distance when they separate; otherwise the cut
    with the fewest errors (false rejects + false accepts), halfway between the first
    and the last cut that reach that minimum."""
    gen = np.sort(np.asarray(genuine, dtype=np.float64))
    imp = np.sort(np.asarray(impostor, dtype=np.float64))
    if not len(gen) or not len(imp):
        raise InvalidInput("calibration needs genuine and impostor distances")
    if gen[-1] < imp[0]:
        return float((gen[-1] + imp[0]) / 2)
    cuts = np.unique(np.concatenate([gen, imp]))
    errors = [(int((gen >= c).sum() + (imp < c).sum()), c) for c in cuts]
    best = min(e for e, _ in errors)
    good = [c for e, c in errors if e == best]
    return float((good[0] + good[-1]) / 2) if len(good) > 1 else float(good[0])


def _holdout(names: list[str], holdout: int | Sequence[str], seed: int) -> set[str]:
    if isinstance(holdout, bool):
        raise InvalidInput("holdout must be a number of people or a list of person ids")
    if isinstance(holdout, int):
        if not 0 <= holdout < len(names):
            raise InvalidInput(f"holdout must be from 0 to {len(names) - 1}, got {holdout}")
        return set(random.Random(seed).sample(names, holdout))
    held = {str(p) for p in holdout}  # type: ignore[union-attr]
    unknown = held - set(names)
    if unknown:
        raise InvalidInput(f"cannot hold out unknown people: {sorted(unknown)}")
    if len(held) >= len(names):
        raise InvalidInput("cannot hold out everyone")
    return held


def _progress(items: list[Any], enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(items, desc="identify", unit="face", disable=not enabled)


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def _unit(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    return m / np.linalg.norm(m, axis=1, keepdims=True)
