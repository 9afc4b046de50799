"""ONNX export and ONNX Runtime sessions for the text and image encoders.

Exports are built once per source model and kept on disk (``~/.redrec/models`` unless a
directory is given), in a folder named by the model and a fingerprint of its files, so a
changed or reinstalled model is exported afresh and an old export is never served for it.
An export is written to a temporary folder and renamed into place, so two processes
exporting at once cannot leave a half-written model behind.

Every export is checked against the torch model it came from before it is kept: a trace
that silently baked in one input shape would fail that check instead of serving wrong
vectors.

torch is imported only while exporting; serving a cached export needs onnxruntime alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from redrec.exceptions import ConfigError

if TYPE_CHECKING:
    import onnxruntime

__all__ = [
    "OnnxTextRunner",
    "TEXT_OUTPUT",
    "cached_export",
    "default_cache_dir",
    "export_image",
    "export_text",
    "fingerprint",
    "make_session",
    "quantize_int8",
]

# Bump when the export recipe changes, so exports made by older code are not reused.
_FORMAT = 1
TEXT_OUTPUT = "sentence_embedding"
IMAGE_OUTPUT = "features"
_TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# Sentences of several lengths: the export sees padding, the check sees batch and single.
_PROBE_TEXTS = [
    "A short one.",
    "Attention layers let a transformer weigh every token of a sentence against the others.",
    "",
    # Longer than 256 tokens, so truncation is checked too.
    "Slow-cooked beans with garlic, bay leaves and a little smoked paprika. " * 25,
]


def default_cache_dir() -> Path:
    """Where exports live when no directory is given: ``~/.redrec/models``."""
    return Path.home() / ".redrec" / "models"


def fingerprint(files: Iterable[Path]) -> str:
    """A short id of a model's files (paths, sizes, modification times) and this recipe.

    Cheap to compute even for a 90 MB weights file; a reinstall or an edited file gives a
    new id, hence a new export.
    """
    h = hashlib.sha256(f"redrec-onnx-{_FORMAT}".encode())
    for f in sorted(files):
        st = f.stat()
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def cached_export(target: Path, build: Callable[[Path], None]) -> Path:
    """Return ``target``, first building it with ``build(tmp_dir)`` if it does not exist."""
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache may be shared
        build(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():  # not a lost race with another process: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def quantize_int8(src: Path, dst: Path) -> Path:
    """Write a dynamically int8-quantised copy of ``src`` to ``dst`` (once) and return it.

    Only MatMul weights are quantised, per output channel: per-tensor scales lose too
    much (mean cosine to the fp32 vectors 0.94 against 0.993 for MiniLM on the books). The
    embedding tables stay fp32: they are looked up, not multiplied, so int8 there would
    save memory, not time. The recommended pre-processing (shape inference, graph
    clean-up) runs first; its symbolic shape pass fails on these graphs and is skipped,
    which changes nothing measured.
    """
    if dst.is_file():
        return dst
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix=f".{dst.name}.", dir=dst.parent) as tmp:
        pre, out = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(src, pre, skip_symbolic_shape=True)
        quantize_dynamic(
            pre, out, weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"]
        )
        out.chmod(0o644)
        os.replace(out, dst)
    return dst


def check_threads(backend: str, threads: int | None) -> None:
    """``threads`` is an ONNX Runtime session setting: only valid with the onnx backend."""
    if threads is not None and (backend != "onnx" or threads < 1):
        raise ConfigError(
            "threads sets ONNX Runtime's threads (backend='onnx', at least 1); torch's "
            "are process-wide: the application sets them with torch.set_num_threads"
        )


def make_session(
    path: Path, device: str = "cpu", threads: int | None = None
) -> onnxruntime.InferenceSession:
    """An ONNX Runtime session on the CPU, or on CUDA when asked and available.

    ``threads`` sets this session's intra-op threads (default: one per physical core).
    """
    import onnxruntime as ort

    if device == "cpu":
        providers = ["CPUExecutionProvider"]
    elif device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    else:
        raise ConfigError(
            f"the onnx backend cannot run on device {device!r} with this onnxruntime "
            f"(providers: {', '.join(ort.get_available_providers())})"
        )
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only: its optimiser warnings are not for users
    if threads is not None:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=providers)


def _torch_export(module: Any, args: tuple[Any, ...], path: Path, **kwargs: Any) -> None:
    """Export with the TorchScript exporter: the dynamo one needs onnxscript, and its
    graphs defeat ONNX Runtime's fusions (measured 4x slower for MiniLM)."""
    import torch

    with warnings.catch_warnings(), torch.no_grad():
        # Tracer warnings about shape-dependent branches: the check after export covers them.
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=17, **kwargs)


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(axis=1).min())


class OnnxTextRunner:
    """Tokenise and run an exported text model: un-normalised pooled vectors, in order.

    Texts are sorted by token count and batched longest first, so each batch is padded
    only to its own longest text: on the books descriptions (2 to 664 tokens) this cuts the
    work about in half against batching in input order.
    """

    def __init__(
        self,
        export_dir: Path,
        model_file: str,
        device: str,
        max_seq_length: int,
        threads: int | None = None,
    ) -> None:
        from tokenizers import Tokenizer

        meta = json.loads((export_dir / "meta.json").read_text())
        self.dim: int = meta["dim"]
        self.pad_id: int = meta["pad_token_id"]
        self.tokenizer = Tokenizer.from_file(str(export_dir / "tokenizer.json"))
        self.tokenizer.no_padding()  # a saved tokenizer.json may pad to a fixed width
        self.tokenizer.enable_truncation(max_seq_length)
        self.session = make_session(export_dir / model_file, device, threads)
        self.inputs = {i.name for i in self.session.get_inputs()}

    def run(
        self, texts: list[str], batch_size: int, on_batch: Callable[[int], object] | None = None
    ) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        lengths = np.array([len(e.ids) for e in encodings], dtype=np.int64)
        order = np.argsort(-lengths, kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            width = int(lengths[rows[0]])
            ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            types = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                e, n = encodings[i], int(lengths[i])
                ids[r, :n] = e.ids
                mask[r, :n] = 1
                types[r, :n] = e.type_ids
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            feed = {k: v for k, v in feed.items() if k in self.inputs}
            out[rows] = self.session.run([TEXT_OUTPUT], feed)[0]
            if on_batch is not None:
                on_batch(len(rows))
        return out


def export_text(model_dir: Path, out_dir: Path) -> None:
    """Export a sentence-transformers model (transformer + pooling) to ``out_dir``.

    Writes ``model.onnx`` (token ids in, pooled un-normalised embedding out), the model's
    own ``tokenizer.json`` and ``meta.json`` (pooling, dimension, default truncation).
    """
    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ConfigError(
            "exporting a text model to ONNX needs torch and sentence-transformers "
            "(pip install 'redrec[embed]'); a cached export does not"
        ) from exc
    st: Any = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
    kinds = [type(m).__name__ for m in st]
    if kinds[:2] != ["Transformer", "Pooling"] or any(k != "Normalize" for k in kinds[2:]):
        raise ConfigError(
            f"the onnx backend supports Transformer + Pooling (+ Normalize) models; "
            f"{model_dir} has {' + '.join(kinds)}: use backend='torch'"
        )
    if st.default_prompt_name:
        raise ConfigError(f"{model_dir} uses a default prompt; the onnx backend has none")
    transformer, pooling = st[0], st[1]
    mode = getattr(pooling, "pooling_mode", None)
    if not isinstance(mode, str):  # sentence-transformers < 6
        mode = pooling.get_pooling_mode_str()
    if mode not in ("mean", "cls"):
        raise ConfigError(f"the onnx backend supports mean or cls pooling, not {mode!r}")
    tokenizer = st.tokenizer
    if not hasattr(tokenizer, "backend_tokenizer"):
        raise ConfigError(f"{model_dir} has no fast tokenizer; the onnx backend needs one")

    hf = transformer.auto_model.eval()
    # Eager attention traces to plain MatMul/Softmax that ONNX Runtime fuses; the SDPA
    # path exported 4x slower.
    if hasattr(hf, "set_attn_implementation"):
        hf.set_attn_implementation("eager")
    else:
        hf.config._attn_implementation = "eager"
    accepted = set(tokenizer.model_input_names)
    names = [n for n in _TEXT_INPUTS if n in accepted or n == "attention_mask"]

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.hf = hf

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            feed = dict(zip(names, inputs, strict=True))
            hidden = self.hf(**feed).last_hidden_state
            if mode == "cls":
                return hidden[:, 0]
            mask = feed["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    enc = tokenizer(_PROBE_TEXTS[:2], padding=True, return_tensors="pt")
    axes = {n: {0: "batch", 1: "tokens"} for n in names} | {TEXT_OUTPUT: {0: "batch"}}
    onnx_path = out_dir / "model.onnx"
    _torch_export(
        Pooled(),
        tuple(enc[n] for n in names),
        onnx_path,
        input_names=names,
        output_names=[TEXT_OUTPUT],
        dynamic_axes=axes,
    )
    tokenizer.backend_tokenizer.save(str(out_dir / "tokenizer.json"))
    meta: dict[str, Any] = {
        "format": _FORMAT,
        "source": str(model_dir),
        "dim": int(st.get_embedding_dimension()),
        "pooling": mode,
        "max_seq_length": int(st.max_seq_length),
        "max_positions": int(getattr(hf.config, "max_position_embeddings", st.max_seq_length)),
        "pad_token_id": int(tokenizer.pad_token_id or 0),
    }
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2))

    # The check: ONNX Runtime on this tokenizer must reproduce sentence-transformers.
    runner = OnnxTextRunner(out_dir, "model.onnx", "cpu", meta["max_seq_length"])
    got = runner.run(_PROBE_TEXTS, batch_size=3)
    want = st.encode(_PROBE_TEXTS, convert_to_numpy=True)
    if (cos := _min_cosine(got, want)) < 0.9999:
        raise ConfigError(f"ONNX export of {model_dir} does not reproduce it (cosine {cos:.4f})")


def export_image(net: Any, out_dir: Path, size: int) -> None:
    """Export an EfficientNet's pooled features (``extract_features(x).mean((2, 3))``).

    ``set_swish()`` is deliberately not called: on the Lite models it would replace their
    ReLU6 activations with Swish and change the network.
    """
    import torch

    class Features(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net.extract_features(x).mean((2, 3))

    module = Features().eval()
    gen = torch.Generator().manual_seed(0)
    probe = torch.randn(2, 3, size, size, generator=gen)
    path = out_dir / "model.onnx"
    _torch_export(
        module,
        (probe,),
        path,
        input_names=["pixels"],
        output_names=[IMAGE_OUTPUT],
        dynamic_axes={"pixels": {0: "batch"}, IMAGE_OUTPUT: {0: "batch"}},
    )
    with torch.no_grad():
        want = module(probe).numpy()
    got = make_session(path).run([IMAGE_OUTPUT], {"pixels": probe.numpy()})[0]
    if (cos := _min_cosine(got, want)) < 0.9999:
        raise ConfigError(f"ONNX export of the image model does not reproduce it ({cos:.4f})")
