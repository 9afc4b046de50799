"""Catalogue benchmark on the books sample: ingest throughput (embedding and indexing
measured separately, cold cache) and semantic query latency (embed + KNN).

``--static`` also ingests the same books with the static text backend (token vectors
distilled from all-MiniLM-L6-v2, see ``redrec.embed.static``) into a fresh index,
``books_static_idx``: the one-off build time (into a fresh temporary folder), embedding and
indexing rates, end-to-end items/s, and how close it comes to the reference vectors that
the books index holds:

* ``knn10_overlap``: for each book, the share of its 10 nearest books (itself excluded,
  exact cosine) that the static vectors and the reference vectors agree on, averaged;
* ``cos_mean`` / ``cos_min``: cosine between a book's static and reference vectors. At
  full width (384) the static vectors keep the transformer's coordinates (no PCA rotation),
  so the figure is meaningful; it says how far the two spaces are from interchangeable;
* ``query_top10_overlap``: for each example query (those of this benchmark, the tests and
  the README), the share of the top-10 books ``Catalog.search`` returns that both indexes
  agree on, averaged; plus the hand-checked neighbourhoods the integration tests assert.

    python benchmarks/bench_catalog.py [--queries 200] [--static]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, knn_overlap, percentiles_ms  # noqa: E402

import redrec  # noqa: E402
from redrec.apps.books import BOOKS_DIR, books_catalog, ingest_books  # noqa: E402
from redrec.catalog import Catalog, ingest  # noqa: E402
from redrec.config import read_yaml  # noqa: E402
from redrec.store import Store  # noqa: E402

QUERIES = ["a gripping novel about time travel and lost love", "robots at war",
           "a detective solves a murder in Victorian London", "growing up in a small town",
           "dragons and magic in a medieval kingdom", "the history of the Roman empire",
           "a cookbook of Italian recipes", "surviving alone on Mars"]
# Queries the tests and the README use, for the static backend's query fidelity.
EXAMPLE_QUERIES = QUERIES + ["transformers", "Autobots and Decepticons at war",
                             "a young wizard learns magic at a school for wizards",
                             "transformers autobots decepticons", "a boy wizard at a school of magic",
                             "time travel romance"]
TRANSFORMERS = {"2", "3", "9", "14", "15", "36", "110"}  # as in tests/integration/test_catalog.py


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--static", action="store_true", help="also measure the static text backend")
    args = ap.parse_args()
    with redrec.connect(ephemeral=True) as store:
        t = time.perf_counter()
        report = ingest_books(store)
        total = time.perf_counter() - t
        again = ingest_books(store)
        books = books_catalog(store)
        books.search("warm up the query encoder", 1)
        encoder = books.encoder("text")
        record: dict[str, Any] = {
            "items": report.written, "embedded": report.computed["text"],
            "embed_s": report.embed_s, "write_s": report.write_s, "total_s": round(total, 2),
            "embed_items_per_s": round(report.computed["text"] / report.embed_s, 1),
            "index_items_per_s": round(report.written / report.write_s),
            "end_to_end_items_per_s": round(report.written / total, 1),
            "reingest_s": again.total_s, "reingest_computed": again.computed["text"],
            "query_encoder": encoder.name,
            **query_latency(books, args.queries),
        }
        if args.static:
            record["static"] = measure_static(store, books, args.queries)
        emit("catalog", record)


def query_latency(cat: Catalog, queries: int) -> dict[str, Any]:
    """p50/p99 of ``Catalog.search`` (embed + KNN, k=10) and of the embedding alone."""
    lat, enc = [], []
    encoder = cat.encoder("text")
    for n in range(queries):
        q = QUERIES[n % len(QUERIES)] + f" {n}"
        s = time.perf_counter()
        encoder.encode([q])
        enc.append(time.perf_counter() - s)
        s = time.perf_counter()
        cat.search(q, 10)
        lat.append(time.perf_counter() - s)
    return {"semantic_query": percentiles_ms(lat), "query_embed_only": percentiles_ms(enc)}


def measure_static(store: Store, books: Catalog, queries: int) -> dict[str, Any]:
    """Build the static model afresh, ingest the books with it, compare with the reference."""
    from redrec.embed.text import TextEncoder

    mapping = read_yaml(BOOKS_DIR / "mapping.yaml", "mapping")
    mapping.update(index="books_static_idx", prefix="bookstatic:")
    mapping["text"].update(backend="static", query_backend=None)
    with tempfile.TemporaryDirectory(prefix="redrec-bench-static-") as models:
        t = time.perf_counter()
        enc = TextEncoder(backend="static", cache_dir=models)
        setup_s = time.perf_counter() - t
        t = time.perf_counter()
        TextEncoder(backend="static", cache_dir=models)  # what every later process pays
        load_s = time.perf_counter() - t
    assert enc.static_meta is not None
    t = time.perf_counter()
    report = ingest(store, mapping, BOOKS_DIR / "items", encoders={"text": enc})
    total = time.perf_counter() - t
    cat = Catalog(store, mapping, encoders={"text": enc})

    ids = books.index.scan_ids()
    ref = _vectors(books, ids)
    static = _vectors(cat, ids)
    have = [i for i, (a, b) in enumerate(zip(ref, static, strict=True)) if a is not None and b is not None]
    r = np.stack([ref[i] for i in have])
    s = np.stack([static[i] for i in have])
    cos = (r * s).sum(axis=1) / (np.linalg.norm(r, axis=1) * np.linalg.norm(s, axis=1))
    overlap = [len({m.id for m in books.search(q, 10)} & {m.id for m in cat.search(q, 10)}) / 10
               for q in EXAMPLE_QUERIES]
    it = [cat.get(m.id)["genres"] for m in cat.similar("26415", 10)]
    return {
        "encoder": enc.name, "dim": enc.dim, "vocab_size": enc.static_meta["vocab_size"],
        "build_s": enc.static_meta["build_s"], "setup_s": round(setup_s, 2),
        "load_s": round(load_s, 2),
        "items": report.written, "embedded": report.computed["text"],
        "embed_s": report.embed_s, "write_s": report.write_s, "total_s": round(total, 2),
        "embed_items_per_s": round(report.computed["text"] / report.embed_s, 1),
        "index_items_per_s": round(report.written / report.write_s),
        "end_to_end_items_per_s": round(report.written / total, 1),
        "end_to_end_with_build_items_per_s": round(report.written / (total + setup_s), 1),
        "fidelity": {
            "books_compared": len(have),
            "knn10_overlap": round(knn_overlap(s, r), 3),
            "cos_mean": round(float(cos.mean()), 4), "cos_min": round(float(cos.min()), 4),
            "query_top10_overlap": round(float(np.mean(overlap)), 3),
            "query_top10_overlap_each": dict(zip(EXAMPLE_QUERIES, overlap, strict=True)),
            # the neighbourhoods tests/integration/test_catalog.py asserts for the reference
            "transformers_in_top5_of_book9": len({m.id for m in cat.similar("9", 5)} & TRANSFORMERS),
            "horror_in_top10_of_it": sum("horror" in g for g in it),
        },
        **query_latency(cat, queries),
    }


def _vectors(cat: Catalog, ids: list[str]) -> list[np.ndarray | None]:
    return [None if row is None or row[0] is None else np.asarray(row[0], dtype=np.float64)
            for row in cat.index.fetch(ids, "embedding")]


if __name__ == "__main__":
    main()
