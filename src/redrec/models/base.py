"""The model API every recommender in ``redrec.models`` implements: fit, score, recommend,
save, load (the shape of ``implicit``'s base class, typed and over string ids).

Models learn from chronological per-user sequences and score from a *history* (the
user's items, oldest first) rather than from a stored user id, because serving computes
recommendations from the user's current state at request time. Vector models
(:class:`VectorRecommender`) score by inner product of a user vector with item vectors,
which is exactly what a Redis inner-product KNN index serves.

A saved model is a versioned artifact directory::

    config.json   format, format version, model kind, parameters, content hash, metrics
    items.json    item ids, row i of every per-item array belongs to items[i]
    arrays.npz    the learned arrays (numpy only, so loading needs no torch)
"""

from __future__ import annotations

import hashlib
import importlib
import json
from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, Self

import numpy as np

from redrec.exceptions import InvalidInput, NotFoundError

__all__ = [
    "ARTIFACT_FORMAT",
    "FORMAT_VERSION",
    "Recommender",
    "ScoredItem",
    "VectorRecommender",
    "index_items",
    "load_model",
]

ARTIFACT_FORMAT = "redrec.model"
FORMAT_VERSION = 1

# Model kind -> module defining it, imported only when an artifact of that kind is loaded
# (so loading an ALS model never imports torch).
_MODULES = {
    "popularity": "redrec.models.popularity",
    "itemknn": "redrec.models.itemknn",
    "als": "redrec.models.als",
    "tower": "redrec.models.tower",
}


class ScoredItem(NamedTuple):
    item_id: str
    score: float


def index_items(sequences: Mapping[str, Sequence[str]]) -> tuple[list[str], dict[str, int]]:
    """Item ids in order of first appearance and their row numbers."""
    index: dict[str, int] = {}
    for items in sequences.values():
        for item in items:
            if item not in index:
                index[item] = len(index)
    if not index:
        raise InvalidInput("cannot fit a model on an empty interaction log")
    return list(index), index


class Recommender(ABC):
    """Base class: a model over string item ids that scores every item given a history."""

    kind: ClassVar[str]

    def __init__(self) -> None:
        self._item_ids: list[str] = []
        self._index: dict[str, int] = {}
        self.metadata: dict[str, Any] = {}

    # --- the API ---------------------------------------------------------------------

    @property
    def item_ids(self) -> list[str]:
        """Ids of the items this model can score, in row order."""
        return self._item_ids

    @property
    def is_fitted(self) -> bool:
        return bool(self._item_ids)

    @abstractmethod
    def fit(self, sequences: Mapping[str, Sequence[str]], *, show_progress: bool = False) -> Self:
        """Learn from each user's items in chronological order; returns ``self``."""

    @abstractmethod
    def score(self, histories: Sequence[Sequence[str]]) -> np.ndarray:
        """Scores ``(len(histories), len(item_ids))``, float32; higher is better.

        Items of a history that the model never saw are ignored.
        """

    def recommend(
        self,
        history: Sequence[str],
        k: int = 10,
        *,
        exclude: Collection[str] = (),
        exclude_seen: bool = True,
    ) -> list[ScoredItem]:
        """The top ``k`` items for a user whose items so far are ``history``."""
        if k < 1:
            raise InvalidInput(f"k must be >= 1, got {k}")
        self._check_fitted()
        scores = self.score([history])[0].astype(np.float64)
        banned = [*exclude, *(history if exclude_seen else ())]
        rows = [self._index[i] for i in banned if i in self._index]
        scores[rows] = -np.inf
        k = min(k, int(np.isfinite(scores).sum()))
        top = np.argpartition(-scores, k - 1)[:k] if k else np.zeros(0, dtype=np.int64)
        top = top[np.argsort(-scores[top], kind="stable")]
        return [ScoredItem(self._item_ids[j], float(scores[j])) for j in top]

    # --- persistence -----------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the artifact directory (created if needed) and return its path."""
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        arrays = self._arrays()
        items_json = json.dumps(self._item_ids, ensure_ascii=False)
        config = {
            "format": ARTIFACT_FORMAT,
            "format_version": FORMAT_VERSION,
            "model": self.kind,
            "version": _content_hash(items_json, arrays),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "n_items": len(self._item_ids),
            "params": self._params(),
            "metadata": self.metadata,
        }
        (path / "items.json").write_text(items_json, encoding="utf-8")
        with (path / "arrays.npz").open("wb") as handle:
            np.savez(handle, **arrays)  # type: ignore[arg-type]
        (path / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Read an artifact written by :meth:`save` (of this class, or any kind from the base)."""
        config, items, arrays = _read_artifact(Path(path))
        kind = config["model"]
        model_cls = _model_class(kind)
        if not issubclass(model_cls, cls):
            raise InvalidInput(f"{path}: artifact holds a {kind!r} model, not {cls.__name__}")
        try:
            model = model_cls._restore(config["params"], arrays)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"{path}: model artifact does not match its kind ({exc})") from exc
        model._set_items(items)
        model.metadata = dict(config.get("metadata") or {})
        model.metadata["version"] = config["version"]
        return model  # type: ignore[return-value]

    # --- for subclasses --------------------------------------------------------------

    @abstractmethod
    def _params(self) -> dict[str, Any]:
        """Constructor keyword arguments, JSON-serialisable."""

    @abstractmethod
    def _arrays(self) -> dict[str, np.ndarray]:
        """Learned state as numpy arrays."""

    @classmethod
    @abstractmethod
    def _restore(cls, params: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> Self:
        """Rebuild a fitted model from :meth:`_params` and :meth:`_arrays`."""

    def _set_items(self, item_ids: list[str]) -> None:
        self._item_ids = list(item_ids)
        self._index = {item: i for i, item in enumerate(self._item_ids)}

    def _rows(self, history: Sequence[str]) -> list[int]:
        """Row numbers of the known items of ``history``, order kept."""
        return [self._index[i] for i in history if i in self._index]

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise InvalidInput(f"{type(self).__name__} is not fitted")


class VectorRecommender(Recommender):
    """A model whose score is ``item_vectors @ user_vector(history)``: servable by IP KNN."""

    @abstractmethod
    def item_vectors(self) -> np.ndarray:
        """``(n_items, dim)`` float32, row i for ``item_ids[i]``: what goes into Redis."""

    @abstractmethod
    def user_vector(self, history: Sequence[str]) -> np.ndarray:
        """``(dim,)`` float32 for a user whose items so far are ``history`` (request time)."""

    def user_vectors(self, histories: Sequence[Sequence[str]]) -> np.ndarray:
        """``(len(histories), dim)`` float32; subclasses batch this where it pays."""
        dim = self.item_vectors().shape[1]
        out = np.zeros((len(histories), dim), dtype=np.float32)
        for row, history in enumerate(histories):
            out[row] = self.user_vector(history)
        return out

    def score(self, histories: Sequence[Sequence[str]]) -> np.ndarray:
        self._check_fitted()
        return self.user_vectors(histories) @ self.item_vectors().T


def load_model(path: str | Path) -> Recommender:
    """Load any saved model; the artifact's ``config.json`` names its kind."""
    return Recommender.load(path)


def _model_class(kind: str) -> type[Recommender]:
    module = _MODULES.get(kind)
    if module is None:
        raise InvalidInput(f"unknown model kind {kind!r} (known: {sorted(_MODULES)})")
    found = [
        obj
        for obj in vars(importlib.import_module(module)).values()
        if isinstance(obj, type) and issubclass(obj, Recommender) and obj.__dict__.get("kind") == kind
    ]
    return found[0]


def _content_hash(items_json: str, arrays: Mapping[str, np.ndarray]) -> str:
    digest = hashlib.sha256(items_json.encode("utf-8"))
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def _read_artifact(path: Path) -> tuple[dict[str, Any], list[str], dict[str, np.ndarray]]:
    files = [path / name for name in ("config.json", "items.json", "arrays.npz")]
    for file in files:
        if not file.is_file():
            raise NotFoundError(f"{path}: not a model artifact (missing {file.name})")
    try:
        config = json.loads(files[0].read_text(encoding="utf-8"))
        items = json.loads(files[1].read_text(encoding="utf-8"))
        with np.load(files[2], allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (ValueError, OSError) as exc:
        raise InvalidInput(f"{path}: unreadable model artifact ({exc})") from exc
    if config.get("format") != ARTIFACT_FORMAT or not isinstance(items, list):
        raise InvalidInput(f"{path}: not a redrec model artifact")
    if int(config.get("format_version", 0)) > FORMAT_VERSION:
        raise InvalidInput(
            f"{path}: artifact format {config['format_version']} is newer than this redrec "
            f"reads ({FORMAT_VERSION})"
        )
    return config, [str(i) for i in items], arrays
