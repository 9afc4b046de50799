"""Catalogue benchmark on the books sample: ingest throughput (embedding and indexing
measured separately, cold cache) and semantic query latency (embed + KNN).

    python benchmarks/bench_catalog.py [--queries 200]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, percentiles_ms  # noqa: E402

import redrec  # noqa: E402
from redrec.apps.books import books_catalog, ingest_books  # noqa: E402

QUERIES = ["a gripping novel about time travel and lost love", "robots at war",
           "a detective solves a murder in Victorian London", "growing up in a small town",
           "dragons and magic in a medieval kingdom", "the history of the Roman empire",
           "a cookbook of Italian recipes", "surviving alone on Mars"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()
    with redrec.connect(ephemeral=True) as store:
        t = time.perf_counter()
        report = ingest_books(store)
        total = time.perf_counter() - t
        again = ingest_books(store)
        books = books_catalog(store)
        books.search("warm up the query encoder", 1)
        lat, enc = [], []
        encoder = books.encoder("text")
        for n in range(args.queries):
            q = QUERIES[n % len(QUERIES)] + f" {n}"
            s = time.perf_counter()
            encoder.encode([q])
            enc.append(time.perf_counter() - s)
            s = time.perf_counter()
            books.search(q, 10)
            lat.append(time.perf_counter() - s)
        emit("catalog", {
            "items": report.written, "embedded": report.computed["text"],
            "embed_s": report.embed_s, "write_s": report.write_s, "total_s": round(total, 2),
            "embed_items_per_s": round(report.computed["text"] / report.embed_s, 1),
            "index_items_per_s": round(report.written / report.write_s),
            "end_to_end_items_per_s": round(report.written / total, 1),
            "reingest_s": again.total_s, "reingest_computed": again.computed["text"],
            "query_encoder": encoder.name,
            "semantic_query": percentiles_ms(lat), "query_embed_only": percentiles_ms(enc),
        })


if __name__ == "__main__":
    main()
