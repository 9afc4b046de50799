"""Encoder benchmark: text and image throughput, query latency, ONNX fidelity.

Text: the 1,486 ru402 book descriptions (field ``description``), embedded end to end
(tokenise + model + normalise, one ``encode`` call) by each text variant:

* ``torch``            sentence-transformers, the reference vectors
* ``onnx``             ONNX Runtime fp32
* ``onnx-int8``        ONNX Runtime, dynamic int8 (MatMul weights, per channel)
* ``onnx-int8+len128`` / ``+len64``: the same, truncating texts at 128 / 64 tokens
  instead of the model's 256, to show what reaching a throughput target by truncation
  costs
* ``static``           token vectors distilled from the model (``redrec.embed.static``),
  averaged per text; its ``setup_s`` is the one-off build (into the fresh folder below),
  and its cosine to torch is meaningful because at 384 dims it keeps the transformer's
  coordinates

For each: items/s (best and median of ``--repeats`` rounds), single-query latency p50/p99
for a short sentence with all cores and with one thread, and fidelity against the torch
vectors: mean/min cosine and the mean overlap of each book's 10 nearest neighbours
(itself excluded).

Images: the 400 ORL faces (92x112 BMP files), torch against ONNX Runtime, images/s end to
end (file read, decode, resize, model) and the min cosine between the two.

Every measurement runs in a fresh process: torch's OpenMP threads and ONNX Runtime's
thread pool spin while waiting, and in one process they slow each other down (a torch
query went from 14 ms to 500 ms next to ONNX sessions on a loaded 2-core machine).
Besides wall-clock rates, each figure comes with its CPU time: other jobs on a shared
machine inflate wall time, not CPU time, so items per CPU-second times the thread count
estimates the rate on idle cores (low, as waiting threads burn CPU too), and CPU time per
query bounds the idle latency from above.

    python benchmarks/bench_encoders.py [--repeats 2] [--queries 200] [--seed 0]
        [--variants torch,static] [--no-images]

Prints one JSON line and appends it to ``benchmarks/results/encoders.jsonl``. Exports go
to a fresh temporary directory, so the one-off export and quantisation time is measured.
"""

from __future__ import annotations

import argparse
import glob
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from _common import emit, knn_overlap  # noqa: E402

DATA = Path("/work/shared/data/ru402")
QUERY = "a gripping novel about time travel and lost love"
TARGET_ITEMS_S, TARGET_QUERY_MS = 400, 10.0
TEXT_VARIANTS: dict[str, dict[str, Any]] = {
    "torch": {},
    "onnx": {"backend": "onnx"},
    "onnx-int8": {"backend": "onnx", "quantize": True},
    "onnx-int8+len128": {"backend": "onnx", "quantize": True, "max_seq_length": 128},
    "onnx-int8+len64": {"backend": "onnx", "quantize": True, "max_seq_length": 64},
    "static": {"backend": "static"},
}
LATENCY_VARIANTS = ("torch", "onnx", "onnx-int8", "static")
IMAGE_VARIANTS: dict[str, dict[str, Any]] = {"torch": {}, "onnx": {"backend": "onnx"}}


def book_texts() -> list[str]:
    files = sorted(glob.glob(str(DATA / "books" / "*.json")))
    return [json.loads(Path(f).read_text()).get("description") or "" for f in files]


def face_files() -> list[str]:
    return sorted(glob.glob(str(DATA / "orl" / "s*" / "*.bmp")))


def make_encoder(kind: str, kwargs: dict[str, Any], cache: str, threads: int, seed: int) -> Any:
    """An encoder using ``threads`` threads, in this (fresh) process."""
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(threads)
    if kwargs.get("backend") == "onnx":
        kwargs = {**kwargs, "threads": threads}
    if kind == "text":
        from redrec.embed.text import TextEncoder

        return TextEncoder(cache_dir=cache, **kwargs)
    from redrec.embed.image import ImageEncoder

    return ImageEncoder(cache_dir=cache, **kwargs)


def run_throughput(
    kind: str, kwargs: dict[str, Any], cache: str, threads: int, repeats: int, seed: int
) -> dict[str, Any]:
    """Load an encoder, then encode the whole corpus ``repeats`` times."""
    t = time.perf_counter()
    enc = make_encoder(kind, kwargs, cache, threads, seed)
    setup_s = time.perf_counter() - t
    items: list[Any] = book_texts() if kind == "text" else face_files()
    enc.encode(items[:32])  # warm-up
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        vecs = enc.encode(items)
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    n = len(items)
    return {
        "name": enc.name,
        "setup_s": round(setup_s, 2),
        "items_s_best": round(n / min(wall), 1),
        "items_s_median": round(n / statistics.median(wall), 1),
        "items_per_cpu_s": round(n / min(cpu), 1),
        "idle_estimate_items_s": round(n / min(cpu) * threads, 1),
        "vectors": vecs,
    }


def run_latency(
    kwargs: dict[str, Any], cache: str, threads: int, queries: int, seed: int
) -> dict[str, float]:
    """Wall and CPU milliseconds of ``encode([QUERY])``, p50 and p99."""
    enc = make_encoder("text", kwargs, cache, threads, seed)
    for _ in range(20):
        enc.encode([QUERY])
    wall, cpu = [], []
    for _ in range(queries):
        w, c = time.perf_counter(), time.process_time()
        enc.encode([QUERY])
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    ms = np.asarray(wall) * 1000
    cms = np.asarray(cpu) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "cpu_p50_ms": round(float(np.percentile(cms, 50)), 2),
        "cpu_p99_ms": round(float(np.percentile(cms, 99)), 2),
    }


def fidelity(vecs: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    cos = (vecs * ref).sum(axis=1)
    return {
        "cos_mean": round(float(cos.mean()), 4),
        "cos_min": round(float(cos.min()), 4),
        "knn10_overlap": round(knn_overlap(vecs, ref), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", default=",".join(TEXT_VARIANTS),
                    help="text variants to measure, comma-separated (torch is the fidelity reference)")
    ap.add_argument("--no-images", action="store_true", help="skip the image encoders")
    args = ap.parse_args()
    unknown = set(args.variants.split(",")) - set(TEXT_VARIANTS)
    if unknown:
        ap.error(f"unknown variants {sorted(unknown)}; known: {', '.join(TEXT_VARIANTS)}")

    with tempfile.TemporaryDirectory(prefix="redrec-bench-models-") as cache:
        record = measure(args, cache)
    emit("encoders", record)


def measure(args: argparse.Namespace, cache: str) -> dict[str, Any]:
    threads = os.cpu_count() or 1
    load_before = os.getloadavg()
    # One fresh process per measurement (see the module docstring).
    pool = ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), max_tasks_per_child=1)

    def isolated(fn: Any, *fn_args: Any) -> Any:
        return pool.submit(fn, *fn_args).result()

    chosen = [k for k in TEXT_VARIANTS if k in args.variants.split(",")]
    text: dict[str, Any] = {}
    for key in chosen:  # torch first: its vectors are the reference
        text[key] = isolated(
            run_throughput, "text", TEXT_VARIANTS[key], cache, threads, args.repeats, args.seed
        )
    ref = text["torch"]["vectors"] if "torch" in text else None
    for key, row in text.items():
        vecs = row.pop("vectors")
        if key != "torch" and ref is not None:
            row["fidelity"] = fidelity(vecs, ref)
    for key in (k for k in LATENCY_VARIANTS if k in text):
        for n in sorted({threads, 1}, reverse=True):
            text[key][f"query_{n}_thread"] = isolated(
                run_latency, TEXT_VARIANTS[key], cache, n, args.queries, args.seed
            )

    image: dict[str, Any] = {}
    if not args.no_images:
        image = {
            key: isolated(run_throughput, "image", kwargs, cache, threads, args.repeats, args.seed)
            for key, kwargs in IMAGE_VARIANTS.items()
        }
        image_ref = image["torch"].pop("vectors")
        image_onnx = image["onnx"].pop("vectors")
        image["onnx"]["cos_min"] = round(float((image_onnx * image_ref).sum(axis=1).min()), 5)
    pool.shutdown()

    def met(field: str) -> list[str]:
        return [k for k, r in text.items() if r[field] >= TARGET_ITEMS_S]

    return {
        "seed": args.seed,
        "threads": threads,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "versions": versions(),
        "text_corpus": len(book_texts()),
        "query_text": QUERY,
        "text": text,
        "image_corpus": len(face_files()) if image else 0,
        "image": image,
        "target": {
            "items_s": TARGET_ITEMS_S,
            "query_ms": TARGET_QUERY_MS,
            "throughput_met_by": met("items_s_best"),
            "throughput_met_by_idle_estimate": met("idle_estimate_items_s"),
        },
    }


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {p: version(p) for p in ("torch", "onnxruntime", "sentence-transformers", "tokenizers")}


if __name__ == "__main__":
    main()
