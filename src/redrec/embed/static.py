"""Static token embeddings distilled from a sentence-transformers model (Model2Vec style).

Why: a transformer costs ~11 GFLOP per 256-token description, so on two cores MiniLM
embeds 35-60 descriptions a second however it is run (torch, ONNX, int8). A static model
looks each token's vector up in a table and averages them: thousands of descriptions a
second, numpy and the Rust tokenizer only, at a measured loss of fidelity (see
``benchmarks/README.md``: the books' top-10 neighbours agree with the reference model's
about one time in five, semantic queries about one time in two).

The recipe follows Model2Vec (https://github.com/MinishLab/model2vec, ``distill``), done
here with the model's own tokenizer and torch, because ``model2vec[distill]`` pins an
older transformers than this project runs:

1. every vocabulary token, wrapped as ``[SEP] token [CLS]`` (the order Model2Vec found to
   work best), goes through the transformer once; its vector is the mean of the three
   output positions;
2. the token vectors are centred (PCA); with ``dim`` below the model's width they are
   projected on their ``dim`` principal components. At full width no rotation is applied,
   so the vectors stay in the reference model's coordinates and their cosine to the
   reference vectors can be measured;
3. each vector is scaled by the SIF weight ``a / (a + p)``, with ``p`` a Zipf estimate of
   the token's frequency from its rank in the vocabulary (WordPiece vocabularies are
   ordered roughly by frequency) and ``a = 1e-4``, so that frequent words weigh less;
4. at encode time a text is tokenised without special tokens and truncated like the
   reference model (``max_seq_length`` includes the two special tokens), its token vectors
   are summed and the sum L2-normalised. A text with no known token gets the vector the
   transformer gives an empty text, so every row stays a unit vector.

``vocab_size`` keeps the first N token ids only (the most frequent words of a WordPiece
vocabulary): a smaller, faster build whose unknown tokens are skipped at encode time.

A built model is a folder (``embeddings.npy``, ``empty.npy``, ``tokenizer.json``,
``meta.json``), written once under the models directory and re-used by every process;
building needs torch and sentence-transformers, encoding only numpy and ``tokenizers``.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from redrec.exceptions import ConfigError

__all__ = ["RECIPE", "StaticEmbeddings", "build_static"]

# Bump when the recipe changes: it is part of the folder name and of the encoder's name,
# so vectors made by an older recipe are neither loaded nor taken from the embedding cache.
RECIPE = 1
SIF_COEFFICIENT = 1e-4
_BATCH = 1024  # tokens per forward pass while building (three positions each)
_UNUSED = re.compile(r"^\[unused\d+\]$")


def build_static(
    source: Path,
    target: Path,
    *,
    base: str,
    dim: int | None = None,
    vocab_size: int | None = None,
    device: str = "cpu",
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Distil the sentence-transformers model in ``source`` into ``target`` (a folder).

    ``progress`` receives one-line messages (default: printed to stderr); a tqdm bar on
    stderr follows the forward passes. Returns the metadata written to ``meta.json``,
    including ``build_s``, the time the build took.
    """
    say = progress or (lambda msg: print(f"redrec: {msg}", file=sys.stderr, flush=True))
    started = time.perf_counter()
    from redrec.embed.text import _load_sentence_transformer

    st = _load_sentence_transformer(source, base, device)
    tokenizer = st.tokenizer
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(
            f"text model {base!r} has no fast (Rust) tokenizer; the static backend needs one"
        )
    transformer = st[0].auto_model
    hidden = int(transformer.config.hidden_size)
    vocab = len(tokenizer.get_vocab())
    kept = vocab if vocab_size is None else min(vocab_size, vocab)
    out_dim = hidden if dim is None else dim
    if out_dim > hidden:
        raise ConfigError(f"static dim {out_dim} exceeds {base}'s width of {hidden}")
    # Special tokens never appear in a text tokenised without them; [unused*] never at all.
    skip = set(tokenizer.all_special_ids)
    skip.update(i for t, i in tokenizer.get_vocab().items() if _UNUSED.match(t))
    wrap = tokenizer("A")["input_ids"]  # [CLS] A [SEP] for BERT-like models
    if len(wrap) < 3:
        raise ConfigError(
            f"text model {base!r} adds no special tokens around a text; the static backend "
            "needs them to embed tokens alone and the empty text"
        )
    bos, eos = wrap[0], wrap[-1]
    say(f"distilling static embeddings from {base}: {kept:,} tokens x {hidden} "
        f"-> {out_dim} dims (once; kept in {target.parent})")

    raw = _token_vectors(transformer, range(kept), bos, eos, device)
    empty = _token_vectors(transformer, [], bos, eos, device, empty=True)[0]
    valid = np.ones(kept, dtype=bool)
    valid[[i for i in skip if i < kept]] = False

    mean = raw[valid].mean(axis=0)
    table = raw - mean
    empty = empty - mean
    explained = 1.0
    if out_dim < hidden:
        cov = table[valid].T @ table[valid]
        eigval, eigvec = np.linalg.eigh(cov.astype(np.float64))  # ascending order
        components = eigvec[:, ::-1][:, :out_dim].astype(np.float32)
        explained = float(eigval[::-1][:out_dim].sum() / eigval.sum())
        table, empty = table @ components, empty @ components
    rank = np.arange(kept, dtype=np.float64)
    zipf = 1.0 / (rank + 2)
    zipf /= (1.0 / np.arange(2, vocab + 2, dtype=np.float64)).sum()  # over the whole vocabulary
    table = table * (SIF_COEFFICIENT / (SIF_COEFFICIENT + zipf))[:, None]
    table[~valid] = 0.0

    backend_tok = tokenizer.backend_tokenizer
    backend_tok.no_truncation()  # StaticEmbeddings truncates itself and never pads
    backend_tok.no_padding()
    target.mkdir(parents=True, exist_ok=True)
    np.save(target / "embeddings.npy", np.ascontiguousarray(table, dtype=np.float32))
    np.save(target / "empty.npy", np.asarray(empty, dtype=np.float32))
    backend_tok.save(str(target / "tokenizer.json"))
    meta = {
        "recipe": RECIPE,
        "base": base,
        "hidden": hidden,
        "dim": out_dim,
        "vocab": vocab,
        "vocab_size": kept,
        "sif": SIF_COEFFICIENT,
        "explained_variance": round(explained, 4),
        "max_seq_length": int(st.max_seq_length),
        "special_tokens": len(wrap) - 1,  # added around a text: [CLS] and [SEP]
        "build_s": round(time.perf_counter() - started, 2),
    }
    (target / "meta.json").write_text(json.dumps(meta, indent=1))
    say(f"static embeddings for {base} built in {meta['build_s']:.1f} s")
    return meta


def _token_vectors(
    transformer: Any,
    ids: Sequence[int],
    bos: int,
    eos: int,
    device: str,
    *,
    empty: bool = False,
) -> np.ndarray:
    """The transformer's output for each token alone (``eos token bos``, reversed as
    Model2Vec does), averaged over the three positions.

    ``empty`` gives instead the output for an empty text (``bos eos``), as one row.
    """
    import torch
    from tqdm.auto import tqdm

    if empty:
        batches = [torch.tensor([[bos, eos]])]
    else:
        column = torch.tensor(list(ids), dtype=torch.long)[:, None]
        column = torch.cat([torch.full_like(column, eos), column, torch.full_like(column, bos)], 1)
        batches = list(torch.split(column, _BATCH))
    out = []
    with torch.inference_mode(), tqdm(
        total=0 if empty else len(ids), disable=empty, file=sys.stderr, unit="token"
    ) as bar:
        for batch in batches:
            batch = batch.to(device)
            inputs = {"input_ids": batch, "attention_mask": torch.ones_like(batch)}
            if "token_type_ids" in inspect.signature(transformer.forward).parameters:
                inputs["token_type_ids"] = torch.zeros_like(batch)
            hidden = transformer(**inputs).last_hidden_state.float()
            out.append(hidden.mean(dim=1).cpu().numpy())
            bar.update(len(batch))
    return np.concatenate(out).astype(np.float32)


class StaticEmbeddings:
    """A built static model, loaded for encoding (numpy and ``tokenizers`` only)."""

    def __init__(self, folder: Path, max_seq_length: int | None = None) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:  # pragma: no cover - tokenizers comes with the embed extra
            raise ConfigError(
                "the static text backend needs tokenizers (pip install 'redrec[embed]')"
            ) from exc
        try:
            self.meta: dict[str, Any] = json.loads((folder / "meta.json").read_text())
            self.table = np.load(folder / "embeddings.npy")
            self.empty = np.load(folder / "empty.npy")
            self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as exc:  # tokenizers raises a bare Exception for a damaged file
            raise ConfigError(
                f"static model at {folder} is unreadable ({exc}); delete the folder to rebuild it"
            ) from exc
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self.dim = int(self.table.shape[1])
        self.max_seq_length = max_seq_length or int(self.meta["max_seq_length"])
        # Content tokens a text keeps: the reference model spends two on [CLS] and [SEP].
        self._limit = max(1, self.max_seq_length - int(self.meta["special_tokens"]))

    def encode(self, texts: list[str], batch_size: int, on_batch: Callable[[int], Any]) -> np.ndarray:
        """``(n, dim)`` float32 unit rows: SIF-weighted token vectors summed, normalised."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        vocab = self.table.shape[0]
        encode = getattr(self._tokenizer, "encode_batch_fast", self._tokenizer.encode_batch)
        for start in range(0, len(texts), batch_size):
            chunk = texts[start:start + batch_size]
            seqs = [np.asarray(e.ids[:self._limit], dtype=np.int64)
                    for e in encode(chunk, add_special_tokens=False)]
            counts = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
            ids = np.concatenate(seqs) if len(seqs) else np.zeros(0, dtype=np.int64)
            rows = np.repeat(np.arange(len(seqs)), counts)
            known = ids < vocab  # tokens past a reduced vocabulary are skipped
            ids, rows = ids[known], rows[known]
            sums = np.zeros((len(seqs), self.dim), dtype=np.float32)
            if len(ids):
                present = np.bincount(rows, minlength=len(seqs))
                starts = np.concatenate([[0], np.cumsum(present)[:-1]])
                has = present > 0
                sums[has] = np.add.reduceat(self.table[ids], starts[has], axis=0)
            norms = np.linalg.norm(sums, axis=1)
            blank = norms < 1e-8  # no token, or only special/skipped ones
            sums[blank] = self.empty
            norms[blank] = float(np.linalg.norm(self.empty))
            out[start:start + len(chunk)] = sums / np.maximum(norms, 1e-12)[:, None]
            on_batch(len(chunk))
        return out
